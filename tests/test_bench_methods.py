"""The per-method benchmark runs at its smallest size and reports ratios to Grad-CAM."""

import json

from conftest import load_script


def test_quick_method_benchmark_reports_ratios_to_grad_cam(tmp_path, capsys):
    bench = load_script("benchmarks/bench_methods.py")
    path = tmp_path / "methods.json"
    methods = "grad_cam,score_cam"
    bench.main(
        ["--quick", "--size", "16", "--repeats", "1", "--methods", methods, "--json", str(path)]
    )
    printed = capsys.readouterr().out
    record = json.loads(path.read_text())
    rows = record["methods"]
    assert list(rows) == methods.split(",") and record["feature_map"] == [2, 2, 64]
    assert rows["grad_cam"]["x_grad_cam"] == 1.0
    for name, row in rows.items():
        assert row["ms_per_image"] > 0 and name in printed
        assert row["x_grad_cam"] == row["ms_per_image"] / rows["grad_cam"]["ms_per_image"]
