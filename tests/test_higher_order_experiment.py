"""experiments/higher_order.py on tiny settings: exact vs closed-form Grad-CAM++."""

import json

import pytest
from conftest import load_script

#: Whole experiments: `make test-slow` (and CI) runs them.
pytestmark = pytest.mark.slow


def load():
    return load_script("experiments/higher_order.py")


def test_higher_order_experiment_rows(tmp_path, capsys):
    tiny = ["--train-size", "8", "--test-size", "4", "--epochs", "1", "--image-size", "32"]
    synthetic = ["--examples", "8", "--shape", "3,3,8", "--classes", "4", "--hidden", "16"]
    results = load().main([*tiny, *synthetic, "--out", str(tmp_path)])
    printed = capsys.readouterr().out
    saved = json.loads((tmp_path / "results.json").read_text())
    rows = results["rows"]
    assert saved["rows"] == rows
    for name in rows:
        assert any(line.startswith(f"{name} ") for line in printed.splitlines()), name

    for name in ("linear exp", "phantom exp"):  # Y = exp(S), S linear in A: closed form exact
        assert rows[name]["alpha_error"]["max"] < 1e-4
        assert rows[name]["correlation"]["min"] > 0.9999
    for name in ("linear relu", "phantom relu"):  # d2 = d3 = 0: alpha := 0, zero maps
        assert rows[name]["zero_maps"]["exact"] == 1.0
        assert rows[name]["zero_maps"]["closed"] < 1.0
        assert rows[name]["correlation"]["mean"] is None
    saturated = rows["saturated softmax"]
    assert saturated["logit_size_median"] > 2900
    assert saturated["zero_maps"]["naive"] == 1.0  # the paper's §5.3 failure
    assert saturated["zero_maps"]["exact"] < 1.0  # the stable form avoids it
    assert rows["mlp exp"]["alpha_error"]["max"] > 1e-3  # the closed form ignores curvature
    assert saved["phantom"]["feature_map"] == [4, 4, 64]
