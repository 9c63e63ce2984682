"""Data flow through a traced program: which outputs depend on an input, and how.

:func:`dependent_outputs` follows the equations that read a chosen input (into called
programs: ``jit``, ``custom_jvp_call`` ...). :func:`is_piecewise_linear` uses it to
decide, from the program rather than from a model's name, whether the outputs are
piecewise linear in the first input: every equation on the way is linear in the values
that depend on it (conv, dense, additions, reshapes, pooling sums, inference-mode
BatchNorm's scale and shift) or chooses among them (ReLU, max pooling, max/min,
selections). Then every Taylor coefficient above the first is exactly zero (almost
everywhere), which the transposed exact-derivative path relies on
(:func:`jaxcam.derivatives.pure_derivatives_transposed`).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

from jax.extend.core import ClosedJaxpr, Jaxpr, JaxprEqn, Literal

from jaxcam.taylor.equations import is_inexact, sub_jaxpr
from jaxcam.taylor.linear_rules import LINEAR_PRIMITIVES

#: ``check(eqn, dependent)``: whether the equation may read the flagged operands.
EquationCheck = Callable[[JaxprEqn, Sequence[bool]], bool]

# Linear in each operand on its own: piecewise linear while at most one operand depends.
_BILINEAR = {"mul", "dot_general", "conv_general_dilated"}
# Choices among (linear functions of) the operands, and piecewise constant functions.
_PIECEWISE = {
    "max",
    "min",
    "reduce_max",
    "reduce_min",
    "reduce_window_max",
    "reduce_window_min",
    "cummax",
    "cummin",
    "abs",
    "clamp",
    "select_and_gather_add",
    "sign",
    "floor",
    "ceil",
    "round",
    "stop_gradient",
}
_LINEAR = set(LINEAR_PRIMITIVES)


class _NotPiecewiseLinear(Exception):
    pass


def dependent_outputs(
    jaxpr: Jaxpr, flags: Sequence[bool], check: EquationCheck | None = None
) -> list[bool]:
    """Per output of ``jaxpr``: does it depend on the inputs flagged True?

    Equations that call a program are followed into it; any other primitive's outputs
    depend on all of its inputs. ``check``, if given, is asked about every equation
    outside called programs that reads a dependent value; returning False stops the walk
    (:func:`is_piecewise_linear` turns that into its answer).
    """
    dependent = {v for v, flag in zip(jaxpr.invars, flags, strict=True) if flag}

    def depends(v: Any) -> bool:
        return not isinstance(v, Literal) and v in dependent

    for eqn in jaxpr.eqns:
        inputs = [depends(v) for v in eqn.invars]
        if not any(inputs):
            continue
        sub = sub_jaxpr(eqn)
        if sub is not None and len(sub.jaxpr.invars) == len(inputs):
            outputs = dependent_outputs(sub.jaxpr, inputs, check)
        else:
            if check is not None and not check(eqn, inputs):
                raise _NotPiecewiseLinear(eqn.primitive.name)
            outputs = [True] * len(eqn.outvars)
        dependent.update(v for v, flag in zip(eqn.outvars, outputs, strict=True) if flag)
    return [depends(v) for v in jaxpr.outvars]


def reads_first_input(closed: ClosedJaxpr) -> bool:
    """Whether any output of a traced program depends on its first input."""
    flags = [i == 0 for i in range(len(closed.jaxpr.invars))]
    return any(dependent_outputs(closed.jaxpr, flags))


def _piecewise_linear_equation(eqn: JaxprEqn, dependent: Sequence[bool]) -> bool:
    """Whether ``eqn`` is piecewise linear in its flagged operands."""
    name = eqn.primitive.name
    if not any(is_inexact(v.aval) for v in eqn.outvars):
        return True  # comparisons, argmax, integer casts: they only choose the pieces
    if name in _LINEAR or name in _PIECEWISE:
        return True
    if name in _BILINEAR:
        return sum(dependent) <= 1
    if name == "div":
        return not dependent[1]  # linear in the numerator
    if name == "integer_pow":
        return eqn.params["y"] in (0, 1)
    return False


def _piecewise_linear_in(jaxpr: Jaxpr, flags: Sequence[bool]) -> bool:
    """Whether every output of ``jaxpr`` is piecewise linear in the flagged inputs."""
    try:
        dependent_outputs(jaxpr, flags, _piecewise_linear_equation)
    except _NotPiecewiseLinear:
        return False
    return True


def is_piecewise_linear(closed: ClosedJaxpr) -> bool:
    """Whether every output of a traced program is piecewise linear in its first input.

    Decided from the equations alone (see the module doc); a program that merely does
    not depend on the input is piecewise linear. Conservative: a primitive not known to
    be piecewise linear (exp, rsqrt of a dependent value, a product of two dependent
    values, control flow) gives False.
    """
    return _piecewise_linear_in(closed.jaxpr, [i == 0 for i in range(len(closed.jaxpr.invars))])


def is_piecewise_linear_equation(eqn: JaxprEqn) -> bool:
    """Whether one equation is piecewise linear in all of its operands together."""
    dependent = [True] * len(eqn.invars)
    sub = sub_jaxpr(eqn)
    if sub is not None and len(sub.jaxpr.invars) == len(dependent):
        return _piecewise_linear_in(sub.jaxpr, dependent)
    return _piecewise_linear_equation(eqn, dependent)
