"""Run folders: what was trained (``run.json``) and its orbax checkpoints.

A run folder written by :func:`jaxcam.train.fit` (and ``jaxcam train``)::

    run.json                  the model, data and training settings (written once)
    checkpoints/latest/<step>  the newest training state (every N steps, each epoch end)
    checkpoints/best/<step>    the state with the best validation score so far
    history.json              one line per epoch: loss, validation accuracy and ROC AUC

A checkpoint holds the items ``model`` (the Flax variables) and ``optimizer`` (the
optax state), each saved with orbax's ``StandardSave``, and a JSON ``record`` (step,
history, running loss); evaluation restores ``model`` alone. Resuming reads
``latest``; evaluation reads ``best`` by default. Nothing here overwrites a
checkpoint: saving a step that exists raises, and :func:`open_run` refuses a folder
whose ``run.json`` describes another model or data set.
"""

from __future__ import annotations

import dataclasses
import json
import os
from pathlib import Path
from typing import Any

import jax
import numpy as np
import orbax.checkpoint as ocp

from jaxcam.models.base import CAMClassifier, SplitModel, bind
from jaxcam.models.registry import create_model, default_input_size

RUN_FILE = "run.json"
HISTORY_FILE = "history.json"
CHECKPOINT_KINDS = ("latest", "best")


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
    pixel_mean: float = 0.5
    pixel_std: float = 0.25
    backbone_kwargs: tuple[tuple[str, Any], ...] = ()

    def __post_init__(self) -> None:
        if self.image_size is None:
            object.__setattr__(self, "image_size", default_input_size(self.name))
        if int(self.image_size) != self.image_size or self.image_size < 1:
            raise ValueError(f"image_size must be a positive integer, got {self.image_size!r}")
        object.__setattr__(self, "hidden", tuple(int(h) for h in self.hidden))
        # JSON turns tuples into lists; module attributes must be hashable again.
        hashable = lambda v: tuple(hashable(x) for x in v) if isinstance(v, list | tuple) else v
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
        return (int(self.image_size), int(self.image_size), self.in_channels)

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


def _json_ready(value: Any) -> Any:
    """Tuples -> lists, recursively, so that a record compares equal after a JSON trip."""
    return json.loads(json.dumps(value))


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
    record = _json_ready(record)
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
    if run_dir.exists() and any(run_dir.iterdir()):
        raise ValueError(
            f"{os.fspath(run_dir)!r} exists and is not empty but has no {RUN_FILE}; "
            "choose a new or empty folder"
        )
    run_dir.mkdir(parents=True, exist_ok=True)
    temporary = run_dir / (RUN_FILE + ".tmp")
    temporary.write_text(json.dumps(record, indent=2) + "\n")
    temporary.replace(run_dir / RUN_FILE)
    return False


class CheckpointStore:
    """The ``latest`` and ``best`` orbax checkpoints of one run folder.

    ``latest`` keeps the two newest states (so an interruption while writing one still
    leaves the previous); ``best`` keeps the one with the highest validation score.
    Saves are synchronous: when :meth:`save_latest` returns, the state is on disk.
    """

    def __init__(self, run_dir: str | os.PathLike):
        root = Path(run_dir).absolute() / "checkpoints"
        self.latest = ocp.CheckpointManager(
            root / "latest",
            options=ocp.CheckpointManagerOptions(max_to_keep=2, enable_async_checkpointing=False),
        )
        self.best = ocp.CheckpointManager(
            root / "best",
            options=ocp.CheckpointManagerOptions(
                max_to_keep=1,
                best_fn=lambda metrics: metrics["score"],
                best_mode="max",
                enable_async_checkpointing=False,
            ),
        )

    def _manager(self, kind: str) -> ocp.CheckpointManager:
        if kind not in CHECKPOINT_KINDS:
            raise ValueError(f"checkpoint must be one of {CHECKPOINT_KINDS}, got {kind!r}")
        return self.latest if kind == "latest" else self.best

    def latest_step(self, kind: str = "latest") -> int | None:
        return self._manager(kind).latest_step()

    def _save(
        self,
        manager: ocp.CheckpointManager,
        step: int,
        state: dict[str, Any],
        record,
        **kwargs: Any,
    ) -> None:
        if step in manager.all_steps():
            raise ValueError(f"a checkpoint of step {step} exists already; it is not overwritten")
        items = {name: ocp.args.StandardSave(tree) for name, tree in state.items()}
        items["record"] = ocp.args.JsonSave(_json_ready(record))
        manager.save(step, args=ocp.args.Composite(**items), **kwargs)
        manager.wait_until_finished()

    def save_latest(self, step: int, state: dict[str, Any], record: dict[str, Any]) -> None:
        """Save ``state`` (``{"model": ..., "optimizer": ...}``) as the newest checkpoint."""
        if self.latest.latest_step() != step:
            self._save(self.latest, step, state, record)

    def save_best(
        self, step: int, state: dict[str, Any], record: dict[str, Any], score: float
    ) -> bool:
        """Save if ``score`` beats every earlier one; returns whether it did."""
        if self.best.best_step() is not None and score <= self.restore_record("best")["score"]:
            return False
        self._save(self.best, step, state, {**record, "score": score}, metrics={"score": score})
        return True

    def _step(self, kind: str) -> tuple[ocp.CheckpointManager, int]:
        manager = self._manager(kind)
        step = manager.latest_step() if kind == "latest" else manager.best_step()
        if step is None:
            raise ValueError(f"no {kind!r} checkpoint in {manager.directory}")
        return manager, step

    def restore(self, like: dict[str, Any], kind: str = "latest") -> tuple[dict[str, Any], dict]:
        """The items of ``like`` (e.g. ``{"model": variables}``) from the newest ``kind``
        checkpoint, with the structure of ``like``, and the checkpoint's JSON record."""
        manager, step = self._step(kind)
        where = manager.directory / str(step)
        items = {
            name: ocp.args.StandardRestore(jax.tree.map(ocp.utils.to_shape_dtype_struct, tree))
            for name, tree in like.items()
        }
        try:
            restored = manager.restore(
                step, args=ocp.args.Composite(**items, record=ocp.args.JsonRestore())
            )
        except (ValueError, KeyError, TypeError) as error:
            raise ValueError(
                f"checkpoint {where} does not fit this model (another architecture or class "
                f"count?): {error}"
            ) from None
        out = {}
        for name, tree in like.items():
            leaves = jax.tree.leaves(restored[name])
            expected = jax.tree.leaves(tree)
            if len(leaves) != len(expected):
                raise ValueError(
                    f"checkpoint {where} does not fit this model: {len(leaves)} arrays in "
                    f"{name!r}, the model has {len(expected)}"
                )
            for got, want in zip(leaves, expected, strict=True):
                if np.shape(got) != tuple(want.shape):
                    raise ValueError(
                        f"checkpoint {where} does not fit this model: an array of shape "
                        f"{np.shape(got)} in {name!r} where the model has {tuple(want.shape)}"
                    )
            # orbax gives plain containers back; put the caller's (optax) structure back on.
            out[name] = jax.tree.unflatten(jax.tree.structure(tree), leaves)
        return out, restored["record"]

    def restore_record(self, kind: str = "latest") -> dict[str, Any]:
        manager, step = self._step(kind)
        return manager.restore(step, args=ocp.args.Composite(record=ocp.args.JsonRestore()))[
            "record"
        ]

    def close(self) -> None:
        self.latest.close()
        self.best.close()


def load_trained_model(run_dir: str | os.PathLike, checkpoint: str = "best") -> SplitModel:
    """The model of a run folder bound to its ``best`` (or ``latest``) checkpoint."""
    from jaxcam.train import variable_shapes  # train imports this module

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
