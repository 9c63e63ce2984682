"""Training: ROC AUC, class weights, checkpoints; a resumed run equals an uninterrupted one."""

import json
import os

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxcam.checkpoints import CheckpointStore
from jaxcam.data import ArraySplit, check_split_labels
from jaxcam.runs import ModelSpec, history_line, load_trained_model, open_run
from jaxcam.train import (
    TrainConfig,
    class_weights_for,
    classification_loss,
    classification_report,
    fit,
    roc_auc,
)


def test_roc_auc_hand_worked_values():
    # Positives 0.4, 0.8 beat both negatives 0.1, 0.35.
    assert roc_auc(np.array([0.1, 0.4, 0.35, 0.8]), np.array([0, 1, 0, 1], bool)) == 1.0
    # Positives 0.2, 0.6 vs negatives 0.6, 0.4: pairs 0, 0, 1/2 (tie), 1 -> 1.5 / 4.
    assert roc_auc(np.array([0.2, 0.6, 0.4, 0.6]), np.array([1, 0, 0, 1], bool)) == 0.375
    assert roc_auc(np.array([1.0, 2.0]), np.array([1, 1], bool)) is None


def test_roc_auc_equals_pairwise_count():
    rng = np.random.default_rng(0)
    scores = rng.integers(0, 6, size=40).astype(np.float64)  # many ties
    positive = rng.uniform(size=40) < 0.4
    pos, neg = scores[positive], scores[~positive]
    pairwise = np.mean((pos[:, None] > neg[None]) + 0.5 * (pos[:, None] == neg[None]))
    assert roc_auc(scores, positive) == pytest.approx(pairwise, abs=1e-12)


def test_classification_report_uses_logits_for_relu_models():
    # A ReLU output clips both NORMAL logits to 0; the logits still rank them.
    logits = np.array([[0.0, -2.0], [0.0, -1.0], [0.0, 0.5], [0.0, 2.0]], np.float32)
    report = classification_report(logits, np.array([0, 1, 1, 1]), "relu")
    assert report["auc"] == 1.0
    assert report["accuracy"] == 0.75  # image 1: Y = (0, 0), argmax 0, label 1
    assert report["images"] == 4


def test_balanced_class_weights_give_each_class_the_same_total():
    weights = class_weights_for(np.array([0, 1, 1, 1]), 2, "balanced")
    np.testing.assert_allclose(weights, [2.0, 2.0 / 3.0], rtol=1e-6)
    np.testing.assert_array_equal(class_weights_for(np.array([0, 1]), 2, "none"), [1.0, 1.0])
    with pytest.raises(ValueError, match="none of \\[2\\]"):
        class_weights_for(np.array([0, 1, 1]), 3, "balanced")


def test_weighted_loss_is_the_weighted_mean_of_per_example_losses():
    logits = jnp.array([[2.0, -1.0], [0.5, 0.5], [-1.0, 3.0]])
    labels = jnp.array([0, 1, 1])
    weights = jnp.array([3.0, 0.5])
    per_example = [
        float(classification_loss(logits[i : i + 1], labels[i : i + 1], "softmax"))
        for i in range(3)
    ]
    expected = np.mean([3.0 * per_example[0], 0.5 * per_example[1], 0.5 * per_example[2]])
    got = classification_loss(logits, labels, "softmax", weights)
    assert float(got) == pytest.approx(expected, rel=1e-6)


def test_history_line_reports_each_entry():
    entry = {"epoch": 2, "step": 8, "loss": 0.123456}
    assert history_line(entry, 6, 12.6) == "epoch 2/6  loss 0.1235  (13 s)"
    entry |= {"val_accuracy": 0.75, "val_auc": None}
    assert (
        history_line(entry, 6, 3.0)
        == "epoch 2/6  loss 0.1235  val accuracy 0.750  val AUC n/a  (3 s)"
    )
    entry["val_auc"] = 0.8125
    assert history_line(entry, 6, 3.0).endswith("val accuracy 0.750  val AUC 0.812  (3 s)")


def test_check_split_labels_names_the_split_and_the_range():
    check_split_labels(ArraySplit(np.zeros((2, 1, 1, 1)), [0, 1]), 2)
    check_split_labels(ArraySplit(np.zeros((0, 1, 1, 1)), np.zeros(0)), 2)  # empty: fine
    with pytest.raises(ValueError, match="the validation labels run from 1 to 3; .* needs 0..2"):
        check_split_labels(ArraySplit(np.zeros((2, 1, 1, 1)), [3, 1]), 3, "validation")


def test_train_config_rejects_bad_values():
    with pytest.raises(ValueError, match="batch_size"):
        TrainConfig(batch_size=0)
    with pytest.raises(ValueError, match="epochs"):
        TrainConfig(epochs=1.5)
    with pytest.raises(ValueError, match="class_weighting"):
        TrainConfig(class_weighting="inverse")


# A restore that fails (the mismatched checkpoint test) leaves orbax read coroutines that
# are garbage-collected later, in whichever test runs then: their warnings are orbax's.
pytestmark = pytest.mark.filterwarnings("ignore::pytest.PytestUnraisableExceptionWarning")

SPEC = ModelSpec("small_cnn", image_size=16, backbone_kwargs=(("widths", (4, 8)),))


def tiny_splits(seed: int = 0) -> tuple[ArraySplit, ArraySplit]:
    """Bright images are class 1: learnable in a few steps."""
    rng = np.random.default_rng(seed)
    labels = np.array([0, 1, 1] * 8, np.int32)
    images = rng.uniform(0.0, 0.5, size=(24, 16, 16, 1)).astype(np.float32)
    images[labels == 1, 4:12, 4:12] += 0.5
    return ArraySplit(images[:16], labels[:16]), ArraySplit(images[16:], labels[16:])


CONFIG = TrainConfig(
    epochs=2, batch_size=5, learning_rate=1e-2, occlusion=0.5, class_weighting="balanced"
)


def fit_tiny(run_dir, log=lambda line: None, **kwargs):
    """The test run: SPEC on tiny_splits with CONFIG, checkpoints every 2 steps."""
    train, val = tiny_splits()
    return fit(
        SPEC.build(),
        train,
        val,
        CONFIG,
        run_dir=run_dir,
        run_info={"model": SPEC.to_json()},
        checkpoint_every=2,
        log=log,
        **kwargs,
    )


@pytest.fixture(scope="module")
def uninterrupted(tmp_path_factory):
    run_dir = tmp_path_factory.mktemp("runs") / "full"
    return run_dir, fit_tiny(run_dir)


def test_resumed_run_equals_uninterrupted_run(uninterrupted, tmp_path):
    full_dir, full = uninterrupted
    assert (full.step, full.total_steps, full.resumed_from) == (6, 6, None)  # 3 steps/epoch
    run_dir = tmp_path / "split"
    first = fit_tiny(run_dir, max_steps=4)
    assert first.step == 4 and len(first.history) == 1  # stopped inside epoch 2
    lines = []
    second = fit_tiny(run_dir, log=lines.append)
    assert second.resumed_from == 4 and second.step == 6
    assert lines[0].startswith(f"resuming {run_dir} at step 4/6")
    for got, want in zip(
        jax.tree.leaves(second.model.variables), jax.tree.leaves(full.model.variables), strict=True
    ):
        np.testing.assert_array_equal(np.asarray(got), np.asarray(want))
    assert second.history == full.history
    assert json.loads((run_dir / "history.json").read_text()) == full.history


def test_history_has_validation_accuracy_and_auc(uninterrupted):
    _, full = uninterrupted
    assert [e["epoch"] for e in full.history] == [1, 2]
    assert [e["step"] for e in full.history] == [3, 6]
    for entry in full.history:
        assert 0.0 <= entry["val_accuracy"] <= 1.0 and 0.0 <= entry["val_auc"] <= 1.0


def test_best_checkpoint_is_the_best_validation_auc(uninterrupted):
    run_dir, full = uninterrupted
    store = CheckpointStore(run_dir)
    best = store.restore_record("best")
    store.close()
    aucs = [e["val_auc"] for e in full.history]
    assert best["score"] == max(aucs)
    assert best["step"] == full.history[int(np.argmax(aucs))]["step"]  # first of equal AUCs
    model = load_trained_model(run_dir, "latest")
    for got, want in zip(
        jax.tree.leaves(model.variables), jax.tree.leaves(full.model.variables), strict=True
    ):
        np.testing.assert_array_equal(np.asarray(got), np.asarray(want))


def test_another_run_in_the_same_folder_is_refused_and_nothing_changes(uninterrupted):
    run_dir, _ = uninterrupted
    before = {p: os.stat(p).st_mtime_ns for p in run_dir.rglob("*")}
    train, val = tiny_splits()
    other = ModelSpec(
        "small_cnn", num_classes=3, image_size=16, backbone_kwargs=(("widths", (4, 8)),)
    )
    with pytest.raises(ValueError, match="holds a different run.*model"):
        fit(other.build(), train, val, CONFIG, run_dir=run_dir, run_info={"model": other.to_json()})
    with pytest.raises(ValueError, match="learning_rate"):
        fit(
            SPEC.build(),
            train,
            val,
            TrainConfig(epochs=2, batch_size=5),
            run_dir=run_dir,
            run_info={"model": SPEC.to_json()},
        )
    assert {p: os.stat(p).st_mtime_ns for p in run_dir.rglob("*")} == before


def test_checkpoint_of_another_model_is_a_clear_error(uninterrupted, tmp_path):
    run_dir, _ = uninterrupted
    # A copy of run.json claiming 3 classes over the 2-class checkpoints.
    fake = tmp_path / "fake"
    fake.mkdir()
    record = json.loads((run_dir / "run.json").read_text())
    record["model"]["num_classes"] = 3
    (fake / "run.json").write_text(json.dumps(record))
    os.symlink(run_dir / "checkpoints", fake / "checkpoints")
    with pytest.raises(ValueError, match="does not fit this model"):
        load_trained_model(fake, "latest")


def test_open_run_refuses_a_non_empty_folder_without_run_json(tmp_path):
    (tmp_path / "notes.txt").write_text("mine")
    with pytest.raises(ValueError, match="not empty"):
        open_run(tmp_path, {"model": {}})
    assert (tmp_path / "notes.txt").read_text() == "mine"


def test_fit_needs_one_full_batch():
    train, _ = tiny_splits()
    with pytest.raises(ValueError, match="fewer than one batch"):
        fit(SPEC.build(), train, None, TrainConfig(batch_size=64), log=lambda line: None)


def test_fit_rejects_labels_shapes_and_steps_that_do_not_fit(tmp_path):
    train, val = tiny_splits()
    three = ArraySplit(train.images, np.where(train.labels == 1, 2, 0))
    with pytest.raises(ValueError, match="training labels run from 0 to 2.*needs 0..1"):
        fit(SPEC.build(), three, val, CONFIG, log=lambda line: None)
    small = ArraySplit(val.images[:, :8, :8], val.labels)
    with pytest.raises(ValueError, match="validation images are"):
        fit(SPEC.build(), train, small, CONFIG, log=lambda line: None)
    with pytest.raises(ValueError, match="max_steps"):
        fit(SPEC.build(), train, val, CONFIG, max_steps=0, log=lambda line: None)
    with pytest.raises(ValueError, match="seed"):
        TrainConfig(seed=-1)
    assert not any(tmp_path.iterdir())
