"""jaxcam.metrics: AD (eq. 10) and BAD (eq. 11) against hand-computed values."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from conftest import head_model

from jaxcam.metrics import (
    average_drop,
    black_average_drop,
    black_image,
    choose_alpha,
    kept_pixel_count,
    masked_scores,
    pixel_ranks,
    rank_pixels,
    summarise_drop,
    surely_different,
    threshold_split,
    tie_priority,
)
from jaxcam.models import bind


def mean_pixel_model(kernel, bias, output="linear"):
    """One-channel identity backbone: Y = act(kernel * mean(I) + bias)."""
    model = head_model(channels=1, num_classes=len(bias), output=output, size=2)
    params = {"classifier": {"kernel": jnp.asarray([kernel]), "bias": jnp.asarray(bias)}}
    return bind(model.module, {"params": params})


IMAGES = np.array([[[1.0, 1.0], [1.0, 1.0]], [[0.2, 0.4], [0.6, 0.8]]], np.float32)[..., None]
MAPS = np.array([[[1.0, 0.5], [0.0, 0.0]], [[1.0, 1.0], [1.0, 1.0]]], np.float32)


def test_average_drop_and_black_average_drop_two_images_by_hand():
    # Y = mean(I): image 1 Y = 1, image 2 Y = 0.5.
    # AD: E1 = L1*I1 -> O = 1.5/4 = 0.375, drop 0.625; E2 = I2 -> drop 0.  AD = 0.3125.
    # BAD, alpha = 0.5 keeps 2 pixels: B1 keeps (0,0),(0,1) -> O = 0.5, drop 0.5;
    # map 2 is all ties -> raster order keeps (0,0),(0,1): O = 0.15, drop 0.7.  BAD = 0.6.
    model = mean_pixel_model([1.0, -1.0], [0.0, 0.25])
    scores = masked_scores(model, IMAGES, MAPS, np.array([0, 0]), alpha=0.5, ties="raster")
    np.testing.assert_allclose(scores.original, [1.0, 0.5], rtol=1e-6)
    np.testing.assert_allclose(scores.explanation, [0.375, 0.5], rtol=1e-6)
    np.testing.assert_allclose(scores.black, [0.5, 0.15], rtol=1e-6)
    labels = np.array([0, 1])  # image 2's masked images are predicted 0: incorrect
    ad = average_drop(scores, labels)
    bad = black_average_drop(scores, labels)
    assert ad.value == pytest.approx(0.3125, rel=1e-6)
    assert bad.value == pytest.approx(0.6, rel=1e-6)
    assert ad.incorrect == 0.5 and bad.incorrect == 0.5
    assert ad.num_excluded == bad.num_excluded == 0 and ad.num_images == 2
    assert ad.increase_in_confidence == 0.0


def test_zero_score_images_are_excluded_and_counted_never_nan():
    # relu output; the black image scores 0, and a third image (all black) has Y = 0.
    model = mean_pixel_model([1.0, -1.0], [0.0, 0.25], output="relu")
    images = np.concatenate([IMAGES, np.zeros((1, 2, 2, 1), np.float32)])
    maps = np.concatenate([MAPS, np.ones((1, 2, 2), np.float32)])
    scores = masked_scores(model, images, maps, np.array([0, 0, 0]), alpha=0.5, ties="raster")
    assert float(scores.original[2]) == 0.0
    bad = black_average_drop(scores, np.array([0, 0, 0]))
    assert bad.value == pytest.approx(0.6, rel=1e-6)  # the mean of the two defined drops
    assert bad.num_excluded == 1 and bad.num_images == 3
    every_excluded = summarise_drop([0.0, 0.0], [0.1, 0.0], [0, 0], [0, 0])
    assert every_excluded.value is None and every_excluded.num_excluded == 2


def test_drop_is_zero_when_masked_score_is_not_lower():
    # Y = 1 - mean(I): blacking out pixels raises the score.
    model = mean_pixel_model([-1.0, 1.0], [1.0, 0.0])
    scores = masked_scores(model, IMAGES, MAPS, np.array([0, 0]), alpha=0.25)
    assert np.all(np.asarray(scores.black) >= np.asarray(scores.original))
    bad = black_average_drop(scores, np.array([0, 0]))
    assert bad.value == 0.0 and bad.increase_in_confidence == 1.0
    assert summarise_drop([2.0], [3.0], [0], [0]).value == 0.0


@pytest.mark.parametrize("alpha", [0.3, 0.5, 0.02])
def test_black_image_keeps_exactly_round_alpha_hw_pixels_with_ties(alpha):
    image = jnp.asarray(np.random.default_rng(0).uniform(0.1, 1.0, size=(5, 5, 1)), jnp.float32)
    num_kept = kept_pixel_count(alpha, 5, 5)
    assert num_kept == round(alpha * 25)  # 0.3 -> round(7.5) = 8 (half to even)
    for saliency in (
        jnp.zeros((5, 5)),
        jnp.round(jnp.asarray(np.random.default_rng(1).uniform(size=(5, 5)))),
    ):
        black = black_image(image, saliency, num_kept)
        kept = np.asarray(black[..., 0] != 0)
        assert kept.sum() == num_kept
        np.testing.assert_array_equal(np.asarray(black)[kept], np.asarray(image)[kept])
    # All-zero map: the first pixels in raster order are kept.
    kept = np.asarray(black_image(image, jnp.zeros((5, 5)), num_kept)[..., 0] != 0).ravel()
    assert kept[:num_kept].all() and not kept[num_kept:].any()


def test_pixel_ranks_break_ties_in_raster_order_and_treat_signed_zeros_alike():
    saliency = jnp.array([[0.5, -0.0], [0.0, 0.5]])
    np.testing.assert_array_equal(pixel_ranks(saliency), [[0, 2], [3, 1]])


def test_choose_alpha_by_hand():
    first = np.array([[[4.0, 3.0], [2.0, 1.0]]])
    second = np.array([[[1.0, 2.0], [3.0, 4.0]]])
    # k=1: keep (0,0) vs (1,1): 2/4 differ; k=2: disjoint halves: 4/4; k=3: 2/4.
    best, table = choose_alpha({"a": first, "b": second, "a again": first}, grid=(0.25, 0.5, 0.75))
    assert best == 0.5
    # pairs (a,b), (a,a again), (b,a again): mean of (1, 0, 1) at 0.5.
    assert table == pytest.approx({0.25: 1 / 3, 0.5: 2 / 3, 0.75: 1 / 3})


def test_bad_inputs_raise_clear_errors():
    model = mean_pixel_model([1.0, -1.0], [0.0, 0.25])
    classes = np.array([0, 0])
    for alpha in (0.0, 1.0, 1.5, -0.1):
        with pytest.raises(ValueError, match=r"alpha must lie in \(0, 1\)"):
            masked_scores(model, IMAGES, MAPS, classes, alpha)
    for alpha in (True, "0.3", None):
        with pytest.raises(TypeError, match="alpha"):
            masked_scores(model, IMAGES, MAPS, classes, alpha)
    with pytest.raises(ValueError, match="maps must have shape"):
        masked_scores(model, IMAGES, MAPS[:1], classes, 0.5)
    with pytest.raises(ValueError, match="out of range"):
        masked_scores(model, IMAGES, MAPS, np.array([0, 5]), 0.5)
    nan_maps = MAPS.copy()
    nan_maps[0, 1, 1] = np.inf
    with pytest.raises(ValueError, match="maps contain 1 NaN/inf"):
        masked_scores(model, IMAGES, nan_maps, classes, 0.5)
    with pytest.raises(ValueError, match="at least 2 methods"):
        choose_alpha({"a": MAPS})


@pytest.mark.parametrize("ties", ["random", "smooth", "raster"])
@pytest.mark.parametrize("alpha", [0.3, 0.5, 0.02, 0.97])
def test_kept_area_is_exact_under_every_tie_policy(ties, alpha):
    image = jnp.asarray(np.random.default_rng(0).uniform(0.1, 1.0, size=(5, 5, 1)), jnp.float32)
    num_kept = kept_pixel_count(alpha, 5, 5)
    maps = (
        jnp.zeros((5, 5)),
        jnp.round(jnp.asarray(np.random.default_rng(1).uniform(size=(5, 5)), jnp.float32)),
        jnp.asarray(np.random.default_rng(2).uniform(size=(5, 5)), jnp.float32),
    )
    for index in range(4):
        priority = tie_priority(ties, 0, jnp.asarray(index), (5, 5))
        for saliency in maps:
            kept = np.asarray(black_image(image, saliency, num_kept, priority)[..., 0] != 0)
            assert kept.sum() == num_kept


@pytest.mark.parametrize("ties", ["random", "smooth"])
def test_random_ties_have_no_spatial_bias(ties):
    # 400 all-zero 16x16 maps, alpha 0.25: 64 tied pixels kept per image. A kept pixel's row
    # has variance (16^2 - 1) / 12 = 21.25; the mean of 64 drawn without replacement from 256
    # has variance 21.25 / 64 * 192 / 255 = 0.25, over 400 images 0.25 / 400: sd 0.025. The
    # tolerance 0.15 is 6 sd for "random". "smooth" keeps blobs, whose pixels are correlated:
    # its per-image mean varies more (at most 64x the variance if every kept pixel moved
    # together: sd 0.2), so its tolerance is 0.6 = 3 of those sd. Raster order keeps the top
    # 4 rows: mean row 1.5.
    priorities = jax.vmap(lambda i: tie_priority(ties, 0, i, (16, 16)))(jnp.arange(400))
    kept = jax.vmap(lambda p: pixel_ranks(jnp.zeros((16, 16)), p) < 64)(priorities)
    rows, cols = np.nonzero(np.asarray(kept))[1:]
    tolerance = 0.15 if ties == "random" else 0.6
    assert abs(rows.mean() - 7.5) < tolerance and abs(cols.mean() - 7.5) < tolerance
    raster_rows = np.nonzero(np.asarray(pixel_ranks(jnp.zeros((16, 16))) < 64))[0]
    assert raster_rows.mean() == 1.5
    # Each image has its own order; the order does not depend on the map.
    assert not np.array_equal(np.asarray(kept[0]), np.asarray(kept[1]))


def test_every_method_gets_the_same_tie_order_on_an_image():
    # Two maps tied everywhere (0 and 0.5) and a map tied outside one pixel: with the same
    # image index the tied pixels are kept in the same order, whatever the map.
    priority = tie_priority("random", 7, jnp.asarray(3), (4, 4))
    flat_zero = pixel_ranks(jnp.zeros((4, 4)), priority)
    flat_half = pixel_ranks(jnp.full((4, 4), 0.5), priority)
    np.testing.assert_array_equal(flat_zero, flat_half)
    one_peak = jnp.zeros((4, 4)).at[2, 1].set(1.0)
    ranks = np.asarray(pixel_ranks(one_peak, priority)).ravel()
    order_without_peak = np.argsort(np.asarray(flat_zero).ravel())
    order_without_peak = order_without_peak[order_without_peak != 9]
    np.testing.assert_array_equal(np.argsort(ranks)[1:], order_without_peak)
    # The engine's per-batch API: two constant maps give identical black images.
    model = mean_pixel_model([1.0, -1.0], [0.0, 0.25])
    images = np.random.default_rng(3).uniform(0.1, 1, size=(3, 2, 2, 1)).astype(np.float32)
    a = masked_scores(model, images, np.zeros((3, 2, 2), np.float32), np.zeros(3, int), 0.5)
    b = masked_scores(model, images, np.ones((3, 2, 2), np.float32), np.zeros(3, int), 0.5)
    np.testing.assert_array_equal(a.black, b.black)


def test_threshold_split_counts_the_pixels_a_tie_decided():
    def split(values, k):
        saliency = jnp.asarray(values, jnp.float32)
        ranking = rank_pixels(saliency, jnp.arange(4, dtype=jnp.int32))
        return threshold_split(saliency, ranking.sorted_values, k)

    # [1, 0, 0, 0], k=2: eta = 0 and the 3 zeros straddle the cut: 1 kept pixel is tie-made.
    s = split([[1.0, 0.0], [0.0, 0.0]], 2)
    assert int(s.tie_decided) == 1
    np.testing.assert_array_equal(s.surely_kept, [[True, False], [False, False]])
    assert not np.asarray(s.surely_dropped).any()
    # [1, .5, 0, 0], k=2: the cut falls between 0.5 and 0: no tie decides.
    s = split([[1.0, 0.5], [0.0, 0.0]], 2)
    assert int(s.tie_decided) == 0
    np.testing.assert_array_equal(s.surely_dropped, [[False, False], [True, True]])
    # [1, .5, .5, 0], k=2: one of the two 0.5s is kept by the tie-break.
    s = split([[1.0, 0.5], [0.5, 0.0]], 2)
    assert int(s.tie_decided) == 1 and int(np.asarray(s.surely_kept).sum()) == 1
    # k=0 keeps nothing.
    assert not np.asarray(split([[1.0, 0.5], [0.5, 0.0]], 0).surely_kept).any()
    # Surely different: [1, .5, 0, 0] vs [0, 0, .5, 1] at k=2: all 4 pixels differ.
    other = split([[0.0, 0.0], [0.5, 1.0]], 2)
    assert float(surely_different(split([[1.0, 0.5], [0.0, 0.0]], 2), other)) == 1.0
    # Against an all-zero map every pixel is tie-made: nothing differs for sure.
    zero = split([[0.0, 0.0], [0.0, 0.0]], 2)
    assert float(surely_different(zero, other)) == 0.0


def test_choose_alpha_ignores_tie_decided_pixels():
    # Two maps that agree on their one salient pixel and are 0 elsewhere: under raster ties
    # their black images could differ only through ties, which are not a difference.
    first = np.zeros((1, 3, 3), np.float32)
    first[0, 1, 1] = 1.0
    best, table = choose_alpha({"a": first, "b": first * 0.5}, grid=(0.2, 0.5))
    assert table == {0.2: 0.0, 0.5: 0.0}
    with pytest.raises(ValueError, match="non-empty grid"):
        choose_alpha({"a": first, "b": first}, grid=())
    nan_maps = first.copy()
    nan_maps[0, 0, 0] = np.nan
    with pytest.raises(ValueError, match="maps contain 1 NaN"):
        choose_alpha({"a": nan_maps, "b": first})


def test_drop_statistics_by_hand_and_undefined_ratios():
    # Y = 2, 2, 4, 0, inf; O = 1, 3, 4, 1, 1: defined for the first three only.
    # drops 0.5, 0, 0 -> 1/6; changes -0.5, 0.5, 0 -> 0; O > Y for 1 of 3.
    summary = summarise_drop(
        [2.0, 2.0, 4.0, 0.0, np.inf], [1.0, 3.0, 4.0, 1.0, 1.0], [0, 0, 1, 0, 0], [0] * 5
    )
    assert summary.value == pytest.approx(1 / 6)
    assert summary.mean_change == pytest.approx(0.0, abs=1e-7)
    assert summary.increase_in_confidence == pytest.approx(1 / 3)
    assert summary.num_excluded == 2 and summary.num_images == 5
    assert summary.incorrect == pytest.approx(1 / 5)
    assert summary.median_ratio == pytest.approx(1.0, rel=2 ** (1 / 64) - 1)
    assert not summary.mostly_increased
    nothing = summarise_drop([0.0], [1.0], [0], [0])
    assert nothing.value is None and nothing.median_ratio is None
    assert nothing.increase_in_confidence is None


def test_masked_scores_rejects_maps_outside_unit_interval():
    model = mean_pixel_model([1.0, -1.0], [0.0, 0.25])
    with pytest.raises(ValueError, match=r"normalised to \[0, 1\]"):
        masked_scores(model, IMAGES, MAPS * 2, np.array([0, 0]), 0.5)
    with pytest.raises(ValueError, match="ties must be one of"):
        masked_scores(model, IMAGES, MAPS, np.array([0, 0]), 0.5, ties="diagonal")
