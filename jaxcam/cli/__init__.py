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
import importlib
import sys
from collections.abc import Sequence

from jaxcam.cli.common import method_table
from jaxcam.cli.evaluate import add_evaluate_parser
from jaxcam.cli.explain import add_explain_parser
from jaxcam.cli.run import add_run_parser
from jaxcam.cli.train import add_train_parser


def build_parser() -> argparse.ArgumentParser:
    """The ``jaxcam`` parser; its choices and help come from the registries."""
    parser = argparse.ArgumentParser(
        prog="jaxcam",
        description="Saliency maps (CAM, Grad-CAM, exact Grad-CAM++) and their label-free "
        "evaluation (Average Drop, Black Average Drop) on your images.",
    )
    parser.add_argument(
        "--plugin",
        action="append",
        default=[],
        metavar="MODULE",
        help="import MODULE first (repeatable): a module that registers its own models, "
        "methods, metrics or data sources",
    )
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    add_run_parser(commands)
    add_train_parser(commands)
    add_evaluate_parser(commands)
    add_explain_parser(commands)
    return parser


def _plugins(argv: Sequence[str]) -> list[str]:
    """The ``--plugin MODULE`` values in ``argv`` (imported before the parser is built, so
    what they register appears in the choices and help)."""
    found = []
    for i, word in enumerate(argv):
        if word == "--plugin" and i + 1 < len(argv):
            found.append(argv[i + 1])
        elif word.startswith("--plugin="):
            found.append(word.split("=", 1)[1])
    return found


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``jaxcam`` console script; returns the exit status."""
    argv = list(sys.argv[1:] if argv is None else argv)
    for module in _plugins(argv):
        try:
            importlib.import_module(module)
        except ImportError as error:
            print(f"jaxcam: error: --plugin {module}: {error}", file=sys.stderr)
            return 2
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        args.handler(args)
    except (ValueError, OSError, ImportError) as error:  # OSError: e.g. PermissionError
        print(f"jaxcam {args.command}: error: {error}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"jaxcam {args.command}: interrupted", file=sys.stderr)
        return 130
    return 0


__all__ = ["build_parser", "main", "method_table"]
