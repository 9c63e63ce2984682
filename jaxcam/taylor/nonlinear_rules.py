"""Series rules of nonlinear primitives: division, elementwise functions, max and min."""

from __future__ import annotations

import math
from typing import Any

import jax.numpy as jnp
from jax.extend.core import JaxprEqn

from jaxcam.taylor.equations import aval_of, bind_equation
from jaxcam.taylor.series import (
    exp_series,
    log_series,
    power_series,
    series_from_derivative,
    square_coefficient,
)
from jaxcam.taylor.terms import (
    BasisDirection,
    RuleResult,
    Series,
    Term,
    add_terms,
    at_basis,
    dense_series,
    dense_term,
    product_coefficient,
    scaled_term,
    sum_terms,
)


def div_rule(eqn: JaxprEqn, primals: list[Any], series: list[Series], order: int) -> RuleResult:
    """``div``: linear in the numerator, else ``y_k = (u_k - sum_j w_j y_{k-j}) / w_0``."""
    (out,) = bind_equation(eqn, primals)
    divisor = primals[1]
    numerator_series, divisor_series = series
    if divisor_series is None and numerator_series is not None:  # linear in the numerator
        terms: list[Term] = []
        for term in numerator_series:
            if isinstance(term, BasisDirection) and term.shape == tuple(
                aval_of(eqn.outvars[0]).shape
            ):
                terms.append(
                    BasisDirection(term.index, term.scale / at_basis(divisor, term), term.shape)
                )
            else:
                terms.append(None if term is None else dense_term(term) / divisor)
        return [out], [terms]
    u = dense_series(primals[0], series[0], order)
    w = dense_series(divisor, series[1], order)
    y: list[Any] = [out]
    for k in range(1, order + 1):
        rest = sum_terms(
            [w[j] * y[k - j] for j in range(1, k + 1) if w[j] is not None and y[k - j] is not None]
        )
        numerator = add_terms(u[k], scaled_term(rest, -1))
        y.append(None if numerator is None else numerator / divisor)
    return [out], [y[1:]]


def _tanh_slope(y: list[Any], m: int) -> Any:
    """Coefficient m of ``1 - y^2`` (``tanh' = 1 - tanh^2``) given ``y[0..m]``."""
    minus_square = scaled_term(square_coefficient(y, m), -1)
    if m > 0:
        return minus_square
    return 1 if minus_square is None else 1 + dense_term(minus_square)


UNARY_PRIMITIVES = {
    "exp",
    "expm1",
    "log",
    "log1p",
    "tanh",
    "logistic",
    "erf",
    "erfc",
    "sqrt",
    "rsqrt",
    "cbrt",
    "integer_pow",
    "square",
    "abs",
}


def unary_rule(eqn: JaxprEqn, primals: list[Any], series: list[Series], order: int) -> RuleResult:
    """Rules for the elementwise functions of one operand in ``UNARY_PRIMITIVES``."""
    name = eqn.primitive.name
    (y0,) = bind_equation(eqn, primals)
    u = dense_series(primals[0], series[0], order)
    if name == "exp":
        return [y0], [exp_series(u, y0, order)]
    if name == "expm1":
        return [y0], [exp_series(u, jnp.exp(u[0]), order)]
    if name in ("log", "log1p"):
        return [y0], [log_series(u, u[0] if name == "log" else 1 + u[0], order)]
    if name == "tanh":
        return [y0], [series_from_derivative(u, y0, _tanh_slope, order)]
    if name == "logistic":
        return [y0], [
            series_from_derivative(
                u,
                y0,
                lambda y, m: add_terms(y[m], scaled_term(square_coefficient(y, m), -1)),
                order,
            )
        ]
    if name in ("erf", "erfc"):
        minus_square = [-(u[0] * u[0])] + [
            scaled_term(product_coefficient(u, u, k, jnp.multiply), -1) for k in range(1, order)
        ]
        gauss = [
            jnp.exp(minus_square[0]),
            *exp_series(minus_square, jnp.exp(minus_square[0]), order - 1),
        ]
        factor = (2.0 if name == "erf" else -2.0) / math.sqrt(math.pi)
        return [y0], [
            series_from_derivative(u, y0, lambda y, m: scaled_term(gauss[m], factor), order)
        ]
    if name in ("sqrt", "rsqrt", "cbrt"):
        power = {"sqrt": 0.5, "rsqrt": -0.5, "cbrt": 1.0 / 3.0}[name]
        return [y0], [power_series(u, y0, power, order)]
    if name in ("integer_pow", "square"):
        n = eqn.params["y"] if name == "integer_pow" else 2
        if n == 0:
            return [y0], [None]
        if n < 0:
            return [y0], [power_series(u, y0, float(n), order)]
        powers = u
        for _ in range(n - 1):
            powers = [
                powers[0] * u[0],
                *(product_coefficient(powers, u, k, jnp.multiply) for k in range(1, order + 1)),
            ]
        return [y0], [powers[1:]]
    sign = jnp.sign(u[0])  # abs
    return [y0], [[None if t is None else sign * t for t in u[1:]]]


def choice_rule(eqn: JaxprEqn, primals: list[Any], series: list[Series], order: int) -> RuleResult:
    """``max``/``min``: the chosen operand's series; ties get the mean (as jax.jvp)."""
    (out,) = bind_equation(eqn, primals)
    a = dense_series(primals[0], series[0], order)
    b = dense_series(primals[1], series[1], order)
    shape, dtype = aval_of(eqn.outvars[0]).shape, aval_of(eqn.outvars[0]).dtype
    first = a[0] > b[0] if eqn.primitive.name == "max" else a[0] < b[0]
    tie = a[0] == b[0]
    terms: list[Term] = []
    for k in range(1, order + 1):
        if a[k] is None and b[k] is None:
            terms.append(None)
            continue
        x = jnp.broadcast_to(a[k] if a[k] is not None else jnp.zeros((), dtype), shape)
        z = jnp.broadcast_to(b[k] if b[k] is not None else jnp.zeros((), dtype), shape)
        terms.append(jnp.where(tie, (x + z) / 2, jnp.where(first, x, z)))
    return [out], [terms]


def reduce_choice_rule(
    eqn: JaxprEqn, primals: list[Any], series: list[Series], order: int
) -> RuleResult:
    """``reduce_max``/``reduce_min``: the mean series over the chosen elements (as jax.jvp)."""
    (out,) = bind_equation(eqn, primals)
    (operand_series,) = series
    if operand_series is None:
        return [out], [None]
    axes = tuple(eqn.params["axes"])
    operand = primals[0]
    chosen = (operand == jnp.expand_dims(out, axes)).astype(out.dtype)
    counts = jnp.sum(chosen, axis=axes)
    terms: list[Term] = []
    for term in operand_series:
        if term is None:
            terms.append(None)
        elif isinstance(term, BasisDirection) and term.shape == tuple(operand.shape):
            summed = term.times(chosen).summed(axes)
            terms.append(
                BasisDirection(summed.index, summed.scale / at_basis(counts, summed), summed.shape)
            )
        else:
            terms.append(jnp.sum(dense_term(term) * chosen, axis=axes) / counts)
    return [out], [terms]
