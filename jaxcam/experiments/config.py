"""Experiment configurations: frozen dataclasses, overridden with ``key=value`` strings.

An experiment is a short module whose ``get_config()`` returns an
:class:`ExperimentConfig` naming its data, model, training, methods and metrics (the
convention of big_vision's config files). Frozen dataclasses rather than
``ml_collections.ConfigDict``: the fields are typed (a type checker and the
``--set`` parser read the same annotations), a misspelt key is an error, a config is
hashable and printable as JSON, and no dependency is added.

Every default here is the library's own (``TrainConfig``, ``DEFAULT_TIES``,
``DEFAULT_METRICS``, Table 1's methods); a config states only what it changes.
"""

from __future__ import annotations

import dataclasses
import importlib
import importlib.util
import os
import sys
import types
import typing
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, Union

from jaxcam.metrics import DEFAULT_METRICS, DEFAULT_TIES
from jaxcam.saliency.registry import PAPER_METHOD_NAMES
from jaxcam.train import TrainConfig


@dataclasses.dataclass(frozen=True)
class DataConfig:
    """Which data set, where it is prepared, and the phantom's generator options."""

    source: str = "phantom"  # a registered data source: phantom | chest_xray:DIR | ...
    data_dir: str = "results/tfds"  # where prepared (array_record) sets live
    train_split: str = "train"
    val_split: str = "val"
    test_split: str = "test"
    focus_class: str | None = None  # a class whose table is printed first (and scored)
    # Options of the phantom source (its generator); other sources refuse non-defaults.
    variant: str = "v1"
    confounder: float = 0.0
    split_sizes: str | None = None  # "train,val,test" image counts


@dataclasses.dataclass(frozen=True)
class ModelConfig:
    """A registered architecture with the CAM-compatible head."""

    name: str = "small_cnn"
    output: str = "relu"  # the output activation (the paper's: ReLU)
    image_size: int | None = None  # default: the phantom's 128, or the model's own


@dataclasses.dataclass(frozen=True)
class EvaluationConfig:
    """What is explained and how it is scored."""

    methods: tuple[str, ...] = PAPER_METHOD_NAMES  # Table 1's rows (registered names)
    extra_methods: tuple[str, ...] = ()  # scored at the same alpha in a second pass
    metrics: tuple[str, ...] = DEFAULT_METRICS  # registered metrics, in column order
    references: tuple[str, ...] = ()  # reference rows from the lesion masks (ladder rungs)
    alpha: float | None = None  # BAD's alpha; None: chosen where the methods differ most
    ties: str = DEFAULT_TIES
    explain: str = "predicted"  # or "label"
    figure_images: int = 4  # rows of Figure 1
    # With lesion-free twins (the phantom): the model's reliance on the lesions, and a
    # table of these metrics on the lesion-reliant images of the focus class.
    reliant_metrics: tuple[str, ...] = ()
    reliance_threshold: float = 0.5  # r = (Y - Y_twin) / Y above which an image counts


@dataclasses.dataclass(frozen=True)
class ExperimentConfig:
    """One experiment: a program (registered by name) and everything it composes."""

    name: str
    program: str = "table1"
    seed: int = 0
    out: str = ""  # output folder; default results/<name>
    data: DataConfig = DataConfig()
    model: ModelConfig = ModelConfig()
    train: TrainConfig = TrainConfig()
    evaluation: EvaluationConfig = EvaluationConfig()

    @property
    def out_dir(self) -> Path:
        return Path(self.out or os.path.join("results", self.name))


def as_record(config: Any) -> dict[str, Any]:
    """A config as JSON-ready nested dicts."""
    return dataclasses.asdict(config)


# ----------------------------------------------------------------------------
# key=value overrides.


def _coerce(text: str, hint: Any, key: str) -> Any:
    """The string ``text`` as a value of the annotated type ``hint``."""
    origin, args = typing.get_origin(hint), typing.get_args(hint)
    if origin in (Union, types.UnionType):
        if text.strip().lower() in ("none", "null") and type(None) in args:
            return None
        options = [a for a in args if a is not type(None)]
        errors = []
        for option in options:
            try:
                return _coerce(text, option, key)
            except ValueError as error:
                errors.append(str(error))
        raise ValueError("; ".join(errors))
    if origin is tuple:
        items = [t.strip() for t in text.split(",") if t.strip()]
        if len(args) == 2 and args[1] is Ellipsis:
            return tuple(_coerce(t, args[0], key) for t in items)
        if len(items) != len(args):
            raise ValueError(f"{key} takes {len(args)} comma-separated values, got {text!r}")
        return tuple(_coerce(t, a, key) for t, a in zip(items, args, strict=True))
    if hint is bool:
        if text.strip().lower() in ("true", "1", "yes"):
            return True
        if text.strip().lower() in ("false", "0", "no"):
            return False
        raise ValueError(f"{key} takes true or false, got {text!r}")
    if hint in (int, float):
        try:
            return hint(text)
        except ValueError:
            raise ValueError(f"{key} takes a number ({hint.__name__}), got {text!r}") from None
    if hint is str:
        return text
    raise ValueError(f"{key} cannot be set from the command line (type {hint})")


def override(config: Any, assignment: str) -> Any:
    """``config`` with one ``dotted.key=value`` applied (typed by the field's annotation).

    ``train.epochs=2``, ``evaluation.alpha=0.5``, ``evaluation.alpha=none``,
    ``evaluation.extra_methods=`` (an empty tuple), ``data.split_sizes=64,16,24``.
    Raises ValueError naming an unknown key (with the known ones) or a bad value.
    """
    key, sep, value = assignment.partition("=")
    if not sep or not key.strip():
        raise ValueError(f"--set takes key=value, got {assignment!r}")
    return _replace(config, key.strip().split("."), value, key.strip())


def _replace(config: Any, path: list[str], value: str, key: str) -> Any:
    fields = {f.name: f for f in dataclasses.fields(config)}
    head = path[0]
    if head not in fields:
        raise ValueError(f"unknown config key {key!r}; {type(config).__name__} has {list(fields)}")
    current = getattr(config, head)
    if len(path) > 1:
        if not dataclasses.is_dataclass(current):
            raise ValueError(f"config key {key!r}: {head!r} has no sub-keys")
        return dataclasses.replace(config, **{head: _replace(current, path[1:], value, key)})
    if dataclasses.is_dataclass(current):
        raise ValueError(f"config key {key!r} is a section; set one of its keys ({key}.NAME)")
    hint = typing.get_type_hints(type(config))[head]
    return dataclasses.replace(config, **{head: _coerce(value, hint, key)})


def apply_overrides(config: Any, assignments: Sequence[str]) -> Any:
    for assignment in assignments:
        config = override(config, assignment)
    return config


# ----------------------------------------------------------------------------
# Loading a config module.


def load_config(target: str) -> ExperimentConfig:
    """``get_config()`` of a config module: a file path (``experiments/phantom.py``) or a
    module name (``mypackage.my_experiment``)."""
    path = Path(target)
    if target.endswith(".py") or path.exists():
        if not path.is_file():
            raise FileNotFoundError(f"no config file {target!r}")
        spec = importlib.util.spec_from_file_location(f"_jaxcam_config_{path.stem}", path)
        if spec is None or spec.loader is None:
            raise ValueError(f"cannot import {target!r} as a Python module")
        module = importlib.util.module_from_spec(spec)
        sys.modules[spec.name] = module
        spec.loader.exec_module(module)
    else:
        module = importlib.import_module(target)
    get_config: Callable[[], Any] | None = getattr(module, "get_config", None)
    if get_config is None:
        raise ValueError(f"config module {target!r} has no get_config()")
    config = get_config()
    if not isinstance(config, ExperimentConfig):
        raise TypeError(
            f"get_config() of {target!r} must return a jaxcam ExperimentConfig, "
            f"got {type(config).__name__}"
        )
    return config
