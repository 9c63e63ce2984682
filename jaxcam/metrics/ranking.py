"""Which pixels a map keeps: ranks with a reproducible tie order, and the top-k cut.

Many maps are 0 over large regions (ReLU-clipped maps), so the pixels at a
threshold are often tied. Ties are broken by a *priority* per pixel
(:func:`tie_priority`), seeded by ``(tie_seed, image index)``: reproducible, the same
for every method on a given image, and without spatial bias. ``ties="smooth"``
(default, :data:`DEFAULT_TIES`) keeps tied pixels in random blobs, ``"random"``
scattered pixel by pixel; ``"raster"`` is row-major order (the top rows of the image
win, which biases BAD towards whatever lies there). The default was chosen by the
ground-truth study (README, "Is BAD trustworthy?"). Pixels whose fate a tie decided
are reported (:func:`threshold_split`) and never count as a difference between
methods when alpha is chosen.

Per-example functions: one map (H, W), one image (H, W, C).
"""

from __future__ import annotations

from typing import NamedTuple

import jax
import jax.numpy as jnp

from jaxcam.checks import check_alpha

Array = jax.Array

TIE_POLICIES: tuple[str, ...] = ("smooth", "random", "raster")
#: The tie policy of BAD's ranking unless one is given (see the module docstring).
DEFAULT_TIES = "smooth"
#: BAD's alpha grid: 0.05, 0.10, ..., 0.95.
ALPHA_GRID: tuple[float, ...] = tuple(round(0.05 * i, 2) for i in range(1, 20))


def check_ties(ties: str) -> str:
    if ties not in TIE_POLICIES:
        raise ValueError(f"ties must be one of {TIE_POLICIES}, got {ties!r}")
    return ties


def kept_pixel_count(alpha: float, height: int, width: int) -> int:
    """round(alpha * H * W) (Python's round: half to even), the area BAD keeps."""
    return round(check_alpha(alpha) * height * width)


def smooth_random_field(key: Array, shape: tuple[int, int]) -> Array:
    """A smooth random field (H, W) in [0, 1]: blobs at two scales.

    Uniform noise on a 4x4 grid plus, with a random weight up to 1/2, on a 16x16 grid,
    each upsampled bilinearly. Its level sets are blob-shaped, like the complement of
    an upsampled saliency map; its distribution does not depend on the position.
    """
    coarse_key, fine_key, weight_key = jax.random.split(key, 3)
    weight = jax.random.uniform(weight_key, maxval=0.5)
    coarse = jax.image.resize(jax.random.uniform(coarse_key, (4, 4)), shape, "bilinear")
    fine = jax.image.resize(jax.random.uniform(fine_key, (16, 16)), shape, "bilinear")
    return (1 - weight) * coarse + weight * fine


def tie_priority(ties: str, seed: int, index: Array, shape: tuple[int, int]) -> Array:
    """Priority of each pixel among equally salient ones (lower is kept first), (H*W,) float32.

    Drawn from ``fold_in(key(seed), index)``, so each image (``index``: its position in
    the data set) has its own order, shared by every method on it:

    * ``random``: i.i.d. uniform per pixel - tied pixels are kept scattered;
    * ``smooth``: :func:`smooth_random_field` - tied pixels are kept in random blobs;
    * ``raster``: all equal, so the row-major index decides (top rows first).

    Equal priorities fall back to the row-major index, so ranks are always exact.
    """
    height, width = shape
    if check_ties(ties) == "raster":
        return jnp.zeros((height * width,), jnp.float32)
    key = jax.random.fold_in(jax.random.key(seed), index)
    if ties == "random":
        return jax.random.uniform(key, (height * width,))
    return smooth_random_field(key, shape).reshape(-1)


class Ranking(NamedTuple):
    """A map's pixels in descending saliency, ties by priority."""

    ranks: Array  # (H, W) int32: 0 = most salient; a permutation of 0..H*W-1
    sorted_values: Array  # (H*W,) the map's values in descending order


def rank_pixels(saliency: Array, priority: Array) -> Ranking:
    """Rank the pixels of a map (H, W): by value, descending, then ``priority`` (H*W,), then
    the row-major index (one three-key sort)."""
    flat = saliency.reshape(-1)
    negated = jnp.where(flat == 0, jnp.zeros_like(flat), -flat)  # -0.0 and 0.0 tie
    index = jnp.arange(flat.size, dtype=jnp.int32)
    sorted_negated, _, order = jax.lax.sort((negated, priority, index), num_keys=3)
    ranks = jnp.zeros(flat.shape, jnp.int32).at[order].set(index)
    return Ranking(ranks.reshape(saliency.shape), -sorted_negated)


def pixel_ranks(saliency: Array, priority: Array | None = None) -> Array:
    """Ranks (H, W) of a map's pixels; ``priority=None`` breaks ties in raster order."""
    if priority is None:
        priority = jnp.zeros((saliency.size,), jnp.float32)
    return rank_pixels(saliency, priority).ranks


def top_pixel_mask(saliency: Array, num_kept: int, priority: Array | None = None) -> Array:
    """Boolean (H, W) mask of exactly ``num_kept`` most salient pixels (eq. 11's L > eta)."""
    return pixel_ranks(saliency, priority) < num_kept


class ThresholdSplit(NamedTuple):
    """How a map's top-``k`` cut splits its pixels, (H, W) masks and a count."""

    surely_kept: Array  # above eta, or at eta when all pixels at eta are kept
    surely_dropped: Array  # below eta
    tie_decided: Array  # number of kept pixels that the tie-break chose (int32 scalar)


def threshold_split(saliency: Array, sorted_values: Array, num_kept: int) -> ThresholdSplit:
    """Which pixels the map itself keeps or drops at ``k = num_kept``, and which a tie decides.

    ``eta`` is the k-th largest value. When the (k+1)-th value equals eta, the pixels
    at eta straddle the cut: the tie-break, not the map, chose which of them are
    kept. Those are neither surely kept nor surely dropped.
    """
    size = sorted_values.shape[0]
    if num_kept == 0:
        nothing = jnp.zeros(saliency.shape, bool)
        return ThresholdSplit(nothing, ~nothing, jnp.zeros((), jnp.int32))
    eta = sorted_values[num_kept - 1]
    straddles = sorted_values[num_kept] == eta if num_kept < size else jnp.asarray(False)
    above = saliency > eta
    at_eta = saliency == eta
    tie_decided = jnp.where(straddles, num_kept - jnp.sum(above, dtype=jnp.int32), 0)
    return ThresholdSplit(above | (at_eta & ~straddles), saliency < eta, tie_decided)


def surely_different(first: ThresholdSplit, second: ThresholdSplit) -> Array:
    """Fraction of pixels that one map surely keeps and the other surely drops (scalar)."""
    first_only = first.surely_kept & second.surely_dropped
    second_only = first.surely_dropped & second.surely_kept
    differ = first_only | second_only
    return jnp.mean(differ.astype(jnp.float32))
