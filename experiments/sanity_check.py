"""Model randomisation sanity check of the maps and of the metrics (Adebayo et al., 2018).

Command::

    python experiments/sanity_check.py            # the demo's setting (5 randomisation steps)
    python experiments/sanity_check.py --steps all   # every step (17 for the small CNN)
    python experiments/sanity_check.py --epochs 2 --split-sizes 200,50,100   # ~2 min, 2 CPUs

Trains the demo's model (``experiments/phantom.py``: small CNN, ReLU output, occlusion-aware
training) on the phantom X-rays, then for each step of the cascading randomisation
(:func:`jaxcam.sanity.cascading_randomisation`: the classifier first, then the backbone's
modules top down, re-drawn cumulatively) explains the trained model's predicted class of
every test image with the randomised model (CAM, Grad-CAM, Grad-CAM++ by default) and
scores those maps with AD and BAD (plus ``--metrics``) **on the trained model**, at the
trained methods' alpha (:func:`jaxcam.sanity.randomisation_check`). ``--steps spread``
(default) takes 5 evenly spaced steps from the classifier alone to the whole model (for
the small CNN 1, 5, 9, 13, 17: the classifier, then each stage of the backbone). It
prints::

    test accuracy 0.xxx (N images)
    alpha = 0.xx (chosen where the methods' black images differ most; ties: smooth)
    randomisation groups (top down; step k re-draws groups 1..k; 17 in all): 1 classifier,
    2 backbone/BatchNorm_7, 3 backbone/Conv_7, ...

    AD (lower is better; * = the randomised maps score worse than the trained ones)
    step                    | CAM       | Grad-CAM  | Grad-CAM++
    0 trained               | 0.xxxx    | ...
    1 classifier            | 0.xxxx *  | ...

then the same for BAD (and every other metric), the mean Spearman rank correlation
between the trained and the randomised maps per image (Adebayo et al.'s measure: near
1 = the map did not change), and one verdict line per metric: in how many (method,
step) cells it scored the randomised maps worse. A metric worth trusting must do so in
every cell: a map of a randomised model no longer explains the trained one. Writes
``OUT/results.json`` (every value, the steps, the config).
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import math
import sys
import time
from pathlib import Path
from typing import Any

import jax

from jaxcam.experiments import load_config
from jaxcam.experiments.data import open_memory_splits
from jaxcam.metrics import DEFAULT_METRICS, get_metric
from jaxcam.models import create_model
from jaxcam.saliency import method_rows
from jaxcam.sanity import RandomisationCheck, randomisation_check, randomisation_layers
from jaxcam.train import accuracy, train_on_arrays

CONFIG = Path(__file__).resolve().parent / "phantom.py"


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--out", default="results/sanity_check")
    parser.add_argument("--data-dir", default=None, help="default: the demo's (results/tfds)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--epochs", type=int, default=None, help="default: the demo's (8)")
    parser.add_argument("--split-sizes", default=None, help="train,val,test image counts")
    parser.add_argument("--image-size", type=int, default=None, help="default: 128")
    parser.add_argument("--methods", default="cam,grad_cam,grad_cam_plus_plus")
    parser.add_argument(
        "--metrics", default="", help="registered metrics scored after AD and BAD (comma list)"
    )
    parser.add_argument(
        "--steps",
        default="spread",
        help="randomisation steps: 'spread' (5 evenly spaced from the head to the whole "
        "model), 'all', or step numbers '1,2,5'",
    )
    parser.add_argument("--alpha", type=float, default=None, help="default: chosen")
    parser.add_argument("--randomisation-seed", type=int, default=1)
    return parser.parse_args(argv)


def _names(text: str) -> list[str]:
    return [t.strip() for t in text.split(",") if t.strip()]


def _steps(text: str, groups: int) -> list[int]:
    """Step numbers: all, 5 evenly spaced ones (the first and the last included), or given."""
    if text.strip() == "all":
        return list(range(1, groups + 1))
    if text.strip() == "spread":
        return sorted({round(1 + i * (groups - 1) / 4) for i in range(5)})
    return [int(t) for t in _names(text)]


def _cell(value: float | None, worse: bool | None) -> str:
    if value is None:
        return "n/a"
    return f"{value:.4f}" + (" *" if worse else "")


def metric_table(check: RandomisationCheck, metric: str) -> str:
    """One metric: a row per randomisation step, a column per method."""
    step_names = [f"{step} {layer}" for step, layer in check.steps]
    width = max(len(n) for n in step_names)
    lines = [" | ".join([f"{'step':<{width}}", *(f"{m:<10}" for m in check.methods)])]
    for (step, _), name in zip(check.steps, step_names, strict=True):
        cells = [
            _cell(
                check.value(method, step, metric),
                None if step == 0 else check.scores_worse(method, step, metric),
            )
            for method in check.methods
        ]
        lines.append(" | ".join([f"{name:<{width}}", *(f"{c:<10}" for c in cells)]))
    return "\n".join(lines)


def correlation_table(check: RandomisationCheck) -> str:
    step_names = [f"{step} {layer}" for step, layer in check.steps[1:]]
    width = max(len(n) for n in step_names)
    lines = [" | ".join([f"{'step':<{width}}", *(f"{m:<10}" for m in check.methods)])]
    for (step, _), name in zip(check.steps[1:], step_names, strict=True):
        cells = []
        for method in check.methods:
            rho = check.rows[method, step].rank_correlation
            cells.append("n/a" if rho is None else f"{rho:+.3f}")
        lines.append(" | ".join([f"{name:<{width}}", *(f"{c:<10}" for c in cells)]))
    return "\n".join(lines)


def verdicts(check: RandomisationCheck) -> dict[str, tuple[int, int]]:
    """Metric -> (cells where the randomised maps score worse, cells with a value)."""
    result = {}
    for metric in check.metrics:
        outcomes = [
            check.scores_worse(method, step, metric)
            for method in check.methods
            for step, _ in check.steps[1:]
        ]
        defined = [o for o in outcomes if o is not None]
        result[metric] = (sum(defined), len(defined))
    return result


def main(argv: list[str] | None = None) -> dict[str, Any]:
    args = parse_args(argv)
    start = time.perf_counter()
    config = load_config(str(CONFIG))
    data_config = dataclasses.replace(
        config.data,
        split_sizes=args.split_sizes or config.data.split_sizes,
        data_dir=args.data_dir or config.data.data_dir,
    )
    config = dataclasses.replace(
        config,
        seed=args.seed,
        data=data_config,
        model=dataclasses.replace(config.model, image_size=args.image_size),
        train=dataclasses.replace(
            config.train, seed=args.seed, epochs=args.epochs or config.train.epochs
        ),
    )
    metrics = tuple(dict.fromkeys([*DEFAULT_METRICS, *_names(args.metrics)]))
    methods = method_rows(_names(args.methods))

    data = open_memory_splits(config)
    module = create_model(
        config.model.name, num_classes=len(data.class_names), output=config.model.output
    )
    trained = train_on_arrays(module, data.train, data.val, config.train, log=print)
    test = data.test
    test_accuracy = accuracy(trained, test.images, test.labels)
    print(f"test accuracy {test_accuracy:.3f} ({len(test.labels)} images)")
    if test_accuracy < 0.6:
        print("NOTE: the model is near chance; the check says little about a trained model")
    trained_at = time.perf_counter()

    groups = randomisation_layers(trained)
    check = randomisation_check(
        trained,
        {"image": test.images, "label": test.labels},
        methods,
        metrics,
        args.alpha,
        steps=_steps(args.steps, len(groups)),
        key=jax.random.key(args.randomisation_seed),
        ties=config.evaluation.ties,
        # batches of at most 64 with the least padding (100 images: 2 x 50, not 2 x 64)
        batch_size=math.ceil(len(test.labels) / math.ceil(len(test.labels) / 64)),
    )
    how = "chosen where the methods' black images differ most"
    if args.alpha is not None:
        how = "given"
    print(f"alpha = {check.alpha:.2f} ({how}; ties: {config.evaluation.ties})")
    print(
        f"randomisation groups (top down; step k re-draws groups 1..k; {len(groups)} in all): "
        + ", ".join(f"{i} {g}" for i, g in enumerate(groups, start=1))
    )
    for metric in metrics:
        label = get_metric(metric).label
        print(
            f"\n{label} (lower is better; * = the randomised maps score worse than the "
            "trained ones, as they must)"
        )
        print(metric_table(check, metric))
    print("\nSpearman rank correlation with the trained maps (mean over images; 1 = unchanged)")
    print(correlation_table(check))
    print()
    outcome = verdicts(check)
    for metric, (worse, total) in outcome.items():
        label = get_metric(metric).label
        status = "passes" if worse == total else "FAILS"
        print(
            f"{label} scores the randomised maps worse in {worse}/{total} (method, step) "
            f"cells: {status} the randomisation check"
        )
    wall = time.perf_counter() - start
    print(
        f"\nWall time {wall:.0f} s (training and data {trained_at - start:.0f} s, "
        f"check {wall - (trained_at - start):.0f} s)."
    )

    record = {
        "config": dataclasses.asdict(config),
        "arguments": vars(args),
        "test_accuracy": test_accuracy,
        "alpha": check.alpha,
        "alpha_chosen": check.alpha_chosen,
        "groups": groups,
        "steps": [list(s) for s in check.steps],
        "rows": [
            {
                "method": row.method,
                "step": row.step,
                "layer": row.layer,
                "metrics": row.metrics,
                "rank_correlation": row.rank_correlation,
                "undefined_correlations": row.undefined_correlations,
            }
            for row in check.rows.values()
        ],
        "verdicts": {m: {"worse": w, "cells": t} for m, (w, t) in outcome.items()},
        "wall_seconds": wall,
    }
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "results.json").write_text(json.dumps(record, indent=2))
    return record


if __name__ == "__main__":
    main(sys.argv[1:])
