"""Grad-CAM (Selvaraju et al. 2017; paper eq. 5-6)."""

from __future__ import annotations

import jax
import jax.numpy as jnp

from jaxcam.models.base import SplitModel
from jaxcam.saliency.scores import class_score

Array = jax.Array


def grad_cam(
    model: SplitModel,
    feature_map: Array,
    class_index: Array,
    *,
    score: str | None = None,
    form: str = "stable",
) -> Array:
    """Grad-CAM map ``relu(sum_k w^c_k A^k)``, ``w^c_k = (1/z) sum_xy dY^c/dA^k_xy``.

    Args:
      model: any split model (no constraint on the head).
      feature_map: A, (h, w, K).
      class_index: c, integer scalar.
      score: the differentiated score (see :mod:`jaxcam.saliency.scores`); default
        the model's output activation.
      form: ``stable`` or ``naive`` score form.

    Returns:
      L^c, (h, w).
    """
    score_of_logits = class_score(
        score or model.output, class_index, model.logits(feature_map), form
    )
    gradient = jax.grad(lambda a: score_of_logits(model.logits(a)))(feature_map)
    weights = jnp.mean(gradient, axis=(0, 1))
    return jax.nn.relu(jnp.einsum("hwk,k->hw", feature_map, weights))
