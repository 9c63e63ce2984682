"""Evaluating saliency methods on a data set: Table 1, the alpha curve, per-class rows.

One jitted step per batch does all the work on the device:

1. one forward pass gives the feature map A and the scores Y;
2. every method's map comes from that A (upsampled, normalised);
3. one tie order per image (:func:`jaxcam.metrics.tie_priority`) ranks every map;
4. all masked images - the explanation image (AD) and the black image at every alpha
   (BAD) of every method - go through the model in one batched call
   (``jax.lax.map`` over chunks, so memory is bounded);
5. per-image terms are reduced into running sums per method, true class and alpha
   (:class:`EvaluationSums`); padded rows and images with NaN/inf pixels weigh 0.

The host streams fixed-size batches (arrays, or any iterable of batch dicts such as
a grain loader) to the device, keeps at most two steps in flight, and gets back
only the sums. The batch axis is sharded over all local devices
(``jax.sharding``); see the README for several hosts.

alpha: with ``curve=True`` (default) every alpha of the grid is scored in the same
pass, and alpha is chosen afterwards from the streamed mask differences (label-free:
only the maps enter the choice), so one pass gives the headline and the curve.
With ``curve=False`` and no alpha, a first pass computes only the maps and their
differences, a second the metrics at the chosen alpha.
"""

from __future__ import annotations

import dataclasses
import functools
import sys
import time
import warnings
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
from jax.sharding import Mesh, NamedSharding, PartitionSpec

from jaxcam.checks import (
    check_alpha,
    check_bound_model,
    check_class_indices,
    check_image_batch,
    check_integer,
)
from jaxcam.metrics import (
    ALPHA_GRID,
    DEFAULT_TIES,
    DropSummary,
    DropSums,
    add_drops,
    best_alpha,
    check_ties,
    explanation_image,
    kept_pixel_count,
    mean_pair_difference,
    rank_pixels,
    sum_over,
    summarise,
    take,
    threshold_split,
    tie_priority,
    zero_sums,
)
from jaxcam.models.base import SplitModel, apply_output
from jaxcam.saliency.maps import (
    example_method,
    explain_feature_map,
    for_image,
    get_saliency_method,
    normalise,
    saliency_maps,
)

Array = jax.Array
Batch = Mapping[str, np.ndarray]

# Table 1's rows: display name -> (registered method, options).
PAPER_METHODS: dict[str, tuple[str, dict[str, Any]]] = {
    "CAM": ("cam", {}),
    "Grad-CAM": ("grad_cam", {}),
    "Grad-CAM++": ("grad_cam_plus_plus", {"derivatives": "closed_form"}),
}

# The other registered methods (issue 11), as rows: display name -> (method, options).
# Cost per image: README "Saliency methods and their cost".
MORE_METHODS: dict[str, tuple[str, dict[str, Any]]] = {
    "HiResCAM": ("hires_cam", {}),
    "XGrad-CAM": ("xgrad_cam", {}),
    "LayerCAM": ("layer_cam", {}),
    "Score-CAM": ("score_cam", {}),
    "Ablation-CAM": ("ablation_cam", {}),
    "Eigen-CAM": ("eigen_cam", {}),
}


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


def reference_key(tie_seed: int, index: Array) -> Array:
    """The PRNG key a :class:`ReferenceMap` gets for the image at data set ``index``."""
    return jax.random.fold_in(jax.random.key(tie_seed + 1), index)


# ----------------------------------------------------------------------------
# The step.


class EvaluationSums(NamedTuple):
    """Running sums of an evaluation (a pytree of arrays; M methods, C classes, J alphas)."""

    drops: DropSums  # (M, 1 + J, C): index 0 the explanation image (AD), then BAD per alpha
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


def zero_evaluation_sums(methods: int, classes: int, alphas: int) -> EvaluationSums:
    count = jnp.zeros((classes,), jnp.int32)
    histogram_groups = classes if classes <= HISTOGRAM_MAX_CLASSES else 1
    return EvaluationSums(
        drops=zero_sums((methods, 1 + alphas, classes), histogram_groups),
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


@dataclasses.dataclass(frozen=True)
class StepConfig:
    """What one evaluation step computes (static: one compile per config and shape)."""

    explainers: tuple[Explainer, ...]
    alphas: tuple[float, ...]  # BAD's alphas (k = round(alpha * H * W) each)
    score_masks: bool  # False: maps and differences only (first pass of the alpha search)
    search: bool  # accumulate the mask differences between methods
    ties: str
    tie_seed: int
    use_predicted: bool
    num_classes: int
    masked_chunk: int  # masked images per forward call

    def kept_counts(self, height: int, width: int) -> tuple[int, ...]:
        return tuple(kept_pixel_count(a, height, width) for a in self.alphas)


def _explain(
    config: StepConfig,
    model: SplitModel,
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
    config: StepConfig, model: SplitModel, sums: EvaluationSums, batch: Mapping[str, Array]
) -> EvaluationSums:
    """Add one batch to the sums. ``batch``: image (B,H,W,C), label, index (B,), valid (B,)."""
    images, labels = batch["image"], batch["label"]
    finite = jnp.all(jnp.isfinite(images), axis=(1, 2, 3))
    images = jnp.where(finite[:, None, None, None], images, jnp.zeros_like(images))
    batch = {**batch, "image": images}
    weights = (batch["valid"] & finite).astype(jnp.int32)
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
    rankings = jax.vmap(jax.vmap(rank_pixels), in_axes=(0, None))(maps, priority)
    kept_counts = config.kept_counts(height, width)

    ties, differences = [], []
    searched = [i for i, e in enumerate(config.explainers) if not isinstance(e, ReferenceMap)]
    for k in kept_counts:
        split = jax.vmap(jax.vmap(threshold_split, in_axes=(0, 0, None)), in_axes=(0, 0, None))(
            maps, rankings.sorted_values, k
        )
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

    drops = sums.drops
    if config.score_masks:
        masked, masked_class = _masked_scores(
            config, model, images, maps, rankings.ranks, classes, kept_counts
        )
        drops = add_drops(drops, original, masked, masked_class != labels, weights, labels)

    counted = weights[:, None, None, None] > 0
    bad_index = jnp.where(batch["valid"] & ~finite, batch["index"], jnp.iinfo(jnp.int32).max)
    first_bad = jnp.min(bad_index)
    return EvaluationSums(
        drops=drops,
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


def _masked_scores(
    config: StepConfig,
    model: SplitModel,
    images: Array,
    maps: Array,
    ranks: Array,
    classes: Array,
    kept_counts: tuple[int, ...],
) -> tuple[Array, Array]:
    """O^c and the predicted class of every masked image: (M, 1 + J, B) each.

    Item (m, 0) is method m's explanation image, item (m, j + 1) its black image at
    the j-th alpha; items are run through the model in chunks of ``masked_chunk``
    images (``jax.lax.map``).
    """
    num_methods, batch_size = maps.shape[:2]
    per_method = 1 + len(kept_counts)
    counts = jnp.asarray((0, *kept_counts), jnp.int32)

    def score(item: Array) -> tuple[Array, Array]:
        method, mask = item // per_method, item % per_method
        saliency, rank = maps[method], ranks[method]
        black = jnp.where((rank < counts[mask])[..., None], images, jnp.zeros_like(images))
        explained = jax.vmap(explanation_image)(images, saliency)
        masked_images = jnp.where(mask == 0, explained, black)
        out = jax.vmap(model.scores)(masked_images)
        chosen = jnp.take_along_axis(out, classes[:, None], axis=-1)[:, 0]
        return chosen, jnp.argmax(out, axis=-1).astype(jnp.int32)

    items = jnp.arange(num_methods * per_method, dtype=jnp.int32)
    chunk = max(1, config.masked_chunk // batch_size)
    chosen, predicted = jax.lax.map(score, items, batch_size=min(chunk, items.shape[0]))
    shape = (num_methods, per_method, batch_size)
    return chosen.reshape(shape), predicted.reshape(shape)


# ----------------------------------------------------------------------------
# Streaming over a data set.


def _batch_keys(explainers: Sequence[Explainer]) -> tuple[str, ...]:
    extra = {name for e in explainers if isinstance(e, ReferenceMap) for name in e.needs}
    return ("image", "label", *sorted(extra))


def fixed_size_batches(
    data: Iterable[Batch], batch_size: int, keys: Sequence[str]
) -> Iterator[tuple[dict[str, np.ndarray], int]]:
    """Re-chunk batches of any size into ``(batch, count)`` of exactly ``batch_size`` rows.

    The last batch is padded with zeros; ``count`` rows are real. Holds at most one
    batch plus one incoming batch on the host.
    """
    pending: dict[str, list[np.ndarray]] = {k: [] for k in keys}
    pending_rows = 0
    for incoming in data:
        missing = [k for k in keys if k not in incoming]
        if missing:
            raise ValueError(f"each batch must hold {list(keys)}; missing {missing}")
        rows = len(incoming["label"])
        for k in keys:
            if len(incoming[k]) != rows:
                raise ValueError(
                    f"batch arrays must have the same length: {k!r} has {len(incoming[k])}, "
                    f"'label' has {rows}"
                )
            pending[k].append(np.asarray(incoming[k]))
        pending_rows += rows
        while pending_rows >= batch_size:
            joined = {k: np.concatenate(v) for k, v in pending.items()}
            yield {k: v[:batch_size] for k, v in joined.items()}, batch_size
            pending = {k: [v[batch_size:]] for k, v in joined.items()}
            pending_rows -= batch_size
    if pending_rows:
        joined = {k: np.concatenate(v) for k, v in pending.items()}
        padded = {
            k: np.concatenate([v, np.zeros((batch_size - pending_rows, *v.shape[1:]), v.dtype)])
            for k, v in joined.items()
        }
        yield padded, pending_rows


def array_batches(arrays: Mapping[str, Any], batch_size: int) -> Iterator[Batch]:
    """Slices of in-memory arrays {"image": (N, ...), "label": (N,), ...} (views, no copies)."""
    total = len(arrays["label"])
    for start in range(0, total, batch_size):
        yield {k: v[start : start + batch_size] for k, v in arrays.items()}


class Progress:
    """Prints images done and images per second to stderr, at most every ``every`` seconds."""

    def __init__(self, every: float = 5.0, stream: Any = sys.stderr):
        self.every, self.stream = every, stream
        self.start = self.last = time.perf_counter()
        self.shown = -1

    def __call__(self, done: int, final: bool = False) -> None:
        now = time.perf_counter()
        if (final and done != self.shown) or now - self.last >= self.every:
            self.shown = done
            rate = done / max(now - self.start, 1e-9)
            print(f"  evaluated {done:,} images, {rate:,.0f} img/s", file=self.stream, flush=True)
            self.last = now


def data_set_indices(start: int, count: int) -> np.ndarray:
    """Data set indices (int32) of this process's rows ``start .. start + count - 1``.

    With several processes (hosts), each streams its own part of the data: local row
    ``i`` of process ``p`` out of ``P`` is data set index ``i * P + p``, so every image
    has its own tie order. With one process the index is the row.
    """
    local = np.arange(start, start + count, dtype=np.int64)
    return (local * jax.process_count() + jax.process_index()).astype(np.int32)


class Engine:
    """Runs :func:`evaluation_step` over batches, sharded over the local devices.

    One compiled step per image shape: batches are re-chunked to ``batch_size`` (a
    multiple of the device count), the last one padded.
    """

    def __init__(self, config: StepConfig, batch_size: int, devices: Sequence[Any] | None = None):
        if int(batch_size) != batch_size or batch_size < 1:
            raise ValueError(f"batch_size must be an integer >= 1, got {batch_size!r}")
        self.config = config
        devices = list(devices if devices is not None else jax.devices())
        self.mesh = Mesh(np.asarray(devices), ("data",))
        local = max(1, len(devices) // jax.process_count())
        self.batch_size = -(-int(batch_size) // local) * local  # rows per process
        self.data_sharding = NamedSharding(self.mesh, PartitionSpec("data"))
        self.replicated = NamedSharding(self.mesh, PartitionSpec())
        self.traces = 0

        def step(model: SplitModel, sums: EvaluationSums, batch: Mapping[str, Array]):
            self.traces += 1  # runs once per compilation (a Python side effect of tracing)
            return evaluation_step(config, model, sums, batch)

        self.step = jax.jit(step, out_shardings=self.replicated)

    def run(
        self,
        model: SplitModel,
        batches: Iterable[Batch],
        progress: Callable[[int, bool], None] | None = None,
    ) -> EvaluationSums:
        """Sums over every image of ``batches`` (host copies)."""
        config = self.config
        module = model.module
        sums = zero_evaluation_sums(len(config.explainers), config.num_classes, len(config.alphas))
        sums = jax.device_put(sums, self.replicated)
        model = jax.device_put(model, self.replicated)
        done, in_flight = 0, None
        for host_batch, count in fixed_size_batches(
            batches, self.batch_size, _batch_keys(config.explainers)
        ):
            if done == 0:
                check_image_batch(host_batch["image"], module.in_channels, module.min_input_size)
            labels = check_class_indices(
                host_batch["label"][:count], config.num_classes, count, name="labels"
            )
            host_batch["label"] = np.concatenate(
                [labels, np.zeros(self.batch_size - count, np.int32)]
            )
            host_batch["image"] = np.asarray(host_batch["image"], np.float32)
            host_batch["index"] = data_set_indices(done, self.batch_size)
            host_batch["valid"] = np.arange(self.batch_size) < count
            device_batch = {
                name: jax.make_array_from_process_local_data(self.data_sharding, value)
                for name, value in host_batch.items()
            }
            sums = self.step(model, sums, device_batch)
            if in_flight is not None:  # at most two steps in flight
                jax.block_until_ready(in_flight)
            in_flight = sums.images
            done += count
            if progress is not None:
                progress(done, False)
        if done == 0:
            raise ValueError("no images to evaluate: the data is empty")
        sums = jax.device_get(sums)
        if progress is not None:
            progress(done, True)
        return sums


@functools.lru_cache(maxsize=32)
def engine_for(config: StepConfig, batch_size: int, devices: tuple[Any, ...]) -> Engine:
    """The :class:`Engine` of a configuration, built once: repeated evaluations reuse its
    compiled step (a new ``jax.jit`` of a new closure would compile again)."""
    return Engine(config, batch_size, devices)


# ----------------------------------------------------------------------------
# Results.


@dataclasses.dataclass(frozen=True)
class MethodResult:
    """One row of Table 1 (for all images or one class)."""

    average_drop: DropSummary  # eq. 10
    black_average_drop: DropSummary  # eq. 11 at the headline alpha
    curve: dict[float, DropSummary]  # BAD at every alpha scored
    curve_area: float | None  # mean BAD over the alpha range (trapezoid rule)
    tie_decided: float | None  # share of kept pixels a tie-break chose, at the headline alpha
    empty_maps: int  # maps that are 0 everywhere


@dataclasses.dataclass(frozen=True)
class Evaluation:
    alpha: float  # the headline alpha (chosen or given)
    alpha_chosen: bool
    alpha_differences: dict[float, float]  # the alpha search (mean surely-different fraction)
    alphas: tuple[float, ...]  # every alpha scored (the curve)
    ties: str
    tie_seed: int
    names: tuple[str, ...]  # the rows, in the order of the methods given
    results: dict[str, MethodResult]  # all images: the paper's protocol
    class_counts: dict[int, int]
    accuracy: float
    nonfinite_images: int
    first_nonfinite_index: int | None
    pixel_range: tuple[float, float]
    sums: EvaluationSums  # host copies, for recombination and files

    @functools.cached_property
    def by_class(self) -> dict[int, dict[str, MethodResult]]:
        """Rows per true class, built on first use (classes x methods x alphas summaries)."""
        headline = self.alphas.index(self.alpha)
        return {
            c: {
                name: _method_result(self.sums, m, c, self.alphas, headline)
                for m, name in enumerate(self.names)
            }
            for c in self.class_counts
        }


def _curve_area(alphas: Sequence[float], values: Sequence[float | None]) -> float | None:
    if len(alphas) < 2 or any(v is None for v in values):
        return None
    return float(np.trapezoid(values, alphas) / (alphas[-1] - alphas[0]))


def _method_result(
    sums: EvaluationSums, method: int, cls: int | None, alphas: Sequence[float], headline: int
) -> MethodResult:
    """Row of method ``method`` for class ``cls`` (``None``: all images)."""

    def pick(mask: int) -> DropSummary:
        per_class = take(take(sums.drops, method, 0), mask, 0)  # leading axis: class
        if cls is None:
            return summarise(sum_over(per_class, 0))
        histogram = np.asarray(per_class.ratio_histogram)
        classes = np.asarray(per_class.images).shape[0]
        if histogram.shape[0] != classes:  # pooled over classes: no per-class median
            per_class = per_class._replace(
                ratio_histogram=np.zeros((classes, histogram.shape[-1]), histogram.dtype)
            )
        return summarise(take(per_class, cls, 0))

    curve = {float(a): pick(j + 1) for j, a in enumerate(alphas)}
    ties = np.asarray(sums.tie_decided)[method, headline]  # (C,)
    empty = np.asarray(sums.empty_maps)[method]  # (C,)
    images = np.asarray(sums.images)
    select = slice(None) if cls is None else slice(cls, cls + 1)
    count = int(images[select].sum())
    return MethodResult(
        average_drop=pick(0),
        black_average_drop=curve[float(alphas[headline])],
        curve=curve,
        curve_area=_curve_area(alphas, [curve[float(a)].value for a in alphas]),
        tie_decided=float(ties[select].sum()) / count if count else None,
        empty_maps=int(empty[select].sum()),
    )


def step_config(
    model: SplitModel,
    methods: Mapping[str, Explainer],
    alphas: tuple[float, ...],
    *,
    score_masks: bool = True,
    search: bool = False,
    ties: str = DEFAULT_TIES,
    tie_seed: int = 0,
    explain: str = "predicted",
    masked_batch_size: int = 512,
) -> StepConfig:
    """The (hashable) :class:`StepConfig` that :func:`evaluate` runs for these arguments."""
    explainers = tuple(
        e if isinstance(e, ReferenceMap) else (e[0], tuple(sorted(dict(e[1]).items())))
        for e in methods.values()
    )
    return StepConfig(
        explainers=explainers,
        alphas=tuple(alphas),
        score_masks=score_masks,
        search=search,
        ties=ties,
        tie_seed=int(tie_seed),
        use_predicted=explain == "predicted",
        num_classes=model.num_classes,
        masked_chunk=int(masked_batch_size),
    )


def _as_batches(data: Any) -> tuple[Callable[[int], Iterable[Batch]], bool]:
    """``(batch_size -> iterable of batch dicts, whether it can be iterated twice)``."""
    if isinstance(data, tuple) and len(data) == 2:
        data = {"image": data[0], "label": data[1]}
    if isinstance(data, Mapping):
        arrays = {k: v for k, v in data.items() if v is not None}
        if "image" not in arrays or "label" not in arrays:
            raise ValueError(f"data must hold 'image' and 'label' arrays, got {sorted(arrays)}")
        label_shape = np.shape(arrays["label"])
        if len(label_shape) != 1:
            raise ValueError(f"labels must have shape (N,), got {label_shape}")
        for name, value in arrays.items():
            if len(value) != len(arrays["label"]):
                raise ValueError(
                    f"data arrays must have the same length: {name!r} has {len(value)}, "
                    f"'label' has {len(arrays['label'])}"
                )
        return (lambda size: array_batches(arrays, size)), True
    if isinstance(data, Iterable):
        return (lambda size: data), iter(data) is not data
    raise TypeError(
        "data must be (images, labels), a mapping of arrays or an iterable of batch dicts, "
        f"got {type(data).__name__}"
    )


def evaluate(
    model: SplitModel,
    data: Any,
    methods: Mapping[str, Explainer] = PAPER_METHODS,
    *,
    alpha: float | None = None,
    curve: bool = True,
    grid: Sequence[float] = ALPHA_GRID,
    ties: str = DEFAULT_TIES,
    tie_seed: int = 0,
    explain: str = "predicted",
    batch_size: int = 64,
    masked_batch_size: int = 512,
    progress: bool | Callable[[int, bool], None] = False,
    devices: Sequence[Any] | None = None,
) -> Evaluation:
    """Table 1 for a data set: AD, BAD (with the curve over alpha), per class, streamed.

    Args:
      model: bound split model (a bare module raises TypeError: use ``jaxcam.bind``).
      data: ``(images, labels)``, a mapping of arrays (``image`` (N, H, W, C), ``label``
        (N,), plus e.g. ``mask`` for reference maps), or an iterable of such batch dicts
        of any size (a grain loader, a generator). Labels must be integers of shape
        (N,) in [0, classes): anything else (e.g. an (N, 1) column) raises ValueError
        naming the labels, before any work.
      methods: display name -> (registered method, options) or :class:`ReferenceMap`.
      alpha: BAD's headline alpha; ``None`` chooses it where the methods' black images
        differ most (at least two saliency methods needed).
      curve: also score every alpha of ``grid`` in the same pass.
      grid: the alphas of the curve and of the search.
      ties: BAD's tie-breaking: ``smooth`` (default), ``random`` or ``raster``.
      tie_seed: seed of the random tie order (and of reference maps' keys).
      explain: which class c is explained and scored: ``predicted`` or ``label``.
      batch_size: images per step (rounded up to a multiple of the device count).
      masked_batch_size: masked images per forward call inside the step (memory bound).
      progress: print images and img/s to stderr (True) or call ``progress(done, final)``.
      devices: devices to shard the batch over (default: all local devices).
    """
    check_bound_model(model)
    if explain not in ("predicted", "label"):
        raise ValueError(f"explain must be 'predicted' or 'label', got {explain!r}")
    tie_seed = check_integer(tie_seed, "tie_seed")
    masked_batch_size = check_integer(masked_batch_size, "masked_batch_size", minimum=1)
    if not methods:
        raise ValueError("methods must name at least one method")
    check_ties(ties)
    searched = [n for n, e in methods.items() if not isinstance(e, ReferenceMap)]
    for name in searched:
        get_saliency_method(methods[name][0])
    if alpha is None and len(searched) < 2:
        raise ValueError(
            f"choosing alpha needs at least 2 saliency methods, got {searched}; give alpha="
        )
    grid = tuple(check_alpha(a) for a in grid)
    if not grid and (alpha is None or curve):
        raise ValueError("grid must hold at least one alpha")
    if alpha is not None:
        alpha = check_alpha(alpha)
    batches_for, reiterable = _as_batches(data)
    report = Progress() if progress is True else (progress or None)

    def run(alphas: tuple[float, ...], score_masks: bool, search: bool) -> EvaluationSums:
        config = step_config(
            model,
            methods,
            alphas,
            score_masks=score_masks,
            search=search,
            ties=ties,
            tie_seed=tie_seed,
            explain=explain,
            masked_batch_size=masked_batch_size,
        )
        engine = engine_for(config, batch_size, tuple(devices or jax.devices()))
        return engine.run(model, batches_for(engine.batch_size), report)

    if alpha is None and not curve:  # two passes: the search, then the metrics
        if not reiterable:
            raise ValueError(
                "choosing alpha without the curve needs two passes over the data: pass arrays "
                "or a re-iterable data set, or use curve=True (one pass) or give alpha"
            )
        search = run(grid, score_masks=False, search=True)
        differences = np.asarray(search.differences) / max(int(search.images.sum()), 1)
        alpha, table = best_alpha(grid, differences)
        alphas = (alpha,)
        sums = run(alphas, score_masks=True, search=False)
    else:
        extra = () if alpha is None else (alpha,)
        alphas = tuple(sorted({*grid, *extra})) if curve else extra
        sums = run(alphas, score_masks=True, search=alpha is None)
        table = {}
        if alpha is None:
            differences = np.asarray(sums.differences) / max(int(sums.images.sum()), 1)
            alpha, table = best_alpha(alphas, differences)
    return evaluation_from_sums(sums, list(methods), alphas, alpha, table, ties, tie_seed)


def evaluation_from_sums(
    sums: EvaluationSums,
    names: list[str],
    alphas: tuple[float, ...],
    alpha: float,
    differences: dict[float, float],
    ties: str,
    tie_seed: int,
) -> Evaluation:
    """The :class:`Evaluation` (rows, curve, search table) of host copies of the sums."""
    images = np.asarray(sums.images)
    total = int(images.sum())
    nonfinite = int(sums.nonfinite_images)
    if total == 0:
        raise ValueError(f"no image could be evaluated: all {nonfinite} had NaN/inf pixels")
    if nonfinite:
        warnings.warn(
            f"{nonfinite} image(s) with NaN/inf pixels were skipped (first at data index "
            f"{int(sums.first_nonfinite)})",
            stacklevel=3,
        )
    headline = alphas.index(alpha)
    return Evaluation(
        alpha=float(alpha),
        alpha_chosen=bool(differences),
        alpha_differences=differences,
        alphas=tuple(float(a) for a in alphas),
        ties=ties,
        tie_seed=int(tie_seed),
        names=tuple(names),
        results={n: _method_result(sums, m, None, alphas, headline) for m, n in enumerate(names)},
        class_counts={c: int(n) for c, n in enumerate(images)},
        accuracy=float(np.asarray(sums.correct).sum()) / total,
        nonfinite_images=nonfinite,
        first_nonfinite_index=int(sums.first_nonfinite) if nonfinite else None,
        pixel_range=(float(sums.pixel_min), float(sums.pixel_max)),
        sums=sums,
    )


def evaluate_methods(
    model: SplitModel,
    images: np.ndarray,
    labels: np.ndarray,
    methods: Mapping[str, Explainer] = PAPER_METHODS,
    **options: Any,
) -> Evaluation:
    """:func:`evaluate` on in-memory arrays (the earlier name, kept)."""
    return evaluate(model, {"image": images, "label": labels}, methods, **options)


# ----------------------------------------------------------------------------
# In-memory helpers, tables and provenance.


def in_batches(fn: Callable[..., Any], arrays: Sequence[np.ndarray], batch_size: int) -> Any:
    """Apply ``fn(*batch)`` over aligned arrays in batches of exactly ``batch_size``.

    The last batch is padded by repeating its first rows and the padding is cut
    from the outputs; outputs (any pytree of arrays) are concatenated on the host.
    For per-image outputs of small sets (figures, predictions); data set metrics
    stream through :func:`evaluate` instead.
    """
    total = len(arrays[0])
    if total == 0:
        raise ValueError("no examples to process")
    batch_size = min(batch_size, total)
    outputs = []
    for start in range(0, total, batch_size):
        chunk = [np.asarray(a[start : start + batch_size]) for a in arrays]
        count = len(chunk[0])
        padded = [np.concatenate([c, np.repeat(c[:1], batch_size - count, axis=0)]) for c in chunk]
        outputs.append(jax.tree.map(lambda x, n=count: np.asarray(x)[:n], fn(*padded)))
    return jax.tree.map(lambda *xs: np.concatenate(xs), *outputs)


def compute_maps(
    model: SplitModel,
    images: np.ndarray,
    class_indices: np.ndarray | None,
    method: str,
    batch_size: int = 64,
    **options: Any,
) -> tuple[np.ndarray, np.ndarray]:
    """Normalised maps (N, H, W) and explained classes (N,) of in-memory images."""
    if class_indices is None:
        return in_batches(
            lambda x: saliency_maps(model, x, None, method, **options), [images], batch_size
        )
    return in_batches(
        lambda x, c: saliency_maps(model, x, c, method, **options),
        [images, class_indices],
        batch_size,
    )


def _cell(value: float | None, percent: bool = False, digits: int = 4) -> str:
    if value is None:
        return "n/a"
    if percent:
        return f"{100 * value:.1f}"
    return f"{value:.{digits}f}" if abs(value) < 1e4 else f"{value:.3g}"


RAISED_MARK = "^"


def format_table(rows: Mapping[str, MethodResult]) -> str:
    """Table 1 as text, with what BAD's clamp hides, the ties and the curve's area.

    Columns: AD, BAD (at the headline alpha), Incorrect % of each, then for BAD: the share of
    black images that raise the score (O > Y), the mean signed change (O - Y)/Y, the
    median O/Y, the share of kept pixels a tie-break chose, the mean BAD over the
    alpha curve, the images whose ratio is undefined (AD's: Y <= 0, or Y or O NaN/inf), and
    of those the images whose Y or O is NaN or inf (AD/BAD). A drop cell is marked ``^``
    when most masked images raised the score (the clamp records them as 0).
    """
    header = (
        "method",
        "AD",
        "BAD",
        "Incorrect % AD",
        "Incorrect % BAD",
        "O>Y % BAD",
        "mean (O-Y)/Y BAD",
        "median O/Y BAD",
        "ties % BAD",
        "BAD curve mean",
        "excluded",
        "non-finite AD/BAD",
    )
    lines = [header]
    for name, result in rows.items():
        ad, bad = result.average_drop, result.black_average_drop
        lines.append(
            (
                name,
                _cell(ad.value) + (RAISED_MARK if ad.mostly_increased else ""),
                _cell(bad.value) + (RAISED_MARK if bad.mostly_increased else ""),
                _cell(ad.incorrect, percent=True),
                _cell(bad.incorrect, percent=True),
                _cell(bad.increase_in_confidence, percent=True),
                _cell(bad.mean_change, digits=3),
                _cell(bad.median_ratio, digits=3),
                _cell(result.tie_decided, percent=True),
                _cell(result.curve_area),
                str(ad.num_excluded),
                f"{ad.num_nonfinite}/{bad.num_nonfinite}",
            )
        )
    widths = [max(len(row[i]) for row in lines) for i in range(len(header))]
    text = [" | ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)) for row in lines]
    text.insert(1, "-+-".join("-" * w for w in widths))
    if any(RAISED_MARK in cell for row in lines[1:] for cell in row[1:3]):
        text.append(
            f"{RAISED_MARK} most masked images raised the score (O > Y); the clamp max(0, Y - O) "
            "counts them as a perfect 0"
        )
    return "\n".join(text)


def evaluation_record(evaluation: Evaluation) -> dict[str, Any]:
    """The evaluation as JSON-ready data (every row, per class, the curve, the search)."""

    def row(result: MethodResult) -> dict[str, Any]:
        return {
            "average_drop": result.average_drop._asdict(),
            "black_average_drop": result.black_average_drop._asdict(),
            "curve": {f"{a:.2f}": s._asdict() for a, s in result.curve.items()},
            "curve_mean": result.curve_area,
            "tie_decided": result.tie_decided,
            "empty_maps": result.empty_maps,
        }

    return {
        "alpha": evaluation.alpha,
        "alpha_chosen": evaluation.alpha_chosen,
        "alpha_search": {f"{a:.2f}": d for a, d in evaluation.alpha_differences.items()},
        "alphas": list(evaluation.alphas),
        "ties": evaluation.ties,
        "tie_seed": evaluation.tie_seed,
        "accuracy": evaluation.accuracy,
        "class_counts": {str(c): n for c, n in evaluation.class_counts.items()},
        "nonfinite_images": evaluation.nonfinite_images,
        "pixel_range": list(evaluation.pixel_range),
        "all_images": {name: row(r) for name, r in evaluation.results.items()},
        "by_class": {
            str(c): {name: row(r) for name, r in rows.items()}
            for c, rows in evaluation.by_class.items()
        }
        if len(evaluation.class_counts) <= HISTOGRAM_MAX_CLASSES
        else "omitted: more than HISTOGRAM_MAX_CLASSES classes (see Evaluation.by_class)",
    }


def software_versions() -> dict[str, str]:
    """Versions and backend that produced a result, for results files."""
    import platform

    import flax
    import optax

    from jaxcam import __version__

    return {
        "python": platform.python_version(),
        "jax": jax.__version__,
        "flax": flax.__version__,
        "optax": optax.__version__,
        "numpy": np.__version__,
        "jaxcam": __version__,
        "backend": jax.default_backend(),
        "devices": str(jax.device_count()),
    }
