"""The jaxpr walk of Taylor mode: each equation's series rule, then the derivatives."""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from typing import Any

import jax
import jax.numpy as jnp
from jax.extend.core import ClosedJaxpr, DropVar, JaxprEqn, Literal

from jaxcam.taylor.custom_rules import SERIES_RULES
from jaxcam.taylor.dataflow import is_piecewise_linear_equation
from jaxcam.taylor.equations import bind_equation, is_inexact, sub_jaxpr
from jaxcam.taylor.jvp_fallback import jvp_rule, piecewise_linear_rule
from jaxcam.taylor.linear_rules import LINEAR_PRIMITIVES, bilinear_rule, linear_rule
from jaxcam.taylor.nonlinear_rules import (
    UNARY_PRIMITIVES,
    choice_rule,
    div_rule,
    reduce_choice_rule,
    unary_rule,
)
from jaxcam.taylor.terms import RuleResult, Series, Term, dense_term

Array = jax.Array
ScalarFn = Callable[[Array], Array]

# Primitives with zero derivative (piecewise constant) and float outputs.
_CONSTANT = {"sign", "floor", "ceil", "round", "stop_gradient", "nextafter"}
# Primitives that call a sub-jaxpr without a differentiation rule of their own.
_CALLS = {
    "pjit",
    "jit",
    "closed_call",
    "core_call",
    "checkpoint",
    "remat",
    "remat2",
    "custom_vjp_call",
    "custom_vjp_call_jaxpr",
}


def check_order(order: int) -> None:
    if not isinstance(order, int) or order < 1:
        raise ValueError(f"order must be an int >= 1, got {order!r}")


def _equation_series(
    eqn: JaxprEqn, primals: list[Any], series: list[Series], order: int
) -> RuleResult:
    """Outputs of ``eqn`` and their series, by the rule of its primitive."""
    name = eqn.primitive.name
    if name in _CONSTANT or not any(is_inexact(v.aval) for v in eqn.outvars):
        return bind_equation(eqn, primals), [None] * len(eqn.outvars)
    if name in LINEAR_PRIMITIVES:
        return linear_rule(eqn, primals, series, order)
    if name in ("mul", "dot_general", "conv_general_dilated"):
        return bilinear_rule(eqn, primals, series, order)
    if name == "div":
        return div_rule(eqn, primals, series, order)
    if name in ("max", "min"):
        return choice_rule(eqn, primals, series, order)
    if name in ("reduce_max", "reduce_min"):
        return reduce_choice_rule(eqn, primals, series, order)
    if name in UNARY_PRIMITIVES:
        return unary_rule(eqn, primals, series, order)
    if name in _CALLS and (rule := SERIES_RULES.get(eqn.params.get("name", ""))) is not None:
        out, terms = rule(primals, series, order)
        return [out], [terms]
    if name in _CALLS and (sub := sub_jaxpr(eqn)) is not None:
        outs = _taylor_jaxpr(sub, primals, series, order)
        return [p for p, _ in outs], [s for _, s in outs]
    if is_piecewise_linear_equation(eqn):
        return piecewise_linear_rule(eqn, primals, series, order)
    return jvp_rule(eqn, primals, series, order)


def _taylor_jaxpr(
    closed: ClosedJaxpr, primals: Sequence[Any], series: Sequence[Series], order: int
) -> list[tuple[Any, Series]]:
    """Push truncated series through a closed jaxpr; ``(primal, series)`` per output."""
    jaxpr = closed.jaxpr
    env: dict[Any, tuple[Any, Series]] = {}

    def read(v: Any) -> tuple[Any, Series]:
        return (v.val, None) if isinstance(v, Literal) else env[v]

    for v, value in zip(jaxpr.constvars, closed.consts, strict=True):
        env[v] = (value, None)
    for v, value, s in zip(jaxpr.invars, primals, series, strict=True):
        env[v] = (value, s)
    out_series: Sequence[Series]
    for eqn in jaxpr.eqns:
        inputs = [read(v) for v in eqn.invars]
        args = [p for p, _ in inputs]
        in_series = [s for _, s in inputs]
        if all(s is None for s in in_series):
            outs, out_series = bind_equation(eqn, args), [None] * len(eqn.outvars)
        else:
            outs, out_series = _equation_series(eqn, args, in_series, order)
        for v, value, s in zip(eqn.outvars, outs, out_series, strict=True):
            if isinstance(v, DropVar):
                continue
            if s is not None and (not is_inexact(v.aval) or all(t is None for t in s)):
                s = None
            env[v] = (value, s)
    return [read(v) for v in jaxpr.outvars]


def trace_scalar(f: ScalarFn, x: Array) -> ClosedJaxpr:
    closed = jax.make_jaxpr(f)(x)
    if len(closed.jaxpr.outvars) != 1 or closed.jaxpr.outvars[0].aval.shape != ():
        raise ValueError(f"f must return a scalar, got {closed.out_avals}")
    return closed


def derivatives_from_trace(
    closed: ClosedJaxpr, x: Array, direction: Term, order: int
) -> list[Array]:
    """``[D^m f(x)[v, ..., v] for m = 0..order]`` from one Taylor pass."""
    ((value, series),) = _taylor_jaxpr(closed, [x], [[direction] + [None] * (order - 1)], order)
    out = [value]
    for m, term in enumerate(series or [None] * order, 1):
        out.append(jnp.zeros_like(value) if term is None else dense_term(term) * math.factorial(m))
    return out


def taylor_derivatives(f: ScalarFn, x: Array, v: Array, order: int) -> tuple[Array, ...]:
    """Like :func:`directional_derivatives`, in one Taylor-mode pass.

    Args:
      f: scalar function of an array shaped like ``x``.
      x: point, any shape.
      v: direction, same shape (and dtype) as ``x``.
      order: highest order (>= 1).

    Returns:
      ``(f(x), D f(x)[v], ..., D^order f(x)[v, ..., v])``, scalars.
    """
    check_order(order)
    x = jnp.asarray(x)
    with jax.default_matmul_precision("highest"):
        return tuple(derivatives_from_trace(trace_scalar(f, x), x, jnp.asarray(v, x.dtype), order))
