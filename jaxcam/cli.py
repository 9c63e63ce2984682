"""The ``jaxcam`` command: train a model, evaluate saliency methods (Table 1), draw Figure 1.

    jaxcam train    --data chest_xray:DIR --model resnet18 --run-dir runs/xray
    jaxcam evaluate --run-dir runs/xray --split test
    jaxcam explain  --run-dir runs/xray --split test --first 8

``jaxcam COMMAND --help`` says what each command does and what it writes. Data sets
are named as in :mod:`jaxcam.data.sources` (``phantom``, ``chest_xray:DIR``,
``folder:DIR``, ``tfds:NAME``). Every command writes JSON (every number), markdown
(the tables) and PNG (a figure) into a folder it prints.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

DEFAULT_DATA_DIR = os.path.join("~", "jaxcam_data")


# ----------------------------------------------------------------------------
# Shared pieces.


def _quiet_tfds() -> None:
    """tfds' info logging off; its progress bar while preparing a data set stays."""
    import absl.logging

    absl.logging.set_verbosity(absl.logging.ERROR)


def _write_json(path: Path, record: Any) -> None:
    path.write_text(json.dumps(record, indent=1, default=str) + "\n")


def markdown_table(text_table: str) -> str:
    """A :func:`jaxcam.format_table` text table as a markdown table (notes kept below)."""
    lines = text_table.splitlines()
    rows = [line for i, line in enumerate(lines) if i != 1 and " | " in line]
    notes = [line for line in lines[2:] if " | " not in line]
    cells = [[c.strip() for c in row.split(" | ")] for row in rows]
    out = ["| " + " | ".join(cells[0]) + " |", "|" + "---|" * len(cells[0])]
    out += ["| " + " | ".join(row) + " |" for row in cells[1:]]
    return "\n".join(out + ([""] + notes if notes else []))


#: ``--methods`` names that are a registered method with other options than its row's.
METHOD_VARIANTS = {
    "grad_cam_plus_plus_exact": ("Grad-CAM++ exact", "grad_cam_plus_plus", {"derivatives": "exact"})
}


def _rows_by_method() -> dict[str, tuple[str, dict[str, Any]]]:
    """Registered name -> (display name, options): the paper's rows (Grad-CAM++ in the
    paper's closed form), the other methods' rows, then any user-registered method."""
    from jaxcam.evaluation import MORE_METHODS, PAPER_METHODS
    from jaxcam.saliency import SALIENCY_METHODS

    rows = {method: (label, options) for label, (method, options) in PAPER_METHODS.items()}
    rows |= {method: (label, options) for label, (method, options) in MORE_METHODS.items()}
    return {name: rows.get(name, (name, {})) for name in SALIENCY_METHODS}


def method_names() -> tuple[str, ...]:
    """What ``--methods`` accepts: every registered saliency method, and the variants."""
    return (*_rows_by_method(), *METHOD_VARIANTS)


def method_table(names: Sequence[str]) -> dict[str, tuple[str, dict[str, Any]]]:
    """Display name -> (registered method, options) for the ``--methods`` names."""
    rows = _rows_by_method()
    out = {}
    for name in names:
        if name in METHOD_VARIANTS:
            label, method, options = METHOD_VARIANTS[name]
            out[label] = (method, options)
        elif name in rows:
            label, options = rows[name]
            out[label] = (name, options)
        else:
            raise ValueError(f"unknown method {name!r}; choose from {', '.join(method_names())}")
    return out


def _methods_arg(text: str) -> list[str]:
    names = [n.strip() for n in text.split(",") if n.strip()]
    try:
        method_table(names)  # validates
    except ValueError as error:
        raise argparse.ArgumentTypeError(str(error)) from None
    return names


def _add_data_args(parser: argparse.ArgumentParser, required: bool) -> None:
    parser.add_argument(
        "--data",
        required=required,
        help="phantom | chest_xray:DIR | folder:DIR | tfds:NAME"
        + ("" if required else " (default: the run's training data)"),
    )
    parser.add_argument(
        "--data-dir",
        default=None,
        help=f"where prepared (array_record) data sets live (default {DEFAULT_DATA_DIR}, "
        "or the run's)",
    )
    parser.add_argument(
        "--skip-corrupt",
        action="store_true",
        help="skip unreadable image files with a warning (default: stop and name the file)",
    )


def _data_dir(args: argparse.Namespace, run: dict[str, Any] | None = None) -> str:
    if args.data_dir:
        return os.path.abspath(os.path.expanduser(args.data_dir))
    if run is not None and run.get("data", {}).get("data_dir"):
        return run["data"]["data_dir"]
    return os.path.abspath(os.path.expanduser(DEFAULT_DATA_DIR))


def _model_from_args(args: argparse.Namespace) -> tuple[Any, Any, dict[str, Any]]:
    """(run record or None, bound model split at ``--layer``, model description)."""
    from jaxcam.models import split_at

    run, model, description = _bound_model(args)
    layer = getattr(args, "layer", "backbone")
    return run, split_at(model, layer), {**description, "layer": layer}


def _bound_model(args: argparse.Namespace) -> tuple[Any, Any, dict[str, Any]]:
    """(run record or None, bound model, model description) for evaluate/explain."""
    from jaxcam.checkpoints import load_trained_model, read_run

    if args.run_dir and args.keras_weights:
        raise ValueError("give either --run-dir or --keras-weights, not both")
    if args.run_dir:
        run = read_run(args.run_dir)
        model = load_trained_model(args.run_dir, args.checkpoint)
        return run, model, run["model"]
    if args.keras_weights:
        from jaxcam.models.keras_weights import load_keras_inception_resnet_v2

        model = load_keras_inception_resnet_v2(args.keras_weights, output=args.keras_output)
        description = {
            "name": "inception_resnet_v2",
            "keras_weights": os.path.abspath(args.keras_weights),
            "num_classes": model.num_classes,
            "output": model.output,
            "in_channels": model.module.in_channels,
            "image_size": args.image_size or 299,
        }
        return None, model, description
    raise ValueError("give --run-dir (a folder written by `jaxcam train`) or --keras-weights FILE")


def _add_explanation_args(parser: argparse.ArgumentParser) -> None:
    """What ``evaluate`` and ``explain`` share: the model, the data, methods, output."""
    _add_model_args(parser)
    _add_data_args(parser, required=False)
    parser.add_argument("--split", default="test")
    parser.add_argument(
        "--methods",
        type=_methods_arg,
        default="cam,grad_cam,grad_cam_plus_plus",
        help=f"comma-separated, from {', '.join(method_names())}",
    )
    parser.add_argument(
        "--layer",
        default="backbone",
        help="the layer to explain: a Flax module path such as backbone/stage3_block2 "
        "(default: the backbone's output; an unknown name lists the known ones)",
    )
    parser.add_argument("--out", default=None, help="output folder")


def _add_model_args(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--run-dir", help="a run folder written by `jaxcam train`")
    parser.add_argument(
        "--checkpoint",
        default="best",
        choices=("best", "latest"),
        help="which checkpoint of the run (default: best validation AUC)",
    )
    parser.add_argument(
        "--keras-weights",
        help="instead of a run: a Keras InceptionResNetV2 file (.keras, .weights.h5, .h5)",
    )
    parser.add_argument(
        "--keras-output",
        default=None,
        choices=("relu", "softmax", "linear", "exp"),
        help="output activation of a weights-only Keras file with its own top (it is not "
        "stored there; Keras' own 'predictions' top is softmax)",
    )
    parser.add_argument(
        "--image-size", type=int, default=None, help="input size for Keras weights (default 299)"
    )


def _open_split(args: argparse.Namespace, run: dict[str, Any] | None, model_info: dict) -> Any:
    from jaxcam.data.sources import load_data_split

    data = args.data or (run or {}).get("data", {}).get("spec")
    if data is None:
        raise ValueError("give --data (no run folder to take it from)")
    return load_data_split(
        data,
        args.split,
        data_dir=_data_dir(args, run),
        image_size=int(model_info["image_size"]),
        channels=int(model_info["in_channels"]),
        skip_corrupt=args.skip_corrupt,
    )


def _output_dir(args: argparse.Namespace, default_name: str) -> Path:
    if args.out:
        out = Path(args.out)
    elif args.run_dir:
        out = Path(args.run_dir) / default_name
    else:
        raise ValueError("give --out (where to write) when there is no --run-dir")
    out.mkdir(parents=True, exist_ok=True)
    return out


# ----------------------------------------------------------------------------
# jaxcam train


def train_command(args: argparse.Namespace) -> dict[str, Any]:
    from jaxcam.checkpoints import ModelSpec
    from jaxcam.data.sources import load_data_split, parse_data_spec
    from jaxcam.train import TrainConfig, fit
    from jaxcam.viz import save_line_plot

    _quiet_tfds()
    spec = parse_data_spec(args.data)
    data_dir = _data_dir(args)
    initial = None
    if args.keras_weights:
        if args.model != "inception_resnet_v2":
            raise ValueError("--keras-weights needs --model inception_resnet_v2")
        from jaxcam.models.keras_weights import load_keras_inception_resnet_v2

        imported = load_keras_inception_resnet_v2(
            args.keras_weights, num_classes=args.num_classes, output=args.output
        )
        initial = imported.variables
        channels = imported.module.in_channels
        pixel_mean, pixel_std = 0.5, 0.5  # Keras' preprocessing: x / 127.5 - 1
    else:
        channels = args.channels or (3 if spec.kind in ("folder", "tfds") else 1)
        pixel_mean, pixel_std = 0.5, 0.25
    backbone_kwargs = {"width_scale": args.width_scale} if args.width_scale else {}
    model_spec = ModelSpec(
        args.model,
        num_classes=args.num_classes,
        output=args.output,
        in_channels=channels,
        image_size=args.image_size,
        hidden=tuple(args.hidden),
        pixel_mean=pixel_mean,
        pixel_std=pixel_std,
        backbone_kwargs=tuple(backbone_kwargs.items()),
    )
    load = lambda split: load_data_split(
        spec,
        split,
        data_dir=data_dir,
        image_size=int(model_spec.image_size),
        channels=channels,
        skip_corrupt=args.skip_corrupt,
    )
    train_split = load(args.train_split)
    val_split = load(args.val_split) if args.val_split else None
    classes = getattr(train_split, "class_names", ())
    if classes and len(classes) != args.num_classes:
        raise ValueError(
            f"the data has {len(classes)} classes {list(classes)}, the model "
            f"--num-classes {args.num_classes}"
        )
    config = TrainConfig(
        epochs=args.epochs,
        batch_size=args.batch_size,
        learning_rate=args.learning_rate,
        weight_decay=args.weight_decay,
        seed=args.seed,
        occlusion=args.occlusion,
        class_weighting=args.class_weights,
    )
    run_info = {
        "model": model_spec.to_json(),
        "data": {
            "spec": str(spec),
            "data_dir": data_dir,
            "train_split": args.train_split,
            "val_split": args.val_split,
            "class_names": list(classes),
            "sizes": {"train": len(train_split), "val": len(val_split) if val_split else 0},
        },
        "init": {"keras_weights": os.path.abspath(args.keras_weights)}
        if args.keras_weights
        else {"seed": args.seed},
    }
    print(
        f"training {args.model} on {spec} ({len(train_split)} train, "
        f"{len(val_split) if val_split else 0} val images) into {args.run_dir}"
    )
    result = fit(
        model_spec.build(),
        train_split,
        val_split,
        config,
        run_dir=args.run_dir,
        run_info=run_info,
        checkpoint_every=args.checkpoint_every,
        max_steps=args.max_steps,
        initial_variables=initial,
        progress=not args.no_progress,
    )
    run_dir = Path(args.run_dir)
    summary = {
        "step": result.step,
        "total_steps": result.total_steps,
        "finished": result.step == result.total_steps,
        "resumed_from": result.resumed_from,
        "history": result.history,
    }
    _write_json(run_dir / "train_summary.json", summary)
    lines = ["| epoch | step | loss | val accuracy | val AUC |", "|---|---|---|---|---|"]
    for e in result.history:
        auc = e.get("val_auc")
        lines.append(
            f"| {e['epoch']} | {e['step']} | {e['loss']:.4f} | "
            f"{e.get('val_accuracy', float('nan')):.3f} | "
            f"{'n/a' if auc is None else f'{auc:.3f}'} |"
        )
    (run_dir / "train.md").write_text("\n".join(lines) + "\n")
    if result.history:
        epochs = [e["epoch"] for e in result.history]
        curves = {"train loss": (epochs, [e["loss"] for e in result.history])}
        if val_split is not None:
            curves["val AUC"] = (epochs, [e.get("val_auc") for e in result.history])
            curves["val accuracy"] = (epochs, [e.get("val_accuracy") for e in result.history])
        save_line_plot(
            run_dir / "train.png",
            curves,
            title=f"{args.model} on {spec}",
            x_label="epoch",
            y_label="value",
        )
    state = "finished" if summary["finished"] else "stopped (run the same command to resume)"
    print(f"step {result.step}/{result.total_steps}: {state}; wrote {run_dir}")
    return summary


# ----------------------------------------------------------------------------
# jaxcam evaluate


def evaluate_command(args: argparse.Namespace) -> dict[str, Any]:
    import jaxcam
    from jaxcam.data.folders import split_batches
    from jaxcam.data.sources import Subset, one_image_per_random_class
    from jaxcam.evaluation import evaluation_record, software_versions
    from jaxcam.viz import save_line_plot

    _quiet_tfds()
    run, model, model_info = _model_from_args(args)
    split = _open_split(args, run, model_info)
    methods = method_table(args.methods)
    if args.random_classes is not None:
        indices = one_image_per_random_class(split.labels, args.random_classes, args.seed)
    else:
        indices = np.arange(len(split) if args.limit is None else min(args.limit, len(split)))
    subset = Subset(split, indices)
    start = time.perf_counter()

    def batches():
        # Data set index = position in the evaluated subset: one tie order per image.
        for batch in split_batches(subset, args.batch_size):
            yield {"image": batch["image"], "label": batch["label"]}

    evaluation = jaxcam.evaluate(
        model,
        batches(),
        methods,
        alpha=args.alpha,
        ties=args.ties,
        explain=args.explain,
        batch_size=args.batch_size,
        progress=not args.no_progress,
    )
    out = _output_dir(args, f"evaluate_{args.split}")
    class_names = list(getattr(split, "class_names", ()))
    how = "given" if args.alpha is not None else "chosen where the methods differ most"
    data_name = args.data or run["data"]["spec"]
    headline = (
        f"{sum(evaluation.class_counts.values())} images, accuracy {evaluation.accuracy:.3f}, "
        f"alpha = {evaluation.alpha:.2f} ({how}), ties: {evaluation.ties}, "
        f"explained class: {args.explain}"
    )
    tables = {"All images": evaluation.results}
    if len(evaluation.class_counts) <= 10:  # per-class tables for few classes
        for c, rows in sorted(evaluation.by_class.items()):
            name = class_names[c] if c < len(class_names) else str(c)
            tables[f"{name} ({evaluation.class_counts[c]} images)"] = rows
    sections = [f"# Table 1: {model_info['name']} on {data_name} / {args.split}", "", headline]
    printed = [headline]
    for title, rows in tables.items():
        table = jaxcam.format_table(rows)
        sections += ["", f"## {title}", "", markdown_table(table)]
        printed += ["", title, table]
    print("\n".join(printed))
    record = {
        **evaluation_record(evaluation),
        "methods": {n: {"method": m, "options": o} for n, (m, o) in methods.items()},
        "explained_class": args.explain,
        "model": model_info,
        "checkpoint": args.checkpoint if args.run_dir else None,
        "data": {
            "spec": data_name,
            "split": args.split,
            "images": len(indices),
            "indices": [int(i) for i in indices],
            "random_classes": args.random_classes,
            "seed": args.seed,
        },
        "class_names": class_names,
        "versions": software_versions(),
        "wall_time_s": round(time.perf_counter() - start, 1),
    }
    _write_json(out / "evaluation.json", record)
    (out / "table.md").write_text("\n".join(sections) + "\n")
    save_line_plot(
        out / "bad_curve.png",
        {
            name: (evaluation.alphas, [r.curve[a].value for a in evaluation.alphas])
            for name, r in evaluation.results.items()
        },
        title=f"BAD vs alpha ({args.split}, all images)",
        x_label="alpha (share of pixels kept)",
        y_label="BAD",
        marked_x=evaluation.alpha,
    )
    print(f"wrote {out / 'evaluation.json'}, {out / 'table.md'}, {out / 'bad_curve.png'}")
    return record


# ----------------------------------------------------------------------------
# jaxcam explain


def explain_command(args: argparse.Namespace) -> dict[str, Any]:
    import jaxcam
    from jaxcam.data.folders import read_image
    from jaxcam.train import predict_scores
    from jaxcam.viz import save_figure

    _quiet_tfds()
    run, model, model_info = _model_from_args(args)
    size, channels = int(model_info["image_size"]), int(model_info["in_channels"])
    if args.images:
        images = np.stack([read_image(path, size, channels) for path in args.images])
        names = [os.path.basename(path) for path in args.images]
        labels = None
        class_names = list((run or {}).get("data", {}).get("class_names", []))
    else:
        split = _open_split(args, run, model_info)
        class_names = list(getattr(split, "class_names", ()))
        if args.first < 1:
            raise ValueError(f"--first must be >= 1, got {args.first}")
        chosen = np.arange(len(split))
        if args.label is not None:
            if args.label not in class_names:
                raise ValueError(
                    f"--label {args.label!r} is not a class of the data: {class_names}"
                )
            chosen = np.flatnonzero(np.asarray(split.labels) == class_names.index(args.label))
        chosen = chosen[: args.first]
        if len(chosen) == 0:
            raise ValueError(f"no images of {args.label!r} in split {args.split!r}")
        items = [split[int(i)] for i in chosen]
        images = np.stack([item["image"] for item in items])
        labels = np.asarray([item["label"] for item in items])
        paths = getattr(split, "paths", None)
        names = [paths[i] if paths else f"{args.split}[{i}]" for i in chosen]
    methods = method_table(args.methods)
    scores = predict_scores(model, images)
    predicted = scores.argmax(-1)
    maps = {
        name: jaxcam.compute_maps(model, images, None, method, **options)[0]
        for name, (method, options) in methods.items()
    }
    label_of = lambda c: class_names[c] if c < len(class_names) else str(int(c))
    titles = [
        (f"label {label_of(labels[i])}, " if labels is not None else "")
        + f"pred {label_of(predicted[i])}"
        for i in range(len(images))
    ]
    out = _output_dir(args, "explain")
    save_figure(out / "figure1.png", images, None, maps, titles)
    np.savez_compressed(out / "maps.npz", **{name: m for name, m in maps.items()})
    rows = [
        {
            "image": names[i],
            "label": None if labels is None else label_of(labels[i]),
            "predicted": label_of(predicted[i]),
            "scores": [float(s) for s in scores[i]],
        }
        for i in range(len(images))
    ]
    _write_json(
        out / "explain.json",
        {"model": model_info, "methods": list(methods), "images": rows, "maps": "maps.npz"},
    )
    lines = ["| image | label | predicted | scores |", "|---|---|---|---|"]
    lines += [
        f"| {r['image']} | {r['label'] or ''} | {r['predicted']} | "
        + ", ".join(f"{s:.4g}" for s in r["scores"])
        + " |"
        for r in rows
    ]
    (out / "explain.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))
    print(f"wrote {out / 'figure1.png'}, {out / 'maps.npz'}, {out / 'explain.json'}")
    return {"images": rows}


# ----------------------------------------------------------------------------
# Argument parsing.


def build_parser() -> argparse.ArgumentParser:
    from jaxcam.metrics import DEFAULT_TIES, TIE_POLICIES
    from jaxcam.models import OUTPUT_ACTIVATIONS, model_names
    from jaxcam.train import CLASS_WEIGHTINGS, TrainConfig

    defaults = TrainConfig()
    parser = argparse.ArgumentParser(
        prog="jaxcam",
        description="Saliency maps (CAM, Grad-CAM, exact Grad-CAM++) and their label-free "
        "evaluation (Average Drop, Black Average Drop) on your images.",
    )
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    train = commands.add_parser(
        "train",
        help="train a CAM-compatible classifier with checkpoints",
        description="Train a registered model on a data set. Writes into --run-dir: run.json "
        "(model, data, settings), checkpoints/latest and checkpoints/best (orbax; best = "
        "highest validation ROC AUC), history.json, train_summary.json, train.md (one row "
        "per epoch) and train.png (loss and validation curves). Run the same command again "
        "to resume an interrupted run: the step count continues and the parameters equal "
        "those of an uninterrupted run.",
    )
    _add_data_args(train, required=True)
    train.add_argument("--run-dir", required=True, help="folder for checkpoints and results")
    train.add_argument("--model", default="small_cnn", choices=model_names())
    train.add_argument("--num-classes", type=int, default=2)
    train.add_argument("--output", default="relu", choices=OUTPUT_ACTIVATIONS)
    train.add_argument("--image-size", type=int, default=None, help="default: the model's")
    train.add_argument(
        "--channels",
        type=int,
        choices=(1, 3),
        default=None,
        help="image channels (default: 1 for X-rays/phantom, 3 otherwise)",
    )
    train.add_argument("--hidden", type=int, nargs="*", default=[], help="MLP widths in the head")
    train.add_argument(
        "--width-scale",
        type=float,
        default=None,
        help="InceptionResNetV2 only: scale every conv width (for quick trials)",
    )
    train.add_argument("--keras-weights", help="start from a Keras InceptionResNetV2 file")
    train.add_argument("--train-split", default="train")
    train.add_argument("--val-split", default="val", help="'' for no validation")
    train.add_argument("--epochs", type=int, default=defaults.epochs)
    train.add_argument("--batch-size", type=int, default=defaults.batch_size)
    train.add_argument("--learning-rate", type=float, default=defaults.learning_rate)
    train.add_argument("--weight-decay", type=float, default=defaults.weight_decay)
    train.add_argument("--seed", type=int, default=defaults.seed)
    train.add_argument(
        "--occlusion",
        type=float,
        default=defaults.occlusion,
        help="probability of a random black occlusion per training image",
    )
    train.add_argument(
        "--class-weights",
        default="balanced",
        choices=CLASS_WEIGHTINGS,
        help="'balanced' weights the loss by N / (classes * n_class) (default)",
    )
    train.add_argument(
        "--checkpoint-every",
        type=int,
        default=100,
        help="also save every N steps (0: at epoch ends only)",
    )
    train.add_argument(
        "--max-steps",
        type=int,
        default=None,
        help="stop after this step (resume later with the same command)",
    )
    train.add_argument("--no-progress", action="store_true", help="no progress bar")
    train.set_defaults(handler=train_command)

    evaluate = commands.add_parser(
        "evaluate",
        help="Table 1: AD and BAD of saliency methods on a split",
        description="Explain every image of a split with the chosen methods and score the "
        "maps with Average Drop and Black Average Drop (alpha given or chosen where the "
        "methods' black images differ most; the whole alpha curve in the same pass). Prints "
        "the table for all images and per class, and writes evaluation.json (every number), "
        "table.md and bad_curve.png into --out (default RUN_DIR/evaluate_SPLIT).",
    )
    _add_explanation_args(evaluate)
    evaluate.add_argument("--alpha", type=float, default=None, help="BAD's alpha (default: chosen)")
    evaluate.add_argument("--ties", default=DEFAULT_TIES, choices=TIE_POLICIES)
    evaluate.add_argument("--explain", default="predicted", choices=("predicted", "label"))
    evaluate.add_argument("--limit", type=int, default=None, help="only the first N images")
    evaluate.add_argument(
        "--random-classes",
        type=int,
        default=None,
        help="one random image from each of K random classes (the paper's ImageNet rows)",
    )
    evaluate.add_argument("--seed", type=int, default=0, help="seed of --random-classes")
    evaluate.add_argument("--batch-size", type=int, default=64)
    evaluate.add_argument("--no-progress", action="store_true")
    evaluate.set_defaults(handler=evaluate_command)

    explain = commands.add_parser(
        "explain",
        help="Figure 1: saliency overlays for images",
        description="Draw saliency overlays (one row per image, one column per method) for "
        "given image files or the first N images of a split. Writes figure1.png, maps.npz "
        "(the maps), explain.json and explain.md (label, prediction and scores per image) "
        "into --out (default RUN_DIR/explain).",
    )
    _add_explanation_args(explain)
    explain.add_argument("--first", type=int, default=8, help="the first N images of the split")
    explain.add_argument("--label", default=None, help="only images of this class (a name)")
    explain.add_argument("--images", nargs="+", help="image files instead of a split")
    explain.set_defaults(handler=explain_command)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``jaxcam`` console script; returns the exit status."""
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        args.handler(args)
    except (ValueError, FileNotFoundError, NotADirectoryError, ImportError) as error:
        print(f"jaxcam {args.command}: error: {error}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"jaxcam {args.command}: interrupted", file=sys.stderr)
        return 130
    return 0


if __name__ == "__main__":
    sys.exit(main())
