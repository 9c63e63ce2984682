"""The extension protocol: a new architecture defined outside the library (the tests'
ToyBackbone, in conftest.py) runs through the public API."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from conftest import ToyBackbone, toy_model

import jaxcam

IMAGES = np.random.default_rng(0).uniform(size=(4, 16, 16, 2)).astype(np.float32)


@pytest.mark.parametrize("output", ["exp", "softmax"])
def test_every_method_and_metric_runs_on_a_new_architecture(output):
    model = toy_model(output)
    labels = np.array([0, 1, 2, 0])
    runs = {
        "cam": {},
        "grad_cam": {},
        "grad_cam_plus_plus": {"derivatives": "exact"},
        "grad_cam_plus_plus_closed": {"derivatives": "closed_form"},
    }
    maps = {}
    for name, options in runs.items():
        method = "grad_cam_plus_plus" if name.startswith("grad_cam_plus_plus") else name
        maps[name], classes = jaxcam.saliency_maps(model, IMAGES, labels, method, **options)
        assert maps[name].shape == (4, 16, 16)
        assert bool(jnp.all(jnp.isfinite(maps[name])))
        np.testing.assert_array_equal(classes, labels)
        scores = jaxcam.masked_scores(model, IMAGES, maps[name], classes, alpha=0.25)
        for summary in (
            jaxcam.average_drop(scores, labels),
            jaxcam.black_average_drop(scores, labels),
        ):
            assert summary.num_images == 4
            assert summary.value is None or 0.0 <= summary.value <= 1.0
    if output == "exp":  # exp over a linear head: exact Grad-CAM++ == closed form
        np.testing.assert_allclose(
            maps["grad_cam_plus_plus"], maps["grad_cam_plus_plus_closed"], atol=1e-5
        )
    if output == "exp":  # eq. 12
        np.testing.assert_allclose(maps["cam"], maps["grad_cam"], atol=1e-5)


def test_registering_a_new_architecture_by_name():
    name = "toy_for_test"
    if name not in jaxcam.model_names():
        jaxcam.register_model(name, ToyBackbone, input_size=16)
    with pytest.raises(ValueError, match="already registered"):
        jaxcam.register_model(name, ToyBackbone, input_size=16)
    module = jaxcam.create_model(name, num_classes=2, output="relu", in_channels=2)
    variables = module.init(jax.random.key(1), jnp.zeros((1, 16, 16, 2)))
    maps, _ = jaxcam.saliency_maps(jaxcam.bind(module, variables), IMAGES, None, "grad_cam")
    assert maps.shape == (4, 16, 16)
    with pytest.raises(ValueError, match="minimum input size 4x4"):
        jaxcam.saliency_maps(jaxcam.bind(module, variables), IMAGES[:, :3, :3], None, "cam")
