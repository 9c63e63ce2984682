"""The evaluation step: one batch in, running sums out, all on the device.

1. one forward pass gives the feature map A and the scores Y;
2. every explainer's map comes from that A (upsampled, normalised), reference maps
   from batch fields;
3. one tie order per image (:func:`jaxcam.metrics.tie_priority`) ranks every map: at
   one alpha an exact top-k selection without a sort (:mod:`jaxcam.metrics.selection`),
   at several one sort shared by all;
4. every metric's perturbed images - one per map, or one per map and alpha for a
   metric scored per alpha (BAD) - go through the model in one batched call
   (``jax.lax.map`` over chunks, so memory is bounded);
5. each metric's reduction adds the per-image scores into its sums per method, true
   class and alpha; padded rows and images with NaN/inf pixels weigh 0.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Mapping
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp

from jaxcam.metrics import (
    get_metric,
    kept_pixel_count,
    mean_pair_difference,
    perturbation_key,
    rank_pixels,
    threshold_split,
    tie_priority,
)
from jaxcam.metrics.ranking import ThresholdSplit
from jaxcam.metrics.selection import (
    enabled,
    select_top,
    selection_applies,
    selection_ranks,
    selection_split,
    sorted_descending,
)
from jaxcam.models.outputs import apply_output
from jaxcam.models.protocol import Explainable
from jaxcam.saliency.maps import explain_feature_map, for_image, normalise
from jaxcam.saliency.registry import example_method

Array = jax.Array


@dataclasses.dataclass(frozen=True)
class ReferenceMap:
    """A map that does not come from the model, e.g. built from a lesion mask.

    ``fn(example, key) -> (H, W)``: ``example`` holds one image's arrays from the batch
    (``image``, ``mask``...), ``key`` a PRNG key unique to the image. Reference rows are
    scored like methods but never enter the choice of alpha.
    """

    fn: Callable[[Mapping[str, Array], Array], Array]
    needs: tuple[str, ...] = ("mask",)


Explainer = tuple[str, Mapping[str, Any]] | ReferenceMap
#: An explainer in a (hashable) :class:`StepConfig`: its options as sorted (name, value) pairs.
StepExplainer = tuple[str, tuple[tuple[str, Any], ...]] | ReferenceMap


def reference_key(tie_seed: int, index: Array) -> Array:
    """The PRNG key a :class:`ReferenceMap` gets for the image at data set ``index``."""
    return jax.random.fold_in(jax.random.key(tie_seed + 1), index)


class EvaluationSums(NamedTuple):
    """Running sums of an evaluation (a pytree of arrays; M explainers, C classes, J alphas)."""

    metrics: dict[str, Any]  # metric -> its reduction's sums, (M, J or 1, C) leading axes
    tie_decided: Array  # (M, J, C) sum over images of the share of kept pixels ties chose
    empty_maps: Array  # (M, C) maps that are 0 everywhere
    differences: Array  # (J,) sum over images of the mean surely-different fraction
    images: Array  # (C,) images counted
    correct: Array  # (C,) images whose predicted class is the label
    nonfinite_images: Array  # () images skipped for NaN/inf pixels
    first_nonfinite: Array  # () smallest data set index of such an image, or -1
    pixel_min: Array  # () smallest finite pixel value seen
    pixel_max: Array  # () largest finite pixel value seen


#: Above this many classes the O/Y histogram (for the median) is pooled over classes.
HISTOGRAM_MAX_CLASSES = 32


@dataclasses.dataclass(frozen=True)
class StepConfig:
    """What one evaluation step computes (static: one compile per config and shape)."""

    explainers: tuple[StepExplainer, ...]
    alphas: tuple[float, ...]  # the alphas of per-alpha metrics (k = round(alpha * H * W))
    score_masks: bool  # False: maps and differences only (first pass of the alpha search)
    search: bool  # accumulate the mask differences between methods
    ties: str
    tie_seed: int
    use_predicted: bool
    num_classes: int
    masked_chunk: int  # masked images per forward call
    metrics: tuple[str, ...] = ("average_drop", "black_average_drop")
    restrict_to: str | None = None  # a boolean batch field: only its True rows are counted

    def kept_counts(self, height: int, width: int) -> tuple[int, ...]:
        return tuple(kept_pixel_count(a, height, width) for a in self.alphas)

    def slots(self, metric: str) -> int:
        """Masked images per map of ``metric``: one per alpha, or one."""
        return len(self.alphas) if get_metric(metric).per_alpha else 1

    def batch_fields(self) -> tuple[str, ...]:
        """Extra batch arrays the reference maps and the metrics read."""
        names = {n for e in self.explainers if isinstance(e, ReferenceMap) for n in e.needs}
        names |= {n for m in self.metrics for n in get_metric(m).needs}
        if self.restrict_to is not None:
            names.add(self.restrict_to)
        return tuple(sorted(names))


def zero_evaluation_sums(config: StepConfig) -> EvaluationSums:
    """Empty sums for ``config``."""
    methods, classes, alphas = len(config.explainers), config.num_classes, len(config.alphas)
    count = jnp.zeros((classes,), jnp.int32)
    histogram_groups = classes if classes <= HISTOGRAM_MAX_CLASSES else 1
    return EvaluationSums(
        metrics={
            name: get_metric(name).reduction.empty(
                (methods, config.slots(name), classes), histogram_groups
            )
            for name in config.metrics
        },
        tie_decided=jnp.zeros((methods, alphas, classes), jnp.float32),
        empty_maps=jnp.zeros((methods, classes), jnp.int32),
        differences=jnp.zeros((alphas,), jnp.float32),
        images=count,
        correct=count,
        nonfinite_images=jnp.zeros((), jnp.int32),
        first_nonfinite=jnp.full((), -1, jnp.int32),
        pixel_min=jnp.full((), jnp.inf, jnp.float32),
        pixel_max=jnp.full((), -jnp.inf, jnp.float32),
    )


def _explain(
    config: StepConfig,
    model: Explainable,
    batch: Mapping[str, Array],
    feature_maps: Array,
    classes: Array,
) -> Array:
    """Normalised maps (M, B, H, W) of every explainer."""
    size = batch["image"].shape[1:3]
    maps = []
    for explainer in config.explainers:
        if isinstance(explainer, ReferenceMap):
            example = {name: batch[name] for name in ("image", *explainer.needs)}
            keys = jax.vmap(lambda i: reference_key(config.tie_seed, i))(batch["index"])
            raw = jax.vmap(explainer.fn)(example, keys)
            maps.append(jax.vmap(normalise)(raw.astype(jnp.float32)))
        else:
            name, options = explainer

            def one(image, feature_map, class_index, name=name, options=options):
                # The image: for methods that take it (Score-CAM) and layer splits.
                method = example_method(name, options, image)
                return explain_feature_map(
                    for_image(model, image), feature_map, class_index, method, size
                )

            maps.append(jax.vmap(one)(batch["image"], feature_maps, classes))
    return jnp.stack(maps)


def evaluation_step(
    config: StepConfig, model: Explainable, sums: EvaluationSums, batch: Mapping[str, Array]
) -> EvaluationSums:
    """Add one batch to the sums. ``batch``: image (B,H,W,C), label, index (B,), valid (B,)."""
    images, labels = batch["image"], batch["label"]
    finite = jnp.all(jnp.isfinite(images), axis=(1, 2, 3))
    images = jnp.where(finite[:, None, None, None], images, jnp.zeros_like(images))
    batch = {**batch, "image": images}
    counted_rows = batch["valid"] & finite
    if config.restrict_to is not None:  # e.g. lesion-reliant images only
        counted_rows = counted_rows & batch[config.restrict_to].astype(bool)
    weights = counted_rows.astype(jnp.int32)
    one_hot = jax.nn.one_hot(labels, config.num_classes, dtype=jnp.int32) * weights[:, None]

    feature_maps = jax.vmap(model.features)(images)
    # Each image's own split (a layer split takes the network's other paths from it).
    logits = jax.vmap(lambda image, a: for_image(model, image).logits(a))(images, feature_maps)
    scores = apply_output(logits, model.output)
    predicted = jnp.argmax(scores, axis=-1).astype(jnp.int32)
    classes = predicted if config.use_predicted else labels
    original = jnp.take_along_axis(scores, classes[:, None], axis=-1)[:, 0]

    maps = _explain(config, model, batch, feature_maps, classes)  # (M, B, H, W)
    num_methods, batch_size, height, width = maps.shape
    priority = jax.vmap(lambda i: tie_priority(config.ties, config.tie_seed, i, (height, width)))(
        batch["index"]
    )
    kept_counts = config.kept_counts(height, width)
    ranks, splits = _rank_and_split(config, maps, priority, kept_counts)

    ties, differences = [], []
    searched = [i for i, e in enumerate(config.explainers) if not isinstance(e, ReferenceMap)]
    for k, split in zip(kept_counts, splits, strict=True):
        ties.append(split.tie_decided.astype(jnp.float32) / max(k, 1))  # (M, B)
        if config.search:
            methods_split = jax.tree.map(lambda x: x[jnp.asarray(searched)], split)
            differences.append(jax.vmap(mean_pair_difference, in_axes=1)(methods_split))  # (B,)
    tie_decided = jnp.einsum("jmb,bc->mjc", jnp.stack(ties), one_hot.astype(jnp.float32))
    difference_sums = (
        jnp.stack(differences) @ weights.astype(jnp.float32)
        if config.search
        else jnp.zeros((len(kept_counts),), jnp.float32)
    )

    metric_sums = sums.metrics
    if config.score_masks:
        assert ranks is not None  # _rank_and_split ranks whenever masks are scored
        masked, masked_class = _masked_scores(
            config, model, batch, maps, ranks, classes, kept_counts
        )
        metric_sums, start = {}, 0
        for name in config.metrics:
            stop = start + config.slots(name)
            metric_sums[name] = get_metric(name).reduction.add(
                sums.metrics[name],
                original,
                masked[:, start:stop],
                masked_class[:, start:stop] != labels,
                weights,
                labels,
            )
            start = stop

    counted = weights[:, None, None, None] > 0
    bad_index = jnp.where(batch["valid"] & ~finite, batch["index"], jnp.iinfo(jnp.int32).max)
    first_bad = jnp.min(bad_index)
    return EvaluationSums(
        metrics=metric_sums,
        tie_decided=sums.tie_decided + tie_decided,
        empty_maps=sums.empty_maps
        + jnp.einsum("mb,bc->mc", (jnp.max(maps, axis=(2, 3)) == 0).astype(jnp.int32), one_hot),
        differences=sums.differences + difference_sums,
        images=sums.images + jnp.sum(one_hot, axis=0),
        correct=sums.correct
        + jnp.sum(one_hot * (predicted == labels).astype(jnp.int32)[:, None], axis=0),
        nonfinite_images=sums.nonfinite_images + jnp.sum(batch["valid"] & ~finite, dtype=jnp.int32),
        first_nonfinite=jnp.where(
            (sums.first_nonfinite < 0) & (first_bad < jnp.iinfo(jnp.int32).max),
            first_bad,
            sums.first_nonfinite,
        ),
        pixel_min=jnp.minimum(
            sums.pixel_min, jnp.min(jnp.where(counted, images, jnp.inf)).astype(jnp.float32)
        ),
        pixel_max=jnp.maximum(
            sums.pixel_max, jnp.max(jnp.where(counted, images, -jnp.inf)).astype(jnp.float32)
        ),
    )


def _rank_and_split(
    config: StepConfig, maps: Array, priority: Array, kept_counts: tuple[int, ...]
) -> tuple[Array | None, list[ThresholdSplit]]:
    """Ranks (M, B, H, W) for the perturbations (None when no metric is scored) and the
    :func:`threshold_split` of every k (masks (M, B, H, W), counts (M, B)).

    One k, with no metric that reads full ranks: an exact top-k selection, no sort
    (:mod:`jaxcam.metrics.selection`). Several k share one sort: of the values alone when
    no metric is scored (the alpha search), else the full ranking.
    """
    num_methods, batch_size, height, width = maps.shape
    scored = config.score_masks
    full_ranks = [get_metric(n).needs_full_ranks for n in config.metrics] if scored else []
    if selection_applies(len(kept_counts), full_ranks):
        (k,) = kept_counts
        flat = maps.reshape(num_methods, batch_size, height * width)  # priority: (B, H*W)
        selection = select_top(flat, priority, k)
        ranks = selection_ranks(selection.kept.reshape(maps.shape)) if scored else None
        return ranks, [selection_split(maps, selection, k)]
    split_each = jax.vmap(jax.vmap(threshold_split, in_axes=(0, 0, None)), in_axes=(0, 0, None))
    if not scored and enabled():
        sorted_values = sorted_descending(maps.reshape(num_methods, batch_size, height * width))
        return None, [split_each(maps, sorted_values, k) for k in kept_counts]
    rankings = jax.vmap(jax.vmap(rank_pixels), in_axes=(0, None))(maps, priority)
    ranks = rankings.ranks if scored else None
    return ranks, [split_each(maps, rankings.sorted_values, k) for k in kept_counts]


def _masked_scores(
    config: StepConfig,
    model: Explainable,
    batch: Mapping[str, Array],
    maps: Array,
    ranks: Array,
    classes: Array,
    kept_counts: tuple[int, ...],
) -> tuple[Array, Array]:
    """O^c and the predicted class of every perturbed image: (M, S, B) each.

    Slot s of method m is one metric's perturbed image (metrics in ``config.metrics``
    order; a per-alpha metric takes one slot per alpha). Each metric's items (m, s) are
    run through the model in chunks of ``masked_chunk`` images (``jax.lax.map``), one map
    per metric, so an item computes only its own metric's perturbation (under ``vmap`` a
    ``lax.switch`` between metrics would compute every metric's, an expensive imputer's
    too, for every item).
    """
    images = batch["image"]
    num_methods, batch_size = maps.shape[:2]
    chunk = max(1, config.masked_chunk // batch_size)
    keys = jax.vmap(lambda i: perturbation_key(config.tie_seed, i))(batch["index"])
    chosen_by_metric, predicted_by_metric = [], []
    for name in config.metrics:
        metric = get_metric(name)
        counts = jnp.asarray(kept_counts if metric.per_alpha else (0,), jnp.int32)
        slots = counts.shape[0]
        fields = {field: batch[field] for field in metric.needs}

        def score(item: Array, metric: Any = metric, counts: Array = counts, slots: int = slots,
                  fields: Mapping[str, Array] = fields) -> tuple[Array, Array]:  # fmt: skip
            method, slot = item // slots, item % slots
            masked_images = jax.vmap(metric.perturb, in_axes=(0, 0, 0, None, 0, 0))(
                images, maps[method], ranks[method], counts[slot], fields, keys
            )
            out = jax.vmap(model.scores)(masked_images)
            chosen = jnp.take_along_axis(out, classes[:, None], axis=-1)[:, 0]
            return chosen, jnp.argmax(out, axis=-1).astype(jnp.int32)

        items = jnp.arange(num_methods * slots, dtype=jnp.int32)
        chosen, predicted = jax.lax.map(score, items, batch_size=min(chunk, items.shape[0]))
        chosen_by_metric.append(chosen.reshape(num_methods, slots, batch_size))
        predicted_by_metric.append(predicted.reshape(num_methods, slots, batch_size))
    return jnp.concatenate(chosen_by_metric, axis=1), jnp.concatenate(predicted_by_metric, axis=1)
