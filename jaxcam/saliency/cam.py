"""CAM (Zhou et al. 2016; paper eq. 1-4)."""

from __future__ import annotations

import jax
import jax.numpy as jnp

from jaxcam.models.base import SplitModel

Array = jax.Array


def cam(model: SplitModel, feature_map: Array, class_index: Array) -> Array:
    """CAM map ``relu(sum_k w^c_k A^k)`` at feature resolution.

    Eq. 4 without its 1/z, which the normalisation removes. The relu is not in the
    paper's eq. 4; jaxcam applies it, as Grad-CAM's eq. 6 does, so that negative
    evidence is not shown as weak positive evidence after normalisation and eq. 12
    (CAM == Grad-CAM for a GAP -> dense head) holds for the whole map.

    Args:
      model: needs the plain GAP -> dense head (``model.class_weights()``).
      feature_map: A, (h, w, K).
      class_index: c, integer scalar.

    Returns:
      L^c, (h, w).
    """
    weights = model.class_weights()[:, class_index]
    return jax.nn.relu(jnp.einsum("hwk,k->hw", feature_map, weights))
