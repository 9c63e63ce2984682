"""The orbax checkpoints of a run folder: ``checkpoints/latest`` and ``checkpoints/best``.

The run folder itself (``run.json``, ``history.json``, rebuilding the trained model)
is :mod:`jaxcam.runs`. A checkpoint holds the items ``model`` (the Flax variables)
and ``optimizer`` (the optax state), each saved with orbax's ``StandardSave``, and a
JSON ``record`` (step, history, running loss); evaluation restores ``model`` alone.
Resuming reads ``latest``; evaluation reads ``best`` by default. Nothing here
overwrites a checkpoint: saving a step that exists raises.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import jax
import numpy as np
import orbax.checkpoint as ocp

CHECKPOINT_KINDS = ("latest", "best")


def json_ready(value: Any) -> Any:
    """Tuples -> lists, recursively, so that a record compares equal after a JSON trip."""
    return json.loads(json.dumps(value))


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
        items["record"] = ocp.args.JsonSave(json_ready(record))
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
