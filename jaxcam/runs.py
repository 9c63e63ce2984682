"""Run folders: what was trained (``run.json``), its history and its trained model.

A run folder written by :func:`jaxcam.train.fit` (and ``jaxcam train``)::

    run.json                  the model, data and training settings (written once)
    checkpoints/latest/<step>  the newest training state (every N steps, each epoch end)
    checkpoints/best/<step>    the state with the best validation score so far
    history.json              one line per epoch: loss, validation accuracy and ROC AUC
    .lock                     held by the process training in the folder (one at a time)

The checkpoints are :class:`jaxcam.checkpoints.CheckpointStore`'s. :func:`open_run`
refuses a folder whose ``run.json`` describes another model or data set;
:func:`load_trained_model` rebuilds the model from ``run.json`` (its
:class:`ModelSpec`) and binds it to a checkpoint.
"""

from __future__ import annotations

import dataclasses
import json
import os
from pathlib import Path
from typing import Any

from jaxcam.checkpoints import LOCK_FILE, CheckpointStore, json_ready
from jaxcam.models.base import CAMClassifier, SplitModel, bind
from jaxcam.models.init import variable_shapes
from jaxcam.models.pixel_stats import DEFAULT_PIXEL_MEAN, DEFAULT_PIXEL_STD
from jaxcam.models.registry import create_model, default_input_size

RUN_FILE = "run.json"
HISTORY_FILE = "history.json"


@dataclasses.dataclass(frozen=True)
class ModelSpec:
    """Everything needed to rebuild a registered model (stored in ``run.json``).

    ``pixel_mean`` / ``pixel_std`` are the model-side normalisation of raw pixels in
    [0, 1] (0.5 / 0.5 reproduces Keras' ``x / 127.5 - 1``); ``backbone_kwargs`` go to
    the registered backbone constructor (e.g. ``width_scale`` of InceptionResNetV2).
    """

    name: str
    num_classes: int = 2
    output: str = "relu"
    in_channels: int = 1
    image_size: int | None = None
    hidden: tuple[int, ...] = ()
    pixel_mean: float = DEFAULT_PIXEL_MEAN
    pixel_std: float = DEFAULT_PIXEL_STD
    backbone_kwargs: tuple[tuple[str, Any], ...] = ()

    def __post_init__(self) -> None:
        size = default_input_size(self.name) if self.image_size is None else self.image_size
        object.__setattr__(self, "image_size", size)
        if int(size) != size or size < 1:
            raise ValueError(f"image_size must be a positive integer, got {size!r}")
        object.__setattr__(self, "hidden", tuple(int(h) for h in self.hidden))

        # JSON turns tuples into lists; module attributes must be hashable again.
        def hashable(v: Any) -> Any:
            return tuple(hashable(x) for x in v) if isinstance(v, list | tuple) else v

        object.__setattr__(
            self,
            "backbone_kwargs",
            tuple(sorted((str(k), hashable(v)) for k, v in dict(self.backbone_kwargs).items())),
        )

    def build(self) -> CAMClassifier:
        """The Flax module this spec describes."""
        module = create_model(
            self.name,
            self.num_classes,
            self.output,
            in_channels=self.in_channels,
            hidden=self.hidden,
            **dict(self.backbone_kwargs),
        )
        return module.clone(pixel_mean=self.pixel_mean, pixel_std=self.pixel_std)

    @property
    def image_shape(self) -> tuple[int, int, int]:
        size = self.image_size
        assert size is not None  # __post_init__ sets it
        return (int(size), int(size), self.in_channels)

    def to_json(self) -> dict[str, Any]:
        record = dataclasses.asdict(self)
        record["hidden"] = list(self.hidden)
        record["backbone_kwargs"] = dict(self.backbone_kwargs)
        return record

    @classmethod
    def from_json(cls, record: dict[str, Any]) -> ModelSpec:
        record = dict(record)
        record["hidden"] = tuple(record.get("hidden", ()))
        record["backbone_kwargs"] = tuple(record.get("backbone_kwargs", {}).items())
        return cls(**record)


def read_run(run_dir: str | os.PathLike) -> dict[str, Any]:
    """The ``run.json`` of a run folder (ValueError naming the folder if there is none)."""
    path = Path(run_dir) / RUN_FILE
    if not path.is_file():
        raise ValueError(
            f"{os.fspath(run_dir)!r} is not a jaxcam run folder: no {RUN_FILE} "
            "(create one with `jaxcam train --run-dir ...`)"
        )
    try:
        return json.loads(path.read_text())
    except json.JSONDecodeError as error:
        raise ValueError(f"{path} is not valid JSON: {error}") from None


def open_run(run_dir: str | os.PathLike, record: dict[str, Any]) -> bool:
    """Create the run folder with ``record`` as its ``run.json``, or check that it matches.

    Returns True when the folder already held this run (a resume). A folder holding
    another run (different model, data or training settings) raises ValueError naming
    the differing keys; nothing in it is touched.
    """
    run_dir = Path(run_dir)
    record = json_ready(record)
    if (run_dir / RUN_FILE).exists():
        existing = read_run(run_dir)
        if existing != record:
            keys = sorted(
                k for k in set(existing) | set(record) if existing.get(k) != record.get(k)
            )
            details = "; ".join(
                f"{k}: folder has {existing.get(k)!r}, asked {record.get(k)!r}" for k in keys
            )
            raise ValueError(
                f"run folder {os.fspath(run_dir)!r} holds a different run ({details}); "
                "use a new --run-dir (its checkpoints are left untouched)"
            )
        return True
    if run_dir.exists() and any(p.name != LOCK_FILE for p in run_dir.iterdir()):
        raise ValueError(
            f"{os.fspath(run_dir)!r} exists and is not empty but has no {RUN_FILE}; "
            "choose a new or empty folder"
        )
    run_dir.mkdir(parents=True, exist_ok=True)
    temporary = run_dir / f".{RUN_FILE}.{os.getpid()}.tmp"  # two starting at once: no mix
    temporary.write_text(json.dumps(record, indent=2) + "\n")
    temporary.replace(run_dir / RUN_FILE)
    return False


def write_history(run_dir: str | os.PathLike, history: list[dict[str, Any]]) -> None:
    """Write ``history`` (one dict per finished epoch) as the folder's ``history.json``."""
    Path(run_dir, HISTORY_FILE).write_text(json.dumps(history, indent=2) + "\n")


def history_line(
    entry: dict[str, Any], epochs: int, seconds: float, total: float | None = None
) -> str:
    """One ``history.json`` entry (epoch, loss, validation accuracy and AUC) as a log line,
    with ``seconds`` (``"(13 s)"``), or, given ``total``, the epoch's own seconds and the
    run's so far (``"(4.2 s; 13.0 s in all)"``)."""
    line = f"epoch {entry['epoch']}/{epochs}  loss {entry['loss']:.4f}"
    if "val_accuracy" in entry:
        line += f"  val accuracy {entry['val_accuracy']:.3f}"
        auc = entry["val_auc"]
        line += f"  val AUC {auc:.3f}" if auc is not None else "  val AUC n/a"
    if total is None:
        return f"{line}  ({seconds:.0f} s)"
    return f"{line}  ({seconds:.1f} s; {total:.1f} s in all)"


def load_trained_model(run_dir: str | os.PathLike, checkpoint: str = "best") -> SplitModel:
    """The model of a run folder bound to its ``best`` (or ``latest``) checkpoint."""
    spec = ModelSpec.from_json(read_run(run_dir)["model"])
    module = spec.build()
    variables = variable_shapes(module, spec.image_shape)
    store = CheckpointStore(run_dir)
    try:
        kind = checkpoint
        if kind == "best" and store.best.best_step() is None:
            kind = "latest"  # no validation yet (e.g. stopped inside the first epoch)
        state, _ = store.restore({"model": variables}, kind)
    finally:
        store.close()
    return bind(module, state["model"])
