"""The per-batch API: registered metrics' scores for one batch of in-memory maps.

The data-set engine (:mod:`jaxcam.evaluation`) streams, sums and shards; this is the
same per-image kernel (tie order, ranking, each metric's perturbation, one forward)
for a batch the caller already holds, returning per-image scores.
"""

from __future__ import annotations

import functools
from collections.abc import Mapping, Sequence
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from jaxcam.checks import (
    check_class_indices,
    check_finite_images,
    check_image_batch,
    check_integer,
)
from jaxcam.metrics.drops import DropSummary, summarise_drop
from jaxcam.metrics.ranking import (
    DEFAULT_TIES,
    check_ties,
    kept_pixel_count,
    rank_pixels,
    tie_priority,
)
from jaxcam.metrics.registry import check_metrics, get_metric, perturbation_key
from jaxcam.metrics.selection import (
    has_ascending_key,
    selection_applies,
    selection_ranks,
    top_pixel_masks,
)
from jaxcam.models.protocol import Explainable, check_bound_model

Array = jax.Array


def perturbed_images(
    metrics: Sequence[str],
    image: Array,
    saliency: Array,
    ranks: Array,
    num_kept: Any,
    fields: Mapping[str, Array],
    key: Array,
) -> Array:
    """Each metric's perturbed image of one image (H, W, C): (len(metrics), H, W, C)."""
    return jnp.stack(
        [get_metric(n).perturb(image, saliency, ranks, num_kept, fields, key) for n in metrics]
    )


class MetricScores(NamedTuple):
    """Per-image scores of :func:`metric_scores`."""

    original: Array  # (B,) Y^c on the image
    masked: Array  # (Q, B) O^c on each metric's perturbed image
    masked_class: Array  # (Q, B) predicted class of each perturbed image


@functools.partial(
    jax.jit, static_argnames=("metrics", "num_kept", "ties", "tie_seed", "selection")
)
def _metric_scores_step(
    model: Explainable,
    images: Array,
    maps: Array,
    class_indices: Array,
    indices: Array,
    fields: Mapping[str, Array],
    metrics: tuple[str, ...],
    num_kept: int,
    ties: str,
    tie_seed: int,
    selection: bool,
) -> MetricScores:
    shape = (images.shape[1], images.shape[2])
    priority = jax.vmap(lambda i: tie_priority(ties, tie_seed, i, shape))(indices)
    if selection:  # one cut: the kept pixels without a full sort
        all_ranks = selection_ranks(top_pixel_masks(maps, priority, num_kept))
    else:
        all_ranks = jax.vmap(rank_pixels)(maps, priority).ranks

    def one(
        image: Array,
        saliency: Array,
        ranks: Array,
        class_index: Array,
        index: Array,
        example: Mapping,
    ) -> tuple[Array, Array, Array]:
        key = perturbation_key(tie_seed, index)
        perturbed = perturbed_images(metrics, image, saliency, ranks, num_kept, example, key)
        scores = jax.vmap(model.scores)(jnp.concatenate([image[None], perturbed]))
        chosen = scores[:, class_index]
        predicted = jnp.argmax(scores, axis=-1).astype(jnp.int32)
        return chosen[0], chosen[1:], predicted[1:]

    original, masked, predicted = jax.vmap(one)(
        images, maps, all_ranks, class_indices, indices, fields
    )
    return MetricScores(original, masked.T, predicted.T)


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


def metric_scores(
    model: Explainable,
    images: Any,
    maps: Any,
    class_indices: Any,
    alpha: float,
    metrics: Sequence[str] = ("average_drop", "black_average_drop"),
    *,
    ties: str = DEFAULT_TIES,
    tie_seed: int = 0,
    indices: Any = None,
    fields: Mapping[str, Any] | None = None,
) -> MetricScores:
    """Scores of class c on images and on every metric's perturbed images (one batch).

    Args:
      model: bound split model.
      images: raw images (B, H, W, C), finite.
      maps: normalised saliency maps (B, H, W) in [0, 1].
      class_indices: explained classes c (B,).
      alpha: kept area fraction of the metrics scored per alpha (BAD), in (0, 1).
      metrics: registered metric names (:func:`jaxcam.metrics.metric_names`).
      ties: ``smooth`` (default), ``random`` or ``raster`` (:mod:`jaxcam.metrics.ranking`).
      tie_seed: seed of the random tie order (and of the perturbations' keys).
      indices: each image's index in the data set (B,), which seeds its tie order;
        default 0..B-1.
      fields: extra per-image arrays (B, ...) the metrics need (``Metric.needs``).
    """
    check_bound_model(model)
    metrics = check_metrics(metrics)
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
    fields = dict(fields or {})
    needed = sorted({n for m in metrics for n in get_metric(m).needs})
    missing = [n for n in needed if n not in fields]
    if missing:
        raise ValueError(f"metrics {list(metrics)} need the per-image arrays {missing}")
    maps = jnp.asarray(maps)
    full_ranks = [get_metric(m).needs_full_ranks for m in metrics]
    return _metric_scores_step(
        model,
        jnp.asarray(images),
        maps,
        jnp.asarray(classes),
        jnp.asarray(indices, jnp.int32),
        {n: jnp.asarray(fields[n]) for n in needed},
        metrics,
        kept_pixel_count(alpha, height, width),
        ties,
        tie_seed,
        selection_applies(1, full_ranks) and has_ascending_key(maps.dtype),
    )


class MaskedScores(NamedTuple):
    """Per-example results of :func:`masked_scores`, each (B,)."""

    original: Array  # Y^c on the image
    explanation: Array  # O^c on E^c (AD)
    black: Array  # O^c on B^c (BAD)
    explanation_class: Array  # predicted class on E^c
    black_class: Array  # predicted class on B^c


def masked_scores(
    model: Explainable,
    images: Any,
    maps: Any,
    class_indices: Any,
    alpha: float,
    *,
    ties: str = DEFAULT_TIES,
    tie_seed: int = 0,
    indices: Any = None,
) -> MaskedScores:
    """Scores of class c on images, explanation images (AD) and black images (BAD).

    :func:`metric_scores` for the paper's two metrics; arguments as there.
    """
    scores = metric_scores(
        model,
        images,
        maps,
        class_indices,
        alpha,
        ("average_drop", "black_average_drop"),
        ties=ties,
        tie_seed=tie_seed,
        indices=indices,
    )
    return MaskedScores(
        scores.original,
        scores.masked[0],
        scores.masked[1],
        scores.masked_class[0],
        scores.masked_class[1],
    )


def average_drop(scores: MaskedScores, target: Any) -> DropSummary:
    """Average Drop (eq. 10) from a :class:`MaskedScores`; ``target`` (B,) as in
    :func:`jaxcam.metrics.summarise_drop`."""
    return summarise_drop(scores.original, scores.explanation, scores.explanation_class, target)


def black_average_drop(scores: MaskedScores, target: Any) -> DropSummary:
    """Black Average Drop (eq. 11) from a :class:`MaskedScores`; ``target`` (B,) as in
    :func:`jaxcam.metrics.summarise_drop`."""
    return summarise_drop(scores.original, scores.black, scores.black_class, target)
