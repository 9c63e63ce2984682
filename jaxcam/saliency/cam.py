"""CAM (Zhou et al. 2016; paper eq. 1-4)."""

from __future__ import annotations

import jax
import jax.numpy as jnp

from jaxcam.checks import nan_if_out_of_range
from jaxcam.models.protocol import Explainable, check_explained

Array = jax.Array


def cam(model: Explainable, feature_map: Array, class_index: Array) -> Array:
    """CAM map ``relu(sum_k w^c_k A^k)`` at feature resolution.

    Eq. 4 without its 1/z, which the normalisation removes. The relu is not in the
    paper's eq. 4; jaxcam applies it, as Grad-CAM's eq. 6 does, so that negative
    evidence is not shown as weak positive evidence after normalisation and eq. 12
    (CAM == Grad-CAM for a GAP -> dense head) holds for the whole map.

    The weighted sum runs at ``highest`` matmul precision whatever the caller's
    (TF32-like float32 matmuls on GPUs would change the map by ~1e-3).

    Args:
      model: a bound model with the plain GAP -> dense head (``model.class_weights()``).
      feature_map: A, (h, w, K).
      class_index: c, integer scalar in [0, classes): checked (ValueError) when
        concrete; a traced c cannot be checked and gives NaN everywhere when out of
        range (:func:`jaxcam.checks.nan_if_out_of_range`).

    Returns:
      L^c, (h, w).
    """
    check_explained(model, feature_map, class_index)
    weights = model.class_weights()[:, class_index]
    with jax.default_matmul_precision("highest"):
        saliency = jax.nn.relu(jnp.einsum("hwk,k->hw", feature_map, weights))
    return nan_if_out_of_range(saliency, class_index, model.num_classes)
