"""What the ``jaxcam`` commands share: data, model and method arguments, folders, files."""

from __future__ import annotations

import argparse
import json
import os
import re
import sys
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


def warn(command: str, text: str) -> None:
    """One line on stderr: ``jaxcam COMMAND: TEXT``."""
    print(f"jaxcam {command}: {text}", file=sys.stderr, flush=True)


def positive_int(text: str) -> int:
    """An argparse type: an integer >= 1 (the error names the flag)."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"must be an integer >= 1, got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be an integer >= 1, got {value}")
    return value


def check_writable(folder: Path, flag: str) -> Path:
    """Create ``folder`` (and its parents) and write and delete a probe file in it, before
    any work; ValueError naming ``flag`` when that fails."""
    try:
        if folder.exists() and not folder.is_dir():
            raise NotADirectoryError(0, "it is a file, not a folder")
        folder.mkdir(parents=True, exist_ok=True)
        probe = folder / f".jaxcam_write_probe_{os.getpid()}"
        probe.write_bytes(b"")
        probe.unlink()
    except OSError as error:
        reason = error.strerror or str(error)
        raise ValueError(f"{flag}: cannot write to {folder} ({reason})") from None
    return folder


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


def usable_data_dir(args: argparse.Namespace, run: dict[str, Any] | None = None) -> str:
    """The data folder, checked before any work: it must be writable (data is prepared
    there on first use), except an existing folder, which may hold prepared data that only
    needs reading (``args.data_dir_read_only`` then says why it is not writable)."""
    path = resolve_data_dir(args, run)
    if args.data_dir:
        flag = "--data-dir"
    elif path == resolve_data_dir(argparse.Namespace(data_dir=None)):
        flag = f"--data-dir (default {DEFAULT_DATA_DIR})"
    else:
        flag = "--data-dir (default: the run's)"
    args.data_dir_read_only = None
    try:
        check_writable(Path(path), flag)
    except ValueError as error:
        if not Path(path).is_dir():
            raise
        args.data_dir_read_only = str(error)
    return path


def load_split(args: argparse.Namespace, spec: Any, split: str, **options: Any) -> Any:
    """:func:`jaxcam.data.sources.load_data_split` of ``spec``; when the data folder is not
    writable and the data is not prepared there, an error naming ``--data-dir``."""
    from jaxcam.data.sources import load_data_split

    try:
        return load_data_split(spec, split, skip_corrupt=args.skip_corrupt, **options)
    except OSError as error:
        read_only = getattr(args, "data_dir_read_only", None)
        if read_only is None:
            raise
        raise ValueError(f"{read_only}, and preparing {spec} there failed: {error}") from None


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

        try:
            model = load_keras_inception_resnet_v2(args.keras_weights, output=args.keras_output)
        except ValueError as error:
            raise keras_error_with_flags(error, "--keras-output", None) from None
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


_FRESH_CLASSIFIER_HINT = "pass num_classes= to initialise a fresh one"


def keras_error_with_flags(
    error: ValueError, output_flag: str, classes_flag: str | None
) -> ValueError:
    """The Keras importer's error with its keyword arguments (``output=``,
    ``num_classes=``) replaced by the command's flags; ``classes_flag`` None: the command
    cannot initialise a classifier (it evaluates one), so the hint says how to train one."""
    text = str(error)
    if classes_flag is None:
        text = text.replace(
            _FRESH_CLASSIFIER_HINT,
            "fine-tune one first (jaxcam train --model inception_resnet_v2 --keras-weights "
            "FILE --num-classes N)",
        )
    else:
        text = text.replace("pass num_classes=", f"give {classes_flag}")
        text = re.sub(r"\bnum_classes=", f"{classes_flag}=", text)
    text = text.replace("pass output=", f"give {output_flag}")
    text = re.sub(r"\boutput=", f"{output_flag}=", text)
    return ValueError(text)


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
    parser.add_argument(
        "--out", default=None, help="output folder (created and checked before any work)"
    )


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
    data = args.data or (run or {}).get("data", {}).get("spec")
    if data is None:
        raise ValueError("give --data (no run folder to take it from)")
    return load_split(
        args,
        data,
        args.split,
        data_dir=usable_data_dir(args, run),
        image_size=int(model_info["image_size"]),
        channels=int(model_info["in_channels"]),
    )


def output_dir(args: argparse.Namespace, default_name: str) -> Path:
    """``--out`` (default ``RUN_DIR/default_name``), created and checked writable: called
    before any work, so a folder that cannot be written loses no results."""
    if args.out:
        return check_writable(Path(args.out), "--out")
    if args.run_dir:
        from jaxcam.runs import read_run

        read_run(args.run_dir)  # a mistyped --run-dir is named, not created
        return check_writable(
            Path(args.run_dir) / default_name, f"--out (default RUN_DIR/{default_name})"
        )
    raise ValueError("give --out (where to write) when there is no --run-dir")
