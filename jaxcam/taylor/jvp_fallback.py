"""Series rules from JAX's own JVP rules: nested ``jax.jvp`` for any primitive, and one
linearisation for a piecewise-linear one (max pooling, a custom-JVP ReLU)."""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp
from jax.extend.core import JaxprEqn

from jaxcam.taylor.equations import bind_equation, is_inexact
from jaxcam.taylor.terms import RuleResult, Series, dense_term


def jvp_rule(eqn: JaxprEqn, primals: list[Any], series: list[Series], order: int) -> RuleResult:
    """Any primitive (custom JVP rules included) by nested ``jax.jvp`` along the series.

    With ``s_j = D^j x(0)`` per operand, the derivatives of ``P(x(t))`` follow from
    the shift ``s_j -> s_{j+1}``: order k is one ``jax.jvp`` of orders 0..k-1 with
    respect to ``(s_0, ..., s_{k-1})`` along ``(s_1, ..., s_k)``.
    """
    active = [i for i, s in enumerate(series) if s is not None]
    jets = [
        [
            primals[i],
            *(None if t is None else dense_term(t) * math.factorial(j) for j, t in enumerate(s, 1)),
        ]
        for i, s in enumerate(series)
        if s is not None
    ]

    def at_order(k: int) -> Callable[[list[list[Any]]], list[list[Any]]]:
        if k == 0:

            def evaluate(args: list[list[Any]]) -> list[list[Any]]:
                full = list(primals)
                for i, jet in zip(active, args, strict=True):
                    full[i] = jet[0]
                return [[out] for out in bind_equation(eqn, full)]

            return evaluate
        lower = at_order(k - 1)

        def differentiate(args: list[list[Any]]) -> list[list[Any]]:
            moving = [
                (i, j) for i, jet in enumerate(args) for j in range(k) if jet[j + 1] is not None
            ]
            base = [
                [jet[j] if jet[j] is not None else jnp.zeros_like(jet[0]) for j in range(k)]
                for jet in args
            ]

            def lower_of(*values: Any) -> list[list[Any]]:
                point = [list(b) for b in base]
                for (i, j), value in zip(moving, values, strict=True):
                    point[i][j] = value
                return lower(point)

            if not moving:
                outs = lower_of()
                return [[*out, jnp.zeros_like(out[-1])] for out in outs]
            outs, tangents = jax.jvp(
                lower_of,
                tuple(base[i][j] for i, j in moving),
                tuple(args[i][j + 1] for i, j in moving),
            )
            return [[*out, tangent[-1]] for out, tangent in zip(outs, tangents, strict=True)]

        return differentiate

    results = at_order(order)(jets)
    outs = [r[0] for r in results]
    terms = [
        [d / math.factorial(j) for j, d in enumerate(r[1:], 1)] if is_inexact(v.aval) else None
        for r, v in zip(results, eqn.outvars, strict=True)
    ]
    return outs, terms


def piecewise_linear_rule(
    eqn: JaxprEqn, primals: list[Any], series: list[Series], order: int
) -> RuleResult:
    """A primitive piecewise linear in its operands (max pooling, a custom-JVP ReLU).

    Locally it is linear (almost everywhere), so every output coefficient is its JVP,
    by the primitive's own rule, at the primal along the operands' coefficient of the
    same order: one linearisation, then ``order`` linear maps (no nesting).
    """
    active = [i for i, s in enumerate(series) if s is not None]

    def of_active(*values: Any) -> list[Any]:
        args = list(primals)
        for i, value in zip(active, values, strict=True):
            args[i] = value
        return bind_equation(eqn, args)

    outs, linear = jax.linearize(of_active, *(primals[i] for i in active))
    columns: list[list[Any]] = [[] for _ in outs]
    for k in range(order):
        terms = [series[i][k] for i in active]  # type: ignore[index]
        if all(t is None for t in terms):
            values: list[Any] = [None] * len(outs)
        else:
            values = linear(
                *(
                    jnp.zeros_like(primals[i]) if t is None else dense_term(t)
                    for i, t in zip(active, terms, strict=True)
                )
            )
        for column, value in zip(columns, values, strict=True):
            column.append(value)
    terms_out = [
        column if is_inexact(v.aval) else None
        for column, v in zip(columns, eqn.outvars, strict=True)
    ]
    return outs, terms_out
