"""Exact pure (diagonal) higher-order derivatives, as Grad-CAM++ needs (eq. 8).

For a scalar function ``f`` of an array ``x`` these functions return, for every
element ``i`` of ``x``, the pure derivatives ``d^m f / dx_i^m`` for m = 1..order:
order 1 with one ``jax.grad``, orders >= 2 with nested ``jax.jvp`` along each basis
direction ``e_i``, vmapped over a chunk of directions and mapped over chunks
(``jax.lax.map(..., batch_size=chunk_size)``) so memory stays bounded.

Cost: the general path pushes N directions through ``f``, O(N * cost(f)) = O(N^2)
for a head that reads all of A. When ``f(A) = g(P(A))`` with ``P`` a spatially
weighted channel pooling ``P(A)_k = sum_xy w_xy A_xyk`` (GAP: w = 1/z), the chain
rule along ``e_xyk`` gives exactly::

    d^m f / dA_xyk^m = w_xy^m * d^m g / dp_k^m

so only the K pooled directions are needed (:func:`pure_derivatives_pooled`). When
the head then starts with a dense layer (kernel M), the directions are pushed
past it analytically (row k of M), so no per-direction matmul is done at all.

Every function here traces its body under ``jax.default_matmul_precision
("highest")``: on GPUs the default float32 matmul precision is TF32-like and third
derivatives then come out wrong by tens of percent.
"""

from __future__ import annotations

from collections.abc import Callable

import jax
import jax.numpy as jnp

Array = jax.Array
ScalarFn = Callable[[Array], Array]

# Auto chunking keeps (directions in a chunk) x (elements of x) below this many
# elements for each intermediate tangent (about 64 MB in float32).
_MAX_CHUNK_ELEMENTS = 1 << 24


def directional_derivatives(f: ScalarFn, x: Array, v: Array, order: int) -> tuple[Array, ...]:
    """Derivatives of ``t -> f(x + t v)`` at 0, orders 0..order, by nested ``jax.jvp``.

    Args:
      f: scalar function of an array shaped like ``x``.
      x: point, any shape.
      v: direction, same shape as ``x``.
      order: highest order (>= 1).

    Returns:
      ``(f(x), D f(x)[v], ..., D^order f(x)[v, ..., v])``, scalars.
    """

    def nested(depth: int) -> Callable[[Array], tuple[Array, ...]]:
        if depth == 0:
            return lambda y: (f(y),)
        inner = nested(depth - 1)

        def with_next_order(y: Array) -> tuple[Array, ...]:
            primals, tangents = jax.jvp(inner, (y,), (v,))
            return (*primals, tangents[-1])

        return with_next_order

    return nested(order)(x)


def _check_order(order: int) -> None:
    if not isinstance(order, int) or order < 1:
        raise ValueError(f"order must be an int >= 1, got {order!r}")


def _auto_chunk(num_directions: int, size: int, chunk_size: int | None) -> int:
    if chunk_size is None:
        return max(1, min(num_directions, _MAX_CHUNK_ELEMENTS // max(size, 1)))
    if chunk_size < 1:
        raise ValueError(f"chunk_size must be >= 1, got {chunk_size}")
    return min(chunk_size, num_directions)


def pure_derivatives(
    f: ScalarFn, x: Array, order: int = 3, *, chunk_size: int | None = None
) -> tuple[Array, ...]:
    """Pure derivatives ``d^m f / dx_i^m`` for every element ``i`` of ``x``, m = 1..order.

    The general path (any ``f``): one ``jax.grad`` for m = 1, then one nested jvp of
    depth ``order`` along each of the ``x.size`` basis directions.

    Args:
      f: scalar function of ``x``.
      x: array, any shape (e.g. a feature map A of shape (h, w, K)).
      order: highest order (default 3, what Grad-CAM++ needs).
      chunk_size: basis directions vmapped at once; ``None`` picks a size that keeps
        each intermediate below ~64 MB.

    Returns:
      ``order`` arrays shaped like ``x``: first, second, ... derivatives.
    """
    _check_order(order)
    x = jnp.asarray(x)
    flat = x.reshape(-1)
    derivatives = derivatives_along(
        lambda y: f(y.reshape(x.shape)), flat, None, order, chunk_size=chunk_size
    )
    return tuple(d.reshape(x.shape) for d in derivatives)


def derivatives_along(
    h: ScalarFn,
    x: Array,
    directions: Array | None,
    order: int = 3,
    *,
    chunk_size: int | None = None,
) -> tuple[Array, ...]:
    """``D^m h(x)[u_k, ..., u_k]`` for each direction ``u_k``, m = 1..order.

    Args:
      h: scalar function of a vector x (n,).
      x: point (n,).
      directions: U (K, n), one direction per row; ``None`` means the n basis
        directions (U = identity, never materialised).
      order: highest order.
      chunk_size: directions vmapped at once (``None``: automatic).

    Returns:
      ``order`` arrays of shape (K,): order 1 is ``U @ grad h(x)`` (one ``jax.grad``),
      orders >= 2 come from a nested ``jax.jvp`` along each direction.
    """
    _check_order(order)
    with jax.default_matmul_precision("highest"):
        gradient = jax.grad(h)(x)
        first = gradient if directions is None else directions @ gradient
        if order == 1:
            return (first,)
        size = x.size

        def along(direction: Array) -> tuple[Array, ...]:
            if directions is None:  # a basis index
                direction = jax.nn.one_hot(direction, size, dtype=x.dtype)
            return directional_derivatives(h, x, direction, order)[2:]

        rows = jnp.arange(size) if directions is None else directions
        count = rows.shape[0]
        higher = jax.lax.map(along, rows, batch_size=_auto_chunk(count, size, chunk_size))
    return (first, *higher)


def pure_derivatives_pooled(
    h: ScalarFn,
    projected: Array,
    pool_weights: Array,
    projection: Array | None = None,
    order: int = 3,
    *,
    chunk_size: int | None = None,
) -> tuple[Array, ...]:
    """Pure derivatives w.r.t. A of ``f(A) = h(P(A) M)``, ``P(A)_k = sum_xy w_xy A_xyk``.

    Exact, through K directions instead of the h*w*K directions of A: along
    ``e_xyk`` the argument of h moves by ``w_xy M_k`` (row k of M), so
    ``d^m f / dA_xyk^m = w_xy^m D^m h[M_k, ..., M_k]``. Passing the head's first
    dense kernel as M means the nested jvps start *after* that layer: the K
    directions are its rows, and nothing is pushed through the dense layer.

    Args:
      h: scalar function of the projected features s = P(A) M (m,).
      projected: s at the explained A, (m,).
      pool_weights: w, (h, w); global average pooling is ``full((h, w), 1/z)``.
      projection: M, (K, m); ``None`` means the identity (h takes P(A) itself).
      order: highest order.
      chunk_size: directions vmapped at once (``None``: automatic).

    Returns:
      ``order`` arrays of shape (h, w, K).
    """
    if projected.ndim != 1:
        raise ValueError(f"projected features must have shape (m,), got {projected.shape}")
    if pool_weights.ndim != 2:
        raise ValueError(f"pool_weights must have shape (h, w), got {pool_weights.shape}")
    if projection is not None and (projection.ndim != 2 or projection.shape[1] != projected.size):
        raise ValueError(
            f"projection must have shape (K, {projected.size}), got {projection.shape}"
        )
    per_channel = derivatives_along(h, projected, projection, order, chunk_size=chunk_size)
    return tuple(
        (pool_weights**m)[..., None] * d[None, None, :] for m, d in enumerate(per_channel, 1)
    )


def global_average_pool_weights(height: int, width: int, dtype: jnp.dtype = jnp.float32) -> Array:
    """Pooling weights of GAP (eq. 1): ``1/z`` at each of the z = h*w positions."""
    return jnp.full((height, width), 1.0 / (height * width), dtype=dtype)
