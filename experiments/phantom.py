"""Table 1 and Figure 1 of the paper on the embedded phantom chest X-rays.

Command (what ``make demo`` runs)::

    python experiments/phantom.py

Builds the phantom data set (TFDS, array_record) under ``results/tfds``, trains the
small CAM-compatible CNN with the paper's ReLU output (prints one line per epoch),
explains the predicted class of every test image with CAM, Grad-CAM and Grad-CAM++
(closed form, as in the paper; with ``--output softmax`` or ``exp`` also exact
Grad-CAM++), chooses BAD's alpha where the methods' black images differ most, scores
every alpha of the grid in the same pass, and prints::

    test accuracy 0.9xx (300 images)
    alpha = 0.xx (chosen where the methods' black images differ most; ties: random)

    PNEUMONIA test images (1xx): the class with something to localise
    method | AD | BAD | Incorrect % AD | Incorrect % BAD | O>Y % BAD | ... | BAD curve mean
    CAM, Grad-CAM (equal: eq. 12), Grad-CAM++, then reference maps built from the lesion
    masks: ground truth (best possible), random noise, inverted ground truth (worst)

    All test images (the paper's protocol)
    CAM, Grad-CAM, Grad-CAM++

and, if BAD does not rank the ground-truth map better than noise and than the inverted
ground truth, a WARNING. Then the other methods of the library (issue 11) as extra rows,
scored in a second, cheaper pass at the same alpha (no curve; they do not enter the
alpha search, so the tables above stay those of the paper's methods)::

    More methods at alpha = 0.xx: PNEUMONIA test images / all test images
    HiResCAM, XGrad-CAM (equal to Grad-CAM for this GAP -> dense head), LayerCAM,
    Ablation-CAM, Eigen-CAM (``--more-methods all`` adds Score-CAM: 64 forwards/image)

It writes ``results/phantom/results.json`` (every number, per class, the alpha curve and
search, seed, versions), ``figure1.png`` (maps of every method) and ``bad_curve.png``
(BAD vs alpha on the PNEUMONIA images, chosen alpha marked).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import absl.logging
import numpy as np
import tensorflow_datasets as tfds

import jaxcam
from jaxcam.checks import check_alpha
from jaxcam.data import CLASS_NAMES, PNEUMONIA, load_phantom_splits
from jaxcam.evaluation import MORE_METHODS, evaluation_record, software_versions
from jaxcam.ground_truth import ladder_references
from jaxcam.metrics import DEFAULT_TIES, TIE_POLICIES
from jaxcam.train import TrainConfig, accuracy, predict_scores, train_on_arrays
from jaxcam.viz import save_figure, save_line_plot

#: Extra rows (``--more-methods``): the cheap ones (one gradient, an SVD, or K head passes
#: through the pooled features) by default; ``all`` adds Score-CAM (K = 64 forwards/image).
CHEAP_METHODS = ("HiResCAM", "XGrad-CAM", "LayerCAM", "Ablation-CAM", "Eigen-CAM")

#: Reference rows of the PNEUMONIA table: maps built from the lesion masks.
REFERENCES = {
    f"[{name}]": ref
    for name, ref in ladder_references().items()
    if name in ("ground_truth", "noise", "inverted")
}


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--out", default="results/phantom", help="output folder")
    parser.add_argument("--data-dir", default="results/tfds", help="TFDS data folder")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--epochs", type=int, default=8)
    parser.add_argument("--output", default="relu", choices=jaxcam.models.OUTPUT_ACTIVATIONS)
    parser.add_argument("--alpha", type=float, default=None, help="BAD alpha (default: chosen)")
    parser.add_argument("--ties", default=DEFAULT_TIES, choices=TIE_POLICIES)
    parser.add_argument("--variant", default="v1", choices=("v1", "v2"), help="phantom variant")
    parser.add_argument(
        "--occlusion",
        type=float,
        default=0.5,
        help="probability of a random black occlusion per training image (README: why 0.5)",
    )
    parser.add_argument("--confounder", type=float, default=0.0, help="marker correlation (v2)")
    parser.add_argument(
        "--more-methods",
        default="cheap",
        choices=("none", "cheap", "all"),
        help="extra rows at the chosen alpha: cheap (default) or all (adds Score-CAM)",
    )
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
    absl.logging.set_verbosity(absl.logging.ERROR)
    data = load_phantom_splits(
        args.data_dir,
        args.seed,
        split_sizes=args.split_sizes,
        variant=args.variant,
        confounder=args.confounder,
    )
    model = jaxcam.create_model("small_cnn", num_classes=2, output=args.output)
    config = TrainConfig(epochs=args.epochs, seed=args.seed, occlusion=args.occlusion)
    trained = train_on_arrays(model, data["train"], data["val"], config)
    test = data["test"]
    test_accuracy = accuracy(trained, test.images, test.labels)
    print(f"test accuracy {test_accuracy:.3f} ({len(test.labels)} images)")

    methods = dict(jaxcam.PAPER_METHODS)
    if args.output in ("softmax", "exp"):  # exact derivatives are informative here
        methods["Grad-CAM++ exact"] = ("grad_cam_plus_plus", {"derivatives": "exact"})
    evaluation = jaxcam.evaluate(
        trained,
        {"image": test.images, "label": test.labels, "mask": test.masks},
        {**methods, **REFERENCES},
        alpha=args.alpha,
        ties=args.ties,
        progress=True,
    )
    how = (
        "given" if args.alpha is not None else "chosen where the methods' black images differ most"
    )
    print(f"alpha = {evaluation.alpha:.2f} ({how}; ties: {args.ties})\n")
    sick = evaluation.by_class[PNEUMONIA]
    print(f"PNEUMONIA test images ({evaluation.class_counts[PNEUMONIA]}): the class to localise")
    print(jaxcam.format_table(sick))
    print("\nAll test images (the paper's protocol)")
    print(jaxcam.format_table({name: evaluation.results[name] for name in methods}))
    if args.output in ("relu", "linear"):
        print(
            "Grad-CAM++ uses the closed form, as in the paper: with exact derivatives a "
            f"{args.output} output over this linear head has d2 = d3 = 0 (alpha := 0); "
            "see experiments/higher_order.py"
        )
    failures = ground_truth_failures(sick)
    for failure in failures:
        print(f"WARNING: {failure}; see README 'Is BAD trustworthy?'")
    more = more_methods(args.more_methods)
    more_start = time.perf_counter()
    extra = None
    if more:
        extra = jaxcam.evaluate(
            trained,
            {"image": test.images, "label": test.labels},
            more,
            alpha=evaluation.alpha,
            curve=False,
            ties=args.ties,
        )
        print(f"\nMore methods at alpha = {extra.alpha:.2f}: PNEUMONIA test images")
        print(jaxcam.format_table(extra.by_class[PNEUMONIA]))
        print("More methods: all test images")
        print(jaxcam.format_table(extra.results))
    more_seconds = time.perf_counter() - more_start

    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    results = {
        **evaluation_record(evaluation),
        "methods": {name: {"method": m, "options": o} for name, (m, o) in methods.items()},
        "more_methods": None
        if extra is None
        else {
            **evaluation_record(extra),
            "methods": {name: {"method": m, "options": o} for name, (m, o) in more.items()},
            "wall_time_s": round(more_seconds, 1),
        },
        "references": list(REFERENCES),
        "explained_class": "predicted",
        "ground_truth_check": {"passed": not failures, "failures": failures},
        "model": {"name": "small_cnn", "output": args.output, "test_accuracy": test_accuracy},
        "data": {
            "name": "phantom_chest_xray",
            "variant": args.variant,
            "confounder": args.confounder,
            "seed": args.seed,
            "sizes": {s: len(d.labels) for s, d in data.items()},
        },
        "train": {
            "epochs": config.epochs,
            "batch_size": config.batch_size,
            "learning_rate": config.learning_rate,
            "occlusion": config.occlusion,
        },
        "versions": software_versions(),
    }
    save_line_plot(
        out / "bad_curve.png",
        {
            name: (evaluation.alphas, [r.curve[a].value for a in evaluation.alphas])
            for name, r in sick.items()
        },
        title=f"BAD vs alpha, PNEUMONIA test images (phantom {args.variant}, seed {args.seed})",
        x_label="alpha (share of pixels kept)",
        y_label="BAD",
        marked_x=evaluation.alpha,
    )
    shown = _figure_rows(test.labels, trained, test.images)
    maps = {
        name: jaxcam.compute_maps(trained, test.images[shown], None, method, **options)[0]
        for name, (method, options) in {**methods, **more}.items()
    }
    predicted = np.argmax(predict_scores(trained, test.images[shown]), axis=-1)
    save_figure(
        out / "figure1.png",
        test.images[shown],
        test.masks[shown],
        maps,
        [
            f"label {CLASS_NAMES[test.labels[i]]}, pred {CLASS_NAMES[p]}"
            for i, p in zip(shown, predicted, strict=True)
        ],
    )
    results["wall_time_s"] = round(time.perf_counter() - start, 1)
    (out / "results.json").write_text(json.dumps(results, indent=1))
    print(
        f"wrote {out / 'results.json'}, {out / 'figure1.png'} and {out / 'bad_curve.png'} "
        f"({results['wall_time_s']} s)"
    )
    return results


def more_methods(which: str) -> dict[str, tuple[str, dict]]:
    """The extra rows for ``--more-methods`` (display name -> (method, options))."""
    if which == "none":
        return {}
    names = CHEAP_METHODS if which == "cheap" else tuple(MORE_METHODS)
    return {name: MORE_METHODS[name] for name in names}


def ground_truth_failures(rows: dict[str, jaxcam.evaluation.MethodResult]) -> list[str]:
    """Where BAD does not rank the ground-truth map better than noise / its inverse."""
    truth = rows["[ground_truth]"].black_average_drop.value
    failures = []
    for other in ("[noise]", "[inverted]"):
        value = rows[other].black_average_drop.value
        if truth is None or value is None or not truth < value:
            failures.append(
                f"BAD does not rank the ground-truth map better than {other} "
                f"({_value(truth)} vs {_value(value)})"
            )
    return failures


def _value(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.4f}"


def _figure_rows(labels: np.ndarray, model: jaxcam.SplitModel, images: np.ndarray) -> np.ndarray:
    """Three correctly classified pneumonia images, then one normal image."""
    predicted = np.argmax(predict_scores(model, images), axis=-1)
    pneumonia = np.flatnonzero((labels == PNEUMONIA) & (predicted == PNEUMONIA))[:3]
    normal = np.flatnonzero(labels != PNEUMONIA)[:1]
    return np.concatenate([pneumonia, normal]).astype(int)


if __name__ == "__main__":
    main(sys.argv[1:])
