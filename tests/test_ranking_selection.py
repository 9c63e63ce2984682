"""The top-k selection without a sort (jaxcam.metrics.selection) equals the full sort."""

from __future__ import annotations

import functools
import json

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from conftest import toy_model

import jaxcam
from jaxcam.evaluation import engine_for, evaluate, evaluation_record, step_config
from jaxcam.evaluation.step import evaluation_step, zero_evaluation_sums
from jaxcam.metrics import get_metric, masked_scores, metric_names, rank_pixels, tie_priority
from jaxcam.metrics import selection as selection_module
from jaxcam.metrics.ranking import threshold_split
from jaxcam.metrics.selection import (
    ascending_key,
    select_top,
    selection_applies,
    selection_ranks,
    selection_split,
    sorted_descending,
)

HEIGHT, WIDTH = 4, 5
PIXELS = HEIGHT * WIDTH
KEPT_COUNTS = (0, 1, 7, 10, 19, 20)

select_jit = jax.jit(select_top)  # k traced: one compile for every k
split_jit = jax.jit(selection_split)
ranks_jit = jax.jit(jax.vmap(rank_pixels))
threshold_split_jit = jax.jit(jax.vmap(threshold_split, in_axes=(0, 0, None)), static_argnums=2)


def numpy_top_mask(saliency: np.ndarray, priority: np.ndarray, k: int) -> np.ndarray:
    """Reference: numpy's lexsort on (value descending, priority, index), NaN last."""
    flat = np.asarray(saliency, np.float32).reshape(-1)
    order = np.lexsort((np.arange(flat.size), np.asarray(priority), -flat))
    mask = np.zeros(flat.size, bool)
    mask[order[:k]] = True
    return mask


def test_ascending_key_follows_the_sort_order_of_floats_and_integers():
    values = np.array([np.nan, 1.0, -0.0, -np.inf, 0.0, -1.0, np.inf, 2e-38, -np.nan], np.float32)
    keys = np.asarray(ascending_key(jnp.asarray(values))).astype(np.int64)
    # -inf < -1 < -0.0 == 0.0 < 2e-38 (smallest normals) < 1 < inf < NaN == -NaN
    assert keys[3] < keys[5] < keys[2] == keys[4] < keys[7] < keys[1] < keys[6] < keys[0]
    assert keys[0] == keys[8]
    ints = jnp.asarray([-5, 0, 3, np.iinfo(np.int32).min, np.iinfo(np.int32).max], jnp.int32)
    int_keys = np.asarray(ascending_key(ints)).astype(np.int64)
    assert list(np.argsort(int_keys)) == [3, 0, 1, 2, 4]
    with pytest.raises(TypeError):
        ascending_key(jnp.zeros(2, jnp.complex64))


def test_a_subnormal_value_is_kept_as_the_sort_keeps_it():
    # A backend that flushes subnormals to zero (XLA's CPU) ties 1e-40 with 0.0, so the
    # priority keeps pixel 1 first; the selection must follow the sort either way.
    saliency = jnp.asarray([[1e-40, 0.0, 0.5]], jnp.float32)
    priority = jnp.asarray([[1.0, 0.0, 0.0]], jnp.float32)
    by_sort = np.asarray(ranks_jit(saliency.reshape(1, 1, 3), priority).ranks).reshape(-1) < 2
    assert np.array_equal(np.asarray(select_jit(saliency, priority, 2).kept[0]), by_sort)


def test_selection_keeps_the_pixels_worked_out_by_hand():
    saliency = jnp.asarray([[0.5, 0.0, 0.0, 0.0, 0.5, 1.0]], jnp.float32)
    priority = jnp.asarray([[0.9, 0.1, 0.3, 0.2, 0.4, 0.0]], jnp.float32)
    # 1.0 first; of the two 0.5s the lower priority (0.4, pixel 4); zeros by priority.
    order = [5, 4, 0, 1, 3, 2]
    for k in range(7):
        expected = np.isin(np.arange(6), order[:k])
        assert np.array_equal(np.asarray(select_jit(saliency, priority, k).kept[0]), expected)
    static = jax.jit(select_top, static_argnums=2)  # k as a Python int, as the engine has it
    for k in (0, 3):
        expected = np.isin(np.arange(6), order[:k])
        assert np.array_equal(np.asarray(static(saliency, priority, k).kept[0]), expected)


def test_integer_maps_and_priorities_at_the_ends_of_int32_follow_the_sort():
    top, bottom = np.iinfo(np.int32).max, np.iinfo(np.int32).min + 1  # -bottom fits int32
    saliency = jnp.asarray([[3, 0, 3, bottom, 0, top], [0, 0, 0, 0, 0, 0]], jnp.int32)
    priority = jnp.asarray([[top, top, 0, 5, bottom, 1], [top, 2, top, top, -1, 2]], jnp.int32)
    # Row 0: top; the 3s by priority (pixel 2, then 0); the 0s by priority (4, then 1);
    # bottom. Row 1: all 0, so priority -1 (4), 2 (1, 5 by index), then top (0, 2, 3).
    orders = [[5, 2, 0, 4, 1, 3], [4, 1, 5, 0, 2, 3]]
    for k in range(7):
        expected = np.stack([np.isin(np.arange(6), order[:k]) for order in orders])
        assert np.array_equal(np.asarray(select_jit(saliency, priority, k).kept), expected)
        by_sort = ranks_jit(saliency.reshape(2, 1, 6), priority).ranks.reshape(2, 6) < k
        assert np.array_equal(np.asarray(by_sort), expected)


def example_maps(kind: str, seed: int) -> np.ndarray:
    """Three maps (3, H, W) with many ties of the given kind."""
    rng = np.random.default_rng(seed)
    normal = rng.normal(size=(3, HEIGHT, WIDTH)).astype(np.float32)
    if kind == "relu_quantised":
        return np.round(np.maximum(normal, 0) * 2) / 2
    if kind == "all_equal":
        return np.full_like(normal, 0.25)
    if kind == "signed_zeros":
        return np.where(normal > 0.5, 0.5, np.where(normal > 0, 0.0, -0.0)).astype(np.float32)
    normal[normal > 1] = np.nan  # "nan": the sort ranks NaN pixels last
    return np.round(normal)


@pytest.mark.parametrize("kind", ["relu_quantised", "all_equal", "signed_zeros", "nan"])
@pytest.mark.parametrize("ties", ["smooth", "random", "raster", "coarse"])
def test_selection_equals_the_full_sort_and_its_threshold_split(kind, ties):
    seed = len(kind) + 3 * len(ties)
    maps = jnp.asarray(example_maps(kind, seed))
    policy = "random" if ties == "coarse" else ties
    priority = jax.vmap(lambda i: tie_priority(policy, seed, i, (HEIGHT, WIDTH)))(jnp.arange(3))
    if ties == "coarse":  # priorities tied too: the row-major index decides
        priority = jnp.round(priority * 2) / 2
    ranking = ranks_jit(maps, priority)
    flat = maps.reshape(3, PIXELS)
    for k in KEPT_COUNTS:
        selection = select_jit(flat, priority, k)
        kept = np.asarray(selection.kept)
        assert kept.sum(axis=1).tolist() == [k] * 3
        for row in range(3):
            expected = numpy_top_mask(maps[row], priority[row], k)
            assert np.array_equal(kept[row], expected), (row, k)
        assert np.array_equal(kept, np.asarray(ranking.ranks.reshape(3, PIXELS) < k))
        ranks = np.asarray(selection_ranks(selection.kept.reshape(maps.shape)))
        assert np.array_equal(ranks < k, kept.reshape(maps.shape))
        expected_split = threshold_split_jit(maps, ranking.sorted_values, k)
        split = split_jit(maps, selection, k)
        for field, want, got in zip(expected_split._fields, expected_split, split, strict=True):
            assert np.array_equal(np.asarray(got), np.asarray(want)), (field, k)
    sorted_values = np.asarray(sorted_descending(flat))
    assert np.array_equal(sorted_values, np.asarray(ranking.sorted_values), equal_nan=True)


def test_selection_applies_only_at_one_cut_without_full_ranks():
    assert selection_applies(1, [False, False])
    assert not selection_applies(2, [False, False])
    assert not selection_applies(1, [False, True])
    built_in = (
        "average_drop",
        "black_average_drop",
        "mean_average_drop",
        "blurred_average_drop",
        "noisy_linear_average_drop",
        "counterfactual_average_drop",
    )
    assert set(built_in) <= set(metric_names())
    for name in built_in:  # each reads ranks only as ranks < k, or not at all
        assert not get_metric(name).needs_full_ranks
    assert jaxcam.metrics.Metric("x", "X", lambda *a: a[0]).needs_full_ranks  # safe default


@pytest.fixture
def selection_switch(monkeypatch):
    """Sets the private switch and drops cached engines compiled with the other setting."""

    def switch(on: bool) -> None:
        monkeypatch.setattr(selection_module, "_ENABLED", on)
        engine_for.cache_clear()

    yield switch
    engine_for.cache_clear()


RNG = np.random.default_rng(5)
IMAGES = RNG.uniform(size=(5, 16, 16, 2)).astype(np.float32)
LABELS = np.array([0, 1, 2, 0, 1], np.int32)
METHODS = {"CAM": ("cam", {}), "Grad-CAM": ("grad_cam", {})}


@pytest.mark.parametrize(
    "options",
    [
        {"alpha": 0.3, "curve": False},
        {"alpha": 0.5, "curve": False, "ties": "raster", "tie_seed": 3},
    ],
)
def test_evaluate_results_are_identical_with_the_selection_on_and_off(selection_switch, options):
    model = toy_model("relu")
    records = []
    for on in (False, True):
        selection_switch(on)
        evaluation = evaluate(model, (IMAGES, LABELS), METHODS, batch_size=4, **options)
        records.append(json.dumps(evaluation_record(evaluation), sort_keys=True))
    assert records[0] == records[1]


STEP_BATCH = {
    "image": jnp.asarray(IMAGES[:4]),
    "label": jnp.asarray(LABELS[:4]),
    "index": jnp.arange(4, dtype=jnp.int32),
    "valid": jnp.ones(4, bool),
}


def test_the_step_at_one_alpha_sorts_only_with_the_selection_off(selection_switch):
    model = toy_model("relu")
    config = step_config(model, METHODS, (0.5,))
    sums = zero_evaluation_sums(config)
    programs = {}
    for on in (False, True):
        selection_switch(on)
        step = functools.partial(evaluation_step, config)  # a new function: traced anew
        programs[on] = str(jax.make_jaxpr(step)(model, sums, STEP_BATCH))
    assert " sort[" in programs[False] and " sort[" not in programs[True]


def test_the_alpha_search_pass_is_identical_with_the_sort_of_values_alone(selection_switch):
    # The search pass scores no metric: several alphas share a sort of the values only.
    model = toy_model("relu")
    methods = {"CAM": ("cam", {}), "Eigen-CAM": ("eigen_cam", {})}  # maps that differ
    config = step_config(model, methods, (0.25, 0.5, 0.75), score_masks=False, search=True)
    sums = zero_evaluation_sums(config)
    results = []
    for on in (False, True):
        selection_switch(on)
        step = jax.jit(functools.partial(evaluation_step, config))  # a new function
        results.append(step(model, sums, STEP_BATCH))
    for field in ("differences", "tie_decided", "empty_maps", "images"):
        want, got = getattr(results[0], field), getattr(results[1], field)
        assert np.array_equal(np.asarray(want), np.asarray(got)), field
    assert float(np.asarray(results[1].differences).max()) > 0  # the methods do differ


def test_masked_scores_are_identical_with_the_selection_on_and_off(selection_switch):
    model = toy_model("relu")
    maps = np.round(RNG.uniform(size=IMAGES.shape[:3]) * 3).astype(np.float32) / 3
    results = []
    for on in (False, True):
        selection_switch(on)
        results.append(masked_scores(model, IMAGES, maps, LABELS, 0.4, ties="random"))
    for want, got in zip(*results, strict=True):
        assert np.array_equal(np.asarray(want), np.asarray(got))
