"""The top-k pixels of maps without a full sort: an exact radix selection.

:func:`jaxcam.metrics.rank_pixels` sorts a map's H*W pixels on three keys (value,
descending; tie priority; row-major index). One cut at ``k`` needs only which pixels
come first, not their order, so :func:`select_top` finds the k-th pixel of that order by
bisection on the bits of order-preserving unsigned keys: each step counts the pixels at
or below a candidate key (one compare and one sum over the map, vectorised over maps),
32 steps for the value, 32 for the priority among the pixels tied at the k-th value,
ceil(log2(H*W)) for the index among those tied on both. The kept pixels are exactly
``rank_pixels(...).ranks < k``, ties, -0.0 and NaN included: keys follow the sort's
float order (-0.0 equals 0.0; every NaN is one value, after +inf, so NaN pixels rank
last). :func:`selection_split` gives :func:`jaxcam.metrics.threshold_split`'s result
from the same selection.

Functions take maps flattened on their last axis (..., P), any leading (batch) axes, so
the passes run over all maps at once and a sharded batch axis stays as it is.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp

from jaxcam.metrics.ranking import ThresholdSplit

Array = jax.Array

_SIGN = 0x80000000

#: The evaluation uses :func:`select_top` where one cut is scored; False forces the full
#: sort everywhere (private: for the tests and the benchmark's comparison).
_ENABLED = True


def enabled() -> bool:
    """Whether the evaluation takes the paths without the full sort where they apply."""
    return _ENABLED


def selection_applies(num_cuts: int, full_ranks_needed: Sequence[bool]) -> bool:
    """Whether one cut's selection can replace the full ranking: a single ``k`` and no
    perturbation that reads ranks beyond ``ranks < num_kept``."""
    return _ENABLED and num_cuts == 1 and not any(full_ranks_needed)


def sorted_descending(saliency: Array) -> Array:
    """Each row's values (..., P) in descending order, equal to ``rank_pixels``'
    ``sorted_values``: one sort of the values alone, for several cuts without ranks."""
    negated = jnp.where(saliency == 0, jnp.zeros_like(saliency), -saliency)
    return -jnp.sort(negated, axis=-1)


def has_ascending_key(dtype: Any) -> bool:
    """Whether :func:`ascending_key` takes ``dtype``: floats, integers, booleans up to 32 bits."""
    dtype = jnp.dtype(dtype)
    numeric = jnp.issubdtype(dtype, jnp.floating) or jnp.issubdtype(dtype, jnp.integer)
    return dtype == jnp.bool_ or (numeric and dtype.itemsize <= 4)


def ascending_key(values: Array) -> Array:
    """uint32 keys whose unsigned order is ``jax.lax.sort``'s ascending order of ``values``.

    Floats (at most 32 bits): -0.0 and 0.0 get one key, every NaN the one key above +inf.
    Integers (at most 32 bits) and booleans: their order. Other dtypes: TypeError.
    """
    dtype = values.dtype
    if jnp.issubdtype(dtype, jnp.floating) and dtype.itemsize <= 4:
        floats = values.astype(jnp.float32)  # exact for float16 and bfloat16
        floats = jnp.where(floats == 0, jnp.zeros_like(floats), floats)
        floats = jnp.where(jnp.isnan(floats), jnp.full_like(floats, jnp.nan), floats)
        bits = jax.lax.bitcast_convert_type(floats, jnp.uint32)
        negative = (bits & jnp.uint32(_SIGN)) != 0
        return jnp.where(negative, ~bits, bits | jnp.uint32(_SIGN))
    if dtype == jnp.bool_ or (jnp.issubdtype(dtype, jnp.unsignedinteger) and dtype.itemsize <= 4):
        return values.astype(jnp.uint32)
    if jnp.issubdtype(dtype, jnp.signedinteger) and dtype.itemsize <= 4:
        signed = jax.lax.bitcast_convert_type(values.astype(jnp.int32), jnp.uint32)
        return signed ^ jnp.uint32(_SIGN)
    raise TypeError(f"no 32-bit sort key for dtype {dtype}")


def _float_of_key(key: Array) -> Array:
    """The float32 whose :func:`ascending_key` is ``key`` (the inverse on float keys)."""
    negative = (key & jnp.uint32(_SIGN)) == 0
    bits = jnp.where(negative, ~key, key & jnp.uint32(_SIGN - 1))
    return jax.lax.bitcast_convert_type(bits, jnp.float32)


def smallest_reaching(keys: Array, needed: Array, bits: int, among: Array | None = None) -> Array:
    """Per row, the smallest ``v < 2**bits`` with ``count(among & (keys <= v)) >= needed``.

    ``keys`` (..., P) uint32 below ``2**bits``, ``among`` (..., P) bool (default: every
    pixel), ``needed`` (...) int32 in [1, count(among)]; returns (...) uint32. Bit by bit
    from the top: with the bits found so far as a prefix, the current bit is 0 when the
    pixels at or below ``prefix | 0b0111...`` already reach ``needed``.
    """

    def step(i: Array, prefix: Array) -> Array:
        bit = jnp.left_shift(jnp.uint32(1), (bits - 1 - i).astype(jnp.uint32))
        at_or_below = keys <= (prefix | (bit - jnp.uint32(1)))[..., None]
        if among is not None:
            at_or_below = at_or_below & among
        count = jnp.sum(at_or_below, axis=-1, dtype=jnp.int32)
        return jnp.where(count >= needed, prefix, prefix | bit)

    return jax.lax.fori_loop(0, bits, step, jnp.zeros(keys.shape[:-1], jnp.uint32))


class TopSelection(NamedTuple):
    """The first ``k`` pixels of each map in the evaluation's order (maps (...), P pixels)."""

    kept: Array  # (..., P) bool: exactly k True per map
    value_key: Array  # (...) uint32: ascending_key of the k-th pixel's negated value
    at_least_as_salient: Array  # (...) int32: pixels whose value is at least the k-th's


def select_top(saliency: Array, priority: Array, num_kept: int | Array) -> TopSelection:
    """The ``num_kept`` most salient pixels of each map (last axis) of ``saliency`` (..., P),
    ties by ``priority`` (lower first; broadcast to (..., P)), then by index: the pixels
    with ``rank_pixels(...).ranks < num_kept``.

    ``num_kept``: an int in [0, P], or a traced integer scalar (then 0 does the passes too).
    """
    maps, size = saliency.shape[:-1], saliency.shape[-1]
    if isinstance(num_kept, int):
        if not 0 <= num_kept <= size:
            raise ValueError(f"num_kept must be in [0, {size}], got {num_kept}")
        if num_kept == 0:
            nothing = jnp.zeros(maps, jnp.int32)
            kept = jnp.zeros(saliency.shape, bool)
            return TopSelection(kept, nothing.astype(jnp.uint32), nothing)
    negated = jnp.where(saliency == 0, jnp.zeros_like(saliency), -saliency)
    value_keys = ascending_key(negated)
    needed = jnp.broadcast_to(jnp.asarray(num_kept, jnp.int32), maps)
    value_key = smallest_reaching(value_keys, needed, 32)[..., None]
    more_salient = value_keys < value_key
    at_value = value_keys == value_key
    # Among the pixels at the k-th value: the priority, then the index.
    needed = needed - jnp.sum(more_salient, axis=-1, dtype=jnp.int32)
    priority_keys = jnp.broadcast_to(ascending_key(priority), saliency.shape)
    priority_key = smallest_reaching(priority_keys, needed, 32, at_value)[..., None]
    before_at_value = at_value & (priority_keys < priority_key)
    at_both = at_value & (priority_keys == priority_key)
    needed = needed - jnp.sum(before_at_value, axis=-1, dtype=jnp.int32)
    index = jnp.broadcast_to(jnp.arange(size, dtype=jnp.uint32), saliency.shape)
    index_bits = max(1, (size - 1).bit_length())
    index_key = smallest_reaching(index, needed, index_bits, at_both)[..., None]
    kept = more_salient | before_at_value | (at_both & (index <= index_key))
    kept = kept & (jnp.asarray(num_kept) > 0)  # k = 0 (traced): nothing, whatever the keys
    at_least = jnp.sum(more_salient | at_value, axis=-1, dtype=jnp.int32)
    return TopSelection(kept, value_key[..., 0], at_least)


def top_pixel_masks(saliency: Array, priority: Array, num_kept: int | Array) -> Array:
    """Boolean masks (..., H, W) of the ``num_kept`` first pixels of maps (..., H, W), ties
    by ``priority`` (..., H*W): :func:`select_top` on the flattened maps."""
    # The pixel count is spelled out: a -1 cannot be resolved for an empty batch.
    flat = saliency.reshape(*saliency.shape[:-2], saliency.shape[-2] * saliency.shape[-1])
    return select_top(flat, priority, num_kept).kept.reshape(saliency.shape)


def selection_ranks(kept: Array) -> Array:
    """Ranks (..., H, W) int32 standing in for the full ranking at one cut: 0 where
    ``kept`` (..., H, W), H*W elsewhere, so ``ranks < k`` is ``kept`` for the selected k."""
    return jnp.where(kept, 0, kept.shape[-2] * kept.shape[-1]).astype(jnp.int32)


def selection_split(
    saliency: Array, selection: TopSelection, num_kept: int | Array
) -> ThresholdSplit:
    """:func:`jaxcam.metrics.threshold_split` of maps (..., H, W) at ``k = num_kept`` from
    their :class:`TopSelection` (masks (..., H, W), counts (...)); ``num_kept`` may be
    traced."""
    eta = -_float_of_key(selection.value_key)  # (...) the k-th largest value
    straddles = (selection.at_least_as_salient > num_kept) & ~jnp.isnan(eta)
    above = saliency > eta[..., None, None]
    above_count = jnp.sum(above, axis=(-2, -1), dtype=jnp.int32)
    tie_decided = jnp.where(straddles, num_kept - above_count, 0).astype(jnp.int32)
    at_eta = saliency == eta[..., None, None]
    surely_kept = above | (at_eta & ~straddles[..., None, None])
    nothing_kept = jnp.asarray(num_kept) == 0
    return ThresholdSplit(
        surely_kept & ~nothing_kept,
        (saliency < eta[..., None, None]) | nothing_kept,
        jnp.where(nothing_kept, 0, tie_decided),
    )
