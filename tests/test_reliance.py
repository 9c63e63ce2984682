"""jaxcam.reliance: lesion reliance from lesion-free twins, against hand-computed values."""

import jax.numpy as jnp
import numpy as np
import pytest
from conftest import head_model

from jaxcam.data import NORMAL, PNEUMONIA, generate_phantom
from jaxcam.models import bind
from jaxcam.reliance import Reliance, image_reliance, lesion_reliance, reliance_summary


def mean_pixel_model(kernel, bias, output="linear"):
    """One-channel identity backbone: Y = act(kernel * mean(I) + bias), any image size."""
    model = head_model(channels=1, num_classes=len(bias), output=output, size=2)
    params = {"classifier": {"kernel": jnp.asarray([kernel]), "bias": jnp.asarray(bias)}}
    return bind(model.module, {"params": params})


def constant(value: float) -> np.ndarray:
    return np.full((2, 2), value, np.float32)


# Class 0 scores 0.25 - mean(I), class 1 scores mean(I): class 1 wins when mean(I) > 0.125.
MODEL = mean_pixel_model([-1.0, 1.0], [0.25, 0.0])
IMAGES = np.stack(
    [
        np.array([[0.2, 0.6], [0.2, 0.2]], np.float32),  # mean 0.3
        np.array([[0.1, 0.1], [0.1, 0.9]], np.float32),  # mean 0.3
        constant(0.4),
    ]
)[..., None]
TWINS = np.stack([constant(0.2), constant(0.1), constant(0.4)])[..., None]


def test_reliance_by_hand_on_a_mean_pixel_model():
    # Y = mean(I), Y_without = mean(twin):
    # image 1: 0.3 vs 0.2, r = 1/3, both predicted 1;
    # image 2: 0.3 vs 0.1, r = 2/3, the twin scores (0.15, 0.1) -> class 0: a flip;
    # image 3 is its own twin: r = 0.
    out = lesion_reliance(MODEL, IMAGES, TWINS, np.array([1, 1, 1]))
    assert isinstance(out, Reliance)
    np.testing.assert_allclose(out.score, [0.3, 0.3, 0.4], rtol=1e-6)
    np.testing.assert_allclose(out.score_without, [0.2, 0.1, 0.4], rtol=1e-6)
    np.testing.assert_allclose(out.reliance, [1 / 3, 2 / 3, 0.0], rtol=1e-5, atol=1e-7)
    assert out.defined.tolist() == [True, True, True]
    assert out.nonfinite.tolist() == [False, False, False]
    assert out.predicted.tolist() == [1, 1, 1]
    assert out.predicted_without.tolist() == [1, 0, 1]
    assert out.flipped.tolist() == [False, True, False]
    # Class 0 of image 1: Y = 0.25 - 0.3 < 0 is undefined.
    one = image_reliance(MODEL, jnp.asarray(IMAGES[0]), jnp.asarray(TWINS[0]), jnp.int32(0))
    assert not bool(one.defined) and float(one.reliance) == 0.0
    assert float(one.score) == pytest.approx(-0.05, abs=1e-6)


def test_reliance_summary_by_hand():
    out = lesion_reliance(MODEL, IMAGES, TWINS, np.array([1, 1, 1]))
    summary = reliance_summary(out, np.array([PNEUMONIA, PNEUMONIA, NORMAL]), 3)
    assert set(summary) == {0, 1, 2}
    sick = summary[PNEUMONIA]
    assert (sick["images"], sick["defined"], sick["nonfinite"]) == (2, 2, 0)
    assert sick["mean_reliance"] == pytest.approx(0.5, rel=1e-5)  # (1/3 + 2/3) / 2
    assert sick["strongly_reliant"] == 0.5  # 2/3 > 0.5, 1/3 is not
    assert sick["flip_share"] == 0.5
    normal = summary[NORMAL]
    assert (normal["images"], normal["defined"]) == (1, 1)
    assert normal["mean_reliance"] == 0.0 and normal["strongly_reliant"] == 0.0
    assert normal["flip_share"] == 0.0
    empty = summary[2]
    assert (empty["images"], empty["defined"]) == (0, 0)
    assert empty["mean_reliance"] is None and empty["strongly_reliant"] is None
    assert empty["flip_share"] is None
    assert reliance_summary(out, np.array([1, 1, 0]), 2, threshold=0.2)[1]["strongly_reliant"] == 1


def test_reliance_on_phantom_twins_matches_the_pixel_sums():
    # Y = mean pixel, so r = (sum(I) - sum(I')) / sum(I), computed here in float64;
    # batches of 3 over 7 images pad the last batch.
    arrays = generate_phantom(7, 5, 32, variant="v2")
    images, twins = arrays.images, arrays.twins
    model = mean_pixel_model([0.0, 1.0], [0.0, 0.0])
    out = lesion_reliance(model, images, twins, np.ones(7, np.int32), batch_size=3)
    total = images.sum(axis=(1, 2, 3), dtype=np.float64)
    without = twins.sum(axis=(1, 2, 3), dtype=np.float64)
    np.testing.assert_allclose(out.reliance, (total - without) / total, rtol=1e-3, atol=1e-6)
    np.testing.assert_allclose(out.score, total / images[0].size, rtol=1e-5)
    sick = arrays.labels == PNEUMONIA
    assert 0 < sick.sum() < 7
    assert (out.reliance[sick] > 0).all()
    assert (out.reliance[~sick] == 0).all() and out.defined.all()


def test_undefined_and_nonfinite_scores_are_flagged_never_nan():
    # relu: Y = relu(mean - 0.5); exp: Y = exp(100 mean), inf for mean >= 0.9 (float32).
    relu = mean_pixel_model([0.0, 1.0], [0.0, -0.5], output="relu")
    images = np.stack([constant(0.3), constant(0.8)])[..., None]
    twins = np.stack([constant(0.2), constant(0.6)])[..., None]
    out = lesion_reliance(relu, images, twins, np.array([1, 1]))
    assert out.defined.tolist() == [False, True] and not out.nonfinite.any()
    np.testing.assert_allclose(out.reliance, [0.0, (0.3 - 0.1) / 0.3], rtol=1e-5)

    exp = mean_pixel_model([0.0, 100.0], [0.0, 0.0], output="exp")
    images = np.stack([constant(1.0), constant(0.5), constant(0.2)])[..., None]
    twins = np.stack([constant(0.5), constant(0.95), constant(0.1)])[..., None]
    out = lesion_reliance(exp, images, twins, np.array([1, 1, 1]))
    assert out.defined.tolist() == [False, False, True]
    assert out.nonfinite.tolist() == [True, True, False]
    assert np.isfinite(out.reliance).all()
    np.testing.assert_allclose(out.reliance, [0.0, 0.0, 1.0 - np.exp(-10.0)], rtol=1e-5)
    summary = reliance_summary(out, np.array([1, 1, 1]), 2)[1]
    assert (summary["images"], summary["defined"], summary["nonfinite"]) == (3, 1, 2)
    assert summary["mean_reliance"] == pytest.approx(1.0 - np.exp(-10.0), rel=1e-5)


def test_bad_inputs_raise():
    with pytest.raises(ValueError, match="twins must have the images' shape"):
        lesion_reliance(MODEL, IMAGES, TWINS[:2], np.array([1, 1, 1]))
    with pytest.raises(ValueError, match="out of range"):
        lesion_reliance(MODEL, IMAGES, TWINS, np.array([1, 2, 1]))
    with pytest.raises(ValueError, match="NaN"):
        lesion_reliance(MODEL, IMAGES, TWINS * np.nan, np.array([1, 1, 1]))
    with pytest.raises(ValueError, match="labels"):
        reliance_summary(lesion_reliance(MODEL, IMAGES, TWINS, np.array([1, 1, 1])), [0, 1], 2)
