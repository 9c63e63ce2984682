"""The experiments run end to end on tiny settings, and what they print is what they save."""

import json

import pytest
from conftest import load_script

#: Whole experiments: `make test-slow` (and CI) runs them.
pytestmark = pytest.mark.slow


def load(name: str):
    return load_script(f"experiments/{name}.py")


def table_rows(lines: list[str], names) -> dict[str, list[str]]:
    rows = {}
    for line in lines:
        cells = [c.strip() for c in line.split("|")]
        if len(cells) == 12 and cells[0] in names:
            rows[cells[0]] = cells
    return rows


def test_phantom_experiment_tables_match_json_and_write_figures(tmp_path, capsys):
    phantom = load("phantom")
    settings = [f"out={tmp_path / 'out'}", f"data.data_dir={tmp_path / 'tfds'}"]
    settings += ["train.epochs=1", "data.split_sizes=64,16,24"]
    results = phantom.main([word for s in settings for word in ("--set", s)])
    printed = capsys.readouterr().out
    saved = json.loads((tmp_path / "out" / "results.json").read_text())
    assert (tmp_path / "out" / "figure1.png").stat().st_size > 1000
    assert (tmp_path / "out" / "bad_curve.png").stat().st_size > 1000
    assert saved["alpha"] == results["alpha"] and 0 < saved["alpha"] < 1
    assert saved["alpha"] in saved["alphas"] and len(saved["alphas"]) == 19
    assert saved["data"]["sizes"] == {"train": 64, "val": 16, "test": 24}
    pneumonia_part, all_part = printed.split("All test images")
    methods = {"CAM", "Grad-CAM", "Grad-CAM++"}
    references = {"[ground_truth]", "[noise]", "[inverted]"}
    for part, key, names in (
        (pneumonia_part, saved["by_class"]["1"], methods | references),
        (all_part, saved["all_images"], methods),
    ):
        rows = table_rows(part.splitlines(), names)
        assert set(rows) == names
        for name, cells in rows.items():
            ad, bad = key[name]["average_drop"], key[name]["black_average_drop"]
            for text, value in ((cells[1], ad["value"]), (cells[2], bad["value"])):
                assert text.rstrip("^") == ("n/a" if value is None else f"{value:.4f}")
            assert cells[3] == (
                "n/a" if ad["incorrect"] is None else f"{100 * ad['incorrect']:.1f}"
            )
            assert cells[10] == str(ad["num_excluded"])
            assert cells[11] == f"{ad['num_nonfinite']}/{bad['num_nonfinite']}"
        assert rows["CAM"][1:3] == rows["Grad-CAM"][1:3]  # eq. 12 on a trained model
    assert f"alpha = {saved['alpha']:.2f}" in printed
    assert ("WARNING" in printed) == (not saved["ground_truth_check"]["passed"])
    # The extra rows: scored at the same alpha, printed as saved; HiResCAM and XGrad-CAM
    # equal Grad-CAM for this GAP -> dense head (the gradient is constant over positions).
    more = saved["more_methods"]
    assert more["alpha"] == saved["alpha"]
    extra_part = printed.split("More methods: all test images")[1]
    extra = table_rows(extra_part.splitlines(), set(more["all_images"]))
    assert set(extra) == {"HiResCAM", "XGrad-CAM", "LayerCAM", "Ablation-CAM", "Eigen-CAM"}
    for name, cells in extra.items():
        bad = more["all_images"][name]["black_average_drop"]["value"]
        assert cells[2].rstrip("^") == ("n/a" if bad is None else f"{bad:.4f}")
    grad_cam = table_rows(all_part.split("More methods")[0].splitlines(), {"Grad-CAM"})
    assert extra["HiResCAM"][1:3] == extra["XGrad-CAM"][1:3] == grad_cam["Grad-CAM"][1:3]


def test_phantom_experiment_rejects_bad_alpha(tmp_path):
    phantom = load("phantom")
    with pytest.raises(ValueError, match="alpha"):
        phantom.main(["--set", "evaluation.alpha=1.5", "--set", f"out={tmp_path / 'o'}"])
