"""The drop statistics of AD and BAD: per-image terms, mergeable sums, summaries.

Both metrics compare the model's score for class c on the image, ``Y^c``, with its
score on a masked image, ``O^c``::

    drop = max(0, Y^c - O^c) / Y^c,   AD or BAD = mean over images of drop

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

Statistics are accumulated as sums (:class:`DropSums`) so that batches, devices and
classes add up (:data:`DROP_REDUCTION`: empty, add, merge, summary); summaries are
computed from the sums on the host (:func:`summarise`).
"""

from __future__ import annotations

import math
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

Array = jax.Array

#: Histogram of log2(O / Y) for the median: bins of 1/32 octave over [-16, 16), plus
#: an underflow bin (O / Y < 2^-16, O <= 0 included) and an overflow bin.
RATIO_BINS_PER_OCTAVE = 32
RATIO_OCTAVES = 16
NUM_RATIO_BINS = 2 * RATIO_OCTAVES * RATIO_BINS_PER_OCTAVE + 2


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


#: A running sum: a ``jax.Array`` inside a step (:func:`add_drops`), a ``np.ndarray`` once
#: on the host (:meth:`DropReduction.summary`).
Sum = Any


class DropSums(NamedTuple):
    """Sums over images of a drop metric; leading axes are the caller's (e.g. method, class)."""

    images: Sum  # images counted (int32)
    defined: Sum  # images whose ratio is defined (int32)
    nonfinite: Sum  # images whose Y or O is NaN or inf (int32; not defined)
    drop: Sum  # sum of drops (float32)
    change: Sum  # sum of (O - Y) / Y (float32)
    increased: Sum  # images with O > Y (int32)
    incorrect: Sum  # masked images predicted != target (int32)
    ratio_histogram: Sum  # (..., NUM_RATIO_BINS) counts of log2(O / Y) bins (int32)


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


class DropReduction:
    """How a drop metric's per-image (Y, O, incorrect) become sums and a summary.

    The empty / add / merge / summary pattern of CLU's ``Metric``: :meth:`empty` and
    :meth:`add` run on the device inside the jitted step, :meth:`merge` adds sums of
    two shards or runs, :meth:`summary` runs on the host.
    """

    def empty(self, shape: tuple[int, ...], histogram_groups: int | None = None) -> DropSums:
        """Zero sums with leading axes ``shape`` (..., G); see :func:`zero_sums`."""
        return zero_sums(shape, histogram_groups)

    def add(
        self,
        sums: DropSums,
        original: Array,
        masked: Array,
        incorrect: Array,
        weights: Array,
        group: Array,
    ) -> DropSums:
        """One batch added; see :func:`add_drops` for the shapes."""
        return add_drops(sums, original, masked, incorrect, weights, group)

    def merge(self, first: DropSums, second: DropSums) -> DropSums:
        """Sums of two disjoint sets of images (same shapes)."""
        return DropSums(
            *(np.asarray(a) + np.asarray(b) for a, b in zip(first, second, strict=True))
        )

    def summary(self, sums: DropSums, group: int | None = None) -> DropSummary:
        """The :class:`DropSummary` of sums whose one leading axis is the group (class).

        ``group=None``: over every group; else that group's (its median is ``None``
        where the O/Y histogram was pooled over the groups).
        """
        if group is None:
            return summarise(sum_over(sums, 0))
        histogram = np.asarray(sums.ratio_histogram)
        groups = np.asarray(sums.images).shape[0]
        if histogram.shape[0] != groups:  # pooled over groups: no per-group median
            sums = sums._replace(
                ratio_histogram=np.zeros((groups, histogram.shape[-1]), histogram.dtype)
            )
        return summarise(take(sums, group, 0))


#: The reduction of AD, BAD and every metric that reports a drop max(0, Y - O) / Y.
DROP_REDUCTION = DropReduction()
