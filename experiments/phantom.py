"""Table 1 and Figure 1 of the paper on the embedded phantom chest X-rays.

Command (what ``make demo`` runs)::

    python experiments/phantom.py

Builds the phantom data set (TFDS, array_record) under ``results/tfds``, trains
the small CAM-compatible CNN with the paper's ReLU output (about 2 minutes on 2
CPU cores; prints one line per epoch), then explains the predicted class of every
test image with CAM, Grad-CAM and Grad-CAM++ (closed form, as in the paper; with
``--output softmax`` or ``exp`` also exact Grad-CAM++),
chooses BAD's alpha where the methods' black images differ most, and prints::

    test accuracy 0.9xx (300 images)
    alpha = 0.xx (...)
    method     | AD     | BAD    | Incorrect % AD | Incorrect % BAD | excluded (Y=0)
    CAM        | 0.xxxx | 0.xxxx | ...
    Grad-CAM   | (equal to CAM: eq. 12)
    Grad-CAM++ | ...

It writes ``results/phantom/results.json`` (the same numbers, alpha and its
search, accuracy, seed, versions) and ``results/phantom/figure1.png``.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np
import tensorflow_datasets as tfds

import jaxcam
from jaxcam.checks import check_alpha
from jaxcam.data import batches, load_phantom
from jaxcam.evaluation import software_versions
from jaxcam.train import TrainConfig, accuracy, train
from jaxcam.viz import save_figure


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--out", default="results/phantom", help="output folder")
    parser.add_argument("--data-dir", default="results/tfds", help="TFDS data folder")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--epochs", type=int, default=8)
    parser.add_argument("--output", default="relu", choices=jaxcam.models.OUTPUT_ACTIVATIONS)
    parser.add_argument("--alpha", type=float, default=None, help="BAD alpha (default: chosen)")
    parser.add_argument(
        "--split-sizes", default=None, help="train,val,test sizes (default 1200,200,300)"
    )
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> dict:
    args = parse_args(argv)
    if args.alpha is not None:
        check_alpha(args.alpha)
    start = time.perf_counter()
    tfds.disable_progress_bar()
    sizes = None
    if args.split_sizes:
        sizes = dict(
            zip(("train", "val", "test"), map(int, args.split_sizes.split(",")), strict=True)
        )
    data = {
        s: load_phantom(s, args.data_dir, args.seed, split_sizes=sizes)
        for s in ("train", "val", "test")
    }
    image_shape = data["train"].images.shape[1:]

    model = jaxcam.create_model("small_cnn", num_classes=2, output=args.output)
    config = TrainConfig(epochs=args.epochs, seed=args.seed)
    trained = train(
        model,
        lambda epoch: batches(data["train"], config.batch_size, seed=args.seed * 1000 + epoch),
        image_shape,
        config,
        evaluate=lambda m: {"val accuracy": accuracy(m, data["val"].images, data["val"].labels)},
    )
    test = data["test"]
    test_accuracy = accuracy(trained, test.images, test.labels)
    print(f"test accuracy {test_accuracy:.3f} ({len(test.labels)} images)")

    methods = dict(jaxcam.PAPER_METHODS)
    if args.output in ("softmax", "exp"):  # exact derivatives are informative here
        methods["Grad-CAM++ exact"] = ("grad_cam_plus_plus", {"derivatives": "exact"})
    evaluation = jaxcam.evaluate_methods(
        trained, test.images, test.labels, methods, alpha=args.alpha
    )
    how = (
        "given" if args.alpha is not None else "chosen where the methods' black images differ most"
    )
    print(f"alpha = {evaluation.alpha:.2f} ({how})")
    print(jaxcam.format_table(evaluation))
    if args.output in ("relu", "linear"):
        print(
            "Grad-CAM++ uses the closed form, as in the paper: with exact derivatives a "
            f"{args.output} output over this linear head has d2 = d3 = 0 (alpha := 0); "
            "see experiments/higher_order.py"
        )

    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    results = {
        "table": {
            name: {
                "average_drop": r.average_drop._asdict(),
                "black_average_drop": r.black_average_drop._asdict(),
                "empty_maps": r.empty_maps,
            }
            for name, r in evaluation.results.items()
        },
        "methods": {name: {"method": m, "options": o} for name, (m, o) in methods.items()},
        "alpha": evaluation.alpha,
        "alpha_search": {f"{a:.2f}": d for a, d in evaluation.alpha_differences.items()},
        "explained_class": "predicted",
        "model": {"name": "small_cnn", "output": args.output, "test_accuracy": test_accuracy},
        "data": {
            "name": "phantom_chest_xray",
            "seed": args.seed,
            "sizes": {s: len(d.labels) for s, d in data.items()},
        },
        "train": {
            "epochs": config.epochs,
            "batch_size": config.batch_size,
            "learning_rate": config.learning_rate,
        },
        "versions": software_versions(),
        "wall_time_s": round(time.perf_counter() - start, 1),
    }
    (out / "results.json").write_text(json.dumps(results, indent=2))

    shown = _figure_rows(test.labels, evaluation.classes)
    save_figure(
        out / "figure1.png",
        test.images[shown],
        test.masks[shown],
        {name: evaluation.maps[name][shown] for name in evaluation.maps},
        [f"label {_NAMES[test.labels[i]]}, pred {_NAMES[evaluation.classes[i]]}" for i in shown],
    )
    print(f"wrote {out / 'results.json'} and {out / 'figure1.png'} ({results['wall_time_s']} s)")
    return results


_NAMES = ("NORMAL", "PNEUMONIA")


def _figure_rows(labels: np.ndarray, predicted: np.ndarray, count: int = 4) -> np.ndarray:
    """Mostly correctly classified pneumonia images, then one normal image."""
    pneumonia = np.flatnonzero((labels == 1) & (predicted == 1))[: count - 1]
    normal = np.flatnonzero(labels == 0)[:1]
    return np.concatenate([pneumonia, normal]).astype(int)


if __name__ == "__main__":
    main(sys.argv[1:])
