"""Series rules of linear and bilinear primitives, keeping basis directions symbolic.

A linear primitive maps each coefficient on its own (a basis direction stays one through
reshapes, negation, casts, sums and transposes); a bilinear one (``mul``, ``dot_general``,
``conv_general_dilated``) takes the Cauchy product of its operands' series, a basis
direction in a ``dot_general`` picking a slice of the other operand (a row gather through a
dense layer).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from typing import Any

import jax.numpy as jnp
from jax import lax
from jax.extend.core import JaxprEqn

from jaxcam.taylor.equations import aval_of, bind_equation, zeros_of
from jaxcam.taylor.terms import (
    BasisDirection,
    RuleResult,
    Series,
    Term,
    dense_term,
    product_coefficient,
    scaled_term,
)

# Primitives linear in the listed operands (the others are indices or predicates).
LINEAR_PRIMITIVES: dict[str, tuple[int, ...]] = {
    **dict.fromkeys(
        (
            "neg",
            "reshape",
            "squeeze",
            "expand_dims",
            "broadcast_in_dim",
            "reduce_sum",
            "transpose",
            "convert_element_type",
            "copy",
            "rev",
            "slice",
            "cumsum",
            "reduce_window_sum",
            "real",
            "imag",
            "conj",
            "reduce_precision",
            "dynamic_slice",
            "gather",
            "split",
            "device_put",
        ),
        (0,),
    ),
    "add": (0, 1),
    "sub": (0, 1),
    "add_any": (0, 1),
    "pad": (0, 1),
    "dynamic_update_slice": (0, 1),
    "scatter_add": (0, 2),
    "select_n": (),  # every operand after the predicate; filled in by _linear_positions
    "concatenate": (),  # every operand
}


def _coefficient(series: Series, k: int) -> Term:
    """Coefficient ``c_{k+1}`` of a series (None when the whole series is zero)."""
    return None if series is None else series[k]


def _linear_positions(eqn: JaxprEqn) -> tuple[int, ...]:
    name = eqn.primitive.name
    if name == "select_n":
        return tuple(range(1, len(eqn.invars)))
    if name == "concatenate":
        return tuple(range(len(eqn.invars)))
    return LINEAR_PRIMITIVES[name]


def _basis_linear(eqn: JaxprEqn, basis: BasisDirection) -> BasisDirection | None:
    """A unary linear primitive applied to a basis vector, if it stays one."""
    name, params = eqn.primitive.name, eqn.params
    out_shape = tuple(aval_of(eqn.outvars[0]).shape)
    if name in ("reshape", "squeeze", "expand_dims", "copy"):
        if name == "reshape" and params.get("dimensions") is not None:
            return None
        return BasisDirection(basis.index, basis.scale, out_shape)
    if name == "broadcast_in_dim":
        dims = tuple(params["broadcast_dimensions"])
        if math.prod(out_shape) != math.prod(basis.shape) or dims != tuple(sorted(dims)):
            return None
        return BasisDirection(basis.index, basis.scale, out_shape)
    if name == "neg":
        return BasisDirection(basis.index, -basis.scale, basis.shape)
    if name == "convert_element_type":
        return BasisDirection(basis.index, basis.scale.astype(params["new_dtype"]), basis.shape)
    if name == "reduce_sum":
        return basis.summed(params["axes"])
    if name == "transpose":
        return basis.transposed(params["permutation"])
    return None


def linear_rule(eqn: JaxprEqn, primals: list[Any], series: list[Series], order: int) -> RuleResult:
    """Rule of the primitives in ``LINEAR_PRIMITIVES``: each coefficient mapped on its own."""
    positions = _linear_positions(eqn)
    outs = bind_equation(eqn, primals)
    out_terms: list[list[Term]] = [[] for _ in outs]
    out_avals = [aval_of(v) for v in eqn.outvars]
    name = eqn.primitive.name
    for k in range(order):
        terms = [_coefficient(series[i], k) for i in positions]
        live = [t for t in terms if t is not None]
        if not live:
            values: list[Term] = [None] * len(outs)
        elif (
            len(positions) == 1
            and isinstance(live[0], BasisDirection)
            and (moved := _basis_linear(eqn, live[0]))
        ):
            values = [moved]
        elif name in ("add", "sub", "add_any") and len(live) == 1:
            # The one live term: the first operand's, or the second's (negated for sub).
            term = (
                live[0]
                if terms[0] is not None
                else scaled_term(live[0], -1 if name == "sub" else 1)
            )
            shape = tuple(out_avals[0].shape)
            if isinstance(term, BasisDirection) and term.shape != shape:
                term = term.dense()
            if not isinstance(term, BasisDirection) and term.shape != shape:
                term = jnp.broadcast_to(term, shape)
            values = [term]
        else:
            args = list(primals)
            for i, operand_term in zip(positions, terms, strict=True):
                args[i] = (
                    dense_term(operand_term)
                    if operand_term is not None
                    else zeros_of(eqn.invars[i].aval)
                )
            values = list(bind_equation(eqn, args))
        for out, value in zip(out_terms, values, strict=True):
            out.append(value)
    return outs, out_terms


def _elementwise_product(eqn: JaxprEqn) -> Callable[[Any, Any], Term]:
    shape = tuple(aval_of(eqn.outvars[0]).shape)

    def op(a: Any, b: Any) -> Term:
        for basis, other in ((a, b), (b, a)):
            if isinstance(basis, BasisDirection) and not isinstance(other, BasisDirection):
                if basis.shape == shape:
                    return basis.times(other)
        return bind_equation(eqn, [dense_term(a), dense_term(b)])[0]

    return op


def _dot_product(eqn: JaxprEqn) -> Callable[[Any, Any], Term]:
    """``dot_general`` of two terms; a basis vector picks a slice of the other operand."""
    (lhs_contract, rhs_contract), (lhs_batch, rhs_batch) = eqn.params["dimension_numbers"]
    out_aval = aval_of(eqn.outvars[0])

    def picked(
        basis: BasisDirection, other: Any, own: Sequence[int], others: Sequence[int]
    ) -> Term:
        free = [d for d in range(len(basis.shape)) if d not in own]
        if lhs_batch or rhs_batch or math.prod(basis.shape[d] for d in free) != 1:
            return None
        coords = basis.coords()
        value = jnp.asarray(other)
        for mine, theirs in sorted(zip(own, others, strict=True), key=lambda p: -p[1]):
            value = lax.dynamic_index_in_dim(value, coords[mine], axis=theirs, keepdims=False)
        return (basis.scale * value).reshape(out_aval.shape).astype(out_aval.dtype)

    def op(a: Any, b: Any) -> Term:
        if isinstance(a, BasisDirection) and not isinstance(b, BasisDirection):
            if (value := picked(a, b, lhs_contract, rhs_contract)) is not None:
                return value
        if isinstance(b, BasisDirection) and not isinstance(a, BasisDirection):
            if (value := picked(b, a, rhs_contract, lhs_contract)) is not None:
                return value
        return bind_equation(eqn, [dense_term(a), dense_term(b)])[0]

    return op


def bilinear_rule(
    eqn: JaxprEqn, primals: list[Any], series: list[Series], order: int
) -> RuleResult:
    """Rule of ``mul``, ``dot_general`` and ``conv_general_dilated``: the Cauchy product of
    the two series (a convolution's terms are made dense)."""
    name = eqn.primitive.name
    op: Callable[[Any, Any], Term]
    if name == "dot_general":
        op = _dot_product(eqn)
    elif name == "mul":
        op = _elementwise_product(eqn)
    else:
        op = lambda a, b: bind_equation(eqn, [dense_term(a), dense_term(b)])[0]  # noqa: E731
    u = [primals[0], *(series[0] or [None] * order)]
    v = [primals[1], *(series[1] or [None] * order)]
    out = bind_equation(eqn, primals)
    return out, [[product_coefficient(u, v, k, op) for k in range(1, order + 1)]]
