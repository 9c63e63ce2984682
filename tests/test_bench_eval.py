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
    assert record["full_sort"] is False and "top-k selection" in printed


def test_cpu_preset_is_the_one_alpha_resnet18_work():
    bench = load_benchmark()
    args, (case,) = bench.parse(["--preset", "cpu", "--full-sort"])
    assert (case.model, case.size, case.channels, case.classes) == ("resnet18", 224, 3, 10)
    assert case.batch == 16 and not case.curve and case.alphas == (0.5,)
    assert case.methods == ("grad_cam", "grad_cam_plus_plus", "hires_cam")
    assert case.forwards_per_image == 1 + 3 * (1 + 1)  # the image, then E and B per method
    assert args.full_sort


def test_ranking_path_switches_the_selection_and_restores_it():
    bench = load_benchmark()
    assert bench.selection._ENABLED
    with bench.ranking_path(full_sort=True):
        assert not bench.selection._ENABLED
    assert bench.selection._ENABLED
