"""``jaxcam run``: an experiment config (a module with ``get_config()``)."""

from __future__ import annotations

import argparse
from typing import Any


def run_command(args: argparse.Namespace) -> dict[str, Any]:
    from jaxcam.experiments.runner import load_and_run

    return load_and_run(args.config, args.overrides, args.print_config)


def add_run_parser(commands: Any) -> None:
    """The ``jaxcam run`` subcommand."""
    from jaxcam.experiments.runner import add_override_args

    run = commands.add_parser(
        "run",
        help="run an experiment config (a module with get_config())",
        description="Run an experiment configuration: CONFIG is a Python file or module "
        "whose get_config() returns a jaxcam.experiments.ExperimentConfig (e.g. "
        "experiments/phantom.py). Writes what its program writes (results.json, figures) "
        "into the config's out folder.",
    )
    run.add_argument("config", help="a config file (experiments/phantom.py) or module name")
    add_override_args(run)
    run.set_defaults(handler=run_command)
