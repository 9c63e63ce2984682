"""``jaxcam train``: a CAM-compatible classifier on a data set, with resumable checkpoints."""

from __future__ import annotations

import argparse
import os
from pathlib import Path
from typing import Any

from jaxcam.cli.common import (
    add_data_args,
    quiet_tfds,
    resolve_data_dir,
    write_json,
)


def train_command(args: argparse.Namespace) -> dict[str, Any]:
    from jaxcam.data.sources import load_data_split, parse_data_spec
    from jaxcam.runs import ModelSpec
    from jaxcam.train import TrainConfig, fit
    from jaxcam.viz import save_training_curves

    quiet_tfds()
    spec = parse_data_spec(args.data)
    data_dir = resolve_data_dir(args)
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
        # Keras' preprocessing x / 127.5 - 1: KERAS_PIXEL_MEAN / KERAS_PIXEL_STD.
        pixel_mean, pixel_std = imported.module.pixel_mean, imported.module.pixel_std
    else:
        from jaxcam.models.pixel_stats import DEFAULT_PIXEL_MEAN, DEFAULT_PIXEL_STD

        channels = args.channels or (3 if spec.kind in ("folder", "tfds") else 1)
        pixel_mean, pixel_std = DEFAULT_PIXEL_MEAN, DEFAULT_PIXEL_STD
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
    from jaxcam.train import CLASS_WEIGHTINGS, TrainConfig

    defaults = TrainConfig()
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
