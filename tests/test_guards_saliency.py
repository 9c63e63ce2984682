"""Guards for the saliency pipeline: Lanczos-3 upsampling against numbers worked out without
``jax.image`` (by hand, and with the numpy reference in conftest), and batch maps whose
feature map is smaller than the image."""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from conftest import lanczos3_upsample_reference, normalise_reference, toy_model

from jaxcam.saliency import normalise, saliency_maps, upsample


def test_lanczos3_upsampling_of_two_pixels_by_hand():
    # [1, 0] -> 6 pixels (scale 3). With L(x) = 3 sin(pi x) sin(pi x / 3) / (pi x)^2:
    #   L(1/3) = 27 sin60 sin20 / pi^2,  L(2/3) = 27 sin60 sin40 / (4 pi^2),
    #   L(4/3) = -27 sin60 sin80 / (16 pi^2)   (sin 240 = -sin 60).
    # Output 0 samples the input at -1/3 (distances 1/3 and 4/3 to the two pixels), output 2
    # at +1/3 (distances 1/3 and 2/3); the common factor 27 sin60 / pi^2 cancels when the
    # weights are divided by their sum. Bilinear would give 1 and 2/3.
    sin = lambda degrees: math.sin(math.radians(degrees))
    first = sin(20) / (sin(20) - sin(80) / 16)  # 1.2195: Lanczos overshoots at the edge
    third = sin(20) / (sin(20) + sin(40) / 4)  # 0.6803
    got = np.asarray(upsample(jnp.array([[1.0, 0.0]]), (1, 6)))[0]
    assert got[0] == pytest.approx(first, abs=1e-5)
    assert got[2] == pytest.approx(third, abs=1e-5)
    # Mirror symmetry of [1, 0] -> [0, 1], and the reference agrees with the hand values.
    np.testing.assert_allclose(
        np.asarray(upsample(jnp.array([[0.0, 1.0]]), (1, 6)))[0], got[::-1], atol=1e-6
    )
    reference = lanczos3_upsample_reference(np.array([[1.0, 0.0]]), (1, 6))[0]
    assert reference[0] == pytest.approx(first, rel=1e-12)
    assert reference[2] == pytest.approx(third, rel=1e-12)


def test_lanczos3_upsampling_of_a_one_hot_map_matches_the_numpy_reference():
    one_hot = np.zeros((4, 4), np.float32)
    one_hot[1, 2] = 1.0
    got = np.asarray(upsample(jnp.asarray(one_hot), (12, 12)))
    want = lanczos3_upsample_reference(one_hot, (12, 12))
    np.testing.assert_allclose(got, want, atol=1e-5)
    assert want.min() < -0.05  # Lanczos rings below 0 (bilinear never does): normalise clips it
    np.testing.assert_allclose(
        np.asarray(normalise(jnp.asarray(got))), normalise_reference(want), atol=1e-5
    )


def test_lanczos3_upsampling_to_a_non_integer_scale_matches_the_numpy_reference():
    saliency = np.random.default_rng(0).uniform(size=(3, 5)).astype(np.float32)
    got = np.asarray(upsample(jnp.asarray(saliency), (7, 16)))
    np.testing.assert_allclose(got, lanczos3_upsample_reference(saliency, (7, 16)), atol=1e-5)


def test_batch_maps_of_a_4x4_feature_map_are_cam_upsampled_to_16x16_by_hand():
    # toy_model: 16x16x2 images -> A (4, 4, 6) -> GAP -> dense (3 classes): CAM is
    # relu(A @ w_c) at 4x4, then Lanczos-3 to 16x16 and divided by its maximum.
    model = toy_model("softmax")
    images = np.random.default_rng(5).uniform(size=(3, 16, 16, 2)).astype(np.float32)
    weights = np.asarray(model.class_weights(), np.float64)  # (K, classes)
    features, scores = jax.jit(jax.vmap(lambda x: (model.features(x), model.scores(x))))(
        jnp.asarray(images)
    )
    features = np.asarray(features, np.float64)
    assert features.shape == (3, 4, 4, 6)
    for classes in (None, np.array([2, 0, 1], np.int32)):
        maps, used = saliency_maps(model, images, classes, "cam")
        assert maps.shape == (3, 16, 16)
        for i in range(3):
            c = int(np.argmax(scores[i])) if classes is None else int(classes[i])
            assert int(used[i]) == c
            raw = np.maximum(features[i] @ weights[:, c], 0.0)
            want = normalise_reference(lanczos3_upsample_reference(raw, (16, 16)))
            np.testing.assert_allclose(np.asarray(maps[i]), want, atol=1e-5)
