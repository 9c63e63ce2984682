"""Label-free saliency metrics: Average Drop (eq. 10) and Black Average Drop (eq. 11).

Both compare the model's score for class c on the image, ``Y^c``, with its score
on a masked image, ``O^c``::

    drop = max(0, Y^c - O^c) / Y^c,   AD or BAD = mean over images of drop

* AD masks with the explanation image ``E^c = L^c o I`` (the map as opacity).
* BAD masks with the black image ``B^c``: the round(alpha*H*W) pixels with the
  highest ``L^c`` keep their raw value, every other pixel is 0 (black in the raw
  image), so every method keeps exactly the same area.

**Ties.** Many maps are 0 over large regions (ReLU-clipped maps), so the pixels at
the threshold are often tied. Ties are broken by a *priority* per pixel
(:func:`tie_priority`), seeded by ``(tie_seed, image index)``: reproducible, the same
for every method on a given image, and without spatial bias. ``ties="smooth"``
(default, :data:`DEFAULT_TIES`) keeps tied pixels in random blobs, ``"random"``
scattered pixel by pixel; ``"raster"`` is row-major order (the top rows of the image
win, which biases BAD towards whatever lies there). The default was chosen by the
ground-truth study (README, "Is BAD trustworthy?"). Pixels whose fate a tie decided
are reported (:func:`threshold_split`) and never count as a difference between
methods when alpha is chosen.

**What the clamp hides.** ``max(0, Y - O)`` records every masked image that *raises*
the score as a perfect 0. The summaries therefore also carry the mean signed
change ``(O - Y) / Y``, the share of images with ``O > Y`` (Increase in
Confidence) and the median of ``O / Y``.

An image whose ``Y^c`` is not a positive finite number (Y = 0 is possible with a
ReLU output), or whose ``O^c`` is not finite (an ``exp`` output overflows to inf for
logits above ~88 in float32), has no defined ratio: it is left out of the ratio
statistics and counted as excluded (``num_excluded``), never turned into NaN. Those
with a NaN or inf Y or O are also counted on their own (``num_nonfinite``), so a
numerical failure is not mistaken for a ReLU zero. Incorrect counts every image
(the predicted class of a masked image is its argmax, NaN counting as the largest
score). Over zero images, or zero defined ones, every share is ``None``.

Per-example functions act on one image (H, W, C) and one map (H, W); the batch
steps vmap them once inside ``jax.jit``. Statistics are accumulated as sums
(:class:`DropSums`) so that batches, devices and classes add up; summaries are
computed from the sums (:func:`summarise`).
"""

from __future__ import annotations

import functools
import itertools
import math
from collections.abc import Mapping, Sequence
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from jaxcam.checks import (
    check_alpha,
    check_bound_model,
    check_class_indices,
    check_finite_images,
    check_image_batch,
    check_integer,
)
from jaxcam.models.base import SplitModel

Array = jax.Array

TIE_POLICIES: tuple[str, ...] = ("smooth", "random", "raster")
#: The tie policy of BAD's ranking unless one is given (see the module docstring).
DEFAULT_TIES = "smooth"
#: BAD's alpha grid: 0.05, 0.10, ..., 0.95.
ALPHA_GRID: tuple[float, ...] = tuple(round(0.05 * i, 2) for i in range(1, 20))
#: Histogram of log2(O / Y) for the median: bins of 1/32 octave over [-16, 16), plus
#: an underflow bin (O / Y < 2^-16, O <= 0 included) and an overflow bin.
RATIO_BINS_PER_OCTAVE = 32
RATIO_OCTAVES = 16
NUM_RATIO_BINS = 2 * RATIO_OCTAVES * RATIO_BINS_PER_OCTAVE + 2


def check_ties(ties: str) -> str:
    if ties not in TIE_POLICIES:
        raise ValueError(f"ties must be one of {TIE_POLICIES}, got {ties!r}")
    return ties


def kept_pixel_count(alpha: float, height: int, width: int) -> int:
    """round(alpha * H * W) (Python's round: half to even), the area BAD keeps."""
    return round(check_alpha(alpha) * height * width)


# ----------------------------------------------------------------------------
# Per-example masks (one map (H, W), one image (H, W, C)).


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


def explanation_image(image: Array, saliency: Array) -> Array:
    """Eq. 10's explanation image ``E = L o I``: (H, W, C), map (H, W) in [0, 1]."""
    return saliency[..., None].astype(image.dtype) * image


def black_image(
    image: Array, saliency: Array, num_kept: int, priority: Array | None = None
) -> Array:
    """Eq. 11's ``B``: the ``num_kept`` top pixels keep their raw value, the rest are 0.

    ``priority`` (H*W,) breaks ties (:func:`tie_priority`); ``None``: raster order.
    """
    kept = top_pixel_mask(saliency, num_kept, priority)
    return jnp.where(kept[..., None], image, jnp.zeros_like(image))


# ----------------------------------------------------------------------------
# Sums and summaries.


class DropTerms(NamedTuple):
    """Per-image terms of a drop metric, each shaped like Y and O."""

    defined: Array  # Y > 0 and finite, O finite: the ratio exists
    nonfinite: Array  # Y or O is NaN or inf (a subset of the undefined ones)
    drop: Array  # max(0, Y - O) / Y (eq. 10/11), 0 where undefined
    change: Array  # (O - Y) / Y, 0 where undefined
    increased: Array  # O > Y (and defined)
    ratio_bin: Array  # histogram bin of log2(O / Y) (int32)


def drop_terms(original: Array, masked: Array) -> DropTerms:
    """Eq. 10/11's per-image drop and the signed terms the clamp hides."""
    finite = jnp.isfinite(original) & jnp.isfinite(masked)
    defined = (original > 0) & finite
    safe_y = jnp.where(defined, original, jnp.ones_like(original))
    safe_o = jnp.where(defined, masked, jnp.ones_like(masked))
    change = jnp.where(defined, (safe_o - safe_y) / safe_y, jnp.zeros_like(safe_y))
    drop = jnp.maximum(-change, jnp.zeros_like(change))
    positive = safe_o > 0
    log_ratio = jnp.log2(jnp.where(positive, safe_o, safe_y) / safe_y)
    inner = jnp.floor((log_ratio + RATIO_OCTAVES) * RATIO_BINS_PER_OCTAVE).astype(jnp.int32) + 1
    ratio_bin = jnp.where(positive, jnp.clip(inner, 0, NUM_RATIO_BINS - 1), 0)
    return DropTerms(defined, ~finite, drop, change, defined & (safe_o > safe_y), ratio_bin)


class DropSums(NamedTuple):
    """Sums over images of a drop metric; leading axes are the caller's (e.g. method, class)."""

    images: Array  # images counted (int32)
    defined: Array  # images whose ratio is defined (int32)
    nonfinite: Array  # images whose Y or O is NaN or inf (int32; not defined)
    drop: Array  # sum of drops (float32)
    change: Array  # sum of (O - Y) / Y (float32)
    increased: Array  # images with O > Y (int32)
    incorrect: Array  # masked images predicted != target (int32)
    ratio_histogram: Array  # (..., NUM_RATIO_BINS) counts of log2(O / Y) bins (int32)


def zero_sums(shape: tuple[int, ...], histogram_groups: int | None = None) -> DropSums:
    """Empty :class:`DropSums` with leading axes ``shape`` (..., G).

    ``histogram_groups``: size of the histogram's group axis; 1 pools the O/Y
    histogram over the groups (for many classes), default G.
    """
    count = jnp.zeros(shape, jnp.int32)
    total = jnp.zeros(shape, jnp.float32)
    groups = shape[-1] if histogram_groups is None else histogram_groups
    histogram = jnp.zeros((*shape[:-1], groups, NUM_RATIO_BINS), jnp.int32)
    return DropSums(
        images=count,
        defined=count,
        nonfinite=count,
        drop=total,
        change=total,
        increased=count,
        incorrect=count,
        ratio_histogram=histogram,
    )


def add_drops(
    sums: DropSums,
    original: Array,
    masked: Array,
    incorrect: Array,
    weights: Array,
    group: Array,
) -> DropSums:
    """Add a batch to sums whose last leading axis is a group (e.g. the true class).

    Args:
      sums: :class:`DropSums` with leading axes (..., G).
      original: Y per image, (B,).
      masked: O per image, broadcastable leading axes then (B,), e.g. (M, S, B).
      incorrect: masked image predicted wrongly, shaped like ``masked``.
      weights: 1 for images to count, 0 for padding or excluded rows, (B,) int32.
      group: each image's group in [0, G), (B,).
    """
    terms = drop_terms(original, masked)
    num_groups = sums.images.shape[-1]
    one_hot = jax.nn.one_hot(group, num_groups, dtype=jnp.int32) * weights[:, None]  # (B, G)
    lead = masked.shape[:-1]

    def count(flags: Array) -> Array:
        return jnp.einsum("...b,bg->...g", flags.astype(jnp.int32), one_hot)

    def total(values: Array) -> Array:
        return jnp.einsum("...b,bg->...g", values, one_hot.astype(values.dtype))

    in_group = jnp.broadcast_to(jnp.ones_like(weights), (*lead, weights.shape[0]))
    bins = jnp.broadcast_to(terms.ratio_bin, masked.shape)
    counted = jnp.broadcast_to(terms.defined, masked.shape) & (weights > 0)
    histogram = _histogram_add(sums.ratio_histogram, bins, counted, group)
    return DropSums(
        images=sums.images + count(in_group),
        defined=sums.defined + count(terms.defined),
        nonfinite=sums.nonfinite + count(terms.nonfinite),
        drop=sums.drop + total(terms.drop.astype(jnp.float32)),
        change=sums.change + total(terms.change.astype(jnp.float32)),
        increased=sums.increased + count(terms.increased),
        incorrect=sums.incorrect + count(incorrect),
        ratio_histogram=histogram,
    )


def _histogram_add(histogram: Array, bins: Array, counted: Array, group: Array) -> Array:
    """Scatter-add one count per (leading index, image) into its (group, bin) cell."""
    lead = bins.shape[:-1]
    flat_lead = math.prod(lead)
    lead_index = jnp.broadcast_to(
        jnp.arange(flat_lead, dtype=jnp.int32).reshape((*lead, 1)), bins.shape
    )
    if histogram.shape[-2] == 1:  # pooled over groups
        group = jnp.zeros_like(group)
    groups = jnp.broadcast_to(group.astype(jnp.int32), bins.shape)
    flat = histogram.reshape(flat_lead, histogram.shape[-2], NUM_RATIO_BINS)
    flat = flat.at[lead_index.reshape(-1), groups.reshape(-1), bins.reshape(-1)].add(
        counted.reshape(-1).astype(jnp.int32)
    )
    return flat.reshape(histogram.shape)


class DropSummary(NamedTuple):
    """An Average-Drop-style metric over a set of images."""

    value: float | None  # mean of max(0, Y-O)/Y over images with a defined ratio; None if none
    incorrect: float | None  # share of masked images whose predicted class != target
    increase_in_confidence: float | None  # share of defined images with O > Y
    mean_change: float | None  # mean of (O - Y) / Y over defined images
    median_ratio: float | None  # median O / Y (histogram, 1/32 octave ~ 2.2 %)
    num_images: int
    num_excluded: int  # images whose ratio is undefined (Y <= 0, or Y or O not finite)
    num_nonfinite: int  # of those, images whose Y or O is NaN or inf

    @property
    def mostly_increased(self) -> bool:
        """More than half of the defined masked images raised the score."""
        return self.increase_in_confidence is not None and self.increase_in_confidence > 0.5


def _ratio_median(histogram: np.ndarray) -> float | None:
    total = int(histogram.sum())
    if total == 0:
        return None
    position = int(np.searchsorted(np.cumsum(histogram), (total + 1) // 2))
    if position == 0:
        return 0.0
    if position == NUM_RATIO_BINS - 1:
        return math.inf
    centre = (position - 1 + 0.5) / RATIO_BINS_PER_OCTAVE - RATIO_OCTAVES
    return float(2.0**centre)


def summarise(sums: DropSums) -> DropSummary:
    """A :class:`DropSummary` from scalar :class:`DropSums` (leading axes summed away first)."""
    images = int(np.asarray(sums.images))
    defined = int(np.asarray(sums.defined))

    def share(count: Any, of: int) -> float | None:
        return float(np.asarray(count)) / of if of else None

    return DropSummary(
        value=share(sums.drop, defined),
        incorrect=share(sums.incorrect, images),
        increase_in_confidence=share(sums.increased, defined),
        mean_change=share(sums.change, defined),
        median_ratio=_ratio_median(np.asarray(sums.ratio_histogram)),
        num_images=images,
        num_excluded=images - defined,
        num_nonfinite=int(np.asarray(sums.nonfinite)),
    )


def sum_over(sums: DropSums, axis: int) -> DropSums:
    """Sum :class:`DropSums` over a leading axis (e.g. the class axis: all images)."""
    return DropSums(*(np.asarray(x).sum(axis=axis) for x in sums))


def take(sums: DropSums, index: int, axis: int) -> DropSums:
    """One slice of :class:`DropSums` along a leading axis."""
    return DropSums(*(np.take(np.asarray(x), index, axis=axis) for x in sums))


def summarise_drop(original: Any, masked: Any, masked_class: Any, target: Any) -> DropSummary:
    """AD (eq. 10) / BAD (eq. 11) of per-image arrays, with Incorrect and the signed terms.

    Args:
      original: Y^c per image (N,).
      masked: O^c per masked image (N,).
      masked_class: predicted class of each masked image (N,), integers.
      target: the class a correct prediction gives (labels, or c without labels) (N,),
        integers; any other shape raises ValueError (an (N, 1) column would broadcast).

    Returns:
      The :class:`DropSummary`; over N = 0 images every share is ``None``.
    """
    arrays = {
        "original": np.asarray(original),
        "masked": np.asarray(masked),
        "masked_class": np.asarray(masked_class),
        "target": np.asarray(target),
    }
    size = arrays["original"].shape[0] if arrays["original"].ndim == 1 else -1
    for name, value in arrays.items():
        if value.ndim != 1 or value.shape[0] != size:
            shapes = ", ".join(f"{n} {v.shape}" for n, v in arrays.items())
            raise ValueError(
                f"{name} must have shape (N,) like the other per-image arrays; got {shapes}"
            )
    for name in ("masked_class", "target"):
        if size and not np.issubdtype(arrays[name].dtype, np.integer):
            raise TypeError(f"{name} must hold integer classes, got dtype {arrays[name].dtype}")
    sums = add_drops(
        zero_sums((1,)),
        jnp.asarray(arrays["original"], jnp.float32),
        jnp.asarray(arrays["masked"], jnp.float32),
        jnp.asarray(arrays["masked_class"] != arrays["target"]),
        jnp.ones(size, jnp.int32),
        jnp.zeros(size, jnp.int32),
    )
    return summarise(take(sums, 0, axis=0))


# ----------------------------------------------------------------------------
# One batch of in-memory maps (the per-batch API; the data set engine is in
# jaxcam.evaluation).


class MaskedScores(NamedTuple):
    """Per-example results of the masked-score step, each (B,)."""

    original: Array  # Y^c on the image
    explanation: Array  # O^c on E^c (AD)
    black: Array  # O^c on B^c (BAD)
    explanation_class: Array  # predicted class on E^c
    black_class: Array  # predicted class on B^c


@functools.partial(jax.jit, static_argnames=("num_kept", "ties", "tie_seed"))
def _masked_scores_step(
    model: SplitModel,
    images: Array,
    maps: Array,
    class_indices: Array,
    indices: Array,
    num_kept: int,
    ties: str,
    tie_seed: int,
) -> MaskedScores:
    shape = images.shape[1:3]

    def one(image: Array, saliency: Array, class_index: Array, index: Array) -> MaskedScores:
        priority = tie_priority(ties, tie_seed, index, shape)
        stacked = jnp.stack(
            [
                image,
                explanation_image(image, saliency),
                black_image(image, saliency, num_kept, priority),
            ]
        )
        scores = jax.vmap(model.scores)(stacked)
        chosen = scores[:, class_index]
        predicted = jnp.argmax(scores, axis=-1).astype(jnp.int32)
        return MaskedScores(chosen[0], chosen[1], chosen[2], predicted[1], predicted[2])

    return jax.vmap(one)(images, maps, class_indices, indices)


def check_maps(maps: Any, shape: tuple[int, int, int]) -> None:
    """Maps (B, H, W) matching the images, finite, in [0, 1] (else ValueError)."""
    if getattr(maps, "shape", None) != shape:
        raise ValueError(
            f"maps must have shape {shape} to match the images, got {getattr(maps, 'shape', None)}"
        )
    check_finite_images(maps, name="maps")
    values = np.asarray(maps)
    if values.size and (values.min() < 0 or values.max() > 1):
        raise ValueError(
            f"maps must be normalised to [0, 1], got values in [{values.min()}, {values.max()}]"
        )


def masked_scores(
    model: SplitModel,
    images: Any,
    maps: Any,
    class_indices: Any,
    alpha: float,
    *,
    ties: str = DEFAULT_TIES,
    tie_seed: int = 0,
    indices: Any = None,
) -> MaskedScores:
    """Scores of class c on images, explanation images and black images (one batch).

    Args:
      model: bound split model.
      images: raw images (B, H, W, C), finite.
      maps: normalised saliency maps (B, H, W) in [0, 1].
      class_indices: explained classes c (B,).
      alpha: BAD's kept area fraction, in (0, 1).
      ties: ``smooth`` (default), ``random`` or ``raster`` (see the module docstring).
      tie_seed: seed of the random tie order.
      indices: each image's index in the data set (B,), which seeds its tie order;
        default 0..B-1.
    """
    check_bound_model(model)
    check_image_batch(images, model.module.in_channels, model.module.min_input_size)
    check_finite_images(images)
    batch, height, width = images.shape[:3]
    check_maps(maps, (batch, height, width))
    classes = check_class_indices(class_indices, model.num_classes, batch)
    check_ties(ties)
    tie_seed = check_integer(tie_seed, "tie_seed")
    if indices is None:
        indices = np.arange(batch, dtype=np.int32)
    else:
        indices = np.asarray(indices)
        if indices.shape != (batch,) or not np.issubdtype(indices.dtype, np.integer):
            raise ValueError(
                f"indices must be integers of shape ({batch},) to match the images, got "
                f"shape {indices.shape} and dtype {indices.dtype}"
            )
    return _masked_scores_step(
        model,
        jnp.asarray(images),
        jnp.asarray(maps),
        jnp.asarray(classes),
        jnp.asarray(indices, jnp.int32),
        kept_pixel_count(alpha, height, width),
        ties,
        tie_seed,
    )


def average_drop(scores: MaskedScores, target: Any) -> DropSummary:
    """Average Drop (eq. 10) from a :class:`MaskedScores`; ``target`` (B,) as in
    :func:`summarise_drop`."""
    return summarise_drop(scores.original, scores.explanation, scores.explanation_class, target)


def black_average_drop(scores: MaskedScores, target: Any) -> DropSummary:
    """Black Average Drop (eq. 11) from a :class:`MaskedScores`; ``target`` (B,) as in
    :func:`summarise_drop`."""
    return summarise_drop(scores.original, scores.black, scores.black_class, target)


def method_pairs(num_methods: int) -> list[tuple[int, int]]:
    return list(itertools.combinations(range(num_methods), 2))


def mean_pair_difference(splits: ThresholdSplit) -> Array:
    """Mean over method pairs of :func:`surely_different`, one image (scalar).

    ``splits``: one :class:`ThresholdSplit` per method, stacked on a leading axis
    (masks (M, H, W), M >= 2).
    """
    return jnp.mean(
        jnp.stack(
            [
                surely_different(
                    jax.tree.map(lambda x, a=a: x[a], splits),
                    jax.tree.map(lambda x, b=b: x[b], splits),
                )
                for a, b in method_pairs(splits.surely_kept.shape[0])
            ]
        )
    )


def mean_surely_different(maps: Array, sorted_values: Array, kept_counts: Sequence[int]) -> Array:
    """Per alpha, :func:`mean_pair_difference` of the methods' maps, one image.

    Args:
      maps: (M, H, W) maps of the methods, M >= 2.
      sorted_values: (M, H*W) each map's values in descending order.
      kept_counts: k per alpha (static).

    Returns:
      (len(kept_counts),) mean fraction of pixels that differ for sure.
    """
    split = jax.vmap(threshold_split, in_axes=(0, 0, None))
    return jnp.stack([mean_pair_difference(split(maps, sorted_values, k)) for k in kept_counts])


@functools.partial(jax.jit, static_argnames=("kept_counts",))
def _mask_differences(maps: Array, kept_counts: tuple[int, ...]) -> Array:
    def one(image_maps: Array) -> Array:
        flat = image_maps.reshape(image_maps.shape[0], -1)
        sorted_values = -jnp.sort(jnp.where(flat == 0, jnp.zeros_like(flat), -flat), axis=-1)
        return mean_surely_different(image_maps, sorted_values, kept_counts)

    return jnp.mean(jax.vmap(one, in_axes=1)(maps), axis=0)


def choose_alpha(
    maps_by_method: Mapping[str, Any], grid: Sequence[float] = ALPHA_GRID
) -> tuple[float, dict[float, float]]:
    """Pick BAD's alpha where the black images of the methods differ the most.

    The difference of two methods at alpha is the fraction of pixels that one map
    surely keeps and the other surely drops (:func:`threshold_split`: pixels a
    tie-break chose are not a difference), averaged over images and over all pairs
    of methods. Ties go to the smallest alpha.

    Args:
      maps_by_method: at least two methods, each maps (N, H, W) of the same images,
        finite, N >= 1 (else ValueError: there would be nothing to compare).
      grid: candidate alphas in (0, 1), at least one.

    Returns:
      ``(best alpha, {alpha: mean difference})``.
    """
    if len(maps_by_method) < 2:
        raise ValueError(
            f"choose_alpha needs maps of at least 2 methods, got {len(maps_by_method)}"
        )
    shapes = {name: np.shape(m) for name, m in maps_by_method.items()}
    if len(set(shapes.values())) != 1:
        raise ValueError(f"every method's maps must have the same shape (N, H, W), got {shapes}")
    stacked = np.stack([np.asarray(m) for m in maps_by_method.values()])
    if stacked.ndim != 4:
        raise ValueError(f"maps must have shape (N, H, W) per method, got {stacked.shape[1:]}")
    if stacked[0].size == 0:
        raise ValueError(
            f"choose_alpha needs maps of at least one image and pixel, got {stacked.shape[1:]}"
        )
    check_finite_images(stacked, name="maps")
    if len(grid) == 0:
        raise ValueError("choose_alpha needs a non-empty grid of alphas")
    height, width = stacked.shape[-2:]
    alphas = [check_alpha(a) for a in grid]
    counts = tuple(kept_pixel_count(a, height, width) for a in alphas)
    differences = np.asarray(_mask_differences(jnp.asarray(stacked, jnp.float32), counts))
    return best_alpha(alphas, differences)


def best_alpha(alphas: Sequence[float], differences: Any) -> tuple[float, dict[float, float]]:
    """The alpha of the largest difference (the smallest such alpha) and the search table."""
    differences = np.asarray(differences, np.float64)
    table = {float(a): float(d) for a, d in zip(alphas, differences, strict=True)}
    return float(alphas[int(np.argmax(differences))]), table
