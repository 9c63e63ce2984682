"""The orbax checkpoints of a run folder: ``checkpoints/latest`` and ``checkpoints/best``.

The run folder itself (``run.json``, ``history.json``, rebuilding the trained model)
is :mod:`jaxcam.runs`. A checkpoint holds the items ``model`` (the Flax variables)
and ``optimizer`` (the optax state), each saved with orbax's ``StandardSave``, and a
JSON ``record`` (step, history, running loss); evaluation restores ``model`` alone.
Resuming reads ``latest``; evaluation reads ``best`` by default. Nothing here
overwrites a checkpoint: saving a step that exists raises.

Faults. At an epoch end ``latest`` is written first, then ``best``; a run stopped
between the two (or while ``best`` is written) has a ``latest`` step that should also
be ``best`` (:meth:`CheckpointStore.pending_best`). Restoring ``best`` then reads that
``latest`` step (the same state), and resuming writes the missing ``best`` from it, so
``best`` ends as an uninterrupted run's. Opening a store for training
(:meth:`CheckpointStore.open_for_training`) holds the run folder's lock file
(``.lock``, :mod:`jaxcam.locks`) until :meth:`CheckpointStore.close` and deletes the
temporary folders (``*.orbax-checkpoint-tmp*``) of writes that were interrupted. A
checkpoint whose files cannot be read raises :class:`DamagedCheckpointError` naming it
and the other checkpoint to try; one whose arrays have other shapes than the model's
says the checkpoint does not fit this model.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import shutil
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import jax
import numpy as np
import orbax.checkpoint as ocp

from jaxcam.locks import FileLock, acquire

CHECKPOINT_KINDS = ("latest", "best")
LOCK_FILE = ".lock"
UNFINISHED_MARK = ".orbax-checkpoint-tmp"  # orbax's suffix of a folder being written


def json_ready(value: Any) -> Any:
    """Tuples -> lists, recursively, so that a record compares equal after a JSON trip."""
    return json.loads(json.dumps(value))


def validation_score(entry: dict[str, Any]) -> tuple[str, float] | None:
    """What ``best`` is chosen by for one history entry: ``("auc", value)``, or
    ``("accuracy", value)`` where the AUC is undefined; None without validation."""
    if "val_accuracy" not in entry:
        return None
    if entry.get("val_auc") is not None:
        return "auc", float(entry["val_auc"])
    return "accuracy", float(entry["val_accuracy"])


class DamagedCheckpointError(ValueError):
    """A checkpoint's files cannot be read (truncated, deleted or overwritten)."""


def remove_unfinished_writes(run_dir: str | os.PathLike) -> list[str]:
    """Delete the temporary folders that interrupted orbax writes left in the checkpoint
    folders of ``run_dir``; returns their paths relative to ``run_dir``. Only while no
    other process writes there (under the run folder's lock)."""
    run_dir = Path(run_dir)
    found = sorted(
        path
        for kind in CHECKPOINT_KINDS
        if (run_dir / "checkpoints" / kind).is_dir()
        for path in (run_dir / "checkpoints" / kind).iterdir()
        if UNFINISHED_MARK in path.name
    )
    for path in found:
        if path.is_dir() and not path.is_symlink():
            shutil.rmtree(path)
        else:
            path.unlink()
    return [path.relative_to(run_dir).as_posix() for path in found]


class _DrainingEventLoop(asyncio.SelectorEventLoop):
    """An event loop that, when closed, first lets its unfinished tasks end.

    orbax reads a checkpoint's arrays as concurrent tasks on a fresh loop and closes the
    loop as soon as one read fails; the other reads then finish on a closed loop and
    print ``RuntimeError: Event loop is closed`` tracebacks (at exit, or much later).
    """

    def close(self) -> None:
        if not self.is_running() and not self.is_closed():
            pending = [task for task in asyncio.all_tasks(self) if not task.done()]
            if pending:
                self.run_until_complete(asyncio.wait(pending))
        super().close()


class _DrainingPolicy(asyncio.DefaultEventLoopPolicy):
    def new_event_loop(self) -> asyncio.AbstractEventLoop:
        return _DrainingEventLoop()


@contextlib.contextmanager
def _reads_end_before_their_loop() -> Iterator[None]:
    """New event loops are :class:`_DrainingEventLoop` inside the block."""
    previous = asyncio.get_event_loop_policy()
    asyncio.set_event_loop_policy(_DrainingPolicy())
    try:
        yield
    finally:
        asyncio.set_event_loop_policy(previous)


def _key_name(key: Any) -> str:
    for attribute in ("key", "name", "idx"):
        if hasattr(key, attribute):
            return str(getattr(key, attribute))
    return str(key)


class CheckpointStore:
    """The ``latest`` and ``best`` orbax checkpoints of one run folder.

    ``latest`` keeps the two newest states (so an interruption while writing one still
    leaves the previous); ``best`` keeps the one with the highest validation score.
    Saves are synchronous: when :meth:`save_latest` returns, the state is on disk.
    """

    def __init__(self, run_dir: str | os.PathLike):
        self.run_dir = Path(run_dir).absolute()
        self._lock: FileLock | None = None
        root = self.run_dir / "checkpoints"
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

    @classmethod
    def open_for_training(
        cls, run_dir: str | os.PathLike, log: Callable[[str], None] = print
    ) -> CheckpointStore:
        """The store of a run folder that this process trains in: holds the folder's lock
        (:class:`jaxcam.locks.InUseError` if another process has it) until :meth:`close`,
        and first deletes what interrupted writes left (noted in ``log``)."""
        where = os.fspath(run_dir)
        lock = acquire(
            Path(run_dir) / LOCK_FILE,
            lambda holder: (
                f"run folder {where} is in use by {holder} (another `jaxcam train`?); "
                "wait for it to end or stop it"
            ),
        )
        try:
            for path in remove_unfinished_writes(run_dir):
                log(f"removed {path}: a checkpoint write that was interrupted")
            store = cls(run_dir)
        except BaseException:
            lock.release()
            raise
        store._lock = lock
        return store

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

    def pending_best(self) -> tuple[int, float] | None:
        """``(step, score)`` when the newest ``latest`` checkpoint ends an epoch whose
        validation score beats ``best``'s but ``best`` lacks it (the run stopped between
        the two writes); None when ``best`` is up to date."""
        step = self.latest.latest_step()
        if step is None:
            return None
        try:
            history = self.restore_record("latest").get("history") or [{}]
        except ValueError:  # a damaged latest: restoring it says so
            return None
        scored = validation_score(history[-1])
        if scored is None or history[-1].get("step") != step or self.best.best_step() == step:
            return None
        score = scored[1]
        if self.best.best_step() is not None and score <= self.restore_record("best")["score"]:
            return None
        return step, score

    def resume(
        self, like: dict[str, Any], log: Callable[[str], None] = print
    ) -> tuple[dict[str, Any], dict]:
        """:meth:`restore` of ``latest``, after which a ``best`` write the run was stopped
        in (:meth:`pending_best`) is redone from it. Closes the store if that fails."""
        try:
            state, record = self.restore(like, "latest")
            pending = self.pending_best()
            if pending is not None:
                step, score = pending
                self.save_best(step, state, record, score)
                log(f"wrote the best checkpoint of step {step}: the run stopped before it did")
            return state, record
        except BaseException:
            self.close()
            raise

    def _step(self, kind: str) -> tuple[ocp.CheckpointManager, int]:
        manager = self._manager(kind)
        step = manager.latest_step() if kind == "latest" else manager.best_step()
        if step is None:
            raise ValueError(f"no {kind!r} checkpoint in {manager.directory}")
        return manager, step

    def _damaged(self, kind: str, step: int) -> DamagedCheckpointError:
        """The error for an unreadable checkpoint: which one, and which other one to try."""
        where = self._manager(kind).directory / str(step)
        options = []
        older = [s for s in self.latest.all_steps() if s < step] if kind == "latest" else []
        if older:
            options.append(f"delete that folder to fall back to step {max(older)}")
        other = "best" if kind == "latest" else "latest"
        other_step = self.best.best_step() if other == "best" else self.latest.latest_step()
        if other_step is not None and other_step != step:
            options.append(
                f"use the {other} checkpoint (step {other_step}) instead: --checkpoint {other}"
            )
        return DamagedCheckpointError(
            f"checkpoint {kind} of step {step} ({where}) is damaged and cannot be read; "
            + (", or ".join(options) or "there is no other checkpoint to fall back to")
        )

    def _check_fits(self, kind: str, step: int, like: dict[str, Any]) -> None:
        """ValueError if the stored arrays (read from the checkpoint's metadata) differ in
        number or shape from ``like``'s; DamagedCheckpointError if the metadata is unreadable."""
        where = self._manager(kind).directory / str(step)
        handler = ocp.StandardCheckpointHandler()
        try:
            with _reads_end_before_their_loop():
                stored = {name: handler.metadata(where / name).tree for name in like}
        except Exception as error:
            raise self._damaged(kind, step) from error
        finally:
            handler.close()
        for name, tree in like.items():
            arrays = jax.tree.leaves_with_path(stored[name])
            expected = jax.tree.leaves(tree)
            if len(arrays) != len(expected):
                raise ValueError(
                    f"checkpoint {where} does not fit this model (another architecture or "
                    f"class count?): {len(arrays)} arrays in {name!r}, the model has "
                    f"{len(expected)}"
                )
            for (path, got), want in zip(arrays, expected, strict=True):
                if tuple(got.shape) != tuple(want.shape):
                    array = "/".join(_key_name(key) for key in path)
                    raise ValueError(
                        f"checkpoint {where} does not fit this model (another architecture or "
                        f"class count?): {name}/{array} has shape {tuple(got.shape)} there, "
                        f"{tuple(want.shape)} in the model"
                    )

    def restore(self, like: dict[str, Any], kind: str = "latest") -> tuple[dict[str, Any], dict]:
        """The items of ``like`` (e.g. ``{"model": variables}``) from the newest ``kind``
        checkpoint, with the structure of ``like``, and the checkpoint's JSON record.

        ``best`` reads the newest ``latest`` step instead when that one should be best
        (:meth:`pending_best`). Raises ValueError when the arrays do not fit ``like``,
        :class:`DamagedCheckpointError` when the checkpoint cannot be read.
        """
        pending = self.pending_best() if kind == "best" else None
        if pending is not None:
            kind, step = "latest", pending[0]
        else:
            step = self._step(kind)[1]
        manager = self._manager(kind)
        self._check_fits(kind, step, like)
        items = {
            name: ocp.args.StandardRestore(jax.tree.map(ocp.utils.to_shape_dtype_struct, tree))
            for name, tree in like.items()
        }
        try:
            with _reads_end_before_their_loop():
                restored = manager.restore(
                    step, args=ocp.args.Composite(**items, record=ocp.args.JsonRestore())
                )
        except Exception as error:
            raise self._damaged(kind, step) from error
        out = {}
        for name, tree in like.items():
            leaves = jax.tree.leaves(restored[name])
            expected = jax.tree.leaves(tree)
            if len(leaves) != len(expected) or any(
                np.shape(got) != tuple(want.shape)
                for got, want in zip(leaves, expected, strict=True)
            ):
                raise self._damaged(kind, step)  # the metadata matched: the data does not
            # orbax gives plain containers back; put the caller's (optax) structure back on.
            out[name] = jax.tree.unflatten(jax.tree.structure(tree), leaves)
        return out, restored["record"]

    def restore_record(self, kind: str = "latest") -> dict[str, Any]:
        """The JSON record of the newest ``kind`` checkpoint (as stored, no fallback)."""
        manager, step = self._step(kind)
        try:
            with _reads_end_before_their_loop():
                restored = manager.restore(
                    step, args=ocp.args.Composite(record=ocp.args.JsonRestore())
                )
        except Exception as error:
            raise self._damaged(kind, step) from error
        return restored["record"]

    def close(self) -> None:
        """Close the orbax managers and release the run folder's lock, if held."""
        try:
            self.latest.close()
            self.best.close()
        finally:
            if self._lock is not None:
                self._lock.release()
