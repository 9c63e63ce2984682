"""Is BAD faithful? Every imputer against the counterfactual truth, on lesion-reliant images.

Command (about 6 minutes per seed on 2 CPU cores; ``--quick`` about 1 minute)::

    python experiments/counterfactual_study.py [--seeds 0,1,2] [--quick]

For each seed it trains the demo's model (``experiments/phantom.py``'s config: small CNN,
ReLU output, occlusion-aware training), measures how much the model relies on the lesions
by rendering each test image again without them (``jaxcam.reliance``: r = (Y - Y_without)
/ Y on the lesion-free twin), and keeps the PNEUMONIA test images the model classifies
correctly *and* relies on (r > 0.5): on those the lesion mask is a faithful explanation.
There it scores a ladder of maps of known quality (``jaxcam.ground_truth``: ground truth,
blurred, shifted, noisy, centre blob, uniform, position-neutral noise, inverted) plus CAM
and Grad-CAM++ with every imputer of the black-masking metric - ``black`` (the paper's
BAD), ``blur``, ``mean``, ``noisy_linear`` (ROAD) - and ``counterfactual`` (removed pixels
replaced by the twin's: exactly the lesion evidence removed, the truth), at every alpha of
a grid, plus AD. It prints, per seed::

    seed 0: test accuracy 0.9xx; reliance (PNEUMONIA): mean r 0.9x, r > 0.5 1xx/1xx (9x %),
    prediction flips without the lesions 9x %; lesion-reliant images scored: N; alpha 0.xx
    metric | tau levels @alpha | tau twin @alpha | tau twin min/mean/max over the grid | ...

where *tau levels* is Kendall's tau-b between the metric's ranking of the ladder and the
designed quality levels, and *tau twin* between its ranking of all maps and the
counterfactual metric's ranking at the same alpha. Then a summary over seeds, and the
randomisation sanity check (maps of models whose head and top blocks were re-drawn,
scored on the trained model; a trustworthy metric scores them worse). Writes
``results/counterfactual_study/results.json`` and ``results.md``.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

import jaxcam
from jaxcam.evaluation import software_versions
from jaxcam.experiments import apply_overrides, load_config
from jaxcam.experiments.data import open_memory_splits
from jaxcam.experiments.runner import quiet_logs
from jaxcam.ground_truth import LADDER_QUALITY, kendall_tau_b, ladder_references
from jaxcam.reliance import lesion_reliance, reliance_summary
from jaxcam.sanity import randomisation_check, randomisation_layers
from jaxcam.train import predict_scores, train_on_arrays

#: The imputers compared (registered metric name -> short name); the last one is the truth.
IMPUTERS = {
    "black_average_drop": "black",
    "blurred_average_drop": "blur",
    "mean_average_drop": "mean",
    "noisy_linear_average_drop": "noisy_linear",
    "counterfactual_average_drop": "counterfactual",
}
TRUTH = "counterfactual_average_drop"
METRICS = ("average_drop", *IMPUTERS)
GRID = (0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9)
METHODS = ("cam", "grad_cam_plus_plus")
RELIANT = 0.5  # r above which an image counts as lesion-reliant


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--seeds", default="0,1,2")
    parser.add_argument("--quick", action="store_true", help="2 epochs, 300/60/120 images")
    parser.add_argument("--out", default="results/counterfactual_study")
    parser.add_argument("--data-dir", default="results/tfds")
    parser.add_argument("--no-sanity", action="store_true", help="skip the randomisation check")
    return parser.parse_args(argv)


def study_config(seed: int, quick: bool, data_dir: str) -> jaxcam.experiments.ExperimentConfig:
    config = load_config(str(Path(__file__).with_name("phantom.py")))
    settings = [f"seed={seed}", f"data.data_dir={data_dir}"]
    if quick:
        settings += ["train.epochs=2", "data.split_sizes=300,60,120"]
    return apply_overrides(config, settings)


def ranking_taus(values: dict[str, float | None], truth: dict[str, float | None]) -> dict:
    """Kendall's tau-b of a metric's values (lower is better) against the ladder's designed
    levels (ladder rungs only) and against the truth's values (every map)."""
    ladder = [n for n in LADDER_QUALITY if f"[{n}]" in values]
    levels = [LADDER_QUALITY[n] for n in ladder]
    rung_values = [values[f"[{n}]"] for n in ladder]
    names = [n for n in values if values[n] is not None and truth.get(n) is not None]
    out: dict[str, float | None] = {"levels": None, "truth": None}
    if None not in rung_values:
        out["levels"] = kendall_tau_b([-v for v in rung_values], levels)  # type: ignore[operator]
    if len(names) >= 2:
        out["truth"] = kendall_tau_b([values[n] for n in names], [truth[n] for n in names])
    return out


def run_seed(seed: int, args: argparse.Namespace) -> dict[str, Any]:
    start = time.perf_counter()
    config = study_config(seed, args.quick, args.data_dir)
    data = open_memory_splits(config)
    model = jaxcam.create_model(config.model.name, num_classes=2, output=config.model.output)
    train_config = dataclasses.replace(config.train, seed=seed)
    trained = train_on_arrays(model, data.train, data.val, train_config, log=lambda _: None)
    test = data.test
    predicted = np.argmax(predict_scores(trained, test.images), axis=-1)
    accuracy = float(np.mean(predicted == test.labels))

    # Reliance: the explained (predicted) class on the image and on its lesion-free twin.
    reliance = lesion_reliance(trained, test.images, test.twins, predicted)
    by_class = reliance_summary(reliance, test.labels, 2)
    focus = data.focus_index
    reliant = (
        (test.labels == focus)
        & (predicted == focus)
        & np.asarray(reliance.defined)
        & (np.asarray(reliance.reliance) > RELIANT)
    )

    if not reliant.any():
        return {
            "seed": seed,
            "test_accuracy": accuracy,
            "reliance": by_class,
            "reliant_images": 0,
            "alpha": None,
            "taus": {},
            "wall_time_s": round(time.perf_counter() - start, 1),
        }

    # The headline alpha: the demo's rule on all test images (label-free, maps only).
    alpha = jaxcam.evaluate(
        trained, (test.images, test.labels), list(jaxcam.saliency.PAPER_METHOD_NAMES),
        curve=False,
    ).alpha  # fmt: skip
    grid = tuple(sorted({*GRID, alpha}))
    sick = np.flatnonzero(test.labels == focus)
    rows = {
        **{jaxcam.saliency.method_info(m).display: jaxcam.saliency.method_info(m).row()
           for m in METHODS},
        **{f"[{n}]": ref for n, ref in ladder_references().items()},
    }  # fmt: skip
    evaluation = jaxcam.evaluate(
        trained,
        {
            "image": test.images[sick],
            "label": test.labels[sick],
            "mask": test.masks[sick],
            "twin": test.twins[sick],
            "reliant": reliant[sick],
        },
        rows,
        metrics=METRICS,
        alpha=alpha,
        grid=grid,
        restrict_to="reliant",
    )
    values = {
        metric: {
            a: {name: r.curves[metric][a].value if metric in r.curves else r.metrics[metric].value
                for name, r in evaluation.results.items()}
            for a in grid
        }
        for metric in METRICS
    }  # fmt: skip
    taus: dict[str, dict[str, Any]] = {}
    for metric in METRICS:
        per_alpha = {a: ranking_taus(values[metric][a], values[TRUTH][a]) for a in grid}
        twin_curve = [per_alpha[a]["truth"] for a in GRID if per_alpha[a]["truth"] is not None]
        taus[metric] = {
            "levels_at_alpha": per_alpha[alpha]["levels"],
            "truth_at_alpha": per_alpha[alpha]["truth"],
            "truth_min": min(twin_curve) if twin_curve else None,
            "truth_mean": float(np.mean(twin_curve)) if twin_curve else None,
            "truth_max": max(twin_curve) if twin_curve else None,
            "truth_by_alpha": {f"{a:.2f}": per_alpha[a]["truth"] for a in GRID},
            "levels_by_alpha": {f"{a:.2f}": per_alpha[a]["levels"] for a in GRID},
        }
    result: dict[str, Any] = {
        "seed": seed,
        "test_accuracy": accuracy,
        "reliance": by_class,
        "reliant_images": int(reliant.sum()),
        "alpha": alpha,
        "taus": taus,
        "values_at_alpha": {m: values[m][alpha] for m in METRICS},
    }
    if not args.no_sanity:
        # Head only, then the whole network re-drawn (Adebayo et al.'s cascade, two steps).
        total = len(randomisation_layers(trained))
        reliant_sick = np.flatnonzero(reliant)
        check = randomisation_check(
            trained,
            {
                "image": test.images[reliant_sick],
                "label": test.labels[reliant_sick],
                "twin": test.twins[reliant_sick],
            },
            METHODS,
            METRICS,
            alpha,
            steps=(1, total),
        )
        result["randomisation"] = {
            "steps": [list(s) for s in check.steps],
            "rows": {
                f"{method} / step {step}": {
                    "layer": row.layer,
                    "metrics": row.metrics,
                    "rank_correlation": row.rank_correlation,
                }
                for (method, step), row in check.rows.items()
            },
            "scores_worse": {
                metric: [
                    check.scores_worse(method, step, metric)
                    for method in check.methods
                    for step, _ in check.steps
                    if step > 0
                ]
                for metric in METRICS
            },
        }
    result["wall_time_s"] = round(time.perf_counter() - start, 1)
    return result


def _fmt(value: float | None, digits: int = 2) -> str:
    return "n/a" if value is None else f"{value:.{digits}f}"


def seed_report(result: dict[str, Any]) -> str:
    sick = result["reliance"][1]
    lines = [
        f"seed {result['seed']}: test accuracy {result['test_accuracy']:.3f}; reliance "
        f"(PNEUMONIA): mean r {_fmt(sick['mean_reliance'])}, "
        f"r > 0.5 {_fmt(sick['strongly_reliant'])}, "
        f"prediction flips without the lesions {_fmt(sick['flip_share'])}; "
        f"lesion-reliant images scored: {result['reliant_images']}; "
        f"alpha {_fmt(result['alpha'])} ({result['wall_time_s']} s)",
        "metric | tau levels @alpha | tau twin @alpha | tau twin min / mean / max over alpha "
        "| sanity",
    ]
    worse = (result.get("randomisation") or {}).get("scores_worse", {})
    for metric, t in result["taus"].items():
        name = IMPUTERS.get(metric, "AD")
        flags = worse.get(metric, [])
        sanity = f"{sum(bool(f) for f in flags)}/{len(flags)}" if flags else "n/a"
        lines.append(
            f"{name:14s} | {_fmt(t['levels_at_alpha']):>5s} | {_fmt(t['truth_at_alpha']):>5s} | "
            f"{_fmt(t['truth_min'])} / {_fmt(t['truth_mean'])} / {_fmt(t['truth_max'])} | "
            f"randomised maps scored worse: {sanity}"
        )
    return "\n".join(lines)


def summary(results: list[dict[str, Any]]) -> tuple[str, dict[str, Any]]:
    """Per metric over seeds: the worst seed's tau against the truth (at alpha and on
    average over the grid), and whether it reaches 0.9 on every seed."""
    rows, record = [], {}
    for metric in METRICS:
        at_alpha = [r["taus"][metric]["truth_at_alpha"] for r in results]
        mean = [r["taus"][metric]["truth_mean"] for r in results]
        best = [r["taus"][metric]["truth_max"] for r in results]
        worst = lambda xs: None if None in xs else min(xs)  # noqa: E731
        record[metric] = {
            "worst_seed_at_alpha": worst(at_alpha),
            "worst_seed_mean_over_alpha": worst(mean),
            "worst_seed_best_alpha": worst(best),
            "reaches_0_9_every_seed_at_alpha": None
            if None in at_alpha
            else all(t >= 0.9 for t in at_alpha),
        }
        rows.append(
            f"{IMPUTERS.get(metric, 'AD'):14s} | {_fmt(worst(at_alpha)):>5s} | "
            f"{_fmt(worst(mean)):>5s} | {_fmt(worst(best)):>5s}"
        )
    header = (
        "metric | worst-seed tau twin @alpha | worst-seed mean over alpha | worst-seed best alpha"
    )
    return "\n".join([header, *rows]), record


def main(argv: list[str] | None = None) -> dict[str, Any]:
    args = parse_args(argv)
    quiet_logs()
    start = time.perf_counter()
    seeds = [int(s) for s in args.seeds.split(",") if s.strip()]
    results = []
    for seed in seeds:
        result = run_seed(seed, args)
        print(seed_report(result), flush=True)
        results.append(result)
    text, record = summary(results)
    print("\nOver seeds (tau against the counterfactual truth; 1 = same ranking)")
    print(text)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    payload = {
        "seeds": results,
        "summary": record,
        "grid": list(GRID),
        "quick": args.quick,
        "versions": software_versions(),
        "wall_time_s": round(time.perf_counter() - start, 1),
    }
    (out / "results.json").write_text(json.dumps(payload, indent=1, default=str))
    (out / "results.md").write_text("\n\n".join([*(seed_report(r) for r in results), text]) + "\n")
    print(f"wrote {out / 'results.json'} and {out / 'results.md'} ({payload['wall_time_s']} s)")
    return payload


if __name__ == "__main__":
    main(sys.argv[1:])
