"""The ground-truth study runs end to end in its reduced setting and reports what it computes."""

import json

import numpy as np
import pytest
from conftest import load_script

from jaxcam.ground_truth import LADDER_QUALITY

#: Whole experiments: `make test-slow` (and CI) runs them.
pytestmark = pytest.mark.slow


def test_ground_truth_study_quick_run(tmp_path, capsys):
    study = load_script("experiments/ground_truth.py")
    results = study.main(
        [
            "--quick",
            "--confounder",
            "0.9",
            "--ties",
            "smooth",
            "--out",
            str(tmp_path / "out"),
            "--data-dir",
            str(tmp_path / "tfds"),
        ]
    )
    printed = capsys.readouterr().out
    assert len(results) == 1
    result = results[0]
    assert (result["variant"], result["confounder"], result["ties"]) == ("v2", 0.9, "smooth")
    assert set(LADDER_QUALITY) <= set(result["rows"])
    assert {"CAM", "Grad-CAM", "Grad-CAM++"} <= set(result["rows"])
    # The localisation scores know the ladder: ground truth points into the lesion, the
    # inverted map never does, and the ground truth keeps the whole lesion at any alpha.
    rows = result["rows"]
    assert rows["ground_truth"]["pointing"] == 1.0 and rows["inverted"]["pointing"] == 0.0
    assert rows["ground_truth"]["lesion kept"] == 1.0
    assert rows["ground_truth"]["energy"] > rows["noise"]["energy"] > rows["inverted"]["energy"]
    assert result["tau"]["energy"] > 0.5
    assert set(result["by_size"]) == {"small", "medium", "large"}
    assert result["shortcut"]["images"] > 0 and "marker" in result["shortcut"]["rows"]
    for name, values in result["curves"].items():
        assert len(values) == len(result["alphas"]), name
    saved = json.loads((tmp_path / "out" / "results.json").read_text())
    assert saved["settings"][0]["tau"] == result["tau"]
    assert "| v2 | 0 | 0.0 | 0.9 | smooth |" in (tmp_path / "out" / "results.md").read_text()
    assert (tmp_path / "out" / "curves.png").stat().st_size > 1000
    assert study.summary_line(result) in printed
    assert np.isfinite(result["alpha"])
