"""HiResCAM (Draelos & Carin 2020, "Use HiResCAM instead of Grad-CAM for faithful
explanations of convolutional neural networks")."""

from __future__ import annotations

import jax
import jax.numpy as jnp

from jaxcam.models.protocol import Explainable
from jaxcam.saliency.grad_cam import gradient_cam

Array = jax.Array


def hires_cam(
    model: Explainable,
    feature_map: Array,
    class_index: Array,
    *,
    score: str | None = None,
    form: str = "stable",
) -> Array:
    """HiResCAM map ``relu(sum_k dY^c/dA^k * A^k)``, the product taken element-wise.

    The paper's HiResCAM equation, ``sum_f dy^c/dA^f (.) A^f``: the gradient multiplies
    each activation where it is, instead of being averaged over positions first as in
    Grad-CAM. For a GAP -> dense head the gradient is the same at every position
    (``w^c/z``), so the map equals Grad-CAM's. The relu is jaxcam's, as for every map
    (the normalisation would clip negative values anyway).

    Args:
      model: any bound split model.
      feature_map: A, (h, w, K).
      class_index: c, integer scalar in [0, classes) (checked when concrete; NaN map
        when traced and out of range).
      score: the differentiated score (default the model's output activation).
      form: ``stable`` or ``naive`` score form (:mod:`jaxcam.saliency.scores`).

    Returns:
      L^c, (h, w). Cost: one gradient (a forward and a backward through the head).
    """
    return gradient_cam(
        model, feature_map, class_index, lambda g, a: jnp.sum(g * a, axis=-1), score, form
    )
