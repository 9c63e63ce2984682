"""Evaluating one equation of a jaxpr, and the abstract values of its variables."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import jax
import jax.numpy as jnp
from jax.core import ShapedArray
from jax.extend.core import ClosedJaxpr, Jaxpr, JaxprEqn

Array = jax.Array


def bind_equation(eqn: JaxprEqn, args: Sequence[Any]) -> list[Any]:
    """Apply ``eqn``'s primitive to ``args`` (as ``jax.core.eval_jaxpr`` does)."""
    params = eqn.primitive.get_bind_params(eqn.params)
    if isinstance(params, tuple):  # older jax: (subfuns, params)
        subfuns, params = params
        args = (*subfuns, *args)
    out = eqn.primitive.bind(*args, **params)
    return list(out) if eqn.primitive.multiple_results else [out]


def aval_of(var: Any) -> ShapedArray:
    """A jaxpr variable's abstract value (``shape``, ``dtype``).

    jax types ``Var.aval`` as the ``AbstractValue`` base; every value Taylor mode reads a
    shape or dtype of is an array, a ``ShapedArray``.
    """
    return var.aval


def is_inexact(aval: Any) -> bool:
    """Whether ``aval`` has a floating (or complex) dtype: only those carry a series."""
    return jnp.issubdtype(aval.dtype, jnp.inexact)


def zeros_of(aval: Any) -> Array:
    """Zeros of ``aval``'s shape and dtype."""
    return jnp.zeros(aval.shape, aval.dtype)


def sub_jaxpr(eqn: JaxprEqn) -> ClosedJaxpr | None:
    """The program an equation calls (``jit``, ``custom_jvp_call``, ``remat`` ...), if any.

    Returns the called program as a closed jaxpr whose inputs are the equation's inputs,
    or None for a primitive that calls none (or several: ``cond``, ``while``).
    """
    for key in ("jaxpr", "call_jaxpr", "fun_jaxpr"):
        sub = eqn.params.get(key)
        if isinstance(sub, ClosedJaxpr):
            return sub
        if isinstance(sub, Jaxpr):
            return ClosedJaxpr(sub, ())
    return None
