"""Experiment configs: typed ``--set`` overrides, loading config modules, the runner."""

from __future__ import annotations

import json

import pytest

from jaxcam.cli import main
from jaxcam.experiments import (
    ExperimentConfig,
    apply_overrides,
    load_config,
    override,
    program_names,
    run,
)
from jaxcam.train import TrainConfig

BASE = ExperimentConfig(name="t")


def test_overrides_are_typed_by_the_annotations():
    config = apply_overrides(
        BASE,
        [
            "seed=3",
            "train.epochs=2",
            "train.learning_rate=0.5",
            "train.occluded_area=0.1,0.2",
            "evaluation.alpha=0.25",
            "evaluation.methods=cam,grad_cam",
            "evaluation.extra_methods=",
            "data.split_sizes=64,16,24",
            "model.image_size=32",
        ],
    )
    assert config.seed == 3 and config.train.epochs == 2 and config.train.learning_rate == 0.5
    assert config.train.occluded_area == (0.1, 0.2)
    assert config.evaluation.alpha == 0.25
    assert config.evaluation.methods == ("cam", "grad_cam")
    assert config.evaluation.extra_methods == ()
    assert config.data.split_sizes == "64,16,24" and config.model.image_size == 32
    assert override(config, "evaluation.alpha=none").evaluation.alpha is None
    assert BASE.train == TrainConfig()  # the library's defaults, untouched


@pytest.mark.parametrize(
    "assignment, message",
    [
        ("train.epoch=2", "unknown config key 'train.epoch'.*'epochs'"),
        ("train=2", "is a section"),
        ("seed.x=1", "has no sub-keys"),
        ("train.epochs=two", "train.epochs takes a number"),
        ("train.occluded_area=0.1", "takes 2 comma-separated values"),
        ("seed", "key=value"),
        ("train.epochs=0", "epochs must be an integer >= 1"),
    ],
)
def test_bad_overrides_name_the_key(assignment, message):
    with pytest.raises(ValueError, match=message):
        override(BASE, assignment)


def test_load_config_from_a_file_and_the_cli_print_config(tmp_path, capsys):
    config = load_config("experiments/phantom.py")
    assert config.name == "phantom" and config.program in program_names()
    assert config.train.occlusion == 0.5 and config.data.focus_class == "PNEUMONIA"
    assert main(["run", "experiments/phantom.py", "--print-config", "--set", "seed=2"]) == 0
    printed = json.loads(capsys.readouterr().out)
    assert printed["seed"] == 2 and printed["evaluation"]["references"][0] == "ground_truth"
    bad = tmp_path / "bad.py"
    bad.write_text("def get_config():\n    return {'name': 'x'}\n")
    with pytest.raises(TypeError, match="must return a jaxcam ExperimentConfig"):
        load_config(str(bad))
    with pytest.raises(FileNotFoundError, match="no config file"):
        load_config(str(tmp_path / "missing.py"))
    assert main(["run", str(tmp_path / "missing.py")]) == 2
    assert "no config file" in capsys.readouterr().err


def test_unknown_program_is_refused():
    with pytest.raises(ValueError, match="unknown program 'nope'; registered: table1"):
        run(ExperimentConfig(name="x", program="nope"))
