"""Label-free saliency metrics: Average Drop (eq. 10) and Black Average Drop (eq. 11).

Both compare the model's score for class c on the image, ``Y^c``, with its score
on a masked image, ``O^c``::

    drop = max(0, Y^c - O^c) / Y^c,   AD or BAD = mean over images of drop

* AD masks with the explanation image ``E^c = L^c o I`` (the map as opacity).
* BAD masks with the black image ``B^c``: the round(alpha*H*W) pixels with the
  highest ``L^c`` keep their raw value, every other pixel is 0 (black in the raw
  image). Ties are broken by raster order (row-major, lower index kept first), so
  every method keeps exactly the same area.

An image whose ``Y^c <= 0`` (possible with a ReLU output) has no defined ratio: it
is excluded from the mean and counted, never turned into NaN.

Per-example functions act on one image (H, W, C) and one map (H, W); the batched
score step vmaps them once inside ``jax.jit``; summaries are host-side reductions
of the per-example arrays, so batches can be concatenated first.
"""

from __future__ import annotations

import functools
import itertools
from collections.abc import Mapping, Sequence
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from jaxcam.checks import check_alpha, check_class_indices, check_finite_images, check_image_batch
from jaxcam.models.base import SplitModel

Array = jax.Array


def kept_pixel_count(alpha: float, height: int, width: int) -> int:
    """round(alpha * H * W) (Python's round: half to even), the area BAD keeps."""
    return round(check_alpha(alpha) * height * width)


def pixel_ranks(saliency: Array) -> Array:
    """Rank of each pixel of a map (H, W) in descending saliency, ties in raster order.

    Rank 0 is the most salient pixel; ranks are a permutation of 0..H*W-1.
    """
    flat = saliency.reshape(-1)
    key = jnp.where(flat == 0, 0.0, -flat)  # -0.0 and 0.0 tie
    order = jnp.argsort(key, stable=True)
    ranks = jnp.zeros(flat.shape, jnp.int32).at[order].set(jnp.arange(flat.size, dtype=jnp.int32))
    return ranks.reshape(saliency.shape)


def top_pixel_mask(saliency: Array, num_kept: int) -> Array:
    """Boolean (H, W) mask of exactly ``num_kept`` most salient pixels (eq. 11's L > eta)."""
    return pixel_ranks(saliency) < num_kept


def explanation_image(image: Array, saliency: Array) -> Array:
    """Eq. 10's explanation image ``E = L o I``: (H, W, C), map (H, W) in [0, 1]."""
    return saliency[..., None] * image


def black_image(image: Array, saliency: Array, num_kept: int) -> Array:
    """Eq. 11's ``B``: the ``num_kept`` top pixels keep their raw value, the rest are 0."""
    return jnp.where(top_pixel_mask(saliency, num_kept)[..., None], image, 0.0)


class MaskedScores(NamedTuple):
    """Per-example results of the masked-score step, each (B,)."""

    original: Array  # Y^c on the image
    explanation: Array  # O^c on E^c (AD)
    black: Array  # O^c on B^c (BAD)
    explanation_class: Array  # predicted class on E^c
    black_class: Array  # predicted class on B^c


@functools.partial(jax.jit, static_argnames=("num_kept",))
def _masked_scores_step(
    model: SplitModel, images: Array, maps: Array, class_indices: Array, num_kept: int
) -> MaskedScores:
    def one(image: Array, saliency: Array, class_index: Array) -> MaskedScores:
        stacked = jnp.stack(
            [image, explanation_image(image, saliency), black_image(image, saliency, num_kept)]
        )
        scores = jax.vmap(model.scores)(stacked)
        chosen = scores[:, class_index]
        predicted = jnp.argmax(scores, axis=-1).astype(jnp.int32)
        return MaskedScores(chosen[0], chosen[1], chosen[2], predicted[1], predicted[2])

    return jax.vmap(one)(images, maps, class_indices)


def masked_scores(
    model: SplitModel, images: Any, maps: Any, class_indices: Any, alpha: float
) -> MaskedScores:
    """Scores of class c on images, explanation images and black images.

    Args:
      model: bound split model.
      images: raw images (B, H, W, C), finite.
      maps: normalised saliency maps (B, H, W) in [0, 1].
      class_indices: explained classes c (B,).
      alpha: BAD's kept area fraction, in (0, 1).
    """
    check_image_batch(images, model.module.in_channels, model.module.min_input_size)
    check_finite_images(images)
    batch, height, width = images.shape[:3]
    if getattr(maps, "shape", None) != (batch, height, width):
        raise ValueError(
            f"maps must have shape {(batch, height, width)} to match the images, "
            f"got {getattr(maps, 'shape', None)}"
        )
    check_finite_images(maps, name="maps")
    classes = check_class_indices(class_indices, model.num_classes, batch)
    return _masked_scores_step(
        model,
        jnp.asarray(images),
        jnp.asarray(maps),
        jnp.asarray(classes),
        kept_pixel_count(alpha, height, width),
    )


class DropSummary(NamedTuple):
    """An Average-Drop-style metric over a data set."""

    value: float | None  # mean of max(0, Y-O)/Y over images with Y > 0 (eq. 10/11); None if none
    incorrect: float  # share of masked images whose predicted class != target
    increase_in_confidence: float  # share of images with O > Y
    num_images: int
    num_excluded: int  # images with Y <= 0, not in `value`


def score_drops(original: Any, masked: Any) -> tuple[np.ndarray, np.ndarray]:
    """Per-image ``max(0, Y - O) / Y`` and whether it is defined (Y > 0); 0 where not."""
    original = np.asarray(original, np.float64)
    masked = np.asarray(masked, np.float64)
    defined = original > 0
    drops = np.where(
        defined, np.maximum(0.0, original - masked) / np.where(defined, original, 1.0), 0.0
    )
    return drops, defined


def summarise_drop(original: Any, masked: Any, masked_class: Any, target: Any) -> DropSummary:
    """AD (eq. 10) / BAD (eq. 11) with Incorrect and Increase in Confidence.

    Args:
      original: Y^c per image (N,).
      masked: O^c per masked image (N,).
      masked_class: predicted class of each masked image (N,).
      target: the class a correct prediction gives (labels, or c without labels) (N,).
    """
    drops, defined = score_drops(original, masked)
    num_defined = int(defined.sum())
    return DropSummary(
        value=float(drops[defined].mean()) if num_defined else None,
        incorrect=float(np.mean(np.asarray(masked_class) != np.asarray(target))),
        increase_in_confidence=float(np.mean(np.asarray(masked) > np.asarray(original))),
        num_images=int(drops.size),
        num_excluded=int(drops.size - num_defined),
    )


def average_drop(scores: MaskedScores, target: Any) -> DropSummary:
    """Average Drop (eq. 10) from a :class:`MaskedScores`."""
    return summarise_drop(scores.original, scores.explanation, scores.explanation_class, target)


def black_average_drop(scores: MaskedScores, target: Any) -> DropSummary:
    """Black Average Drop (eq. 11) from a :class:`MaskedScores`."""
    return summarise_drop(scores.original, scores.black, scores.black_class, target)


@functools.partial(jax.jit, static_argnames=("kept_counts",))
def _mask_differences(maps: Array, kept_counts: tuple[int, ...]) -> Array:
    ranks = jax.vmap(jax.vmap(pixel_ranks))(maps)  # (methods, N, H, W)
    pairs = list(itertools.combinations(range(maps.shape[0]), 2))

    def mean_difference(num_kept: Array) -> Array:
        kept = ranks < num_kept
        per_pair = [jnp.mean(kept[a] != kept[b]) for a, b in pairs]
        return jnp.mean(jnp.stack(per_pair))

    return jax.vmap(mean_difference)(jnp.asarray(kept_counts))


def choose_alpha(
    maps_by_method: Mapping[str, Any], grid: Sequence[float] = tuple(np.arange(1, 20) / 20)
) -> tuple[float, dict[float, float]]:
    """Pick BAD's alpha where the black images of the methods differ the most.

    The difference of two methods at alpha is the fraction of pixels kept by exactly
    one of them (where their black images differ), averaged over images and over
    all pairs of methods. Ties go to the smallest alpha.

    Args:
      maps_by_method: at least two methods, each maps (N, H, W) of the same images.
      grid: candidate alphas in (0, 1).

    Returns:
      ``(best alpha, {alpha: mean difference})``.
    """
    if len(maps_by_method) < 2:
        raise ValueError(
            f"choose_alpha needs maps of at least 2 methods, got {len(maps_by_method)}"
        )
    stacked = np.stack([np.asarray(m) for m in maps_by_method.values()])
    if stacked.ndim != 4:
        raise ValueError(f"maps must have shape (N, H, W) per method, got {stacked.shape[1:]}")
    height, width = stacked.shape[-2:]
    alphas = [check_alpha(a) for a in grid]
    counts = tuple(kept_pixel_count(a, height, width) for a in alphas)
    differences = np.asarray(_mask_differences(jnp.asarray(stacked), counts))
    table = {a: float(d) for a, d in zip(alphas, differences, strict=True)}
    best = alphas[int(np.argmax(differences))]
    return best, table
