"""The model protocol: both split classes implement it, and a toy with only the required
members works with the saliency step."""

from __future__ import annotations

import dataclasses

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from conftest import head_model
from flax import struct
from typing_extensions import get_protocol_members

from jaxcam.models import Explainable, ExplainableDefaults, LayerModel, SplitModel
from jaxcam.models.protocol import OPTIONAL_MEMBERS, REQUIRED_MEMBERS
from jaxcam.saliency import saliency_maps


@dataclasses.dataclass(frozen=True)
class ToyInput:
    in_channels: int = 2
    min_input_size: int = 1


@struct.dataclass
class LinearToy(ExplainableDefaults):
    """A = the image (H, W, 2); S = GAP(A) @ kernel (2, classes); linear output."""

    kernel: jax.Array
    module: ToyInput = struct.field(pytree_node=False, default=ToyInput())
    output: str = struct.field(pytree_node=False, default="linear")
    num_classes: int = struct.field(pytree_node=False, default=2)

    def features(self, image: jax.Array) -> jax.Array:
        return image

    def logits(self, feature_map: jax.Array) -> jax.Array:
        return jnp.mean(feature_map, axis=(0, 1)) @ self.kernel


class RequiredOnly:
    """The required members without the defaults: not an Explainable."""

    module = ToyInput()
    output = "linear"
    num_classes = 2

    def features(self, image: jax.Array) -> jax.Array:
        return image

    def logits(self, feature_map: jax.Array) -> jax.Array:
        return jnp.mean(feature_map, axis=(0, 1))


def test_members_split_into_required_and_defaulted():
    assert get_protocol_members(Explainable) == {*REQUIRED_MEMBERS, *OPTIONAL_MEMBERS}
    assert all(name in vars(ExplainableDefaults) for name in OPTIONAL_MEMBERS)
    assert not any(name in vars(ExplainableDefaults) for name in REQUIRED_MEMBERS)


def test_split_and_layer_models_are_explainable():
    model = head_model(channels=3, size=4)
    # Built directly (split_at would trace): only the members' values are checked here.
    layer = LayerModel(base=model, layer="backbone/inner", channels=5, reads_image=True)
    image = jnp.ones((4, 4, 3))
    assert isinstance(model, SplitModel) and isinstance(layer, LayerModel)
    assert isinstance(model, Explainable) and isinstance(layer, Explainable)
    assert model.for_image(image) is model  # the whole-network split reads no image
    assert layer.for_image(image).image is image
    assert model.has_linear_pooling and not layer.has_linear_pooling
    assert (model.feature_channels, layer.feature_channels) == (3, 5)
    with pytest.raises(ValueError, match="no dense layer follows pooling"):
        layer.first_layer()


def test_toy_with_required_members_runs_grad_cam():
    # Channels of A = the image (3, 3, 2), chosen by hand.
    a0 = np.array([[1, 2, 0], [0, 4, 1], [2, 0, 0]], np.float32)
    a1 = np.array([[0, 1, 3], [1, 0, 2], [0, 2, 2]], np.float32)
    image = np.stack([a0, a1], axis=-1)[None]
    toy = LinearToy(kernel=jnp.asarray([[1.0, -1.0], [0.0, 2.0]]))
    assert isinstance(toy, Explainable)
    assert toy.for_image(image[0]) is toy and toy.feature_channels is None
    # S = (mean a0, -mean a0 + 2 mean a1) = (10/9, 12/9): class 1 is predicted. For a
    # linear GAP -> dense head Grad-CAM is relu(A @ kernel[:, c]) up to the scale 1/9.
    # Class 1: relu(-a0 + 2 a1) = [[0, 0, 6], [2, 0, 3], [0, 4, 4]], max 6.
    maps, classes = saliency_maps(toy, image, None, "grad_cam")
    np.testing.assert_array_equal(np.asarray(classes), [1])
    expected = np.array([[0, 0, 6], [2, 0, 3], [0, 4, 4]], np.float32) / 6
    np.testing.assert_allclose(np.asarray(maps[0]), expected, atol=1e-5)
    # Class 0: relu(a0), max 4.
    maps, _ = saliency_maps(toy, image, np.array([0], np.int32), "grad_cam")
    np.testing.assert_allclose(np.asarray(maps[0]), a0 / 4, atol=1e-5)


def test_required_members_alone_are_refused_clearly():
    bare = RequiredOnly()
    assert not isinstance(bare, Explainable)
    with pytest.raises(TypeError, match="ExplainableDefaults"):
        saliency_maps(bare, np.ones((1, 3, 3, 2), np.float32), None, "grad_cam")
