"""A metric as a unit: a perturbation of each image plus a reduction of the scores.

A label-free metric of this kind scores a map by how the model's score ``Y^c`` for
the explained class changes when the image is perturbed according to the map:

* the **perturbation** ``perturb(image, saliency, ranks, num_kept, fields, key) ->
  image`` acts on one image (H, W, C) and its normalised map (H, W): ``ranks`` (H, W)
  orders the pixels by saliency with the evaluation's tie order
  (:func:`jaxcam.metrics.rank_pixels`), ``num_kept`` is round(alpha*H*W) for metrics
  scored per alpha (0 otherwise), ``fields`` holds the image's extra batch arrays the
  metric ``needs`` (e.g. a counterfactual twin), ``key`` is a PRNG key unique to the
  image (:func:`perturbation_key`);
* the **reduction** turns per-image ``(Y, O, incorrect)`` into mergeable on-device sums
  and a host summary (:class:`jaxcam.metrics.DropReduction` for AD and BAD).

A new metric is one file with a :class:`Metric` and one :func:`register_metric` call;
the evaluation engine, the per-batch API (:func:`jaxcam.metrics.metric_scores`), the
tables, JSON and the CLI then take it by name.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Mapping
from typing import Any, Protocol

import jax
import jax.numpy as jnp

from jaxcam.metrics.drops import DROP_REDUCTION

Array = jax.Array

#: ``perturb(image (H, W, C), saliency (H, W), ranks (H, W) int32, num_kept (), fields,
#: key) -> (H, W, C)``, one image, traceable (``num_kept`` may be a traced integer).
Perturbation = Callable[[Array, Array, Array, Any, Mapping[str, Array], Array], Array]


class Reduction(Protocol):
    """Sums of per-image scores: ``empty`` / ``add`` on the device, ``merge``, ``summary``."""

    def empty(self, shape: tuple[int, ...], histogram_groups: int | None = None) -> Any: ...

    def add(
        self,
        sums: Any,
        original: Array,
        masked: Array,
        incorrect: Array,
        weights: Array,
        group: Array,
    ) -> Any: ...

    def merge(self, first: Any, second: Any) -> Any: ...

    def summary(self, sums: Any, group: int | None = None) -> Any:
        """Host summary of sums with one leading group axis: all groups, or ``group``."""
        ...


@dataclasses.dataclass(frozen=True)
class Metric:
    """A registered label-free metric.

    Attributes:
      name: registry key (``black_average_drop``).
      label: its column label in tables (``BAD``).
      perturb: the per-image :data:`Perturbation`.
      per_alpha: scored at every alpha of the evaluation (one perturbed image per
        alpha, ``num_kept`` = round(alpha*H*W)); otherwise once per map.
      reduction: how scores become sums and summaries (default: the drop statistics).
      needs: extra batch arrays the perturbation reads (``fields``), e.g. ``("twin",)``.
      signed_columns: tables also show what the clamp hides (O>Y %, mean (O-Y)/Y,
        median O/Y) for this metric.
      description: one line for help texts (what is removed, the paper's equation).
      needs_full_ranks: ``perturb`` reads ``ranks`` beyond ``ranks < num_kept``. When no
        metric of an evaluation at one alpha does, the engine skips the full sort and
        passes ranks that are 0 on the kept pixels and H*W elsewhere
        (:mod:`jaxcam.metrics.selection`).
    """

    name: str
    label: str
    perturb: Perturbation
    per_alpha: bool = False
    reduction: Reduction = DROP_REDUCTION
    needs: tuple[str, ...] = ()
    signed_columns: bool = False
    description: str = ""
    needs_full_ranks: bool = True


#: ``fill(image (H, W, C), kept (H, W) bool, fields, key) -> (H, W, C)``: the values the
#: removed pixels take (only its values off ``kept`` are used).
Fill = Callable[[Array, Array, Mapping[str, Array], Array], Array]


def removal_metric(
    name: str,
    label: str,
    fill: Fill,
    *,
    needs: tuple[str, ...] = (),
    description: str = "",
) -> Metric:
    """A metric of the black-masking family (BAD, eq. 11, and its imputers): scored per
    alpha, the ``num_kept`` = round(alpha*H*W) top-ranked pixels keep their value and
    every other pixel takes ``fill``'s. The drop statistics, with what the clamp hides."""

    def perturb(
        image: Array,
        saliency: Array,
        ranks: Array,
        num_kept: Any,
        fields: Mapping[str, Array],
        key: Array,
    ) -> Array:
        del saliency  # the ranking decides which pixels stay
        kept = ranks < num_kept
        return jnp.where(kept[..., None], image, fill(image, kept, fields, key))

    return Metric(
        name=name,
        label=label,
        perturb=perturb,
        per_alpha=True,
        needs=needs,
        signed_columns=True,
        description=description,
        needs_full_ranks=False,
    )


_METRICS: dict[str, Metric] = {}

#: The metrics of the paper's Table 1, in its column order.
DEFAULT_METRICS: tuple[str, ...] = ("average_drop", "black_average_drop")


def register_metric(metric: Metric) -> Metric:
    """Register ``metric`` under ``metric.name`` (ValueError if the name is taken)."""
    if not isinstance(metric, Metric):
        raise TypeError(f"register_metric takes a jaxcam.metrics.Metric, got {type(metric)}")
    if not metric.name or not isinstance(metric.name, str):
        raise ValueError(f"a metric needs a non-empty string name, got {metric.name!r}")
    if metric.name in _METRICS:
        raise ValueError(f"metric {metric.name!r} is already registered")
    if not callable(metric.perturb):
        raise TypeError(f"perturb of metric {metric.name!r} must be callable")
    _METRICS[metric.name] = metric
    return metric


def metric_names() -> tuple[str, ...]:
    """Registered metrics: the paper's (:data:`DEFAULT_METRICS`) first, then the others in
    registration order."""
    paper = tuple(n for n in DEFAULT_METRICS if n in _METRICS)
    return paper + tuple(n for n in _METRICS if n not in paper)


def get_metric(name: str) -> Metric:
    if name not in _METRICS:
        raise ValueError(f"unknown metric {name!r}; known: {', '.join(metric_names())}")
    return _METRICS[name]


def check_metrics(names: Any) -> tuple[str, ...]:
    """Registered metric names as a tuple (ValueError naming an unknown or repeated one)."""
    if isinstance(names, str):
        names = (names,)
    names = tuple(names)
    if not names:
        raise ValueError("metrics must name at least one metric")
    for name in names:
        get_metric(name)
    repeated = sorted({n for n in names if names.count(n) > 1})
    if repeated:
        raise ValueError(f"metrics must not repeat, got {repeated} more than once")
    return names


def perturbation_key(seed: int, index: Array) -> Array:
    """The PRNG key a metric's perturbation gets for the image at data set ``index``."""
    return jax.random.fold_in(jax.random.key(seed + 2), index)
