"""Registries: a method, a metric, a data source and an architecture registered from outside
the package (tests/plugins/toy_plugin.py) run through ``evaluate`` and the ``jaxcam`` CLI;
the CLI's choices and help come from the registries."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import pytest

PLUGINS = Path(__file__).resolve().parent / "plugins"
sys.path.insert(0, str(PLUGINS))

import toy_plugin  # noqa: E402  (registers on import, as a user's module would)

import jaxcam  # noqa: E402
from jaxcam.cli import build_parser, method_table  # noqa: E402
from jaxcam.data import data_source_usage, load_data_split  # noqa: E402
from jaxcam.runs import load_trained_model  # noqa: E402

ALPHA = 0.5


def toy_model() -> jaxcam.SplitModel:
    module = jaxcam.create_model("toy_plugin_net", num_classes=2, output="softmax")
    return jaxcam.bind(module, module.init(jax.random.key(0), jnp.zeros((1, 16, 16, 1))))


def grey_drop_by_hand(model, images: np.ndarray, maps: np.ndarray) -> float:
    """The plugin metric computed here: raster ties, the top half kept, the rest 0.5 grey."""
    drops = []
    for image, saliency in zip(images, maps, strict=True):
        scores = np.asarray(model.scores(jnp.asarray(image)))
        c = int(np.argmax(scores))
        order = np.argsort(-saliency.ravel() + 0.0, kind="stable")  # value desc, raster ties
        kept = np.zeros(saliency.size, bool)
        kept[order[: round(ALPHA * saliency.size)]] = True
        grey = np.where(kept.reshape(saliency.shape)[..., None], image, 0.5).astype(np.float32)
        masked = float(np.asarray(model.scores(jnp.asarray(grey)))[c])
        drops.append(max(0.0, scores[c] - masked) / scores[c])
    return float(np.mean(drops))


def test_outside_registrations_run_through_evaluate(tmp_path):
    split = load_data_split("toy_squares", "test", data_dir=tmp_path, image_size=16, channels=1)
    images, labels = split.images, split.labels
    model = toy_model()
    evaluation = jaxcam.evaluate(
        model,
        {"image": images, "label": labels},
        ["cam", "channel_sum_cam"],
        metrics=["average_drop", "grey_drop"],
        alpha=ALPHA,
        curve=False,
        ties="raster",
    )
    assert evaluation.names == ("CAM", "Channel-sum CAM")
    assert evaluation.metrics == ("average_drop", "grey_drop")
    maps, _ = jaxcam.saliency_maps(model, images, None, "channel_sum_cam")
    row = evaluation.results["Channel-sum CAM"]
    expected = grey_drop_by_hand(model, images, np.asarray(maps))
    assert row.metrics["grey_drop"].value == pytest.approx(expected, rel=1e-5)
    assert row.metrics["grey_drop"].num_images == 12
    table = jaxcam.format_table(evaluation.results)
    header = [c.strip() for c in table.splitlines()[0].split("|")]
    assert header[:5] == ["method", "AD", "GD", "Incorrect % AD", "Incorrect % GD"]
    assert "Channel-sum CAM" in table
    with pytest.raises(ValueError, match="unknown metric 'nope'.*grey_drop"):
        jaxcam.evaluate(model, (images, labels), ["cam"], metrics=["nope"], alpha=ALPHA)


def test_cli_choices_and_help_come_from_the_registries(capsys):
    for name in ("channel_sum_cam", "cam", "grad_cam_plus_plus_exact"):
        assert name in jaxcam.method_names()
    assert set(method_table(["channel_sum_cam"])) == {"Channel-sum CAM"}
    with pytest.raises(ValueError, match="--methods: unknown method 'nope'; choose from cam,"):
        method_table(["nope"])
    assert data_source_usage().endswith("tfds:NAME | toy_squares")
    parser = build_parser()
    for command, words in (
        ("evaluate", ("channel_sum_cam", "Channel-sum CAM", "grey_drop", "(GD)", "toy_squares")),
        ("train", ("toy_plugin_net", "toy_squares")),
    ):
        with pytest.raises(SystemExit):
            parser.parse_args([command, "--help"])
        text = " ".join(capsys.readouterr().out.split())
        for word in words:
            assert word in text, (command, word)
    with pytest.raises(SystemExit):
        parser.parse_args(["evaluate", "--metrics", "average_drop,nope"])
    assert "unknown metric 'nope'" in capsys.readouterr().err


def jaxcam_command(*words: str) -> subprocess.CompletedProcess:
    """The console script in a fresh process that imports the plugin with --plugin."""
    script = Path(sys.executable).with_name("jaxcam")
    command = [str(script)] if script.exists() else [sys.executable, "-m", "jaxcam.cli"]
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join([str(PLUGINS), os.environ.get("PYTHONPATH", "")]),
    }
    return subprocess.run(
        [*command, "--plugin", "toy_plugin", *words],
        capture_output=True,
        text=True,
        env=env,
        timeout=600,
    )


@pytest.mark.slow  # two fresh processes (train, evaluate): `make test-slow`
def test_outside_registrations_run_through_the_cli(tmp_path):
    run_dir, out = tmp_path / "run", tmp_path / "evaluation"
    train = jaxcam_command(
        "train", "--data", "toy_squares", "--data-dir", str(tmp_path / "data"),
        "--model", "toy_plugin_net", "--image-size", "16", "--channels", "1",
        "--output", "softmax", "--epochs", "1", "--batch-size", "4",
        "--run-dir", str(run_dir), "--no-progress",
    )  # fmt: skip
    assert train.returncode == 0, train.stderr
    evaluate = jaxcam_command(
        "evaluate", "--run-dir", str(run_dir), "--methods", "cam,channel_sum_cam",
        "--metrics", "average_drop,grey_drop", "--alpha", str(ALPHA), "--ties", "raster",
        "--out", str(out), "--no-progress",
    )  # fmt: skip
    assert evaluate.returncode == 0, evaluate.stderr
    record = json.loads((out / "evaluation.json").read_text())
    assert record["metrics"] == ["average_drop", "grey_drop"]
    # The same checkpoint and data through the library give the CLI's numbers.
    model = load_trained_model(run_dir)
    split = load_data_split("toy_squares", "test", data_dir=tmp_path, image_size=16, channels=1)
    expected = jaxcam.evaluate(
        model,
        (split.images, split.labels),
        ["cam", "channel_sum_cam"],
        metrics=["average_drop", "grey_drop"],
        alpha=ALPHA,
        ties="raster",
    )
    for name in ("CAM", "Channel-sum CAM"):
        for metric in ("average_drop", "grey_drop"):
            got = record["all_images"][name][metric]["value"]
            assert got == pytest.approx(expected.results[name].metrics[metric].value, rel=1e-6)
    assert "GD" in (out / "table.md").read_text()
    assert record["class_names"] == list(toy_plugin.CLASS_NAMES)
