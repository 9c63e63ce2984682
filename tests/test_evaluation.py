"""jaxcam.evaluation: the streamed, jitted engine against the per-batch metric functions."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tracemalloc
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from conftest import ToyBackbone, toy_model

import jaxcam
from jaxcam.batching import fixed_size_batches, in_batches
from jaxcam.evaluation import (
    Engine,
    ReferenceMap,
    StepConfig,
    evaluate,
    evaluation_record,
    format_table,
)
from jaxcam.metrics import average_drop, black_average_drop, masked_scores, summarise_drop

RNG = np.random.default_rng(0)
IMAGES = RNG.uniform(size=(11, 16, 16, 2)).astype(np.float32)
LABELS = np.array([0, 1, 2, 0, 1, 2, 0, 1, 2, 0, 1], np.int32)
METHODS = {
    "CAM": ("cam", {}),
    "Grad-CAM": ("grad_cam", {}),
    "Grad-CAM++": ("grad_cam_plus_plus", {"derivatives": "exact"}),
}
GRID = (0.25, 0.5, 0.75)


def per_batch_reference(model, alpha, method, options, ties="smooth"):
    """AD and BAD of one method through saliency_maps + masked_scores (the per-batch API)."""
    maps, classes = jaxcam.saliency_maps(model, IMAGES, None, method, **options)
    scores = masked_scores(model, IMAGES, np.asarray(maps), np.asarray(classes), alpha, ties=ties)
    return average_drop(scores, LABELS), black_average_drop(scores, LABELS)


def assert_summary_close(a, b):
    for field in ("value", "incorrect", "increase_in_confidence", "mean_change"):
        x, y = getattr(a, field), getattr(b, field)
        assert (x is None) == (y is None), field
        if x is not None:
            assert x == pytest.approx(y, rel=1e-5, abs=1e-6), field
    assert a.median_ratio == pytest.approx(b.median_ratio, rel=1e-6)
    assert (a.num_images, a.num_excluded) == (b.num_images, b.num_excluded)


@pytest.mark.parametrize("ties", ["smooth", "random"])
def test_engine_equals_the_per_batch_functions_at_every_alpha_of_the_curve(ties):
    model = toy_model()
    evaluation = evaluate(
        model, (IMAGES, LABELS), METHODS, alpha=0.5, grid=GRID, batch_size=4, ties=ties
    )
    assert evaluation.alphas == GRID and evaluation.alpha == 0.5
    for name, (method, options) in METHODS.items():
        row = evaluation.results[name]
        for alpha in GRID:
            ad, bad = per_batch_reference(model, alpha, method, options, ties)
            assert_summary_close(row.curve[alpha], bad)
            assert_summary_close(row.average_drop, ad)
        assert row.black_average_drop == row.curve[0.5]


def test_raster_ties_match_the_per_batch_functions_too():
    model = toy_model("relu")
    evaluation = evaluate(model, (IMAGES, LABELS), METHODS, alpha=0.25, curve=False, ties="raster")
    ad, bad = per_batch_reference(model, 0.25, "grad_cam", {}, ties="raster")
    assert_summary_close(evaluation.results["Grad-CAM"].black_average_drop, bad)
    assert evaluation.alphas == (0.25,)


def test_per_class_rows_recombine_into_the_all_image_row():
    evaluation = evaluate(toy_model(), (IMAGES, LABELS), METHODS, grid=GRID, batch_size=5)
    assert sum(evaluation.class_counts.values()) == len(LABELS)
    assert evaluation.class_counts == {0: 4, 1: 4, 2: 3}
    for name, row in evaluation.results.items():
        for summary_of in (lambda r: r.average_drop, lambda r: r.black_average_drop):
            overall = summary_of(row)
            parts = [summary_of(evaluation.by_class[c][name]) for c in range(3)]
            defined = [p.num_images - p.num_excluded for p in parts]
            assert sum(p.num_images for p in parts) == overall.num_images
            mean = sum(p.value * d for p, d in zip(parts, defined, strict=True) if d)
            assert overall.value == pytest.approx(mean / sum(defined), rel=1e-5)
            wrong = sum(p.incorrect * p.num_images for p in parts)
            assert overall.incorrect == pytest.approx(wrong / overall.num_images)


def test_batch_size_and_streaming_do_not_change_the_results():
    model = toy_model()
    whole = evaluate(model, (IMAGES, LABELS), METHODS, grid=GRID, batch_size=11)
    # 11 images in steps of 3 (last padded), fed as an iterator of uneven batches.
    uneven = iter(
        [
            {"image": IMAGES[:2], "label": LABELS[:2]},
            {"image": IMAGES[2:9], "label": LABELS[2:9]},
            {"image": IMAGES[9:], "label": LABELS[9:]},
        ]
    )
    streamed = evaluate(model, uneven, METHODS, grid=GRID, batch_size=3)
    assert streamed.alpha == whole.alpha
    assert streamed.alpha_differences == pytest.approx(whole.alpha_differences, rel=1e-5)
    for name in METHODS:
        for alpha in GRID:
            assert_summary_close(
                streamed.results[name].curve[alpha], whole.results[name].curve[alpha]
            )


def test_chosen_alpha_is_the_argmax_of_the_search_and_two_passes_agree():
    model = toy_model()
    one_pass = evaluate(model, (IMAGES, LABELS), METHODS, grid=GRID)
    search = one_pass.alpha_differences
    assert one_pass.alpha_chosen and one_pass.alpha == max(search, key=search.get)
    assert jaxcam.choose_alpha(
        {n: jaxcam.compute_maps(model, IMAGES, None, m, **o)[0] for n, (m, o) in METHODS.items()},
        GRID,
    )[1] == pytest.approx(search, rel=1e-5)
    two_pass = evaluate(model, (IMAGES, LABELS), METHODS, grid=GRID, curve=False)
    assert two_pass.alpha == one_pass.alpha and two_pass.alphas == (one_pass.alpha,)
    assert two_pass.alpha_differences == pytest.approx(search, rel=1e-5)
    with pytest.raises(ValueError, match="two passes"):
        evaluate(model, iter([{"image": IMAGES, "label": LABELS}]), METHODS, curve=False)


def test_step_compiles_once_over_several_batches():
    config = StepConfig(
        explainers=(("cam", ()), ("grad_cam", ())),
        alphas=GRID,
        score_masks=True,
        search=True,
        ties="random",
        tie_seed=0,
        use_predicted=True,
        num_classes=3,
        masked_chunk=64,
    )
    engine = Engine(config, batch_size=3)
    sums = engine.run(toy_model(), [{"image": IMAGES, "label": LABELS}])
    assert engine.traces == 1  # 4 batches (the last padded), one compilation
    assert int(np.asarray(sums.images).sum()) == 11


def _generated_batches(count: int, batch: int = 8):
    rng = np.random.default_rng(1)
    for _ in range(count):
        yield {
            "image": rng.uniform(size=(batch, 16, 16, 2)).astype(np.float32),
            "label": rng.integers(0, 3, size=batch).astype(np.int32),
        }


def test_host_memory_does_not_grow_with_the_number_of_images():
    model = toy_model()
    options = dict(methods=METHODS, grid=GRID, batch_size=8)
    evaluate(model, _generated_batches(2), **options)  # compile outside the measurement
    peaks = []
    for count in (4, 32):
        tracemalloc.start()
        evaluation = evaluate(model, _generated_batches(count), **options)
        peaks.append(tracemalloc.get_traced_memory()[1])
        tracemalloc.stop()
        assert sum(evaluation.class_counts.values()) == 8 * count
    # 8x the images: the peak may not grow by more than a batch's worth (8 KiB images).
    assert peaks[1] < peaks[0] * 1.2 + 64 * 1024, peaks


def test_reference_maps_and_nonfinite_images_are_handled():
    mask = np.zeros((11, 16, 16), bool)
    mask[:, 2:6, 3:9] = True
    methods = {
        **METHODS,
        "mask": ReferenceMap(lambda example, key: example["mask"].astype(jnp.float32)),
        "flat": ReferenceMap(lambda example, key: jnp.ones(example["image"].shape[:2]), needs=()),
    }
    images = IMAGES.copy()
    images[3, 1, 1, 0] = np.nan
    images[7, 0, 0, 1] = np.inf
    with pytest.warns(UserWarning, match=r"2 image\(s\) with NaN/inf pixels.*index 3"):
        evaluation = evaluate(
            toy_model(), {"image": images, "label": LABELS, "mask": mask}, methods, grid=GRID
        )
    assert evaluation.nonfinite_images == 2 and evaluation.first_nonfinite_index == 3
    assert sum(evaluation.class_counts.values()) == 9
    assert evaluation.pixel_range[0] >= 0 and evaluation.pixel_range[1] <= 1
    # A flat map is all ties: the tie-break chooses every kept pixel; the mask map keeps its
    # 24 pixels surely (alpha 0.25 keeps 64 of 256: 40 of them chosen by ties).
    assert evaluation.results["flat"].curve[0.25] is not None
    assert evaluation.results["flat"].tie_decided == pytest.approx(1.0)
    at_quarter = np.asarray(evaluation.sums.tie_decided)[3, 0].sum() / 9
    assert at_quarter == pytest.approx(40 / 64)
    # Reference maps never enter the search: the same alpha as the methods alone.
    alone = evaluate(toy_model(), (np.nan_to_num(images, posinf=0.0), LABELS), METHODS, grid=GRID)
    assert evaluation.alpha in GRID and alone.alpha in GRID


def test_table_json_and_errors():
    evaluation = evaluate(toy_model(), (IMAGES, LABELS), METHODS, grid=GRID)
    table = format_table(evaluation.results)
    assert table.splitlines()[0].startswith("method")
    assert all(name in table for name in METHODS)
    record = json.loads(json.dumps(evaluation_record(evaluation)))
    assert set(record["by_class"]) == {"0", "1", "2"}
    with pytest.raises(ValueError, match="at least 2 saliency methods"):
        evaluate(toy_model(), (IMAGES, LABELS), {"CAM": ("cam", {})})
    with pytest.raises(ValueError, match="out of range"):
        evaluate(toy_model(), (IMAGES, LABELS + 3), METHODS, alpha=0.5)
    with pytest.raises(ValueError, match="ties must be one of"):
        evaluate(toy_model(), (IMAGES, LABELS), METHODS, ties="left")
    with pytest.raises(ValueError, match="'mask' has 3"):
        evaluate(toy_model(), {"image": IMAGES, "label": LABELS, "mask": IMAGES[:3]}, METHODS)
    with pytest.raises(ValueError, match="channel"):
        evaluate(toy_model(), (IMAGES[..., :1], LABELS), METHODS)
    with pytest.raises(ValueError, match="empty"):
        evaluate(toy_model(), iter([]), METHODS, alpha=0.5)


def test_fixed_size_batches_pad_the_last_batch():
    data = [{"image": np.arange(5.0)[:, None], "label": np.arange(5)}]
    out = list(fixed_size_batches(data, 2, ("image", "label")))
    assert [count for _, count in out] == [2, 2, 1]
    np.testing.assert_array_equal(out[-1][0]["label"], [4, 0])


def test_in_batches_pads_the_last_batch_and_cuts_the_padding():
    seen = []

    def fn(x, y):
        seen.append(x.shape[0])
        return {"sum": x + y, "first": x[:, 0]}

    x = np.arange(14, dtype=np.float32).reshape(7, 2)
    out = in_batches(fn, [x, np.ones((7, 2), np.float32)], batch_size=3)
    assert seen == [3, 3, 3]  # one compiled shape
    np.testing.assert_array_equal(out["sum"], x + 1)
    np.testing.assert_array_equal(out["first"], x[:, 0])
    with pytest.raises(ValueError, match="no examples"):
        in_batches(lambda x: x, [np.zeros((0, 2))], batch_size=4)


_FOUR_DEVICES = """
import json, sys
import jax
sys.path.insert(0, {tests!r})
assert jax.device_count() == 4, jax.devices()
from test_evaluation import toy_model, IMAGES, LABELS, METHODS, GRID
from jaxcam.evaluation import evaluate, evaluation_record
evaluation = evaluate(toy_model(), (IMAGES, LABELS), METHODS, grid=GRID, batch_size=4)
print(json.dumps(evaluation_record(evaluation)))
"""


@pytest.mark.slow  # ~12 s: a fresh process with four simulated devices
def test_four_simulated_devices_give_the_single_device_results():
    env = {**os.environ, "XLA_FLAGS": "--xla_force_host_platform_device_count=4"}
    env["JAX_PLATFORMS"] = "cpu"
    tests = str(Path(__file__).parent)
    done = subprocess.run(
        [sys.executable, "-c", _FOUR_DEVICES.format(tests=tests)],
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    sharded = json.loads(done.stdout.strip().splitlines()[-1])
    single = json.loads(
        json.dumps(
            evaluation_record(
                evaluate(toy_model(), (IMAGES, LABELS), METHODS, grid=GRID, batch_size=4)
            )
        )
    )
    assert sharded["alpha"] == single["alpha"]
    for name in METHODS:
        for key in ("average_drop", "black_average_drop"):
            a, b = sharded["all_images"][name][key], single["all_images"][name][key]
            for field in ("value", "incorrect", "mean_change", "num_images", "num_excluded"):
                assert a[field] == pytest.approx(b[field], rel=1e-5, abs=1e-7), (name, key, field)


def test_summarise_drop_is_the_engine_reduction():
    # Y = 1, O = 0.5, 2, 4: drops 0.5, 0, 0 (mean 1/6); changes -0.5, 1, 3 (mean 7/6);
    # 2 of 3 increased; median O/Y = 2 (to the histogram's 1/32 octave).
    summary = summarise_drop([1.0, 1.0, 1.0], [0.5, 2.0, 4.0], [0, 1, 1], [0, 0, 0])
    assert summary.value == pytest.approx(1 / 6)
    assert summary.mean_change == pytest.approx(7 / 6)
    assert summary.increase_in_confidence == pytest.approx(2 / 3)
    assert summary.incorrect == pytest.approx(2 / 3)
    assert summary.median_ratio == pytest.approx(2.0, rel=2 ** (1 / 64) - 1)
    assert summary.mostly_increased


def test_many_classes_pool_the_ratio_histogram_but_keep_per_class_rows():
    module = jaxcam.CAMClassifier(
        backbone=ToyBackbone(), num_classes=40, output="softmax", in_channels=2
    )
    model = jaxcam.bind(module, module.init(jax.random.key(0), jnp.zeros((1, 16, 16, 2))))
    labels = np.arange(11, dtype=np.int32) * 3
    evaluation = evaluate(model, (IMAGES, labels), METHODS, alpha=0.5, curve=False)
    assert evaluation.results["CAM"].black_average_drop.median_ratio is not None
    row = evaluation.by_class[3]["CAM"].black_average_drop
    assert row.num_images == 1 and row.median_ratio is None  # pooled histogram
    assert evaluation.by_class[1]["CAM"].black_average_drop.num_images == 0
    assert isinstance(evaluation_record(evaluation)["by_class"], str)


def test_restrict_to_counts_only_the_selected_images_with_their_own_tie_order():
    model = toy_model()
    keep = np.array([1, 0, 1, 1, 0, 0, 1, 1, 0, 1, 1], bool)
    kwargs = dict(grid=GRID, ties="random", tie_seed=3)
    restricted = evaluate(
        model,
        {"image": IMAGES, "label": LABELS, "keep": keep},
        METHODS,
        restrict_to="keep",
        **kwargs,
    )
    assert sum(restricted.class_counts.values()) == int(keep.sum())
    # The kept images keep their data set index (their tie order): the per-batch functions
    # with those indices give the same rows; the alpha search saw only the kept images.
    for name, (method, options) in METHODS.items():
        maps, classes = jaxcam.saliency_maps(model, IMAGES[keep], None, method, **options)
        scores = masked_scores(
            model, IMAGES[keep], np.asarray(maps), np.asarray(classes), restricted.alpha,
            ties="random", tie_seed=3, indices=np.flatnonzero(keep),
        )  # fmt: skip
        assert_summary_close(
            restricted.results[name].average_drop, average_drop(scores, LABELS[keep])
        )
        assert_summary_close(
            restricted.results[name].black_average_drop, black_average_drop(scores, LABELS[keep])
        )
    with pytest.raises(ValueError, match="missing \\['keep'\\]"):
        evaluate(model, (IMAGES, LABELS), METHODS, restrict_to="keep", **kwargs)
