"""The ``jaxcam`` command on a tiny Kaggle-layout folder: train, resume, evaluate, explain."""

from __future__ import annotations

import importlib.metadata
import importlib.util
import json
import os
from pathlib import Path

import jax
import numpy as np
import pytest
from conftest import load_script
from PIL import Image

from jaxcam.cli import build_parser, main
from jaxcam.evaluation import MethodResult, format_table, markdown_table
from jaxcam.metrics import summarise_drop
from jaxcam.runs import load_trained_model

SIZE = 16
COUNTS = {"train": (8, 8), "val": (3, 3), "test": (4, 4)}  # (NORMAL, PNEUMONIA)


def make_chest_xray(root: Path) -> Path:
    """``root/{train,val,test}/{NORMAL,PNEUMONIA}``: PNEUMONIA images carry a bright blob.
    JPEG and PNG files of different sizes."""
    rng = np.random.default_rng(0)
    for split, (normal, sick) in COUNTS.items():
        for label, count in (("NORMAL", normal), ("PNEUMONIA", sick)):
            folder = root / split / label
            folder.mkdir(parents=True)
            for i in range(count):
                h, w = 20 + i % 3, 24 - i % 2
                pixels = rng.uniform(20, 90, size=(h, w))
                if label == "PNEUMONIA":
                    pixels[5:15, 6:16] += 150
                suffix = ".jpeg" if i % 2 else ".png"
                Image.fromarray(pixels.astype(np.uint8)).save(folder / f"{label}_{i}{suffix}")
    return root


TRAIN = ["--model", "small_cnn", "--image-size", str(SIZE), "--epochs", "2", "--batch-size", "4"]
TRAIN += ["--learning-rate", "0.01", "--checkpoint-every", "3", "--no-progress"]


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """(data source, data_dir, run folder) of an uninterrupted 2-epoch run (8 steps)."""
    root = tmp_path_factory.mktemp("cli")
    source = make_chest_xray(root / "chest_xray")
    data_dir = root / "prepared"
    run_dir = root / "run_full"
    data = ["--data", f"chest_xray:{source}", "--data-dir", str(data_dir)]
    assert main(["train", *data, "--run-dir", str(run_dir), *TRAIN]) == 0
    return source, data_dir, run_dir, data


def test_train_writes_run_folder(trained, capsys):
    _, _, run_dir, _ = trained
    summary = json.loads((run_dir / "train_summary.json").read_text())
    assert summary["step"] == summary["total_steps"] == 8 and summary["finished"]
    run = json.loads((run_dir / "run.json").read_text())
    assert run["data"]["class_names"] == ["NORMAL", "PNEUMONIA"]
    assert run["data"]["sizes"] == {"train": 16, "val": 6}
    assert run["train"]["class_weighting"] == "balanced"
    assert sorted(os.listdir(run_dir / "checkpoints" / "latest")) == ["6", "8"]  # keeps two
    assert len(os.listdir(run_dir / "checkpoints" / "best")) == 1
    assert (run_dir / "train.png").stat().st_size > 1000
    table = (run_dir / "train.md").read_text().splitlines()
    assert table[0].startswith("| epoch | step | loss") and len(table) == 4


def test_interrupted_train_resumes_to_the_same_parameters(trained, tmp_path, capsys):
    _, _, full_dir, data = trained
    run_dir = tmp_path / "run"
    command = ["train", *data, "--run-dir", str(run_dir), *TRAIN]
    assert main([*command, "--max-steps", "5"]) == 0
    assert "step 5/8: stopped" in capsys.readouterr().out
    assert sorted(os.listdir(run_dir / "checkpoints" / "latest")) == ["4", "5"]
    assert main(command) == 0
    printed = capsys.readouterr().out
    assert "resuming" in printed and "step 8/8: finished" in printed
    summary = json.loads((run_dir / "train_summary.json").read_text())
    assert summary["resumed_from"] == 5 and summary["step"] == 8
    resumed = load_trained_model(run_dir, "latest").variables
    full = load_trained_model(full_dir, "latest").variables
    for got, want in zip(jax.tree.leaves(resumed), jax.tree.leaves(full), strict=True):
        np.testing.assert_array_equal(np.asarray(got), np.asarray(want))


def test_evaluate_writes_json_markdown_and_png(trained, capsys):
    _, _, run_dir, _ = trained
    assert main(["evaluate", "--run-dir", str(run_dir), "--no-progress"]) == 0
    printed = capsys.readouterr().out
    out = run_dir / "evaluate_test"
    record = json.loads((out / "evaluation.json").read_text())
    assert record["data"]["images"] == 8 and record["class_names"] == ["NORMAL", "PNEUMONIA"]
    assert record["class_counts"] == {"0": 4, "1": 4}
    assert set(record["all_images"]) == {"CAM", "Grad-CAM", "Grad-CAM++"}
    assert f"alpha = {record['alpha']:.2f}" in printed
    assert f"accuracy {record['accuracy']:.3f}" in printed
    markdown = (out / "table.md").read_text()
    for title in ("## All images", "## NORMAL (4 images)", "## PNEUMONIA (4 images)"):
        assert title in markdown
    bad = record["all_images"]["CAM"]["black_average_drop"]["value"]
    cam_row = next(line for line in markdown.splitlines() if line.startswith("| CAM |"))
    assert cam_row.split(" | ")[2].rstrip("^") == ("n/a" if bad is None else f"{bad:.4f}")
    assert (out / "bad_curve.png").stat().st_size > 1000


def test_explain_first_images_and_files(trained, tmp_path, capsys):
    source, _, run_dir, _ = trained
    out = tmp_path / "explain"
    assert main(["explain", "--run-dir", str(run_dir), "--first", "3", "--out", str(out)]) == 0
    maps = np.load(out / "maps.npz")
    assert set(maps.files) == {"CAM", "Grad-CAM", "Grad-CAM++"}
    assert maps["CAM"].shape == (3, SIZE, SIZE)
    assert 0.0 <= maps["CAM"].min() and maps["CAM"].max() <= 1.0
    record = json.loads((out / "explain.json").read_text())
    assert [r["label"] for r in record["images"]] == ["NORMAL"] * 3
    assert (out / "figure1.png").stat().st_size > 1000
    # Three files: the same batch shape as above, so the compiled map steps are reused.
    files = [
        str(source / "test" / "PNEUMONIA" / f"PNEUMONIA_{i}.{e}")
        for i, e in ((0, "png"), (1, "jpeg"), (2, "png"))
    ]
    out2 = tmp_path / "explain_files"
    assert main(["explain", "--run-dir", str(run_dir), "--images", *files, "--out", str(out2)]) == 0
    record = json.loads((out2 / "explain.json").read_text())
    assert [r["image"] for r in record["images"]][:2] == ["PNEUMONIA_0.png", "PNEUMONIA_1.jpeg"]
    assert record["images"][0]["label"] is None
    assert (out2 / "explain.md").read_text().count("PNEUMONIA_0.png") == 1


def test_bad_input_gives_a_clear_error_and_keeps_checkpoints(trained, tmp_path, capsys):
    source, data_dir, run_dir, data = trained
    before = {p: os.stat(p).st_mtime_ns for p in (run_dir / "checkpoints").rglob("*")}
    cases = [
        (
            [
                "train",
                "--data",
                f"chest_xray:{tmp_path / 'nope'}",
                "--run-dir",
                str(tmp_path / "r"),
            ],
            "nope",
        ),
        (
            [
                "train",
                "--data",
                "tfds:no_such_set_xyz",
                "--data-dir",
                str(data_dir),
                "--run-dir",
                str(tmp_path / "r2"),
            ],
            "no_such_set_xyz",
        ),
        (["train", "--data", "imagenet", "--run-dir", str(tmp_path / "r3")], "unknown data set"),
        # Another model (softmax output) into the existing run folder.
        (
            ["train", *data, "--run-dir", str(run_dir), *TRAIN, "--output", "softmax"],
            "holds a different run",
        ),
        (
            ["train", *data, "--run-dir", str(tmp_path / "r4"), *TRAIN, "--num-classes", "3"],
            "the data has 2 classes",
        ),
        (["evaluate", "--run-dir", str(tmp_path)], "not a jaxcam run folder"),
        (["explain", "--run-dir", str(run_dir), "--images", str(tmp_path / "x.png")], "x.png"),
    ]
    for argv, needle in cases:
        assert main(argv) == 2, argv
        assert needle in capsys.readouterr().err
    after = {p: os.stat(p).st_mtime_ns for p in (run_dir / "checkpoints").rglob("*")}
    assert after == before


def test_corrupt_and_empty_folders_are_named(tmp_path, capsys):
    source = make_chest_xray(tmp_path / "xray")
    (source / "train" / "NORMAL" / "broken.jpeg").write_bytes(b"\xff\xd8 not a jpeg")
    argv = [
        "train",
        "--data",
        f"chest_xray:{source}",
        "--data-dir",
        str(tmp_path / "p"),
        "--run-dir",
        str(tmp_path / "run"),
        *TRAIN,
    ]
    assert main(argv) == 2
    assert "broken.jpeg" in capsys.readouterr().err
    assert not (tmp_path / "run" / "checkpoints").exists()
    (source / "train" / "NORMAL" / "broken.jpeg").unlink()
    for f in (source / "val" / "PNEUMONIA").iterdir():
        f.unlink()
    assert main(argv) == 2
    assert "PNEUMONIA" in capsys.readouterr().err


def test_every_command_says_what_it_writes(capsys):
    parser = build_parser()
    for command, words in (
        ("train", ("checkpoints", "run.json", "resume")),
        ("evaluate", ("evaluation.json", "table.md", "bad_curve.png")),
        ("explain", ("figure1.png", "maps.npz", "explain.json")),
    ):
        with pytest.raises(SystemExit):
            parser.parse_args([command, "--help"])
        text = " ".join(capsys.readouterr().out.split())
        for word in words:
            assert word in text, (command, word)


def test_markdown_table_has_the_cells_and_notes_of_the_text_table():
    raised = summarise_drop([1.0, 1.0], [2.0, 0.5], [0, 0], [0, 0])  # O > Y on 1 of 2
    fell = summarise_drop([1.0, 1.0], [0.5, 0.5], [1, 0], [0, 0])
    row = MethodResult(
        metrics={"average_drop": fell, "black_average_drop": raised},
        curves={"black_average_drop": {0.5: raised}},
        curve_areas={"black_average_drop": None},
        tie_decided=0.25,
        empty_maps=0,
    )
    text = format_table({"CAM": row}).splitlines()
    markdown = markdown_table({"CAM": row}).splitlines()
    cells = lambda line: [c.strip() for c in line.strip("|").split("|")]
    assert cells(markdown[0]) == cells(text[0].replace(" | ", "|"))
    assert markdown[1] == "|" + "---|" * len(cells(markdown[0]))
    # AD: drops 0.5, 0.5 -> 0.5000; Incorrect 1 of 2; BAD: drops 0, 0.5 -> 0.25, not raised
    # (one of two is not "most"), mean change (1 - 0.5)/2 = 0.25, median O/Y the lower of
    # 2 and 0.5 at its histogram bin's centre, 2^((480 + 0.5)/32 - 16) = 0.505; ties 25.0 %;
    # no curve mean with one alpha.
    assert cells(markdown[2]) == [
        "CAM", "0.5000", "0.2500", "50.0", "0.0", "50.0", "0.250", "0.505", "25.0", "n/a", "0",
        "0/0",
    ]  # fmt: skip
    assert len(markdown) == 3


def test_installing_jaxcam_pulls_no_tensorflow():
    requirements = importlib.metadata.requires("jaxcam") or []
    names = {
        r.split(";")[0].split("[")[0].split(">")[0].split("=")[0].strip() for r in requirements
    }
    assert "tensorflow" not in names and "tensorflow-cpu" not in names
    assert importlib.util.find_spec("tensorflow") is None  # nothing pulled it in either


def load_experiment(name: str):
    return load_script(f"experiments/{name}.py")


def test_chest_xray_experiment_continues_a_finished_run(trained, capsys):
    source, data_dir, run_dir, _ = trained
    experiment = load_experiment("chest_xray")
    argv = ["--source", str(source), "--data-dir", str(data_dir), "--run-dir", str(run_dir)]
    argv += ["--model", "small_cnn", "--image-size", str(SIZE), "--epochs", "2"]
    argv += ["--batch-size", "4", "--learning-rate", "0.01", "--figure-images", "3"]
    assert experiment.main([*argv, "--no-progress"]) == 0
    printed = capsys.readouterr().out
    assert "step 8/8: finished" in printed and "PNEUMONIA (4 images)" in printed
    record = json.loads((run_dir / "explain" / "explain.json").read_text())
    assert [r["label"] for r in record["images"]] == ["PNEUMONIA"] * 3


def test_imagenet_experiment_draws_one_image_per_random_class(trained, tmp_path, capsys):
    source, data_dir, run_dir, _ = trained
    experiment = load_experiment("imagenet")
    out = tmp_path / "imagenet"
    argv = ["--data", f"folder:{source / 'test'}", "--data-dir", str(data_dir)]
    argv += ["--run-dir", str(run_dir), "--classes", "2", "--out", str(out), "--no-progress"]
    assert experiment.main(argv) == 0
    assert "2 images of 2 random classes (seed 0)" in capsys.readouterr().out
    record = json.loads((out / "evaluation.json").read_text())
    assert record["class_counts"] == {"0": 1, "1": 1}
    assert record["data"]["random_classes"] == 2 and len(record["data"]["indices"]) == 2


def test_explain_an_intermediate_layer_with_more_methods(trained, tmp_path):
    _, _, run_dir, _ = trained
    out = tmp_path / "layer"
    argv = ["explain", "--run-dir", str(run_dir), "--first", "3", "--out", str(out)]
    argv += ["--layer", "backbone/BatchNorm_3", "--methods", "grad_cam,layer_cam,eigen_cam"]
    assert main(argv) == 0
    maps = np.load(out / "maps.npz")
    assert set(maps.files) == {"Grad-CAM", "LayerCAM", "Eigen-CAM"}
    assert maps["LayerCAM"].shape == (3, SIZE, SIZE)
    record = json.loads((out / "explain.json").read_text())
    assert record["model"]["layer"] == "backbone/BatchNorm_3"


def test_unknown_layer_and_method_list_the_known_ones(trained, capsys):
    _, _, run_dir, _ = trained
    assert main(["explain", "--run-dir", str(run_dir), "--layer", "backbone/nope"]) == 2
    assert "known layers: backbone/Conv_0" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        main(["evaluate", "--run-dir", str(run_dir), "--methods", "cam,magic_cam"])
    assert "unknown method 'magic_cam'; choose from cam, grad_cam" in capsys.readouterr().err
