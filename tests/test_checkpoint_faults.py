"""Checkpoint faults: a stop between the latest and best writes, damaged checkpoints, and
a second process in the same run folder."""

import asyncio
import json
import os
import shutil

import jax
import numpy as np
import pytest
from conftest import lock_held_by_another_process

from jaxcam.checkpoints import CheckpointStore, DamagedCheckpointError, _reads_end_before_their_loop
from jaxcam.data import ArraySplit
from jaxcam.locks import InUseError
from jaxcam.runs import ModelSpec, load_trained_model
from jaxcam.train import TrainConfig, fit

SPEC = ModelSpec("small_cnn", image_size=16, backbone_kwargs=(("widths", (4, 8)),))
CONFIG = TrainConfig(epochs=2, batch_size=5, learning_rate=1e-2)


def tiny_splits() -> tuple[ArraySplit, ArraySplit]:
    """Bright centres are class 1: 16 training and 8 validation images of 16 x 16."""
    rng = np.random.default_rng(0)
    labels = np.array([0, 1, 1] * 8, np.int32)
    images = rng.uniform(0.0, 0.5, size=(24, 16, 16, 1)).astype(np.float32)
    images[labels == 1, 4:12, 4:12] += 0.5
    return ArraySplit(images[:16], labels[:16]), ArraySplit(images[16:], labels[16:])


def fit_tiny(run_dir, log=lambda line: None, **kwargs):
    """SPEC on tiny_splits with CONFIG: 3 steps per epoch, checkpoints at epoch ends."""
    train, val = tiny_splits()
    run_info = {"model": SPEC.to_json()}
    return fit(
        SPEC.build(), train, val, CONFIG, run_dir=run_dir, run_info=run_info, log=log, **kwargs
    )


@pytest.fixture(scope="module")
def uninterrupted(tmp_path_factory):
    run_dir = tmp_path_factory.mktemp("runs") / "full"
    return run_dir, fit_tiny(run_dir)


def best_step_of(history: list[dict]) -> int:
    """The step of the first epoch with the highest validation AUC (accuracy if undefined)."""
    scores = [e["val_auc"] if e["val_auc"] is not None else e["val_accuracy"] for e in history]
    return history[int(np.argmax(scores))]["step"]


def assert_same_variables(got, want) -> None:
    for a, b in zip(jax.tree.leaves(got), jax.tree.leaves(want), strict=True):
        np.testing.assert_array_equal(np.asarray(a), np.asarray(b))


def checkpoint_state(run_dir, kind: str) -> tuple[int | None, dict | None]:
    """(step, JSON record) of a run folder's ``kind`` checkpoint as stored; (None, None)."""
    store = CheckpointStore(run_dir)
    try:
        step = store.best.best_step() if kind == "best" else store.latest_step()
        return step, None if step is None else store.restore_record(kind)
    finally:
        store.close()


class Killed(Exception):
    """Stands for kill -9 in the middle of a checkpoint write."""


# --- item 10: a stop between writing latest and best -------------------------------------


def test_a_run_stopped_while_best_is_written_ends_with_the_uninterrupted_best(
    uninterrupted, tmp_path, monkeypatch
):
    full_dir, full = uninterrupted
    best_step = best_step_of(full.history)
    assert checkpoint_state(full_dir, "best")[0] == best_step
    run_dir = tmp_path / "stopped"
    unfinished = run_dir / "checkpoints" / "best" / f"{best_step}.orbax-checkpoint-tmp"
    save_best = CheckpointStore.save_best

    def killed_while_writing_best(self, step, state, record, score):
        if step == best_step:  # latest/<step> is committed; best/<step> half-written
            (unfinished / "model").mkdir(parents=True)
            (unfinished / "model" / "_METADATA").write_text('{"tree_metadata": {')
            raise Killed
        return save_best(self, step, state, record, score)

    with monkeypatch.context() as patch:
        patch.setattr(CheckpointStore, "save_best", killed_while_writing_best)
        with pytest.raises(Killed):
            fit_tiny(run_dir)
    assert checkpoint_state(run_dir, "latest")[0] == best_step
    assert checkpoint_state(run_dir, "best")[0] != best_step
    want = load_trained_model(full_dir, "best").variables
    # Before any resume, evaluation already reads the best state (latest/<step> holds it).
    assert_same_variables(load_trained_model(run_dir, "best").variables, want)

    lines = []
    resumed = fit_tiny(run_dir, log=lines.append)
    assert resumed.step == full.step and resumed.history == full.history
    assert checkpoint_state(run_dir, "best") == checkpoint_state(full_dir, "best")
    assert_same_variables(load_trained_model(run_dir, "best").variables, want)
    assert_same_variables(load_trained_model(run_dir, "latest").variables, full.model.variables)
    assert not unfinished.exists()
    assert (
        f"removed checkpoints/best/{best_step}.orbax-checkpoint-tmp: a checkpoint write "
        "that was interrupted" in lines
    )
    assert f"wrote the best checkpoint of step {best_step}: the run stopped before it did" in lines


# --- item 11: damaged checkpoints ------------------------------------------------------------


def test_a_damaged_checkpoint_is_named_with_the_other_one_to_try(uninterrupted, tmp_path):
    full_dir, full = uninterrupted
    run_dir = shutil.copytree(full_dir, tmp_path / "damaged")
    best_step = best_step_of(full.history)
    where = run_dir / "checkpoints" / "best" / str(best_step)
    array_files = list((where / "model").glob("ocdbt.process_0/d/*"))
    assert array_files
    for path in array_files:  # truncated: the arrays' bytes end early
        path.write_bytes(path.read_bytes()[:10])
    with pytest.raises(DamagedCheckpointError) as caught:
        load_trained_model(run_dir, "best")
    message = str(caught.value)
    assert message == (
        f"checkpoint best of step {best_step} ({where}) is damaged and cannot be read; "
        f"use the latest checkpoint (step {full.step}) instead: --checkpoint latest"
    )
    assert_same_variables(load_trained_model(run_dir, "latest").variables, full.model.variables)


def test_a_damaged_latest_checkpoint_stops_a_resume_and_names_the_older_step(
    uninterrupted, tmp_path
):
    full_dir, full = uninterrupted
    run_dir = shutil.copytree(full_dir, tmp_path / "damaged_latest")
    where = run_dir / "checkpoints" / "latest" / str(full.step)
    (where / "optimizer" / "_METADATA").write_text("{")
    with pytest.raises(DamagedCheckpointError) as caught:
        fit_tiny(run_dir)
    steps_per_epoch = full.history[0]["step"]
    message = str(caught.value)
    assert message.startswith(f"checkpoint latest of step {full.step} ({where}) is damaged")
    assert f"delete that folder to fall back to step {full.step - steps_per_epoch}" in message
    assert "\n" not in message and len(message) < 300


def test_a_checkpoint_of_another_shape_still_says_it_does_not_fit(uninterrupted, tmp_path):
    full_dir, _ = uninterrupted
    fake = tmp_path / "fake"
    fake.mkdir()
    record = json.loads((full_dir / "run.json").read_text())
    record["model"]["num_classes"] = 3
    (fake / "run.json").write_text(json.dumps(record))
    os.symlink(full_dir / "checkpoints", fake / "checkpoints")
    with pytest.raises(ValueError) as caught:
        load_trained_model(fake, "latest")
    message = str(caught.value)
    assert not isinstance(caught.value, DamagedCheckpointError)
    assert "does not fit this model (another architecture or class count?)" in message
    # Arrays in key order: the first to differ is the classifier's bias, 2 classes vs 3.
    assert message.endswith("model/params/classifier/bias has shape (2,) there, (3,) in the model")


def test_reads_still_running_when_one_fails_end_before_their_loop_closes():
    # orbax runs a checkpoint's reads as tasks on a fresh loop and closes it when one
    # fails; the others then finish on a closed loop ("Event loop is closed").
    finished = []

    async def read(name: str) -> None:
        await asyncio.sleep(0.02)
        finished.append(name)

    async def damaged() -> None:
        raise OSError("truncated")

    async def read_all() -> None:
        await asyncio.gather(damaged(), read("a"), read("b"))

    with _reads_end_before_their_loop():
        loop = asyncio.new_event_loop()
        with pytest.raises(OSError, match="truncated"):
            loop.run_until_complete(read_all())
        loop.close()
    assert sorted(finished) == ["a", "b"] and loop.is_closed()
    assert type(asyncio.new_event_loop()).__name__ != "_DrainingEventLoop"  # policy restored


# --- item 15: one training process per run folder -------------------------------------------


def test_a_second_training_process_in_the_same_run_folder_is_refused(uninterrupted, tmp_path):
    full_dir, _ = uninterrupted
    run_dir = shutil.copytree(full_dir, tmp_path / "busy")
    before = {p: p.stat().st_mtime_ns for p in (run_dir / "checkpoints").rglob("*")}
    with lock_held_by_another_process(run_dir / ".lock") as child:
        with pytest.raises(InUseError) as caught:
            fit_tiny(run_dir, max_steps=1)
    assert str(caught.value) == (
        f"run folder {run_dir} is in use by process {child.pid} (another `jaxcam train`?); "
        "wait for it to end or stop it"
    )
    assert {p: p.stat().st_mtime_ns for p in (run_dir / "checkpoints").rglob("*")} == before


def test_the_lock_of_a_killed_process_does_not_block(tmp_path):
    run_dir = tmp_path / "stale"
    with lock_held_by_another_process(run_dir / ".lock") as child:
        pass  # killed (-9) while holding the lock: its pid stays in the file
    assert (run_dir / ".lock").read_text() == str(child.pid)
    result = fit_tiny(run_dir, max_steps=1)
    assert result.step == 1 and checkpoint_state(run_dir, "latest")[0] == 1
    assert (run_dir / ".lock").read_text() == ""  # released when fit returned
