"""Recurrences for the series of elementwise functions of a series ``u``.

Every function takes the full dense series ``u = [u_0, u_1, ..., u_K]`` (None for a
zero coefficient) and returns the coefficients ``[y_1, ..., y_K]`` of ``y = f(u)``.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import jax

from jaxcam.taylor.terms import Term, add_terms, scaled_term, sum_terms

Array = jax.Array


def series_from_derivative(
    u: list[Any], y0: Array | float, slope: Callable[[list[Any], int], Any], order: int
):
    """``y = f(u)`` from ``f'(u) = phi``: ``y_k = (1/k) sum_j j u_j phi_{k-j}``.

    ``slope(y, m)`` returns coefficient m of phi given ``y[0..m]``.
    """
    y: list[Any] = [y0]
    phi: list[Any] = []
    for k in range(1, order + 1):
        phi.append(slope(y, k - 1))
        parts = [
            (j / k) * (u[j] * phi[k - j])
            for j in range(1, k + 1)
            if u[j] is not None and phi[k - j] is not None
        ]
        y.append(sum_terms(parts))
    return y[1:]


def square_coefficient(y: list[Any], m: int) -> Any:
    """Coefficient m of ``y^2``."""
    return sum_terms(
        [y[i] * y[m - i] for i in range(m + 1) if y[i] is not None and y[m - i] is not None]
    )


def power_series(u: list[Any], y0: Array, power: Any, order: int) -> list[Any]:
    """``y = u^p`` (u_0 != 0): ``y_k = sum_j ((p + 1) j - k) u_j y_{k-j} / (k u_0)``."""
    y: list[Any] = [y0]
    for k in range(1, order + 1):
        parts = [
            ((power + 1) * j - k) * (u[j] * y[k - j])
            for j in range(1, k + 1)
            if u[j] is not None and y[k - j] is not None
        ]
        total = sum_terms(parts)
        y.append(None if total is None else total / (k * u[0]))
    return y[1:]


def log_series(u: list[Any], base: Any, order: int) -> list[Term]:
    """Coefficients 1..order of ``log(u(t))`` for a series u with ``u_0 = base``.

    From ``u' = u y'``: ``y_k = (u_k - sum_{j<k} (j/k) y_j u_{k-j}) / u_0``.
    """
    y: list[Any] = [None]
    for k in range(1, order + 1):
        rest = sum_terms(
            [
                (j / k) * (y[j] * u[k - j])
                for j in range(1, k)
                if y[j] is not None and u[k - j] is not None
            ]
        )
        numerator = add_terms(u[k], scaled_term(rest, -1))
        y.append(None if numerator is None else numerator / base)
    return y[1:]


def exp_series(u: list[Any], y0: Array | float, order: int) -> list[Any]:
    """``y = exp(u)`` with ``y_0 = y0``: ``y' = y u'``."""
    return series_from_derivative(u, y0, lambda y, m: y[m], order)
