"""Evaluating saliency methods on a data set: Table 1, the alpha curve, per-class rows.

:func:`evaluate` checks its arguments on the host, builds the step's static
configuration, runs the cached engine (:mod:`jaxcam.evaluation.engine`) over the data
and turns the streamed sums into results (:mod:`jaxcam.evaluation.results`).

alpha: with ``curve=True`` (default) every alpha of the grid is scored in the same
pass, and alpha is chosen afterwards from the streamed mask differences (label-free:
only the maps enter the choice), so one pass gives the headline and the curve.
With ``curve=False`` and no alpha, a first pass computes only the maps and their
differences, a second the metrics at the chosen alpha.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any

import jax
import numpy as np

from jaxcam.batching import Batch, array_batches
from jaxcam.checks import check_alpha, check_integer
from jaxcam.evaluation.engine import Progress, engine_for
from jaxcam.evaluation.results import Evaluation, evaluation_from_sums
from jaxcam.evaluation.step import EvaluationSums, Explainer, ReferenceMap, StepConfig
from jaxcam.metrics import (
    ALPHA_GRID,
    DEFAULT_METRICS,
    DEFAULT_TIES,
    best_alpha,
    check_metrics,
    check_ties,
)
from jaxcam.models.protocol import Explainable, check_bound_model
from jaxcam.saliency.registry import PAPER_METHODS, method_info, method_rows


def method_table(methods: Mapping[str, Explainer] | Sequence[str]) -> dict[str, Explainer]:
    """Rows as display name -> explainer, from a mapping or registered names (checked)."""
    if isinstance(methods, str):
        methods = (methods,)
    if not isinstance(methods, Mapping):
        methods = method_rows(list(methods))
    if not methods:
        raise ValueError("methods must name at least one method")
    for name, explainer in methods.items():
        if not isinstance(explainer, ReferenceMap):
            if not (isinstance(explainer, tuple) and len(explainer) == 2):
                raise TypeError(
                    f"method row {name!r} must be (registered method, options) or a "
                    f"ReferenceMap, got {explainer!r}"
                )
            method_info(explainer[0])
    return dict(methods)


def step_config(
    model: Explainable,
    methods: Mapping[str, Explainer],
    alphas: tuple[float, ...],
    *,
    score_masks: bool = True,
    search: bool = False,
    ties: str = DEFAULT_TIES,
    tie_seed: int = 0,
    explain: str = "predicted",
    masked_batch_size: int = 512,
    metrics: Sequence[str] = DEFAULT_METRICS,
    restrict_to: str | None = None,
) -> StepConfig:
    """The (hashable) :class:`StepConfig` that :func:`evaluate` runs for these arguments."""
    explainers = tuple(
        e if isinstance(e, ReferenceMap) else (e[0], tuple(sorted(dict(e[1]).items())))
        for e in method_table(methods).values()
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
        metrics=check_metrics(metrics),
        restrict_to=restrict_to,
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
    model: Explainable,
    data: Any,
    methods: Mapping[str, Explainer] | Sequence[str] = PAPER_METHODS,
    *,
    metrics: Sequence[str] = DEFAULT_METRICS,
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
    restrict_to: str | None = None,
) -> Evaluation:
    """Table 1 for a data set: AD, BAD (with the curve over alpha), per class, streamed.

    Args:
      model: bound split model (a bare module raises TypeError: use ``jaxcam.bind``).
      data: ``(images, labels)``, a mapping of arrays (``image`` (N, H, W, C), ``label``
        (N,), plus e.g. ``mask`` for reference maps), or an iterable of such batch dicts
        of any size (a grain loader, a generator). Labels must be integers of shape
        (N,) in [0, classes): anything else (e.g. an (N, 1) column) raises ValueError
        naming the labels, before any work.
      methods: display name -> (registered method, options) or :class:`ReferenceMap`, or
        a sequence of registered method names (rows labelled with their display names).
      metrics: registered metric names, in column order (default: AD and BAD).
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
      restrict_to: the name of a boolean per-image array in ``data`` (e.g. ``"reliant"``):
        only its True images are counted, in every row, sum and the alpha search; the
        others still hold their data set index, so tie orders equal the full table's.
    """
    check_bound_model(model)
    if explain not in ("predicted", "label"):
        raise ValueError(f"explain must be 'predicted' or 'label', got {explain!r}")
    tie_seed = check_integer(tie_seed, "tie_seed")
    masked_batch_size = check_integer(masked_batch_size, "masked_batch_size", minimum=1)
    methods = method_table(methods)
    metrics = check_metrics(metrics)
    check_ties(ties)
    searched = [n for n, e in methods.items() if not isinstance(e, ReferenceMap)]
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
            metrics=metrics,
            restrict_to=restrict_to,
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
    return evaluation_from_sums(sums, list(methods), alphas, alpha, table, ties, tie_seed, metrics)


def evaluate_methods(
    model: Explainable,
    images: np.ndarray,
    labels: np.ndarray,
    methods: Mapping[str, Explainer] = PAPER_METHODS,
    **options: Any,
) -> Evaluation:
    """:func:`evaluate` on in-memory arrays (the earlier name, kept)."""
    return evaluate(model, {"image": images, "label": labels}, methods, **options)
