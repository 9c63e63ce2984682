"""Evaluating saliency methods on a data set: maps, alpha choice, AD/BAD (Table 1).

The library's jitted steps each take one batch; this module runs them over a
data set in fixed-size batches (the last one padded, so nothing recompiles) and
assembles Table 1.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any, NamedTuple

import jax
import numpy as np

from jaxcam.metrics import (
    DropSummary,
    average_drop,
    black_average_drop,
    choose_alpha,
    masked_scores,
)
from jaxcam.models.base import SplitModel
from jaxcam.saliency.maps import saliency_maps

# Table 1's rows: display name -> (registered method, options).
PAPER_METHODS: dict[str, tuple[str, dict[str, Any]]] = {
    "CAM": ("cam", {}),
    "Grad-CAM": ("grad_cam", {}),
    "Grad-CAM++": ("grad_cam_plus_plus", {"derivatives": "closed_form"}),
}


def in_batches(fn: Callable[..., Any], arrays: Sequence[np.ndarray], batch_size: int) -> Any:
    """Apply ``fn(*batch)`` over aligned arrays in batches of exactly ``batch_size``.

    The last batch is padded by repeating its first rows and the padding is cut
    from the outputs; outputs (any pytree of arrays) are concatenated on the host.
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
    """Normalised maps (N, H, W) and explained classes (N,) for a whole data set."""
    if class_indices is None:
        return in_batches(
            lambda x: saliency_maps(model, x, None, method, **options), [images], batch_size
        )
    return in_batches(
        lambda x, c: saliency_maps(model, x, c, method, **options),
        [images, class_indices],
        batch_size,
    )


class MethodResult(NamedTuple):
    average_drop: DropSummary
    black_average_drop: DropSummary
    empty_maps: int  # maps that are 0 everywhere (no positive evidence)


class Evaluation(NamedTuple):
    alpha: float
    alpha_differences: dict[float, float]  # the alpha search (see metrics.choose_alpha)
    results: dict[str, MethodResult]
    maps: dict[str, np.ndarray]
    classes: np.ndarray


def evaluate_methods(
    model: SplitModel,
    images: np.ndarray,
    labels: np.ndarray,
    methods: Mapping[str, tuple[str, dict[str, Any]]] = PAPER_METHODS,
    *,
    explain: str = "predicted",
    alpha: float | None = None,
    batch_size: int = 64,
) -> Evaluation:
    """Table 1 for a data set: AD and BAD (with Incorrect and Increase) per method.

    Args:
      model: bound split model.
      images: raw images (N, H, W, C).
      labels: true classes (N,), the target of Incorrect.
      methods: display name -> (registered method, options).
      explain: which class c is explained and scored: ``predicted`` or ``label``.
      alpha: BAD's kept area; ``None`` chooses it with :func:`choose_alpha`.
      batch_size: images per jitted step.
    """
    if explain not in ("predicted", "label"):
        raise ValueError(f"explain must be 'predicted' or 'label', got {explain!r}")
    labels = np.asarray(labels)
    requested = None if explain == "predicted" else labels
    maps, classes = {}, None
    for name, (method, options) in methods.items():
        maps[name], classes = compute_maps(model, images, requested, method, batch_size, **options)
    if alpha is None:
        alpha, differences = choose_alpha(maps)
    else:
        differences = {}
    results = {}
    for name, method_maps in maps.items():
        scores = in_batches(
            lambda x, m, c: masked_scores(model, x, m, c, alpha),
            [images, method_maps, classes],
            batch_size,
        )
        results[name] = MethodResult(
            average_drop(scores, labels),
            black_average_drop(scores, labels),
            int(np.sum(method_maps.max(axis=(1, 2)) == 0)),
        )
    return Evaluation(alpha, differences, results, maps, classes)


def _cell(value: float | None, percent: bool = False) -> str:
    if value is None:
        return "n/a"
    return f"{100 * value:.1f}" if percent else f"{value:.4f}"


def format_table(evaluation: Evaluation) -> str:
    """Table 1 as text: method | AD | BAD | Incorrect % AD | Incorrect % BAD (+ context)."""
    header = ("method", "AD", "BAD", "Incorrect % AD", "Incorrect % BAD", "excluded (Y=0)")
    rows = [header]
    for name, result in evaluation.results.items():
        ad, bad = result.average_drop, result.black_average_drop
        rows.append(
            (
                name,
                _cell(ad.value),
                _cell(bad.value),
                _cell(ad.incorrect, percent=True),
                _cell(bad.incorrect, percent=True),
                str(ad.num_excluded),
            )
        )
    widths = [max(len(row[i]) for row in rows) for i in range(len(header))]
    lines = [" | ".join(cell.ljust(w) for cell, w in zip(row, widths, strict=True)) for row in rows]
    lines.insert(1, "-+-".join("-" * w for w in widths))
    return "\n".join(lines)


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
    }
