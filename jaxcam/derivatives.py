"""Exact pure (diagonal) higher-order derivatives, as Grad-CAM++ needs (eq. 8).

For a scalar function ``f`` of an array ``x`` these functions return, for every
element ``i`` of ``x``, the pure derivatives ``d^m f / dx_i^m`` for m = 1..order,
along each basis direction ``e_i``, vmapped over a chunk of directions and mapped
over chunks (``jax.lax.map(..., batch_size=chunk_size)``) so memory stays bounded.
Two exact methods (``method=``):

* ``taylor`` (default): Taylor mode (:mod:`jaxcam.taylor`). ``f`` is traced once to a jaxpr, and the
  truncated series ``x(t) = x + t e_i`` is pushed through it in one pass (the
  coefficients of ``f(x(t))`` are ``D^m f[e_i, ..., e_i] / m!``). Zero coefficients
  stay symbolic, and ``e_i`` stays a symbolic basis vector (index and scale)
  through reshapes, transposes, sums, scalings and the first dense layer, which
  becomes a row gather: no (directions x N) one-hot array and no matmul with it.
  Functions with custom JVP rules (``jax.custom_jvp``) are differentiated with
  their own rules (nested ``jax.jvp`` along the incoming series), so they stay
  exact and stable; a function decorated with :func:`taylor_rule` gets its own
  series rule (the stable softmax score's log-sum-exp: :func:`logsumexp_taylor`,
  three moments as dot products instead of ~15 nested-jvp expectations).
* ``nested_jvp``: the reference, a nested ``jax.jvp`` of depth ``order`` per
  direction (2^order tangent streams).

Cost: the general path pushes N directions through ``f``, O(N * cost(f)) for a
head that reads all of A. When ``f(A) = g(P(A))`` with ``P`` a spatially weighted
channel pooling ``P(A)_k = sum_xy w_xy A_xyk`` (GAP: w = 1/z), the chain rule along
``e_xyk`` gives exactly::

    d^m f / dA_xyk^m = w_xy^m * d^m g / dp_k^m

so only the K pooled directions are needed (:func:`pure_derivatives_pooled`). When
the head then starts with a dense layer (kernel M), the directions are pushed
past it analytically (row k of M), so no per-direction matmul is done at all.

When ``f = score(logits(x))`` with ``logits`` piecewise linear in x (a ReLU network after
an inner layer: :func:`is_piecewise_linear_at`), every Taylor coefficient of the logits
above the first is zero, so the derivatives along ``e_i`` are those of the score along
``J e_i`` in the C-dimensional logit space; J costs min(C, n) passes
(:func:`pure_derivatives_transposed`).

Every function here traces its body under ``jax.default_matmul_precision
("highest")``: on GPUs the default float32 matmul precision is TF32-like and third
derivatives then come out wrong by tens of percent.

Integer and boolean points (``x``, ``projected``) are converted to JAX's default float
dtype (float32; float64 with ``jax_enable_x64``) before differentiating, by both
methods: the derivatives are those of ``f`` extended to real inputs, returned as floats.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp
from jax.extend.core import ClosedJaxpr

from jaxcam.checks import check_integer
from jaxcam.taylor import (
    BasisDirection,
    check_order,
    derivatives_from_trace,
    is_piecewise_linear,
    trace_scalar,
)

Array = jax.Array
ScalarFn = Callable[[Array], Array]
METHODS: tuple[str, ...] = ("taylor", "nested_jvp")

# Auto chunking of nested jvp keeps (directions in a chunk) x (elements of x) below
# this many elements for each intermediate tangent (about 64 MB in float32).
_MAX_CHUNK_ELEMENTS = 1 << 24
# Auto chunking of Taylor mode keeps (directions in a chunk) x (largest intermediate
# of f) below this many elements per example (16 MB in float32; under a vmap over
# B examples, B times that).
_TAYLOR_CHUNK_ELEMENTS = 1 << 22


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


# --------------------------------------------------------------------------------------
# Pure derivatives along basis directions or given directions.


def as_real_point(x: Any) -> Array:
    """``x`` as a JAX array, integer and boolean dtypes converted to the default float dtype
    (float32, or float64 with ``jax_enable_x64``); float and complex arrays are unchanged."""
    x = jnp.asarray(x)
    if not jnp.issubdtype(x.dtype, jnp.inexact):
        x = x.astype(jax.dtypes.canonicalize_dtype(jnp.float64))
    return x


def _check_method(method: str) -> None:
    if method not in METHODS:
        raise ValueError(f"method must be one of {METHODS}, got {method!r}")


def check_chunk_size(chunk_size: Any) -> int | None:
    """``None`` (automatic) or an integer >= 1 (a Python or numpy integer, not a bool)."""
    if chunk_size is None:
        return None
    return check_integer(chunk_size, "chunk_size", minimum=1)


def _auto_chunk(num_directions: int, size: int, chunk_size: int | None, budget: int) -> int:
    chunk_size = check_chunk_size(chunk_size)
    if chunk_size is None:
        return max(1, min(num_directions, budget // max(size, 1)))
    return min(chunk_size, num_directions)


_RESHAPING = {"reshape", "squeeze", "expand_dims", "broadcast_in_dim", "transpose", "copy"}


def _per_direction_size(closed: ClosedJaxpr) -> int:
    """Largest intermediate of ``f`` a direction makes dense (reshapes of x stay symbolic)."""
    sizes = [1]
    for eqn in closed.jaxpr.eqns:
        if eqn.primitive.name not in _RESHAPING:
            sizes += [math.prod(v.aval.shape) for v in eqn.outvars if hasattr(v.aval, "shape")]
    return max(sizes)


def pure_derivatives(
    f: ScalarFn,
    x: Array,
    order: int = 3,
    *,
    method: str = "taylor",
    chunk_size: int | None = None,
) -> tuple[Array, ...]:
    """Pure derivatives ``d^m f / dx_i^m`` for every element ``i`` of ``x``, m = 1..order.

    The general path (any ``f``): one Taylor pass (``taylor``) or one nested jvp of
    depth ``order`` plus one ``jax.grad`` (``nested_jvp``) per basis direction.

    Args:
      f: scalar function of ``x``.
      x: array, any shape (e.g. a feature map A of shape (h, w, K)). An integer or
        boolean ``x`` is converted to the default float dtype first (float32; float64
        with ``jax_enable_x64``), with either method.
      order: highest order (default 3, what Grad-CAM++ needs).
      method: ``taylor`` (default) or ``nested_jvp`` (the reference).
      chunk_size: basis directions vmapped at once; ``None`` picks a size that keeps
        each intermediate below ~16 MB (taylor, per example) or ~64 MB (nested_jvp).

    Returns:
      ``order`` arrays shaped like ``x`` (float; see ``x``): first, second, ... derivatives.
    """
    check_order(order)
    _check_method(method)
    x = as_real_point(x)
    flat = x.reshape(-1)
    derivatives = derivatives_along(
        lambda y: f(y.reshape(x.shape)), flat, None, order, method=method, chunk_size=chunk_size
    )
    return tuple(d.reshape(x.shape) for d in derivatives)


def derivatives_along(
    h: ScalarFn,
    x: Array,
    directions: Array | None,
    order: int = 3,
    *,
    method: str = "taylor",
    chunk_size: int | None = None,
) -> tuple[Array, ...]:
    """``D^m h(x)[u_k, ..., u_k]`` for each direction ``u_k``, m = 1..order.

    Args:
      h: scalar function of a vector x (n,).
      x: point (n,); an integer or boolean x is converted to the default float dtype.
      directions: U (K, n), one direction per row (cast to x's dtype); ``None``
        means the n basis directions (U = identity, never materialised).
      order: highest order.
      method: ``taylor`` (default: one Taylor pass per direction) or
        ``nested_jvp`` (one ``jax.grad`` for order 1, a nested jvp per direction).
      chunk_size: directions vmapped at once (``None``: automatic).

    Returns:
      ``order`` arrays of shape (K,).
    """
    check_order(order)
    _check_method(method)
    check_chunk_size(chunk_size)
    x = as_real_point(x)
    size = x.size
    if directions is not None:
        directions = jnp.asarray(directions).astype(x.dtype)
    rows = jnp.arange(size) if directions is None else directions
    count = rows.shape[0]
    with jax.default_matmul_precision("highest"):
        if method == "taylor" and order > 1:
            closed = trace_scalar(h, x)
            chunk = _auto_chunk(
                count, _per_direction_size(closed), chunk_size, _TAYLOR_CHUNK_ELEMENTS
            )

            def along(row: Array) -> tuple[Array, ...]:
                direction: Array | BasisDirection = row
                if directions is None:
                    direction = BasisDirection(row, jnp.ones((), x.dtype), (size,))
                return tuple(derivatives_from_trace(closed, x, direction, order)[1:])

            return tuple(jax.lax.map(along, rows, batch_size=chunk))

        gradient = jax.grad(h)(x)
        first = gradient if directions is None else directions @ gradient
        if order == 1:
            return (first,)

        def nested(row: Array) -> tuple[Array, ...]:
            if directions is None:  # a basis index
                row = jax.nn.one_hot(row, size, dtype=x.dtype)
            return directional_derivatives(h, x, row, order)[2:]

        chunk = _auto_chunk(count, size, chunk_size, _MAX_CHUNK_ELEMENTS)
        higher = jax.lax.map(nested, rows, batch_size=chunk)
    return (first, *higher)


def pure_derivatives_pooled(
    h: ScalarFn,
    projected: Array,
    pool_weights: Array,
    projection: Array | None = None,
    order: int = 3,
    *,
    method: str = "taylor",
    chunk_size: int | None = None,
) -> tuple[Array, ...]:
    """Pure derivatives w.r.t. A of ``f(A) = h(P(A) M)``, ``P(A)_k = sum_xy w_xy A_xyk``.

    Exact, through K directions instead of the h*w*K directions of A: along
    ``e_xyk`` the argument of h moves by ``w_xy M_k`` (row k of M), so
    ``d^m f / dA_xyk^m = w_xy^m D^m h[M_k, ..., M_k]``. Passing the head's first
    dense kernel as M means the derivatives start *after* that layer: the K
    directions are its rows, and nothing is pushed through the dense layer.

    Args:
      h: scalar function of the projected features s = P(A) M (m,).
      projected: s at the explained A, (m,) (integer or boolean: converted to the
        default float dtype).
      pool_weights: w, (h, w); global average pooling is ``full((h, w), 1/z)``.
      projection: M, (K, m); ``None`` means the identity (h takes P(A) itself).
      order: highest order.
      method: ``taylor`` or ``nested_jvp`` (see :func:`derivatives_along`).
      chunk_size: directions vmapped at once (``None``: automatic).

    Returns:
      ``order`` arrays of shape (h, w, K), in the dtype of ``projected``.
    """
    projected = as_real_point(projected)
    if projected.ndim != 1:
        raise ValueError(f"projected features must have shape (m,), got {projected.shape}")
    if pool_weights.ndim != 2:
        raise ValueError(f"pool_weights must have shape (h, w), got {pool_weights.shape}")
    if projection is not None and (projection.ndim != 2 or projection.shape[1] != projected.size):
        raise ValueError(
            f"projection must have shape (K, {projected.size}), got {projection.shape}"
        )
    per_channel = derivatives_along(
        h, projected, projection, order, method=method, chunk_size=chunk_size
    )
    weights = pool_weights.astype(projected.dtype)
    return tuple((weights**m)[..., None] * d[None, None, :] for m, d in enumerate(per_channel, 1))


def global_average_pool_weights(height: int, width: int, dtype: jnp.dtype = jnp.float32) -> Array:
    """Pooling weights of GAP (eq. 1): ``1/z`` at each of the z = h*w positions."""
    return jnp.full((height, width), 1.0 / (height * width), dtype=dtype)


def is_piecewise_linear_at(fn: Callable[[Array], Array], x: Array) -> bool:
    """Whether ``fn`` is piecewise linear in ``x``, read from its traced program."""
    return is_piecewise_linear(jax.make_jaxpr(fn)(as_real_point(x)))


def pure_derivatives_transposed(
    score: ScalarFn,
    logits: Callable[[Array], Array],
    x: Array,
    order: int = 3,
    *,
    method: str = "taylor",
    chunk_size: int | None = None,
) -> tuple[Array, ...]:
    """Pure derivatives of ``f(x) = score(logits(x))`` for ``logits`` piecewise linear in x.

    A piecewise-linear body (conv, dense, ReLU, pooling, additions, inference-mode
    BatchNorm: :func:`jaxcam.taylor.is_piecewise_linear`) is locally linear, so along
    ``e_i`` the logits move on a straight line, ``z(t) = z + t u_i`` with ``u_i = J e_i``
    (J the Jacobian of the logits, column i), and exactly (almost everywhere)::

        d^m f / dx_i^m = D^m score(z)[u_i, ..., u_i]

    J costs min(C, n) passes: C reverse passes (one per class, vmapped) when the C
    classes are fewer than the n elements of x, else n forward passes. The n
    derivatives are then taken in the C-dimensional logit space (:func:`derivatives_along`).
    The caller is responsible for ``logits`` being piecewise linear; otherwise the
    result is the derivative of the score along the body's linearisation, not of f.

    Args:
      score: scalar function of the logits (C,).
      logits: x -> logits (C,).
      x: point, any shape (e.g. A, (h, w, K)); integer or boolean: converted to float.
      order: highest order.
      method: how the derivatives in logit space are taken (``taylor`` or ``nested_jvp``).
      chunk_size: directions vmapped at once in logit space (``None``: automatic).

    Returns:
      ``order`` arrays shaped like ``x``.
    """
    check_order(order)
    _check_method(method)
    check_chunk_size(chunk_size)
    x = as_real_point(x)
    with jax.default_matmul_precision("highest"):
        z, pullback = jax.vjp(logits, x)
        if z.ndim != 1:
            raise ValueError(f"logits must return a vector (C,), got shape {z.shape}")
        classes, size = z.shape[0], x.size
        if classes <= size:
            (rows,) = jax.vmap(pullback)(jnp.eye(classes, dtype=z.dtype))
            columns = rows.reshape(classes, size).T  # u_i, (n, C)
        else:
            _, push = jax.linearize(logits, x)
            basis = jnp.eye(size, dtype=x.dtype).reshape(size, *x.shape)
            columns = jax.vmap(push)(basis)
        derivatives = derivatives_along(
            score, z, columns, order, method=method, chunk_size=chunk_size
        )
    return tuple(d.reshape(x.shape) for d in derivatives)
