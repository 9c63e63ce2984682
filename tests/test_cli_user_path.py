"""The real-data path as a new user meets it (issue 18): defaults, honest outputs, errors.

One tiny Kaggle-layout folder and one 2-epoch run of the ``jaxcam`` command are shared
by the module; every check goes through ``jaxcam.cli.main`` as the console script does.
"""

from __future__ import annotations

import contextlib
import io
import json
import os
import re
import shutil
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from PIL import Image

from jaxcam.checkpoints import CheckpointStore
from jaxcam.cli import build_parser, main
from jaxcam.cli.evaluate import black_raised_warning, degenerate_reason
from jaxcam.evaluation import MethodResult
from jaxcam.metrics import summarise_drop
from jaxcam.runs import load_trained_model
from jaxcam.train import RECOMMENDED_OCCLUSION, TrainConfig

SIZE = 16
COUNTS = {"train": (6, 6), "val": (2, 2), "test": (3, 3)}  # (NORMAL, PNEUMONIA)
BATCH = 5  # 12 training images: 2 batches of 5 per epoch, 2 images left out
TRAIN = ["--model", "small_cnn", "--image-size", str(SIZE), "--epochs", "2"]
TRAIN += ["--batch-size", str(BATCH), "--learning-rate", "0.01", "--no-progress"]
# Two methods (alpha is chosen between them) on batches of 4: one compiled step, shared.
QUICK = ["--methods", "cam,grad_cam"]
EVALUATE = [*QUICK, "--no-progress", "--limit", "4", "--batch-size", "4"]
REPOSITORY = Path(__file__).resolve().parents[1]


def make_chest_xray(root: Path, counts: dict[str, tuple[int, ...]] = COUNTS) -> Path:
    """``root/SPLIT/CLASS/*.png`` with ``counts[SPLIT]`` images per class: NORMAL and
    PNEUMONIA for two counts (else A, B); the second class carries a bright blob."""
    rng = np.random.default_rng(0)
    for split, per_class in counts.items():
        names = ("NORMAL", "PNEUMONIA") if len(per_class) == 2 else "AB"[: len(per_class)]
        for c, (label, count) in enumerate(zip(names, per_class, strict=True)):
            folder = root / split / label
            folder.mkdir(parents=True)
            for i in range(count):
                pixels = rng.uniform(20, 90, size=(20, 24))
                if c == 1:
                    pixels[5:15, 6:16] += 150
                Image.fromarray(pixels.astype(np.uint8)).save(folder / f"{label}_{i}.png")
    return root


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    """(data arguments, run folder, what ``jaxcam train`` printed, a scratch folder)."""
    root = tmp_path_factory.mktemp("user_path")
    source = make_chest_xray(root / "chest_xray")
    data = ["--data", f"chest_xray:{source}", "--data-dir", str(root / "prepared")]
    run_dir = root / "run"
    printed = io.StringIO()
    with contextlib.redirect_stdout(printed):
        assert main(["train", *data, "--run-dir", str(run_dir), *TRAIN]) == 0
    return data, run_dir, printed.getvalue(), root


@pytest.fixture(scope="module")
def zero_run(run):
    """A copy of the run whose classifier is all 0: with the ReLU output every score is 0."""
    _, run_dir, _, root = run
    zero_dir = root / "zero_run"
    zero_dir.mkdir()
    shutil.copy(run_dir / "run.json", zero_dir / "run.json")
    model = load_trained_model(run_dir, "latest")
    zeroed = jax.tree_util.tree_map_with_path(
        lambda path, x: jnp.zeros_like(x) if "classifier" in jax.tree_util.keystr(path) else x,
        model.variables,
    )
    store = CheckpointStore(zero_dir)
    store.save_latest(4, {"model": zeroed}, {"step": 4, "history": [], "loss_sum": 0.0})
    store.close()
    return zero_dir


def drop_row(original, masked) -> MethodResult:
    """A Table-1 row whose AD and BAD are the drops of ``original`` Y to ``masked`` O."""
    n = len(original)
    summary = summarise_drop(original, masked, [0] * n, [0] * n)
    return MethodResult(
        metrics={"average_drop": summary, "black_average_drop": summary},
        curves={"black_average_drop": {0.5: summary}},
        curve_areas={"black_average_drop": None},
        tie_decided=0.0,
        empty_maps=0,
    )


# --- 1. defaults from evidence --------------------------------------------------------


def test_train_defaults_to_the_recommended_occlusion(run, capsys):
    _, run_dir, _, _ = run
    recorded = json.loads((run_dir / "run.json").read_text())["train"]
    assert recorded["occlusion"] == RECOMMENDED_OCCLUSION == 0.5
    assert TrainConfig().occlusion == 0.0  # the library's own recipe stays plain
    with pytest.raises(SystemExit):
        build_parser().parse_args(["train", "--help"])
    help_text = " ".join(capsys.readouterr().out.split())
    assert "(default 0.5: without it BAD mostly measures" in help_text
    assert "Is BAD trustworthy?" in help_text
    data, _, _, root = run
    argv = ["train", *data, "--run-dir", str(root / "r"), "--occlusion", "1.5"]
    assert main(argv) == 2
    assert "--occlusion must be a probability in [0, 1], got 1.5" in capsys.readouterr().err


def test_evaluate_warns_when_most_black_images_raise_the_score(run, tmp_path, capsys):
    # O > Y on 2 of 3 images (66.7 %) is "most"; on 1 of 2 (50 %) it is not.
    rows = {"CAM": drop_row([1.0, 1.0, 1.0], [2.0, 3.0, 0.5]), "Noise": drop_row([1, 1], [2, 0])}
    line = black_raised_warning(rows)
    assert line is not None and line.startswith("WARNING: ") and "\n" not in line
    assert "CAM 66.7 %" in line and "Noise" not in line
    assert black_raised_warning({"Noise": rows["Noise"]}) is None
    # Through the command: a warning exactly when some method's BAD O>Y share is > 1/2.
    _, run_dir, _, _ = run
    out = tmp_path / "table"
    assert main(["evaluate", "--run-dir", str(run_dir), *EVALUATE, "--out", str(out)]) == 0
    record = json.loads((out / "evaluation.json").read_text())
    shares = {
        name: row["black_average_drop"]["increase_in_confidence"]
        for name, row in record["all_images"].items()
    }
    raised = [name for name, share in shares.items() if share is not None and share > 0.5]
    bad_warnings = [w for w in record["warnings"] if "black images raised" in w]
    assert len(bad_warnings) == (1 if raised else 0)
    err = capsys.readouterr().err
    for name in raised:
        assert f"{name} {100 * shares[name]:.1f} %" in bad_warnings[0]
        assert f"{name} {100 * shares[name]:.1f} %" in err


# --- 2. explain: which class, recorded ------------------------------------------------


def test_explain_records_the_explained_class_and_its_score(run, tmp_path, capsys):
    _, run_dir, _, _ = run
    argv = ["explain", "--run-dir", str(run_dir), *QUICK, "--label", "PNEUMONIA", "--first", "3"]
    assert main([*argv, "--out", str(tmp_path / "label"), "--explain", "label"]) == 0
    record = json.loads((tmp_path / "label" / "explain.json").read_text())
    assert record["explained_class"] == "label"
    for row in record["images"]:
        assert (row["label"], row["explained"]) == ("PNEUMONIA", "PNEUMONIA")
        assert row["explained_index"] == 1
        assert row["score"] == row["scores"][1]
        assert f"explained PNEUMONIA (Y = {row['score']:.3g})" in row["title"]
    markdown = (tmp_path / "label" / "explain.md").read_text()
    assert "| image | label | predicted | explained | Y | scores | note |" in markdown
    # The default explains the predicted class: the argmax of the recorded scores. Where
    # it is the label, the maps are the label run's; where not, they differ (or are empty).
    assert main([*argv, "--out", str(tmp_path / "predicted")]) == 0
    predicted = json.loads((tmp_path / "predicted" / "explain.json").read_text())["images"]
    label_maps = np.load(tmp_path / "label" / "maps.npz")["CAM"]
    predicted_maps = np.load(tmp_path / "predicted" / "maps.npz")["CAM"]
    for i, row in enumerate(predicted):
        assert row["explained_index"] == int(np.argmax(row["scores"]))
        assert row["explained"] == row["predicted"]
        if row["predicted"] == "PNEUMONIA":
            np.testing.assert_array_equal(predicted_maps[i], label_maps[i])
        else:
            assert not np.array_equal(predicted_maps[i], label_maps[i]) or (
                predicted_maps[i].max() == label_maps[i].max() == 0
            )
    image = str(tmp_path / "x.png")
    assert (
        main(["explain", "--run-dir", str(run_dir), "--images", image, "--explain", "label"]) == 2
    )
    assert "--explain label needs labels, and --images files have none" in (capsys.readouterr().err)


# --- 3. a model that scores 0 everywhere ----------------------------------------------


def test_a_model_scoring_zero_everywhere_is_named_not_tabled(zero_run, tmp_path, capsys):
    assert degenerate_reason({"CAM": drop_row([0.0, 0.0], [0.3, 0.0])}).startswith(
        "every score is 0"
    )
    assert degenerate_reason({"CAM": drop_row([0.0, 1.0], [0.3, 0.0])}) is None
    out = tmp_path / "table"
    assert main(["evaluate", "--run-dir", str(zero_run), *EVALUATE, "--out", str(out)]) == 0
    captured = capsys.readouterr()
    assert "WARNING: every score is 0" in captured.err
    assert "accuracy n/a (every score is 0)" in captured.out
    assert "alpha: not chosen, every map is empty" in captured.out
    record = json.loads((out / "evaluation.json").read_text())
    assert record["degenerate"].startswith("every score is 0")
    assert record["alpha_chosen"] is False and record["alpha_not_chosen"] == "every map is empty"
    assert all(row["empty_maps"] == 4 for row in record["all_images"].values())

    out = tmp_path / "figure"
    argv = ["explain", "--run-dir", str(zero_run), *QUICK, "--first", "3", "--out", str(out)]
    assert main(argv) == 0
    assert "WARNING: every score is 0 for 3 of 3 images" in capsys.readouterr().err
    record = json.loads((out / "explain.json").read_text())
    assert record["degenerate"].startswith("every score is 0 for 3 of 3 images")
    assert [row["all_scores_zero"] for row in record["images"]] == [True] * 3
    assert all(row["title"].endswith("every score is 0") for row in record["images"])
    assert (out / "explain.md").read_text().count("every score is 0: the maps explain") == 3


# --- 4. Keras: CLI errors name CLI flags; the README's commands ------------------------


def write_keras3_weights_layout(path: Path, classes: int) -> None:
    """A Keras 3 ``.weights.h5`` laid out as keras.applications.InceptionResNetV2 with a
    ``classes``-wide Dense top saves it (layers under their auto names, no layer names
    or activation recorded). The datasets are declared, not written: the file is ~1 MB,
    enough for the importer's checks, which run before any weight is read."""
    import h5py

    from jaxcam.models.inception_resnet_v2 import InceptionResNetV2
    from jaxcam.models.keras_graph import expected_keras_weights

    expected = expected_keras_weights(InceptionResNetV2())
    with h5py.File(path, "w") as h5:
        layers = h5.create_group("layers")

        def layer(name: str, *shapes: tuple[int, ...]) -> None:
            variables = layers.create_group(name).create_group("vars")
            for i, shape in enumerate(shapes):
                variables.create_dataset(str(i), shape=shape, dtype="float32")

        layer("conv2d", (3, 3, 3, 32))
        for i in range(1, expected.conv_kernels - 1):
            layer(f"conv2d_{i}", (1, 1, 1, 1))
        layer(f"conv2d_{expected.conv_kernels - 1}", expected.final_kernel)
        for i in range(expected.weighted_layers - expected.conv_kernels):  # BatchNorms
            layer("batch_normalization" + (f"_{i}" if i else ""), (1,), (1,), (1,))
        layer("dense", (expected.final_kernel[-1], classes), (classes,))
        h5.create_group("vars")


def test_keras_errors_name_the_cli_flag_and_the_readme_gives_it(run, tmp_path, capsys):
    os.environ.setdefault("KERAS_BACKEND", "jax")  # as jaxcam's importer does
    pytest.importorskip("keras")
    pytest.importorskip("h5py")
    data, _, _, _ = run
    weights = tmp_path / "irv2.weights.h5"
    write_keras3_weights_layout(weights, classes=2)
    argv = ["evaluate", "--keras-weights", str(weights), *data, "--out", str(tmp_path / "o")]
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert "does not record the classifier's activation: give --keras-output (one of" in err
    assert "output=" not in err.replace("--keras-output", "")
    assert len(err.strip().splitlines()) == 1
    # Every README command that passes a Keras 3 .weights.h5 file gives the flag.
    readme = " ".join((REPOSITORY / "README.md").read_text().split())
    commands = re.findall(r"jaxcam evaluate --keras-weights \S+\.weights\.h5[^`]*", readme)
    assert commands and all("--keras-output softmax" in c for c in commands)
    assert "imagenet.py --data folder:~/data/imagenet_val --keras-weights irv2.keras" in readme


# --- 5. --width-scale ------------------------------------------------------------------


def test_width_scale_states_its_range_and_refuses_others(run, tmp_path, capsys):
    data, _, _, _ = run
    argv = ["train", *data, "--run-dir", str(tmp_path / "r"), "--model", "inception_resnet_v2"]
    for value in ("0", "-0.5", "nan"):
        with pytest.raises(SystemExit) as exit_info:
            main([*argv, "--width-scale", value])
        assert exit_info.value.code == 2
        assert f"argument --width-scale: must be a number > 0 (1: full width), got '{value}'" in (
            capsys.readouterr().err
        )
    with pytest.raises(SystemExit):
        main(["train", "--help"])
    assert "this number > 0" in " ".join(capsys.readouterr().out.split())
    argv = ["train", *data, "--run-dir", str(tmp_path / "r"), *TRAIN, "--width-scale", "0.5"]
    assert main(argv) == 2  # small_cnn has no width scale
    assert "--width-scale: model small_cnn takes no width scale" in capsys.readouterr().err


# --- 6 and 7. progress lines: setup, per-epoch time, dropped images, no "Downloading" --


def test_train_says_setup_time_epoch_time_and_what_it_drops(run):
    _, _, printed, _ = run
    assert "Downloading" not in printed
    assert re.search(r"^preparing .*chest_xray \(16x16x1\) into .*\(first use only", printed, re.M)
    assert re.search(r"^data ready in \d+\.\d s$", printed, re.M)
    # 12 training images in batches of 5: 2 batches, 12 - 2 * 5 = 2 images left out.
    dropped = "12 images per epoch: 2 batches of 5; the last 2 images of each shuffled epoch"
    assert f"{dropped} are dropped" in printed
    assert re.search(r"^initialised the model in \d+\.\d s$", printed, re.M)
    compiled = r"^compiled the training step and ran its first step in \d+\.\d s$"
    assert re.search(compiled, printed, re.M)
    epoch_line = r"^epoch \d/2 .*\((\d+\.\d) s; (\d+\.\d) s in all\)$"
    times = [(float(own), float(total)) for own, total in re.findall(epoch_line, printed, re.M)]
    assert len(times) == 2
    (own1, total1), (own2, total2) = times
    # Per epoch, not cumulative: epoch 2's own time fits between the two totals (0.1 s
    # of rounding), and the first total holds the compile step epoch 1's time leaves out.
    assert own1 <= total1 and own2 <= total2 - total1 + 0.1


# --- 8. unwritable folders: one line naming the flag, before any work ------------------


def test_unwritable_folders_are_refused_before_any_work(run, tmp_path, capsys, monkeypatch):
    data, run_dir, _, _ = run
    blocker = tmp_path / "a_file"
    blocker.write_text("not a folder")
    prepared = tmp_path / "never_prepared"
    cases = [
        (["train", *data[:2], "--data-dir", str(prepared), "--run-dir", str(blocker / "r")],
         f"--run-dir: cannot write to {blocker / 'r'} (Not a directory)"),
        (["train", *data[:2], "--data-dir", str(blocker / "p"), "--run-dir", str(tmp_path / "r")],
         f"--data-dir: cannot write to {blocker / 'p'} (Not a directory)"),
        (["train", *data[:2], "--data-dir", str(prepared), "--run-dir", str(blocker)],
         f"--run-dir: cannot write to {blocker} (it is a file, not a folder)"),
        # --out is checked first: before the (missing) run folder is even read.
        (["evaluate", "--run-dir", str(tmp_path / "no_run"), "--out", str(blocker / "o")],
         f"--out: cannot write to {blocker / 'o'} (Not a directory)"),
        (["explain", "--run-dir", str(tmp_path / "no_run"), "--out", str(blocker / "o")],
         f"--out: cannot write to {blocker / 'o'} (Not a directory)"),
    ]  # fmt: skip
    for argv, message in cases:
        assert main(argv) == 2, argv
        err = capsys.readouterr().err
        assert err == f"jaxcam {argv[0]}: error: {message}\n"
    assert not prepared.exists()  # nothing was prepared
    # The default --out lies in the run folder: a mistyped one is named, not created.
    assert main(["evaluate", "--run-dir", str(tmp_path / "typo")]) == 2
    assert "not a jaxcam run folder" in capsys.readouterr().err
    assert not (tmp_path / "typo").exists()

    def denied(args):
        raise PermissionError(13, "Permission denied", "/somewhere/figure1.png")

    monkeypatch.setattr("jaxcam.cli.explain.model_from_args", denied)
    assert main(["explain", "--run-dir", str(run_dir), "--out", str(tmp_path / "x")]) == 2
    assert capsys.readouterr().err == (
        "jaxcam explain: error: [Errno 13] Permission denied: '/somewhere/figure1.png'\n"
    )


# --- 9. --limit ---------------------------------------------------------------------------


def test_non_positive_limit_is_refused_naming_it(run, capsys):
    _, run_dir, _, _ = run
    for value in ("0", "-1"):
        with pytest.raises(SystemExit) as exit_info:
            main(["evaluate", "--run-dir", str(run_dir), "--limit", value])
        assert exit_info.value.code == 2
        assert f"argument --limit: must be an integer >= 1, got {value}" in capsys.readouterr().err


# --- 10. one class: no training, evaluation allowed ---------------------------------------


def test_training_needs_two_classes_evaluating_one_is_allowed(run, tmp_path, capsys):
    data, run_dir, _, _ = run
    source = make_chest_xray(tmp_path / "one_class", {"train": (6,), "val": (2,), "test": (2,)})
    one = ["--data", f"folder:{source}", "--data-dir", data[3]]
    argv = ["train", *one, "--run-dir", str(tmp_path / "r"), *TRAIN]
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert "the data has 1 class ['A']: training needs at least 2 classes" in err
    assert "--num-classes 1" not in err
    assert main([*argv, "--num-classes", "1"]) == 2
    assert "--num-classes 1: training needs at least 2 classes" in capsys.readouterr().err
    assert not (tmp_path / "r" / "checkpoints").exists()
    out = tmp_path / "one_class_table"
    argv = ["evaluate", "--run-dir", str(run_dir), *one, "--split", "test", *EVALUATE]
    assert main([*argv, "--out", str(out)]) == 0
    record = json.loads((out / "evaluation.json").read_text())
    assert record["class_counts"] == {"0": 2, "1": 0}  # the model's two classes
    assert "## A (2 images)" in (out / "table.md").read_text()
    assert "(0 images)" not in (out / "table.md").read_text()
