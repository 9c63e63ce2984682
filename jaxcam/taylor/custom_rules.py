"""Series rules of one's own for whole functions (:func:`taylor_rule`), and the log-sum-exp one."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp

from jaxcam.taylor.series import exp_series, log_series
from jaxcam.taylor.terms import Series, Term, dense_series

Array = jax.Array

SeriesRule = Callable[[list[Any], list[Series], int], tuple[Array, list[Term]]]
#: Series rules attached with :func:`taylor_rule`, by the name of the ``jax.jit`` they wrap.
SERIES_RULES: dict[str, SeriesRule] = {}


def taylor_rule(rule: SeriesRule) -> Callable[[Callable[..., Array]], Callable[..., Array]]:
    """Decorator: Taylor mode pushes series through ``fn`` with ``rule``.

    ``fn`` (one array output) keeps its value and its JVP rules; it is wrapped in a
    ``jax.jit`` with a name Taylor mode recognises. ``rule(primals, series, order)``
    returns ``(output, [c_1, ..., c_order])``; a series is the list of normalised
    coefficients ``c_k = D^k / k!`` of an operand, None where all are zero (as is
    any zero coefficient).
    """

    def decorate(fn: Callable[..., Array]) -> Callable[..., Array]:
        def named(*args: Array) -> Array:
            return fn(*args)

        named.__name__ = named.__qualname__ = f"taylor_rule_{len(SERIES_RULES)}_{fn.__name__}"
        named.__doc__ = fn.__doc__
        SERIES_RULES[named.__name__] = rule
        return jax.jit(named)

    return decorate


def logsumexp_taylor(
    primals: list[Any], series: list[Series], order: int
) -> tuple[Array, list[Term]]:
    """Taylor rule of ``log sum_j exp(s_j)`` (over all elements), cumulants from moments.

    With ``p = softmax(s_0)`` and ``q(t) = exp(s(t) - s_0)``, ``lse(s(t)) = lse(s_0) +
    log E_p[q(t)]``; the moments ``E_p[q_k]`` are dot products with p. When the
    coefficients of s do not depend on the example (a basis direction through a
    linear head), q does not either, and under ``vmap`` these are matrix products.
    """
    (logits,) = primals
    total = jax.nn.logsumexp(logits)
    weights = jnp.exp(logits - total)
    s = dense_series(jnp.zeros_like(logits), series[0], order)
    q = exp_series(s, 1.0, order)
    moments = [1.0] + [None if t is None else jnp.tensordot(t, weights, weights.ndim) for t in q]
    return total, log_series(moments, 1.0, order)
