"""One runner for every experiment: a registered program applied to a config.

    jaxcam run experiments/phantom.py --set train.epochs=2 --set seed=1
    python experiments/phantom.py --set evaluation.alpha=0.5

A program is ``fn(config, log) -> dict`` registered by name (:func:`register_program`);
the config's ``program`` field picks it.
"""

from __future__ import annotations

import argparse
import json
from collections.abc import Callable, Sequence
from typing import Any

import absl.logging
import tensorflow_datasets as tfds

from jaxcam.experiments.config import (
    ExperimentConfig,
    apply_overrides,
    as_record,
    load_config,
)
from jaxcam.experiments.table1 import run_table1

Program = Callable[..., dict[str, Any]]
_PROGRAMS: dict[str, Program] = {}


def register_program(name: str, program: Program) -> None:
    """Register ``program(config, log=print) -> results`` under ``name``."""
    if name in _PROGRAMS:
        raise ValueError(f"program {name!r} is already registered")
    _PROGRAMS[name] = program


def program_names() -> tuple[str, ...]:
    return tuple(_PROGRAMS)


def quiet_logs() -> None:
    """TFDS's progress bars and absl's info/warning lines off (they would bury the tables)."""
    absl.logging.set_verbosity(absl.logging.ERROR)
    tfds.disable_progress_bar()


def run(config: ExperimentConfig, log: Callable[[str], None] = print) -> dict[str, Any]:
    """Run ``config`` with its registered program (TFDS and absl logs quiet)."""
    quiet_logs()
    if config.program not in _PROGRAMS:
        raise ValueError(f"unknown program {config.program!r}; registered: {', '.join(_PROGRAMS)}")
    return _PROGRAMS[config.program](config, log=log)


def add_override_args(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--set",
        dest="overrides",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="override a config value, e.g. --set train.epochs=2 --set evaluation.alpha=0.5 "
        "(repeatable; tuples comma-separated; 'none' for None)",
    )
    parser.add_argument(
        "--print-config", action="store_true", help="print the final config as JSON and stop"
    )


def run_with_overrides(
    config: ExperimentConfig, overrides: Sequence[str], print_config: bool = False
) -> dict[str, Any]:
    """``config`` with ``--set`` overrides applied, printed (``--print-config``) or run."""
    config = apply_overrides(config, overrides)
    if print_config:
        print(json.dumps(as_record(config), indent=1))
        return as_record(config)
    return run(config)


def script_main(get_config: Callable[[], ExperimentConfig], argv: Sequence[str] | None) -> dict:
    """``main`` of an experiment file: its config, ``--set`` overrides, then :func:`run`."""
    parser = argparse.ArgumentParser(description=f"run {get_config().name} (jaxcam run)")
    add_override_args(parser)
    args = parser.parse_args(argv)
    return run_with_overrides(get_config(), args.overrides, args.print_config)


def load_and_run(
    target: str, overrides: Sequence[str], print_config: bool = False
) -> dict[str, Any]:
    """``jaxcam run CONFIG``: load the config module, apply overrides, run."""
    return run_with_overrides(load_config(target), overrides, print_config)


register_program("table1", run_table1)
