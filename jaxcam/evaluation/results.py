"""What an evaluation returns: one row per method (all images or one class), the curve.

Rows are built on the host from the streamed sums (:class:`EvaluationSums`): every
registered metric's reduction turns its sums into a summary, at the headline alpha and,
for metrics scored per alpha, at every alpha of the curve.
"""

from __future__ import annotations

import dataclasses
import functools
import warnings
from collections.abc import Sequence
from typing import Any, cast

import jax
import numpy as np

from jaxcam.evaluation.step import EvaluationSums
from jaxcam.metrics import get_metric


@dataclasses.dataclass(frozen=True)
class MethodResult:
    """One row of Table 1 (for all images or one class).

    ``metrics[name]`` is metric ``name``'s summary at the headline alpha (for AD and BAD
    a :class:`jaxcam.metrics.DropSummary`); ``curves[name]`` its summary at every alpha
    scored, for metrics scored per alpha.
    """

    metrics: dict[str, Any]
    curves: dict[str, dict[float, Any]]
    curve_areas: dict[str, float | None]  # mean value over the alpha range (trapezoid rule)
    tie_decided: float | None  # share of kept pixels a tie-break chose, at the headline alpha
    empty_maps: int  # maps that are 0 everywhere

    def _get(self, table: dict[str, Any], name: str) -> Any:
        if name not in table:
            raise KeyError(f"metric {name!r} was not evaluated; this row has {list(table)}")
        return table[name]

    @property
    def average_drop(self) -> Any:
        """AD (eq. 10)."""
        return self._get(self.metrics, "average_drop")

    @property
    def black_average_drop(self) -> Any:
        """BAD (eq. 11) at the headline alpha."""
        return self._get(self.metrics, "black_average_drop")

    @property
    def curve(self) -> dict[float, Any]:
        """BAD at every alpha scored."""
        return self._get(self.curves, "black_average_drop")

    @property
    def curve_area(self) -> float | None:
        """Mean BAD over the alpha range (trapezoid rule)."""
        return self._get(self.curve_areas, "black_average_drop")


@dataclasses.dataclass(frozen=True)
class Evaluation:
    alpha: float  # the headline alpha (chosen or given)
    alpha_chosen: bool
    alpha_differences: dict[float, float]  # the alpha search (mean surely-different fraction)
    alphas: tuple[float, ...]  # every alpha scored (the curve)
    ties: str
    tie_seed: int
    names: tuple[str, ...]  # the rows, in the order of the methods given
    metrics: tuple[str, ...]  # the metrics, in column order
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
                name: method_result(self.sums, self.metrics, m, c, self.alphas, headline)
                for m, name in enumerate(self.names)
            }
            for c in self.class_counts
        }


def _curve_area(alphas: Sequence[float], values: Sequence[float | None]) -> float | None:
    if len(alphas) < 2 or any(v is None for v in values):
        return None
    defined = cast(Sequence[float], values)  # no None, checked above
    return float(np.trapezoid(defined, alphas) / (alphas[-1] - alphas[0]))


def method_result(
    sums: EvaluationSums,
    metrics: Sequence[str],
    method: int,
    cls: int | None,
    alphas: Sequence[float],
    headline: int,
) -> MethodResult:
    """Row of method ``method`` for class ``cls`` (``None``: all images)."""
    summaries: dict[str, Any] = {}
    curves: dict[str, dict[float, Any]] = {}
    for name in metrics:
        metric = get_metric(name)

        def pick(slot: int, reduction: Any = metric.reduction, name: str = name) -> Any:
            by_class = jax.tree.map(lambda x: np.asarray(x)[method, slot], sums.metrics[name])
            return reduction.summary(by_class, cls)

        if metric.per_alpha:
            curves[name] = {float(a): pick(j) for j, a in enumerate(alphas)}
            summaries[name] = curves[name][float(alphas[headline])]
        else:
            summaries[name] = pick(0)
    ties = np.asarray(sums.tie_decided)[method, headline]  # (C,)
    empty = np.asarray(sums.empty_maps)[method]  # (C,)
    images = np.asarray(sums.images)
    select = slice(None) if cls is None else slice(cls, cls + 1)
    count = int(images[select].sum())
    return MethodResult(
        metrics=summaries,
        curves=curves,
        curve_areas={
            name: _curve_area(alphas, [curve[float(a)].value for a in alphas])
            for name, curve in curves.items()
        },
        tie_decided=float(ties[select].sum()) / count if count else None,
        empty_maps=int(empty[select].sum()),
    )


def evaluation_from_sums(
    sums: EvaluationSums,
    names: list[str],
    alphas: tuple[float, ...],
    alpha: float,
    differences: dict[float, float],
    ties: str,
    tie_seed: int,
    metrics: Sequence[str] = ("average_drop", "black_average_drop"),
) -> Evaluation:
    """The :class:`Evaluation` (rows, curve, search table) of host copies of the sums."""
    images = np.asarray(sums.images)
    total = int(images.sum())
    nonfinite = int(sums.nonfinite_images)
    if total == 0:
        reason = (
            f"all {nonfinite} had NaN/inf pixels"
            if nonfinite
            else "every image was left out (restrict_to selected none)"
        )
        raise ValueError(f"no image could be evaluated: {reason}")
    if nonfinite:
        warnings.warn(
            f"{nonfinite} image(s) with NaN/inf pixels were skipped (first at data index "
            f"{int(sums.first_nonfinite)})",
            stacklevel=3,
        )
    headline = alphas.index(alpha)
    metrics = tuple(metrics)
    return Evaluation(
        alpha=float(alpha),
        alpha_chosen=bool(differences),
        alpha_differences=differences,
        alphas=tuple(float(a) for a in alphas),
        ties=ties,
        tie_seed=int(tie_seed),
        names=tuple(names),
        metrics=metrics,
        results={
            n: method_result(sums, metrics, m, None, alphas, headline) for m, n in enumerate(names)
        },
        class_counts={c: int(n) for c, n in enumerate(images)},
        accuracy=float(np.asarray(sums.correct).sum()) / total,
        nonfinite_images=nonfinite,
        first_nonfinite_index=int(sums.first_nonfinite) if nonfinite else None,
        pixel_range=(float(sums.pixel_min), float(sums.pixel_max)),
        sums=sums,
    )
