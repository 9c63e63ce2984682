"""The model randomisation sanity check (Adebayo et al., NeurIPS 2018, "Sanity Checks for
Saliency Maps"), applied to the maps *and* to the label-free metrics that score them.

A map that explains the model must change when the model's parameters are replaced by
random ones. Adebayo et al. re-initialise the layers cumulatively from the top
(*cascading randomisation*) and compare each randomised model's maps with the trained
model's by rank correlation. Here the randomised maps are also scored by the metrics,
always on the **trained** model: a metric worth trusting must score maps that no longer
explain the model worse than the trained model's own maps.

* :func:`randomisation_layers`: the parameter groups of a bound model from the top down;
* :func:`cascading_randomisation`: the models with the first 1, 2, ... groups re-drawn;
* :func:`randomisation_check`: the maps of each randomised model, scored by every
  metric on the trained model, with their Spearman correlation to the trained maps.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping, Sequence
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from jaxcam.evaluation import Evaluation, ReferenceMap, evaluate, method_table
from jaxcam.metrics import DEFAULT_METRICS, DEFAULT_TIES, check_metrics
from jaxcam.models.base import CAMClassifier, SplitModel, bind
from jaxcam.models.protocol import check_bound_model
from jaxcam.saliency import compute_maps
from jaxcam.saliency.registry import PAPER_METHOD_NAMES

Array = jax.Array

#: The name of the trained model's row (step 0) in :class:`RandomisationCheck`.
TRAINED = "trained"
#: The seed of the re-drawn parameters unless a key is given: not 0, the seed a model is
#: most often initialised with (re-drawing with its own init key would change nothing).
DEFAULT_RANDOMISATION_SEED = 2018


# Which parameters, in which order


def _split_model(model: Any) -> SplitModel:
    """The :class:`SplitModel` behind ``model`` (itself, or a layer split's ``base``)."""
    check_bound_model(model)
    split = getattr(model, "base", model)
    if not isinstance(split, SplitModel):
        raise TypeError(
            "the randomisation check needs a bound CAMClassifier (jaxcam.bind) or a layer "
            f"split of one, got {type(model).__name__}"
        )
    return split


def _dummy_image(module: CAMClassifier) -> Array:
    """The smallest image the module takes, (1, s, s, C): enough to create its parameters."""
    size = max(int(module.min_input_size), 1)
    return jnp.zeros((1, size, size, module.in_channels), jnp.float32)


def _groups_of(params: Mapping[str, Any]) -> list[str]:
    """The groups of a parameter tree in *creation order* (bottom-up), see
    :func:`randomisation_layers`."""
    groups: list[str] = []
    for name, entry in params.items():
        if name == "backbone" and isinstance(entry, Mapping):
            groups.extend(f"backbone/{inner}" for inner in entry)
        else:
            groups.append(name)
    return groups


def randomisation_layers(model: Any) -> list[str]:
    """The parameter groups of a bound jaxcam model, top (output) first: ``list[str]``.

    A group is a top-level entry of the Flax ``params`` tree (``classifier``,
    ``hidden_0``... for the head of :class:`jaxcam.CAMClassifier`), except ``backbone``,
    whose own top-level modules are groups each (``backbone/Conv_7``,
    ``backbone/stage4_block2``...). The order is the reverse of *creation order*: Flax
    creates a module's parameters when the module is first called, so a fresh
    ``module.init`` lists them in the order the forward pass reaches them (the backbone's
    modules bottom-up, then ``hidden_0`` ... and ``classifier``). The trained tree is not
    used for the order: ``jax.tree.map`` (an optimiser step) rebuilds dicts with sorted
    keys. The order is read from an abstract ``init`` (no parameters are computed).
    For the plain CAM head: ``["classifier", "backbone/<last module>", ...,
    "backbone/<first module>"]``; with hidden layers ``classifier, hidden_{n-1}, ...,
    hidden_0`` come first.
    """
    module = _split_model(model).module
    order: list[str] = []

    def init(key: Array, image: Array) -> Any:
        variables = module.init(key, image)
        order.extend(_groups_of(variables["params"]))  # read before it is flattened
        return variables

    jax.eval_shape(init, jax.random.key(0), _dummy_image(module))
    return order[::-1]


def _subtree(params: Mapping[str, Any], group: str) -> Any:
    node: Any = params
    for part in group.split("/"):
        node = node[part]
    return node


def _with_subtree(params: Mapping[str, Any], group: str, value: Any) -> dict[str, Any]:
    """A copy of ``params`` whose entry at path ``group`` is ``value`` (others shared)."""
    head, _, rest = group.partition("/")
    copy = dict(params)
    copy[head] = _with_subtree(params[head], rest, value) if rest else value
    return copy


def _redrawn_like(trained: Any, fresh: Any, group: str) -> Any:
    """``fresh`` cast to the dtypes of ``trained``; ValueError if the trees differ."""
    same = jax.tree.structure(trained) == jax.tree.structure(fresh) and all(  # type: ignore[operator]
        np.shape(t) == np.shape(f)
        for t, f in zip(jax.tree.leaves(trained), jax.tree.leaves(fresh), strict=True)
    )
    if not same:
        raise ValueError(
            f"re-initialising {group!r} gave parameters of another structure or shape than "
            "the trained ones (does a parameter's shape depend on the image size?)"
        )
    return jax.tree.map(lambda t, f: jnp.asarray(f, t.dtype), trained, fresh)


def _step_counts(steps: int | Sequence[int] | None, total: int) -> list[int]:
    """Cumulative group counts: all (None), the first ``steps`` (int), or those given."""
    if steps is None:
        counts = list(range(1, total + 1))
    elif isinstance(steps, (int, np.integer)) and not isinstance(steps, bool):
        counts = list(range(1, int(steps) + 1))
    else:
        counts = [int(s) for s in steps]  # type: ignore[union-attr]
    if not counts:
        raise ValueError("steps must select at least one randomisation step")
    bad = [c for c in counts if not 1 <= c <= total]
    if bad:
        raise ValueError(f"randomisation steps must be in 1..{total} (the groups), got {bad}")
    return counts


def cascading_randomisation(
    model: Any, key: Array, steps: int | Sequence[int] | None = None
) -> list[tuple[str, Any]]:
    """Models with their top parameter groups re-drawn, cumulatively: ``[(group, model)]``.

    Step ``k`` re-draws the first ``k`` groups of :func:`randomisation_layers` (step 1 the
    classifier, step 2 the classifier and the layer below it, ...) and keeps every other
    parameter bit for bit; the name of a step is the last group it re-drew. New values
    come from the module's own initialisers: one ``module.init(key, ...)`` of the whole
    model, whose subtrees replace the trained ones (so a group re-drawn at step k has the
    same random values at every later step). A BatchNorm layer's scale and bias are
    parameters, so they return to their initial values (1 and 0); its running
    statistics (the ``batch_stats`` collection) and every other collection are kept from
    training.

    ``steps``: ``None`` for every step (1 .. number of groups), an int ``n`` for steps
    1 .. n, or a sequence of step numbers (e.g. ``(1, 2, 5)``). ``model``: a bound
    :class:`jaxcam.CAMClassifier` or a layer split of one (its base is randomised).
    """
    split = _split_model(model)
    groups = randomisation_layers(model)
    counts = _step_counts(steps, len(groups))
    # eager: its small compiled pieces are shared with the model's own (eager) init
    fresh = split.module.init(key, _dummy_image(split.module))["params"]
    trained = split.variables["params"]
    results = []
    for count in counts:
        params: Mapping[str, Any] = trained
        for group in groups[:count]:
            value = _redrawn_like(_subtree(trained, group), _subtree(fresh, group), group)
            params = _with_subtree(params, group, value)
        randomised = bind(split.module, {**split.variables, "params": params})
        if model is not split:  # a layer split: randomise its base
            randomised = model.replace(base=randomised)
        results.append((groups[count - 1], randomised))
    return results


# The check


def spearman_per_image(first: np.ndarray, second: np.ndarray) -> np.ndarray:
    """Spearman's rank correlation of each pair of maps (N, H, W) x2 -> (N,) float64.

    Ranks average over ties (as ``scipy.stats.spearmanr``); NaN where either map is
    constant (the correlation is undefined).
    """
    from scipy.stats import rankdata

    count = len(first)
    ranks_a = rankdata(np.asarray(first, np.float64).reshape(count, -1), axis=1)
    ranks_b = rankdata(np.asarray(second, np.float64).reshape(count, -1), axis=1)
    ranks_a -= ranks_a.mean(axis=1, keepdims=True)
    ranks_b -= ranks_b.mean(axis=1, keepdims=True)
    norms = np.sqrt(np.sum(ranks_a**2, axis=1) * np.sum(ranks_b**2, axis=1))
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(norms > 0, np.sum(ranks_a * ranks_b, axis=1) / norms, np.nan)


@dataclasses.dataclass(frozen=True)
class RandomisationRow:
    """One method's maps at one randomisation step, scored on the trained model."""

    method: str  # display name
    step: int  # groups re-drawn (0: the trained model)
    layer: str  # the last group re-drawn, or TRAINED
    metrics: dict[str, float | None]  # metric name -> value (None: undefined)
    rank_correlation: float | None  # mean over images of Spearman(trained map, this map)
    undefined_correlations: int  # images whose correlation is undefined (a constant map)


@dataclasses.dataclass(frozen=True)
class RandomisationCheck:
    """The result of :func:`randomisation_check`: rows ``(method, step) -> values``."""

    alpha: float  # BAD's alpha, the same for every row
    alpha_chosen: bool
    metrics: tuple[str, ...]
    methods: tuple[str, ...]
    steps: tuple[tuple[int, str], ...]  # (step, last group re-drawn), step 0 = TRAINED
    rows: dict[tuple[str, int], RandomisationRow]
    evaluations: tuple[Evaluation, ...]  # the evaluate() calls, one per randomisation step

    def value(self, method: str, step: int, metric: str) -> float | None:
        return self.rows[method, step].metrics[metric]

    def scores_worse(self, method: str, step: int, metric: str) -> bool | None:
        """Whether ``metric`` scores the randomised maps worse than the trained ones
        (a larger drop: every registered metric is a drop, lower is better)."""
        trained, randomised = self.value(method, 0, metric), self.value(method, step, metric)
        if trained is None or randomised is None:
            return None
        return randomised > trained


def _summary_value(summary: Any) -> float | None:
    value = getattr(summary, "value", summary)
    return None if value is None else float(value)


def _as_arrays(data: Any) -> dict[str, np.ndarray]:
    if isinstance(data, tuple) and len(data) == 2:
        data = {"image": data[0], "label": data[1]}
    if not isinstance(data, Mapping) or "image" not in data or "label" not in data:
        raise TypeError(
            "the randomisation check needs in-memory data: (images, labels) or a mapping "
            "with 'image' and 'label' arrays"
        )
    arrays = {name: np.asarray(value) for name, value in data.items() if value is not None}
    clashing = [name for name in arrays if name.startswith("map_")]
    if clashing:
        raise ValueError(f"data fields {clashing} clash with the randomised maps' map_<i>")
    return arrays


def randomisation_check(
    model: Any,
    data: Any,
    methods: Mapping[str, Any] | Sequence[str] = PAPER_METHOD_NAMES,
    metrics: Sequence[str] = DEFAULT_METRICS,
    alpha: float | None = None,
    *,
    steps: int | Sequence[int] | None = None,
    key: Array | None = None,
    ties: str = DEFAULT_TIES,
    tie_seed: int = 0,
    explain: str = "predicted",
    batch_size: int = 64,
) -> RandomisationCheck:
    """Maps of each cascading randomisation step, scored by every metric on the trained model.

    For each step of :func:`cascading_randomisation` (``steps``, ``key``; default: every
    step, ``key(DEFAULT_RANDOMISATION_SEED)``) and each method, the randomised model
    explains the class that the trained evaluation explains (the trained model's
    prediction, or the label with ``explain="label"``). Its maps (``compute_maps``) enter
    :func:`jaxcam.evaluate` **of the trained model** as extra data fields ``map_<i>``
    read by :class:`ReferenceMap` rows, so the metric's model is the trained one and
    only the maps come from the randomised model. The first call scores the trained
    methods and the first step's maps in one pass (choosing alpha from the trained
    methods' maps when ``alpha`` is None); each later step is one more pass at that alpha
    with the same tie order (and the same reference rows, so the compiled step is
    reused). Only the headline alpha is scored (``curve=False``).

    Args:
      model: the trained, bound model (a :class:`jaxcam.CAMClassifier` or a layer split).
      data: in-memory ``(images, labels)`` or a mapping of arrays (``image``, ``label``,
        any field a metric needs); images must be finite.
      methods: registered method names or display name -> (method, options).
      metrics: registered metric names.
      alpha: BAD's alpha; None chooses it from the trained methods (at least two).

    Returns:
      A :class:`RandomisationCheck`: per (method, step) the metric values and the mean
      Spearman correlation between the trained and the randomised maps per image
      (Adebayo et al.'s similarity; 1 for the trained row).
    """
    if explain not in ("predicted", "label"):
        raise ValueError(f"explain must be 'predicted' or 'label', got {explain!r}")
    metrics = check_metrics(metrics)
    rows_in = method_table(methods)
    if any(isinstance(row, ReferenceMap) for row in rows_in.values()):
        raise TypeError("randomisation_check takes saliency methods, not reference maps")
    arrays = _as_arrays(data)
    images = arrays["image"]
    randomised_models = cascading_randomisation(
        model, jax.random.key(DEFAULT_RANDOMISATION_SEED) if key is None else key, steps
    )
    step_counts = _step_counts(steps, len(randomisation_layers(model)))
    layers = [layer for layer, _ in randomised_models]

    names = list(rows_in)
    method_of: dict[str, tuple[str, Any]] = {
        n: row for n, row in rows_in.items() if not isinstance(row, ReferenceMap)
    }
    trained_maps: dict[str, np.ndarray] = {}
    classes: np.ndarray | None = None if explain == "predicted" else arrays["label"]
    for name in names:
        method, options = method_of[name]
        trained_maps[name], explained = compute_maps(
            model, images, classes, method, batch_size, **dict(options)
        )
        classes = np.asarray(explained)  # the first method's predictions fix the classes

    # One ReferenceMap per method, shared by every step's evaluate: same config, one compile.
    def reads(field: str) -> ReferenceMap:
        return ReferenceMap(lambda example, key: example[field], needs=(field,))

    references = {f"randomised {name}": reads(f"map_{i}") for i, name in enumerate(names)}

    rows: dict[tuple[str, int], RandomisationRow] = {}
    evaluations: list[Evaluation] = []
    chosen_alpha, alpha_chosen = alpha, alpha is None
    for count, (layer, randomised) in zip(step_counts, randomised_models, strict=True):
        fields = dict(arrays)
        correlations = {}
        for i, name in enumerate(names):
            method, options = method_of[name]
            maps, _ = compute_maps(randomised, images, classes, method, batch_size, **dict(options))
            fields[f"map_{i}"] = np.asarray(maps)
            correlations[name] = spearman_per_image(trained_maps[name], np.asarray(maps))
        first = not evaluations
        evaluation = evaluate(
            model,
            fields,
            {**rows_in, **references} if first else references,
            metrics=metrics,
            alpha=chosen_alpha,
            curve=False,
            ties=ties,
            tie_seed=tie_seed,
            explain=explain,
            batch_size=batch_size,
        )
        evaluations.append(evaluation)
        if first:
            chosen_alpha = evaluation.alpha
            for name in names:
                rows[name, 0] = RandomisationRow(
                    name,
                    0,
                    TRAINED,
                    {m: _summary_value(evaluation.results[name].metrics[m]) for m in metrics},
                    1.0,
                    0,
                )
        for name in names:
            result = evaluation.results[f"randomised {name}"]
            defined = correlations[name][np.isfinite(correlations[name])]
            rows[name, count] = RandomisationRow(
                name,
                count,
                layer,
                {m: _summary_value(result.metrics[m]) for m in metrics},
                float(defined.mean()) if defined.size else None,
                int(len(correlations[name]) - defined.size),
            )
    assert chosen_alpha is not None
    return RandomisationCheck(
        alpha=float(chosen_alpha),
        alpha_chosen=alpha_chosen,
        metrics=metrics,
        methods=tuple(names),
        steps=((0, TRAINED), *zip(step_counts, layers, strict=True)),
        rows=rows,
        evaluations=tuple(evaluations),
    )
