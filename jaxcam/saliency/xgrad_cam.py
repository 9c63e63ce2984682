"""XGrad-CAM (Fu et al. 2020, "Axiom-based Grad-CAM: towards accurate visualization and
explanation of CNNs", BMVC)."""

from __future__ import annotations

import jax
import jax.numpy as jnp

from jaxcam.models.protocol import Explainable
from jaxcam.saliency.grad_cam import gradient_cam

Array = jax.Array


def xgrad_cam(
    model: Explainable,
    feature_map: Array,
    class_index: Array,
    *,
    score: str | None = None,
    form: str = "stable",
) -> Array:
    """XGrad-CAM map ``relu(sum_k a_k A^k)``, ``a_k = sum_xy A^k_xy dY^c/dA^k_xy / sum_ab A^k_ab``.

    The paper's XGrad-CAM weight (derived from its sensitivity and conservation axioms):
    the gradient averaged over positions with the activations as weights, instead of
    uniformly (Grad-CAM). A channel with ``sum_ab A^k_ab == 0`` gets weight 0. For a
    GAP -> dense head the gradient is constant over positions, so the weights are
    Grad-CAM's and so is the map.

    Args: as :func:`jaxcam.saliency.hires_cam.hires_cam`.

    Returns:
      L^c, (h, w). Cost: one gradient.
    """

    def combine(gradient: Array, a: Array) -> Array:
        totals = jnp.sum(a, axis=(0, 1))
        usable = totals != 0
        weighted = jnp.sum(a * gradient, axis=(0, 1))
        weights = jnp.where(usable, weighted / jnp.where(usable, totals, 1.0), 0.0)
        return jnp.einsum("hwk,k->hw", a, weights)

    return gradient_cam(model, feature_map, class_index, combine, score, form)
