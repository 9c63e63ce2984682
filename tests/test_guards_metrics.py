"""Guards for BAD's bookkeeping: the tie seed, per-class rows, and reference rows that must not
move the chosen alpha."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from conftest import head_model

import jaxcam
from jaxcam.evaluation import ReferenceMap
from jaxcam.metrics import rank_pixels, tie_priority

#: A GAP -> dense head over 8x8x2 "images" (features(x) == x): cheap to compile, and its
#: softmax output makes Grad-CAM's map differ from CAM's.
MODEL = head_model(channels=2, num_classes=3, output="softmax", size=8)
IMAGES = np.random.default_rng(7).uniform(size=(9, 8, 8, 2)).astype(np.float32)
LABELS = np.array([0, 1, 2, 1, 0, 2, 2, 0, 1], np.int32)  # 3 images per class: one shape
#: Two cheap methods that differ (softmax output: Grad-CAM's weights are not CAM's).
METHODS = {"CAM": ("cam", {}), "Grad-CAM": ("grad_cam", {})}
GRID = (0.25, 0.5, 0.75)
#: A map that is all ties: every kept pixel of its black image is chosen by the tie order.
FLAT = ReferenceMap(lambda example, key: jnp.ones(example["image"].shape[:2]), needs=())
SUMMARY_FIELDS = ("value", "incorrect", "increase_in_confidence", "mean_change", "median_ratio")


def assert_same_summary(got, want, rel: float = 1e-5) -> None:
    """Two DropSummary rows agree on every statistic (counts exactly)."""
    assert (got.num_images, got.num_excluded, got.num_nonfinite) == (
        want.num_images,
        want.num_excluded,
        want.num_nonfinite,
    )
    for field in SUMMARY_FIELDS:
        a, b = getattr(got, field), getattr(want, field)
        assert (a is None) == (b is None), field
        if a is not None:
            assert a == pytest.approx(b, rel=rel, abs=1e-6), field


def kept_by_priority(priority: np.ndarray, num_kept: int) -> np.ndarray:
    """Boolean (H*W,) mask of a flat map's kept pixels: the lowest priorities, then the
    lowest row-major index (written with numpy's stable argsort, not the library's sort)."""
    order = np.argsort(np.asarray(priority), kind="stable")
    kept = np.zeros(priority.shape, bool)
    kept[order[:num_kept]] = True
    return kept


# ----------------------------------------------------------------------------
# The tie seed.


@pytest.mark.parametrize("ties", ["random", "smooth"])
def test_tie_priority_follows_the_seed(ties):
    shape = (8, 8)
    first = np.asarray(tie_priority(ties, 0, 3, shape))
    again = np.asarray(tie_priority(ties, 0, 3, shape))
    other_seed = np.asarray(tie_priority(ties, 1, 3, shape))
    other_image = np.asarray(tie_priority(ties, 0, 4, shape))
    np.testing.assert_array_equal(first, again)
    assert not np.allclose(first, other_seed)
    assert not np.allclose(first, other_image)
    # On a map that is all ties, the order of the pixels is the priority's order.
    flat = jnp.full(shape, 0.5)
    ranks = {
        seed: np.asarray(rank_pixels(flat, tie_priority(ties, seed, 3, shape)).ranks).reshape(-1)
        for seed in (0, 1)
    }
    np.testing.assert_array_equal(ranks[0], np.argsort(np.argsort(first, kind="stable")))
    assert not np.array_equal(ranks[0], ranks[1])


def test_raster_ties_do_not_depend_on_the_seed():
    np.testing.assert_array_equal(
        tie_priority("raster", 0, 3, (4, 4)), tie_priority("raster", 5, 3, (4, 4))
    )


def test_masked_scores_black_images_follow_the_tie_seed():
    # "random" ties: the cheapest to compile (each seed is a compilation); the smooth
    # policy draws from the same key (test_tie_priority_follows_the_seed).
    ties = "random"
    model, images, classes = MODEL, IMAGES, LABELS
    count = len(images)
    flat = np.full((count, 8, 8), 0.5, np.float32)
    num_kept = 16  # alpha 0.25 of 64 pixels
    score_batch = jax.jit(jax.vmap(model.scores))
    black = {}
    for seed in (0, 1):
        scores = jaxcam.masked_scores(model, images, flat, classes, 0.25, ties=ties, tie_seed=seed)
        black[seed] = np.asarray(scores.black)
        priorities = jax.vmap(lambda i, seed=seed: tie_priority(ties, seed, i, (8, 8)))
        kept = np.stack([kept_by_priority(p, num_kept) for p in priorities(jnp.arange(count))])
        blacked = np.where(kept.reshape(count, 8, 8, 1), images, 0.0).astype(np.float32)
        want = np.asarray(score_batch(jnp.asarray(blacked)))[np.arange(count), classes]
        np.testing.assert_allclose(black[seed], want, rtol=1e-5)
    again = jaxcam.masked_scores(model, images, flat, classes, 0.25, ties=ties, tie_seed=0)
    np.testing.assert_array_equal(np.asarray(again.black), black[0])
    # Another seed keeps other pixels: every black image scores differently.
    assert np.all(np.abs(black[0] - black[1]) > 1e-6)


def test_evaluate_passes_the_tie_seed_to_the_black_images():
    model = MODEL
    methods = {"flat": FLAT}  # alpha is given: no second method needed
    options = dict(alpha=0.25, curve=False, ties="random", explain="label")
    run = lambda seed: jaxcam.evaluate(model, (IMAGES, LABELS), methods, tie_seed=seed, **options)
    first, again, other = run(0), run(0), run(1)
    assert (first.tie_seed, other.tie_seed) == (0, 1)
    assert_same_summary(
        again.results["flat"].black_average_drop, first.results["flat"].black_average_drop, rel=0
    )
    flat_first = first.results["flat"].black_average_drop
    flat_other = other.results["flat"].black_average_drop
    assert abs(flat_first.mean_change - flat_other.mean_change) > 1e-4
    # The engine's row at seed 1 is the per-batch functions' at seed 1.
    flat = np.ones((len(LABELS), 8, 8), np.float32)
    scores = jaxcam.masked_scores(model, IMAGES, flat, LABELS, 0.25, ties="random", tie_seed=1)
    assert_same_summary(flat_other, jaxcam.black_average_drop(scores, LABELS))


# ----------------------------------------------------------------------------
# Per-class rows.


def test_each_class_row_is_an_evaluation_of_that_class_alone():
    # Raster ties do not depend on an image's index, so a class's images evaluated on
    # their own (at the same alpha) must give that class's row exactly.
    model = MODEL
    options = dict(alpha=0.5, grid=GRID, ties="raster", batch_size=4)
    whole = jaxcam.evaluate(model, (IMAGES, LABELS), METHODS, **options)
    for c in range(3):
        chosen = LABELS == c
        alone = jaxcam.evaluate(model, (IMAGES[chosen], LABELS[chosen]), METHODS, **options)
        assert whole.class_counts[c] == int(chosen.sum())
        for name in METHODS:
            got, want = whole.by_class[c][name], alone.results[name]
            assert_same_summary(got.average_drop, want.average_drop)
            for alpha in GRID:
                assert_same_summary(got.curve[alpha], want.curve[alpha])
            assert got.tie_decided == pytest.approx(want.tie_decided, abs=1e-7)
            assert got.empty_maps == want.empty_maps
    # The classes' rows differ, so rows attached to the wrong class would be caught.
    bad = [whole.by_class[c]["Grad-CAM"].black_average_drop.mean_change for c in range(3)]
    assert min(abs(a - b) for a, b in ((bad[0], bad[1]), (bad[0], bad[2]), (bad[1], bad[2]))) > 1e-4


def test_each_class_row_is_the_per_batch_metric_of_its_images_with_their_indices():
    # Random ties (like the default smooth ones, and cheaper to compile) depend on each
    # image's data set index: the per-batch functions get the class's images with their
    # indices in the whole set.
    model = MODEL
    options = dict(ties="random", tie_seed=3)
    whole = jaxcam.evaluate(
        model, (IMAGES, LABELS), METHODS, alpha=0.5, curve=False, batch_size=4, **options
    )
    for name, (method, options) in METHODS.items():
        maps, classes = jaxcam.saliency_maps(model, IMAGES, None, method, **options)
        maps, classes = np.asarray(maps), np.asarray(classes)
        for c in range(3):
            rows = np.flatnonzero(LABELS == c)
            scores = jaxcam.masked_scores(
                model, IMAGES[rows], maps[rows], classes[rows], 0.5, indices=rows, **options
            )
            row = whole.by_class[c][name]
            assert_same_summary(row.average_drop, jaxcam.average_drop(scores, LABELS[rows]))
            assert_same_summary(
                row.black_average_drop, jaxcam.black_average_drop(scores, LABELS[rows])
            )


# ----------------------------------------------------------------------------
# Reference rows and the choice of alpha.


def test_reference_maps_change_neither_the_chosen_alpha_nor_the_method_rows():
    mask = np.zeros((len(LABELS), 8, 8), bool)
    mask[:, :5, :5] = True
    data = {"image": IMAGES, "label": LABELS, "mask": mask}
    references = {
        "mask": ReferenceMap(lambda example, key: example["mask"].astype(jnp.float32)),
        "flat": FLAT,
    }
    model = MODEL
    options = dict(grid=GRID, ties="raster")  # the search does not depend on the tie order
    alone = jaxcam.evaluate(model, (IMAGES, LABELS), METHODS, **options)
    with_references = jaxcam.evaluate(model, data, {**METHODS, **references}, **options)
    assert with_references.alpha_chosen and alone.alpha_chosen
    assert with_references.alpha == alone.alpha
    assert with_references.alpha_differences == pytest.approx(alone.alpha_differences, rel=1e-6)
    for name in METHODS:
        got, want = with_references.results[name], alone.results[name]
        assert_same_summary(got.average_drop, want.average_drop)
        for alpha in alone.alphas:
            assert_same_summary(got.curve[alpha], want.curve[alpha])
    # The test has teeth: had the mask map entered the search, alpha would have moved.
    maps = {
        name: np.asarray(jaxcam.saliency_maps(model, IMAGES, None, method, **options)[0])
        for name, (method, options) in METHODS.items()
    }
    assert jaxcam.choose_alpha(maps, GRID)[0] == alone.alpha
    assert jaxcam.choose_alpha({**maps, "mask": mask.astype(np.float32)}, GRID)[0] != alone.alpha
