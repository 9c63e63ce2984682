"""The evaluation benchmark runs end to end at its smallest size and writes what it prints."""

import json

from conftest import load_script


def load_benchmark():
    return load_script("benchmarks/bench_eval.py")


def test_quick_benchmark_reports_every_rate_and_the_floor(tmp_path, capsys):
    bench = load_benchmark()
    path = tmp_path / "bench.json"
    bench.main(["--quick", "--size", "16", "--repeats", "1", "--images", "12", "--json", str(path)])
    printed = capsys.readouterr().out
    record = json.loads(path.read_text())
    (result,) = record["results"]
    assert result["config"] in printed and "wall" in printed
    assert result["errors"] == {} and not result["evaluate_failed"]
    assert result["forwards_per_image"] == 1 + 3 * (1 + 1)  # 3 methods, one alpha
    assert result["floor_img_s"] == result["forward_img_s"] / result["forwards_per_image"]
    for key in ("forward", "step", "run", "evaluate"):
        assert result[f"{key}_img_s"] > 0
    assert result["evaluate_timed_call_compiles"]["backend_compiles"] == 0  # no recompile
