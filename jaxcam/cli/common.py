"""What the ``jaxcam`` commands share: data, model and method arguments, folders, files."""

from __future__ import annotations

import argparse
import json
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

DEFAULT_DATA_DIR = os.path.join("~", "jaxcam_data")


# ----------------------------------------------------------------------------
# Shared pieces.


def quiet_tfds() -> None:
    """tfds' info logging off; its progress bar while preparing a data set stays."""
    import absl.logging

    absl.logging.set_verbosity(absl.logging.ERROR)


def write_json(path: Path, record: Any) -> None:
    path.write_text(json.dumps(record, indent=1, default=str) + "\n")


def method_table(names: Sequence[str]) -> dict[str, tuple[str, dict[str, Any]]]:
    """Display name -> (registered method, options) for the ``--methods`` names."""
    from jaxcam.saliency import method_names, method_rows

    unknown = [name for name in names if name not in method_names()]
    if unknown:
        raise ValueError(
            f"--methods: unknown method {unknown[0]!r}; choose from {', '.join(method_names())}"
        )
    if not names:
        raise ValueError("--methods: name at least one method")
    return method_rows(names)


def methods_arg(text: str) -> list[str]:
    names = [n.strip() for n in text.split(",") if n.strip()]
    try:
        method_table(names)  # validates
    except ValueError as error:
        raise argparse.ArgumentTypeError(str(error)) from None
    return names


def method_help() -> str:
    from jaxcam.saliency import method_info, method_names

    return ", ".join(f"{n} ({method_info(n).display})" for n in method_names())


def data_help() -> str:
    from jaxcam.data.sources import data_source_usage

    return "a registered data source: " + data_source_usage()


def metrics_arg(text: str) -> tuple[str, ...]:
    from jaxcam.metrics import check_metrics

    try:
        return check_metrics([n.strip() for n in text.split(",") if n.strip()])
    except ValueError as error:
        raise argparse.ArgumentTypeError(str(error)) from None


def metric_help() -> str:
    from jaxcam.metrics import get_metric, metric_names

    return ", ".join(f"{n} ({get_metric(n).label})" for n in metric_names())


def add_data_args(parser: argparse.ArgumentParser, required: bool) -> None:
    parser.add_argument(
        "--data",
        required=required,
        help=data_help() + ("" if required else " (default: the run's training data)"),
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


def resolve_data_dir(args: argparse.Namespace, run: dict[str, Any] | None = None) -> str:
    if args.data_dir:
        return os.path.abspath(os.path.expanduser(args.data_dir))
    if run is not None and run.get("data", {}).get("data_dir"):
        return run["data"]["data_dir"]
    return os.path.abspath(os.path.expanduser(DEFAULT_DATA_DIR))


def model_from_args(args: argparse.Namespace) -> tuple[Any, Any, dict[str, Any]]:
    """(run record or None, bound model split at ``--layer``, model description)."""
    from jaxcam.models import split_at

    run, model, description = bound_model(args)
    layer = getattr(args, "layer", "backbone")
    return run, split_at(model, layer), {**description, "layer": layer}


def bound_model(args: argparse.Namespace) -> tuple[Any, Any, dict[str, Any]]:
    """(run record or None, bound model, model description) for evaluate/explain."""
    from jaxcam.runs import load_trained_model, read_run

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


def add_explanation_args(parser: argparse.ArgumentParser) -> None:
    """What ``evaluate`` and ``explain`` share: the model, the data, methods, output."""
    add_model_args(parser)
    add_data_args(parser, required=False)
    parser.add_argument("--split", default="test")
    parser.add_argument(
        "--methods",
        type=methods_arg,
        default="cam,grad_cam,grad_cam_plus_plus",
        help="comma-separated registered methods: " + method_help(),
    )
    parser.add_argument(
        "--layer",
        default="backbone",
        help="the layer to explain: a Flax module path such as backbone/stage3_block2 "
        "(default: the backbone's output; an unknown name lists the known ones)",
    )
    parser.add_argument("--out", default=None, help="output folder")


def add_model_args(parser: argparse.ArgumentParser) -> None:
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


def open_split(args: argparse.Namespace, run: dict[str, Any] | None, model_info: dict) -> Any:
    from jaxcam.data.sources import load_data_split

    data = args.data or (run or {}).get("data", {}).get("spec")
    if data is None:
        raise ValueError("give --data (no run folder to take it from)")
    return load_data_split(
        data,
        args.split,
        data_dir=resolve_data_dir(args, run),
        image_size=int(model_info["image_size"]),
        channels=int(model_info["in_channels"]),
        skip_corrupt=args.skip_corrupt,
    )


def output_dir(args: argparse.Namespace, default_name: str) -> Path:
    if args.out:
        out = Path(args.out)
    elif args.run_dir:
        out = Path(args.run_dir) / default_name
    else:
        raise ValueError("give --out (where to write) when there is no --run-dir")
    out.mkdir(parents=True, exist_ok=True)
    return out
