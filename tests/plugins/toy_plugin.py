"""A user's extension module, outside the package: one architecture, one saliency method,
one metric and one data source, each a few lines and one registration call.

Imported by tests/test_registries.py directly and by the CLI as ``--plugin toy_plugin``.
"""

from __future__ import annotations

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from jaxcam.data import ArraySplit, register_data_source
from jaxcam.metrics import Metric, register_metric
from jaxcam.models import register_model
from jaxcam.saliency import register_saliency_method

CLASS_NAMES = ("plain", "square")


class TinyBackbone(nn.Module):
    """Normalised image (H, W, C) batch -> A (H/2, W/2, 3)."""

    @nn.compact
    def __call__(self, x: jax.Array, train: bool = False) -> jax.Array:
        return nn.relu(nn.Conv(3, (3, 3), strides=2)(x))


def channel_sum_cam(model, feature_map: jax.Array, class_index: jax.Array) -> jax.Array:
    """Sum over the channels of A: (h, w), the same for every class."""
    del model, class_index
    return jnp.sum(feature_map, axis=-1)


def grey_fill(image, saliency, ranks, num_kept, fields, key) -> jax.Array:
    """The ``num_kept`` top-ranked pixels keep their value, the others become mid-grey 0.5."""
    del saliency, fields, key
    return jnp.where((ranks < num_kept)[..., None], image, jnp.full_like(image, 0.5))


def bright_squares(location, split, *, data_dir, image_size, channels, skip_corrupt=False):
    """12 images per split: class 1 has a bright square, class 0 only noise."""
    del location, data_dir, skip_corrupt
    rng = np.random.default_rng(sum(map(ord, split)))
    labels = (np.arange(12) % 2).astype(np.int32)
    images = rng.uniform(0.0, 0.3, (12, image_size, image_size, channels)).astype(np.float32)
    images[labels == 1, 4:10, 4:10] += 0.6
    return ArraySplit(images, labels, CLASS_NAMES, name=f"toy_squares/{split}")


register_model("toy_plugin_net", TinyBackbone, input_size=16)
register_saliency_method("channel_sum_cam", channel_sum_cam, display="Channel-sum CAM")
register_metric(Metric(name="grey_drop", label="GD", perturb=grey_fill, per_alpha=True))
register_data_source("toy_squares", bright_squares, location=None, description="toy squares")
