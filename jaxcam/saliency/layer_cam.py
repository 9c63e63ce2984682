"""LayerCAM (Jiang et al. 2021, "LayerCAM: exploring hierarchical class activation maps
for localization", IEEE TIP)."""

from __future__ import annotations

import jax
import jax.numpy as jnp

from jaxcam.models.protocol import Explainable
from jaxcam.saliency.grad_cam import gradient_cam

Array = jax.Array


def layer_cam(
    model: Explainable,
    feature_map: Array,
    class_index: Array,
    *,
    score: str | None = None,
    form: str = "stable",
) -> Array:
    """LayerCAM map ``relu(sum_k relu(dY^c/dA^k) * A^k)``, the product element-wise.

    The paper's position-wise weight ``w^kc_ij = relu(g^kc_ij)``, the weighted activation
    ``w^kc_ij A^k_ij`` and the map ``relu(sum_k ...)``: each activation is weighted by
    the positive part of its own gradient. Where every gradient is >= 0 it is HiResCAM's
    map; meant for any layer (:func:`jaxcam.models.split_at`), where the gradient varies
    over positions.

    Args: as :func:`jaxcam.saliency.hires_cam.hires_cam`.

    Returns:
      L^c, (h, w). Cost: one gradient.
    """
    return gradient_cam(
        model,
        feature_map,
        class_index,
        lambda g, a: jnp.sum(jax.nn.relu(g) * a, axis=-1),
        score,
        form,
    )
