"""Guard for the ``jaxcam`` command: its numbers and maps are the library's on the same checkpoint.

A tiny chest-X-ray folder of 16x16 PNG files (no resizing, so the pixels the command reads
are known exactly), one short training run through the command, then ``jaxcam evaluate``
and ``jaxcam explain`` against :func:`jaxcam.evaluate` and :func:`jaxcam.saliency_maps` on
the model loaded from the run and the images decoded here.
"""

from __future__ import annotations

import json
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from conftest import lanczos3_upsample_reference, normalise_reference
from PIL import Image

import jaxcam
from jaxcam.cli import main
from jaxcam.runs import load_trained_model

#: Trains a run through the CLI first: `make test-slow` (and CI) runs it.
pytestmark = pytest.mark.slow

SIZE = 16
CLASSES = ("NORMAL", "PNEUMONIA")
COUNTS = {"train": 8, "val": 3, "test": 4}  # images per class
#: ``--methods cam,grad_cam`` (two rows, so alpha is chosen; fewer compilations than three).
METHODS = ["--methods", "cam,grad_cam"]
ROWS = {"CAM": ("cam", {}), "Grad-CAM": ("grad_cam", {})}
SUMMARY_FIELDS = ("value", "incorrect", "increase_in_confidence", "mean_change", "median_ratio")


def write_chest_xray(root: Path) -> dict[str, np.ndarray]:
    """``root/{train,val,test}/{NORMAL,PNEUMONIA}/{class}_{i}.png``, 16x16 grayscale; a
    PNEUMONIA image carries a bright 6x6 blob. Returns the test images as the command reads
    them (uint8 / 255), in its order: class, then file name."""
    rng = np.random.default_rng(3)
    test = []
    for split, count in COUNTS.items():
        for label in CLASSES:
            folder = root / split / label
            folder.mkdir(parents=True)
            for i in range(count):
                pixels = rng.integers(20, 90, size=(SIZE, SIZE))
                if label == "PNEUMONIA":
                    row, col = rng.integers(0, SIZE - 6, size=2)
                    pixels[row : row + 6, col : col + 6] += 150
                Image.fromarray(pixels.astype(np.uint8)).save(folder / f"{label}_{i}.png")
                if split == "test":
                    test.append(pixels.astype(np.float32) / np.float32(255.0))
    images = np.stack(test)[..., None]
    labels = np.repeat(np.arange(len(CLASSES), dtype=np.int32), COUNTS["test"])
    return {"image": images, "label": labels}


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    """(run folder, test images and labels) of one short softmax run (every Y > 0, so every
    drop ratio is defined)."""
    root = tmp_path_factory.mktemp("guards_cli")
    test = write_chest_xray(root / "chest_xray")
    run_dir = root / "run"
    argv = ["train", "--data", f"chest_xray:{root / 'chest_xray'}"]
    argv += ["--data-dir", str(root / "prepared"), "--run-dir", str(run_dir)]
    argv += ["--model", "small_cnn", "--image-size", str(SIZE), "--output", "softmax"]
    argv += ["--epochs", "1", "--batch-size", "4", "--learning-rate", "0.01", "--no-progress"]
    assert main(argv) == 0
    return run_dir, test


def assert_same_record(got: dict, want) -> None:
    """A JSON summary (dict) against a DropSummary."""
    assert got["num_images"] == want.num_images and got["num_excluded"] == want.num_excluded
    for field in SUMMARY_FIELDS:
        value = getattr(want, field)
        assert (got[field] is None) == (value is None), field
        if value is not None:
            assert got[field] == pytest.approx(value, rel=1e-5, abs=1e-7), field


def test_evaluate_command_reports_the_library_evaluation(run, tmp_path, capsys):
    run_dir, test = run
    out = tmp_path / "evaluate"
    argv = ["evaluate", "--run-dir", str(run_dir), "--out", str(out), *METHODS]
    assert main([*argv, "--batch-size", "8", "--no-progress"]) == 0
    record = json.loads((out / "evaluation.json").read_text())
    model = load_trained_model(run_dir, "best")  # the command's default checkpoint
    evaluation = jaxcam.evaluate(model, (test["image"], test["label"]), ROWS, batch_size=8)
    assert record["alpha"] == evaluation.alpha and record["alpha_chosen"]
    assert record["alpha_search"] == pytest.approx(
        {f"{a:.2f}": d for a, d in evaluation.alpha_differences.items()}, rel=1e-5, abs=1e-7
    )
    assert record["accuracy"] == pytest.approx(evaluation.accuracy)
    assert record["class_counts"] == {"0": 4, "1": 4}
    for name, result in evaluation.results.items():
        row = record["all_images"][name]
        assert_same_record(row["average_drop"], result.average_drop)
        assert_same_record(row["black_average_drop"], result.black_average_drop)
        assert row["tie_decided"] == pytest.approx(result.tie_decided, abs=1e-7)
        for c in (0, 1):
            by_class = record["by_class"][str(c)][name]
            assert_same_record(
                by_class["black_average_drop"], evaluation.by_class[c][name].black_average_drop
            )
    # Softmax scores are positive: every ratio is defined, so the numbers are not all None.
    assert record["all_images"]["CAM"]["black_average_drop"]["num_excluded"] == 0
    assert record["all_images"]["CAM"]["black_average_drop"]["value"] is not None


def test_explain_command_writes_the_library_maps(run, tmp_path, capsys):
    run_dir, test = run
    out = tmp_path / "explain"
    argv = ["explain", "--run-dir", str(run_dir), "--first", "3", "--out", str(out), *METHODS]
    assert main(argv) == 0
    maps = np.load(out / "maps.npz")
    record = json.loads((out / "explain.json").read_text())
    model = load_trained_model(run_dir, "best")
    images = test["image"][:3]
    features, scores = jax.jit(jax.vmap(lambda x: (model.features(x), model.scores(x))))(
        jnp.asarray(images)
    )
    features, scores = np.asarray(features, np.float64), np.asarray(scores)
    for got, want in zip(record["images"], scores, strict=True):
        assert got["scores"] == pytest.approx(want.tolist(), rel=1e-5)
        assert got["predicted"] == CLASSES[int(np.argmax(want))] and got["label"] == "NORMAL"
    for name, (method, options) in ROWS.items():
        want, _ = jaxcam.saliency_maps(model, images, None, method, **options)
        np.testing.assert_allclose(maps[name], np.asarray(want), atol=1e-5)
    # CAM written out: relu(A @ w_c) on the 2x2 feature map, Lanczos-3 to 16x16, scaled to 1.
    weights = np.asarray(model.class_weights(), np.float64)
    for i in range(len(images)):
        raw = np.maximum(features[i] @ weights[:, int(np.argmax(scores[i]))], 0.0)
        want = normalise_reference(lanczos3_upsample_reference(raw, (SIZE, SIZE)))
        np.testing.assert_allclose(maps["CAM"][i], want, atol=1e-5)
