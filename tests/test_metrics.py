"""jaxcam.metrics: AD (eq. 10) and BAD (eq. 11) against hand-computed values."""

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
    summarise_drop,
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
    scores = masked_scores(model, IMAGES, MAPS, np.array([0, 0]), alpha=0.5)
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
    scores = masked_scores(model, images, maps, np.array([0, 0, 0]), alpha=0.5)
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
