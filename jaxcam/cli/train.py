"""``jaxcam train``: a CAM-compatible classifier on a data set, with resumable checkpoints."""

from __future__ import annotations

import argparse
import math
import os
import re
import time
from pathlib import Path
from typing import Any

import numpy as np

from jaxcam.cli.common import (
    add_data_args,
    check_writable,
    keras_error_with_flags,
    load_split,
    positive_int,
    quiet_tfds,
    usable_data_dir,
    write_json,
)

WIDTH_SCALE_HELP = (
    "InceptionResNetV2 only: multiply every conv width by this number > 0 (1: full width, "
    "as Keras and --keras-weights; e.g. 0.25 for quick trials)"
)


def width_scale_arg(text: str) -> float:
    """An argparse type for ``--width-scale``: a finite number > 0."""
    try:
        value = float(text)
    except ValueError:
        value = math.nan
    if not (math.isfinite(value) and value > 0):
        raise argparse.ArgumentTypeError(f"must be a number > 0 (1: full width), got {text!r}")
    return value


def check_training_classes(class_names: tuple[str, ...], labels: np.ndarray) -> None:
    """Training needs two classes: in the data set and among the training labels."""
    if class_names and len(class_names) < 2:
        raise ValueError(
            f"the data has {len(class_names)} class {list(class_names)}: training needs at "
            "least 2 classes (evaluating a one-class split with `jaxcam evaluate` is allowed)"
        )
    present = np.unique(np.asarray(labels))
    if len(present) < 2:
        names = [class_names[int(c)] if int(c) < len(class_names) else int(c) for c in present]
        raise ValueError(
            f"the training split holds images of one class only ({names}): training needs "
            "at least 2 classes"
        )


def train_config(args: argparse.Namespace) -> Any:
    """The :class:`jaxcam.train.TrainConfig` of the flags; its errors name the flag."""
    from jaxcam.train import TrainConfig

    try:
        return TrainConfig(
            epochs=args.epochs,
            batch_size=args.batch_size,
            learning_rate=args.learning_rate,
            weight_decay=args.weight_decay,
            seed=args.seed,
            occlusion=args.occlusion,
            class_weighting=args.class_weights,
        )
    except ValueError as error:  # "occlusion must be ..." -> "--occlusion must be ..."
        flag = lambda match: "--" + match.group(1).replace("_", "-")
        raise ValueError(re.sub(r"^(\w+)(?= must)", flag, str(error))) from None


def train_command(args: argparse.Namespace) -> dict[str, Any]:
    from jaxcam.data.sources import parse_data_spec
    from jaxcam.runs import ModelSpec
    from jaxcam.train import fit
    from jaxcam.viz import save_training_curves

    quiet_tfds()
    if args.num_classes < 2:
        raise ValueError(
            f"--num-classes {args.num_classes}: training needs at least 2 classes (one class "
            "would teach the model that every image is positive)"
        )
    spec = parse_data_spec(args.data)
    config = train_config(args)  # first: settings it refuses are refused before any work
    check_writable(Path(args.run_dir), "--run-dir")
    data_dir = usable_data_dir(args)
    initial = None
    if args.keras_weights:
        if args.model != "inception_resnet_v2":
            raise ValueError("--keras-weights needs --model inception_resnet_v2")
        if args.width_scale not in (None, 1.0):
            raise ValueError(f"--width-scale {args.width_scale}: Keras weights are full width (1)")
        from jaxcam.models.keras_weights import load_keras_inception_resnet_v2

        try:
            imported = load_keras_inception_resnet_v2(
                args.keras_weights, num_classes=args.num_classes, output=args.output
            )
        except ValueError as error:
            raise keras_error_with_flags(error, "--output", "--num-classes") from None
        initial = imported.variables
        channels = imported.module.in_channels
        # Keras' preprocessing x / 127.5 - 1: KERAS_PIXEL_MEAN / KERAS_PIXEL_STD.
        pixel_mean, pixel_std = imported.module.pixel_mean, imported.module.pixel_std
    else:
        from jaxcam.models.pixel_stats import DEFAULT_PIXEL_MEAN, DEFAULT_PIXEL_STD

        channels = args.channels or (3 if spec.kind in ("folder", "tfds") else 1)
        pixel_mean, pixel_std = DEFAULT_PIXEL_MEAN, DEFAULT_PIXEL_STD
    backbone_kwargs = {} if args.width_scale is None else {"width_scale": args.width_scale}
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
    try:
        module = model_spec.build()
    except TypeError as error:
        if not backbone_kwargs:
            raise
        raise ValueError(
            f"--width-scale: model {args.model} takes no width scale (InceptionResNetV2 "
            f"only): {error}"
        ) from None
    start = time.perf_counter()
    load = lambda split: load_split(
        args,
        spec,
        split,
        data_dir=data_dir,
        image_size=model_spec.image_shape[0],
        channels=channels,
    )
    train_split = load(args.train_split)
    val_split = load(args.val_split) if args.val_split else None
    classes = tuple(getattr(train_split, "class_names", ()))
    check_training_classes(classes, train_split.labels)
    if classes and len(classes) != args.num_classes:
        raise ValueError(
            f"the data has {len(classes)} classes {list(classes)}, the model "
            f"--num-classes {args.num_classes}"
        )
    print(f"data ready in {time.perf_counter() - start:.1f} s")
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
        module,
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
    write_json(run_dir / "train_summary.json", summary)
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
        save_training_curves(run_dir / "train.png", result.history, title=f"{args.model} on {spec}")
    state = "finished" if summary["finished"] else "stopped (run the same command to resume)"
    print(f"step {result.step}/{result.total_steps}: {state}; wrote {run_dir}")
    return summary


def add_train_parser(commands: Any) -> None:
    """The ``jaxcam train`` subcommand and its arguments."""
    from jaxcam.models import OUTPUT_ACTIVATIONS, model_names
    from jaxcam.train import CLASS_WEIGHTINGS, RECOMMENDED_OCCLUSION, TrainConfig

    defaults = TrainConfig()
    train = commands.add_parser(
        "train",
        help="train a CAM-compatible classifier with checkpoints",
        description="Train a registered model on a data set. Writes into --run-dir: run.json "
        "(model, data, settings), checkpoints/latest and checkpoints/best (orbax; best = "
        "highest validation ROC AUC), history.json, train_summary.json, train.md (one row "
        "per epoch) and train.png (loss and validation curves). Run the same command again "
        "to resume an interrupted run: the step count continues and the parameters equal "
        "those of an uninterrupted run. Prints the time the data took, the batches per epoch "
        "(and how many images each shuffled epoch leaves out), the time of the first step "
        "(it compiles), and per epoch its own time and the total. Folders that cannot be "
        "written are refused before any work.",
    )
    add_data_args(train, required=True)
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
    train.add_argument("--width-scale", type=width_scale_arg, default=None, help=WIDTH_SCALE_HELP)
    train.add_argument("--keras-weights", help="start from a Keras InceptionResNetV2 file")
    train.add_argument("--train-split", default="train")
    train.add_argument("--val-split", default="val", help="'' for no validation")
    train.add_argument("--epochs", type=positive_int, default=defaults.epochs)
    train.add_argument("--batch-size", type=positive_int, default=defaults.batch_size)
    train.add_argument("--learning-rate", type=float, default=defaults.learning_rate)
    train.add_argument("--weight-decay", type=float, default=defaults.weight_decay)
    train.add_argument("--seed", type=int, default=defaults.seed)
    train.add_argument(
        "--occlusion",
        type=float,
        default=RECOMMENDED_OCCLUSION,
        help="probability in [0, 1] that a training image is partly blacked out (default "
        f"{RECOMMENDED_OCCLUSION}: without it BAD mostly measures the model's reaction to "
        "black, see the README's 'Is BAD trustworthy?'; 0 for plain training)",
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
