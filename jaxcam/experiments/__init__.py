"""Experiments as configurations run by one runner (``jaxcam run CONFIG --set k=v``)."""

from jaxcam.experiments.config import (
    DataConfig,
    EvaluationConfig,
    ExperimentConfig,
    ModelConfig,
    apply_overrides,
    load_config,
    override,
)
from jaxcam.experiments.runner import program_names, register_program, run, script_main

__all__ = [
    "DataConfig",
    "EvaluationConfig",
    "ExperimentConfig",
    "ModelConfig",
    "apply_overrides",
    "load_config",
    "override",
    "program_names",
    "register_program",
    "run",
    "script_main",
]
