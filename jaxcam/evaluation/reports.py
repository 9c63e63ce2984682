"""Tables (text and markdown), JSON records and provenance, generated from the results.

Columns come from the metrics of the rows (their registered labels): each metric's
value and Incorrect %, what the clamp hides for metrics that declare
``signed_columns`` (BAD), the tie share and the curve mean of metrics scored per
alpha, the excluded images, and the non-finite ones per metric. With the paper's two
metrics this is exactly Table 1's layout as printed since the first release.
"""

from __future__ import annotations

import dataclasses
import importlib.metadata
import json
import os
import platform
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import jax
import numpy as np

from jaxcam.evaluation.results import Evaluation, MethodResult
from jaxcam.evaluation.step import HISTOGRAM_MAX_CLASSES
from jaxcam.metrics import get_metric

RAISED_MARK = "^"
RAISED_NOTE = (
    f"{RAISED_MARK} most masked images raised the score (O > Y); the clamp max(0, Y - O) "
    "counts them as a perfect 0"
)


def _cell(value: float | None, percent: bool = False, digits: int = 4) -> str:
    if value is None:
        return "n/a"
    if percent:
        return f"{100 * value:.1f}"
    return f"{value:.{digits}f}" if abs(value) < 1e4 else f"{value:.3g}"


def _raised(summary: Any) -> bool:
    return bool(getattr(summary, "mostly_increased", False))


def table_cells(
    rows: Mapping[str, MethodResult], compact: bool = False
) -> tuple[list[str], list[list[str]], list[str]]:
    """``(header, cells per row, notes)`` of a table of ``rows`` (display name -> row).

    Columns: each metric's value (marked ``^`` when most masked images raised the score,
    which the clamp records as 0), each metric's Incorrect %, then for metrics with
    ``signed_columns`` the share of masked images with O > Y, the mean signed change
    (O - Y)/Y and the median O/Y, the share of kept pixels a tie-break chose and each
    per-alpha metric's mean over the alpha curve, the images whose ratio is undefined
    (the first metric's: Y <= 0, or Y or O NaN/inf), and of those the images whose Y or
    O is NaN or inf (per metric). ``compact``: only each metric's value, the tie share
    and the image counts (to compare many metrics side by side).
    """
    first = next(iter(rows.values()), None)
    names = list(first.metrics) if first is not None else []
    metrics = [get_metric(n) for n in names]
    labels = [m.label for m in metrics]
    signed = [m for m in metrics if m.signed_columns and not compact]
    per_alpha = [m for m in metrics if m.per_alpha]
    curves = [] if compact else per_alpha
    header = ["method", *labels]
    if not compact:
        header += [f"Incorrect % {label}" for label in labels]
    for m in signed:
        header += [f"O>Y % {m.label}", f"mean (O-Y)/Y {m.label}", f"median O/Y {m.label}"]
    if per_alpha:
        header.append("ties % " + "/".join(m.label for m in per_alpha))
    header += [f"{m.label} curve mean" for m in curves]
    header += ["excluded", "non-finite " + "/".join(labels)]
    cells = []
    for name, result in rows.items():
        summaries = [result.metrics[m.name] for m in metrics]
        row = [name]
        row += [_cell(s.value) + (RAISED_MARK if _raised(s) else "") for s in summaries]
        if not compact:
            row += [_cell(s.incorrect, percent=True) for s in summaries]
        for m in signed:
            s = result.metrics[m.name]
            row += [
                _cell(s.increase_in_confidence, percent=True),
                _cell(s.mean_change, digits=3),
                _cell(s.median_ratio, digits=3),
            ]
        if per_alpha:
            row.append(_cell(result.tie_decided, percent=True))
        row += [_cell(result.curve_areas[m.name]) for m in curves]
        row += [
            str(summaries[0].num_excluded) if summaries else "0",
            "/".join(str(s.num_nonfinite) for s in summaries),
        ]
        cells.append(row)
    raised = any(RAISED_MARK in c for row in cells for c in row[1 : 1 + len(metrics)])
    return header, cells, [RAISED_NOTE] if raised else []


def format_table(rows: Mapping[str, MethodResult], compact: bool = False) -> str:
    """Table 1 as aligned text (see :func:`table_cells` for the columns)."""
    header, cells, notes = table_cells(rows, compact)
    lines = [header, *cells]
    widths = [max(len(row[i]) for row in lines) for i in range(len(header))]
    text = [" | ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)) for row in lines]
    text.insert(1, "-+-".join("-" * w for w in widths))
    return "\n".join(text + notes)


def markdown_table(rows: Mapping[str, MethodResult], compact: bool = False) -> str:
    """Table 1 as a markdown table, notes below (same cells as :func:`format_table`)."""
    header, cells, notes = table_cells(rows, compact)
    out = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    out += ["| " + " | ".join(row) + " |" for row in cells]
    return "\n".join(out + ([""] + notes if notes else []))


def _record(summary: Any) -> Any:
    if hasattr(summary, "_asdict"):
        return summary._asdict()
    if dataclasses.is_dataclass(summary) and not isinstance(summary, type):
        return dataclasses.asdict(summary)
    return summary


def row_record(result: MethodResult) -> dict[str, Any]:
    """One row as JSON-ready data: every metric's summary, curves, ties, empty maps."""
    return {
        **{name: _record(s) for name, s in result.metrics.items()},
        "curves": {
            name: {f"{a:.2f}": _record(s) for a, s in curve.items()}
            for name, curve in result.curves.items()
        },
        "curve_means": dict(result.curve_areas),
        "tie_decided": result.tie_decided,
        "empty_maps": result.empty_maps,
    }


def evaluation_record(evaluation: Evaluation) -> dict[str, Any]:
    """The evaluation as JSON-ready data (every row, per class, the curve, the search)."""
    return {
        "alpha": evaluation.alpha,
        "alpha_chosen": evaluation.alpha_chosen,
        "alpha_search": {f"{a:.2f}": d for a, d in evaluation.alpha_differences.items()},
        "alphas": list(evaluation.alphas),
        "metrics": list(evaluation.metrics),
        "ties": evaluation.ties,
        "tie_seed": evaluation.tie_seed,
        "accuracy": evaluation.accuracy,
        "class_counts": {str(c): n for c, n in evaluation.class_counts.items()},
        "nonfinite_images": evaluation.nonfinite_images,
        "pixel_range": list(evaluation.pixel_range),
        "all_images": {name: row_record(r) for name, r in evaluation.results.items()},
        "by_class": {
            str(c): {name: row_record(r) for name, r in rows.items()}
            for c, rows in evaluation.by_class.items()
        }
        if len(evaluation.class_counts) <= HISTOGRAM_MAX_CLASSES
        else "omitted: more than HISTOGRAM_MAX_CLASSES classes (see Evaluation.by_class)",
    }


def software_versions() -> dict[str, str]:
    """Versions and backend that produced a result, for results files."""
    import flax
    import optax

    return {
        "python": platform.python_version(),
        "jax": jax.__version__,
        "flax": flax.__version__,
        "optax": optax.__version__,
        "numpy": np.__version__,
        "jaxcam": importlib.metadata.version("jaxcam"),
        "backend": jax.default_backend(),
        "devices": str(jax.device_count()),
    }


def write_results_file(
    out_dir: str | os.PathLike, record: dict[str, Any], args: Any, start: float
) -> dict[str, Any]:
    """Write an experiment's ``results.json`` in ``out_dir`` (created) and print its path.

    ``record`` gets the command-line arguments (``vars(args)``, tuples as lists), the
    software versions and the wall time since ``start`` (``time.perf_counter()``).
    Returns the record as written.
    """
    record = {
        **record,
        "args": {k: list(v) if isinstance(v, tuple) else v for k, v in vars(args).items()},
        "versions": software_versions(),
        "wall_time_s": round(time.perf_counter() - start, 1),
    }
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    (out / "results.json").write_text(json.dumps(record, indent=2))
    print(f"wrote {out / 'results.json'} ({record['wall_time_s']} s)")
    return record
