"""The ``table1`` program: train on a data set held in memory, then Table 1 and Figure 1.

What ``experiments/phantom.py`` runs: build the data, train the configured model,
evaluate the configured methods and metrics on the test split (every alpha of the
grid in one pass; alpha chosen where the methods' black images differ most unless
given), print the focus class's table first (with reference rows built from the
lesion masks when the data has them, and a WARNING where BAD misranks them), then
the all-image table, then the extra methods at the same alpha; write
``results.json``, ``figure1.png`` and ``bad_curve.png``.
"""

from __future__ import annotations

import dataclasses
import json
import time
from collections.abc import Callable
from typing import Any

import numpy as np

from jaxcam.checks import check_alpha
from jaxcam.evaluation import (
    Evaluation,
    MethodResult,
    ReferenceMap,
    evaluate,
    evaluation_record,
    format_table,
    software_versions,
)
from jaxcam.experiments.config import ExperimentConfig, as_record
from jaxcam.experiments.data import MemorySplits, open_memory_splits
from jaxcam.ground_truth import ladder_references
from jaxcam.models import create_model
from jaxcam.models.protocol import Explainable
from jaxcam.reliance import Reliance, lesion_reliance, reliance_summary
from jaxcam.saliency import compute_maps, method_info, method_rows
from jaxcam.train import predict_scores, train_on_arrays
from jaxcam.viz import save_figure, save_line_plot


def reference_rows(names: tuple[str, ...]) -> dict[str, ReferenceMap]:
    """``[name]`` -> the ladder rung ``name`` as a reference row (needs ``mask``)."""
    ladder = ladder_references()
    unknown = [n for n in names if n not in ladder]
    if unknown:
        raise ValueError(f"unknown reference {unknown[0]!r}; the ladder has {list(ladder)}")
    return {f"[{name}]": ladder[name] for name in names}


def ground_truth_failures(rows: dict[str, MethodResult]) -> list[str]:
    """Where BAD does not rank the ground-truth map better than noise / its inverse."""
    if "[ground_truth]" not in rows:
        return []
    truth = rows["[ground_truth]"].black_average_drop.value
    failures = []
    for other in ("[noise]", "[inverted]"):
        if other not in rows:
            continue
        value = rows[other].black_average_drop.value
        if truth is None or value is None or not truth < value:
            failures.append(
                f"BAD does not rank the ground-truth map better than {other} "
                f"({_value(truth)} vs {_value(value)})"
            )
    return failures


def _value(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.4f}"


def _figure_rows(
    labels: np.ndarray, predicted: np.ndarray, focus: int | None, count: int
) -> np.ndarray:
    """Correctly classified images of the focus class, then one image of another class."""
    if focus is None:
        return np.arange(min(count, len(labels)))
    hits = np.flatnonzero((labels == focus) & (predicted == focus))[: max(count - 1, 1)]
    other = np.flatnonzero(labels != focus)[:1]
    return np.concatenate([hits, other]).astype(int)


def run_table1(config: ExperimentConfig, log: Callable[[str], None] = print) -> dict[str, Any]:
    """Run the program; returns what it writes to ``results.json``."""
    settings = config.evaluation
    if settings.alpha is not None:
        check_alpha(settings.alpha)
    start = time.perf_counter()
    data = open_memory_splits(config)
    model = create_model(
        config.model.name, num_classes=len(data.class_names), output=config.model.output
    )
    # One seed for the data and the training (``train.seed`` follows ``seed``).
    train_config = dataclasses.replace(config.train, seed=config.seed)
    trained = train_on_arrays(model, data.train, data.val, train_config, log=log)
    test = data.test
    test_scores = predict_scores(trained, test.images)  # (N, classes), once for every use
    predicted = np.argmax(test_scores, axis=-1)
    test_accuracy = float(np.mean(predicted == test.labels))
    log(f"test accuracy {test_accuracy:.3f} ({len(test.labels)} images)")

    methods: dict[str, Any] = method_rows(settings.methods)
    references = reference_rows(settings.references) if test.masks is not None else {}
    arrays = {"image": test.images, "label": test.labels, "mask": test.masks}
    evaluation = evaluate(
        trained,
        arrays,
        {**methods, **references},
        metrics=settings.metrics,
        alpha=settings.alpha,
        ties=settings.ties,
        explain=settings.explain,
        progress=True,
    )
    how = (
        "given"
        if settings.alpha is not None
        else "chosen where the methods' black images differ most"
    )
    log(f"alpha = {evaluation.alpha:.2f} ({how}; ties: {settings.ties})\n")
    focus = data.focus_index
    focus_rows = evaluation.by_class[focus] if focus is not None else evaluation.results
    if focus is not None:
        count = evaluation.class_counts[focus]
        log(f"{data.class_names[focus]} test images ({count}): the class to localise")
        log(format_table(focus_rows))
        log("\nAll test images (the paper's protocol)")
    log(format_table({name: evaluation.results[name] for name in methods}))
    _note_exact_derivatives(config, log)
    failures = ground_truth_failures(focus_rows)
    for failure in failures:
        log(f"WARNING: {failure}; see README 'Is BAD trustworthy?'")

    reliance_record = None
    if test.twins is not None and focus is not None:
        reliance_record = _reliance_section(
            trained, test, predicted, data, evaluation.alpha, config, log
        )

    extra_methods = method_rows(settings.extra_methods)
    more_start = time.perf_counter()
    extra = None
    if extra_methods:
        extra = evaluate(
            trained,
            {"image": test.images, "label": test.labels},
            extra_methods,
            metrics=settings.metrics,
            alpha=evaluation.alpha,
            curve=False,
            ties=settings.ties,
            explain=settings.explain,
        )
        if focus is not None:
            where = f"{data.class_names[focus]} test images"
            log(f"\nMore methods at alpha = {extra.alpha:.2f}: {where}")
            log(format_table(extra.by_class[focus]))
        log("More methods: all test images")
        log(format_table(extra.results))
    more_seconds = time.perf_counter() - more_start

    out = config.out_dir
    out.mkdir(parents=True, exist_ok=True)
    results = {
        **evaluation_record(evaluation),
        "methods": _method_records(methods),
        "more_methods": None
        if extra is None
        else {
            **evaluation_record(extra),
            "methods": _method_records(extra_methods),
            "wall_time_s": round(more_seconds, 1),
        },
        "references": list(references),
        "reliance": reliance_record,
        "explained_class": settings.explain,
        "ground_truth_check": {"passed": not failures, "failures": failures},
        "model": {
            "name": config.model.name,
            "output": config.model.output,
            "test_accuracy": test_accuracy,
        },
        "data": {**data.description, "sizes": data.sizes},
        "train": as_record(train_config),
        "config": as_record(config),
        "versions": software_versions(),
    }
    _save_curve(out / "bad_curve.png", evaluation, focus_rows, config, data)
    _save_figure1(
        out / "figure1.png", trained, test_scores, data, {**methods, **extra_methods}, settings
    )
    results["wall_time_s"] = round(time.perf_counter() - start, 1)
    (out / "results.json").write_text(json.dumps(results, indent=1))
    log(
        f"wrote {out / 'results.json'}, {out / 'figure1.png'} and {out / 'bad_curve.png'} "
        f"({results['wall_time_s']} s)"
    )
    return results


def _reliance_section(
    model: Explainable,
    test: Any,
    predicted: np.ndarray,
    data: MemorySplits,
    alpha: float,
    config: ExperimentConfig,
    log: Callable[[str], None],
) -> dict[str, Any]:
    """How much the model relies on the lesions (each test image against its lesion-free
    twin), then the focus class's lesion-reliant images scored with every
    ``reliant_metrics`` metric at the headline alpha (the lesion mask is a faithful
    explanation there: removing the lesions removes the evidence)."""
    settings = config.evaluation
    reliance = lesion_reliance(model, test.images, test.twins, predicted)
    threshold = settings.reliance_threshold
    # Over the correctly classified images (c = their class): a misclassified image's r
    # is about the wrong class (its twin can score far higher), not about the lesions.
    correct = predicted == test.labels
    summary = reliance_summary(
        Reliance(*(np.asarray(field)[correct] for field in reliance)),
        test.labels[correct],
        len(data.class_names),
        threshold=threshold,
    )
    log(
        "\nReliance on the lesions (each correctly classified test image against its "
        "lesion-free twin, r = (Y - Y_twin) / Y for its class):"
    )
    for c, row in summary.items():
        log(
            f"  {data.class_names[c]} ({row['images']} images): "
            f"mean r {_value(row['mean_reliance'])}, "
            f"r > {threshold} on {_share(row['strongly_reliant'])}, prediction flips without "
            f"the lesions on {_share(row['flip_share'])}"
        )
    focus = data.focus_index
    assert focus is not None  # the caller checks
    reliant = (
        (test.labels == focus)
        & (predicted == focus)
        & np.asarray(reliance.defined)
        & (np.asarray(reliance.reliance) > threshold)
    )
    record: dict[str, Any] = {
        "by_class": summary,
        "threshold": threshold,
        "reliant": int(reliant.sum()),
    }
    if not settings.reliant_metrics or not reliant.any():
        return record
    rows: dict[str, Any] = {**method_rows(settings.methods), **reference_rows(settings.references)}
    chosen = np.flatnonzero(reliant)
    scored = evaluate(
        model,
        {
            "image": test.images[chosen],
            "label": test.labels[chosen],
            "mask": test.masks[chosen],
            "twin": test.twins[chosen],
        },
        rows,
        metrics=settings.reliant_metrics,
        alpha=alpha,
        curve=False,
        ties=settings.ties,
        explain=settings.explain,
    )
    where = f"{data.class_names[focus]} test images the model relies on (r > {threshold})"
    log(f"\nLesion-reliant {where}: {len(chosen)}; every imputer at alpha = {alpha:.2f}")
    log(format_table(scored.results, compact=True))
    failures = ground_truth_failures(scored.results)
    for failure in failures:
        log(f"WARNING (lesion-reliant images): {failure}")
    record.update(
        {
            "metrics": list(settings.reliant_metrics),
            "table": evaluation_record(scored)["all_images"],
            "ground_truth_check": {"passed": not failures, "failures": failures},
        }
    )
    return record


def _share(value: float | None) -> str:
    return "n/a" if value is None else f"{100 * value:.1f} %"


def _method_records(rows: dict[str, Any]) -> dict[str, Any]:
    return {name: {"method": m, "options": o} for name, (m, o) in rows.items()}


def _note_exact_derivatives(config: ExperimentConfig, log: Callable[[str], None]) -> None:
    closed = [
        n
        for n in config.evaluation.methods
        if dict(method_info(n).options).get("derivatives") == "closed_form"
    ]
    if closed and config.model.output in ("relu", "linear"):
        log(
            "Grad-CAM++ uses the closed form, as in the paper: with exact derivatives a "
            f"{config.model.output} output over this linear head has d2 = d3 = 0 (alpha := 0); "
            "see experiments/higher_order.py"
        )


def _save_curve(
    path: Any,
    evaluation: Evaluation,
    rows: dict[str, MethodResult],
    config: ExperimentConfig,
    data: MemorySplits,
) -> None:
    focus = data.focus_index
    where = f"{data.class_names[focus]} test images" if focus is not None else "test images"
    save_line_plot(
        path,
        {
            name: (evaluation.alphas, [r.curve[a].value for a in evaluation.alphas])
            for name, r in rows.items()
        },
        title=f"BAD vs alpha, {where} ({data.title}, seed {config.seed})",
        x_label="alpha (share of pixels kept)",
        y_label="BAD",
        marked_x=evaluation.alpha,
    )


def _save_figure1(
    path: Any,
    model: Explainable,
    test_scores: np.ndarray,
    data: MemorySplits,
    rows: dict[str, Any],
    settings: Any,
) -> None:
    test = data.test
    predicted = np.argmax(test_scores, axis=-1)
    shown = _figure_rows(test.labels, predicted, data.focus_index, settings.figure_images)
    explained = test.labels[shown] if settings.explain == "label" else predicted[shown]
    scores = test_scores[shown]
    maps = {
        name: compute_maps(model, test.images[shown], explained, method, **options)[0]
        for name, (method, options) in rows.items()
    }
    names = data.class_names
    save_figure(
        path,
        test.images[shown],
        None if test.masks is None else test.masks[shown],
        maps,
        [
            f"label {names[test.labels[i]]}, pred {names[predicted[i]]}; explained "
            f"{names[c]} (Y = {scores[row, c]:.3g})"
            for row, (i, c) in enumerate(zip(shown, explained, strict=True))
        ],
    )
