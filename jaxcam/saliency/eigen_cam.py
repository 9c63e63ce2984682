"""Eigen-CAM (Muhammad & Yeasin 2020, "Eigen-CAM: class activation map using principal
components", IJCNN)."""

from __future__ import annotations

import jax
import jax.numpy as jnp

from jaxcam.checks import nan_if_out_of_range
from jaxcam.models.protocol import Explainable, check_explained

Array = jax.Array


def eigen_cam(
    model: Explainable,
    feature_map: Array,
    class_index: Array,
    *,
    centre: bool = False,
) -> Array:
    """Eigen-CAM map: A projected on its first principal direction, ``relu(+-O V_1)``.

    The paper's Eigen-CAM: with ``O`` the (h*w, K) matrix of A (one row per position)
    and ``O = U S V^T`` its SVD, the map is ``O V_1``, V_1 the first right singular vector.

    * **Not centred by default**, as in the paper's equation: for a post-ReLU A (every
      entry >= 0) V_1 is the dominant direction of ``O^T O``, a matrix with non-negative
      entries, so V_1 can be taken >= 0 (Perron-Frobenius) and the map is a
      non-negative mix of channels, like the other CAMs. ``centre=True`` subtracts the
      mean over positions first (PCA proper, as some libraries do): the map then shows
      where A differs most from its average position, including with negative sign.
    * **Sign**: a singular vector's sign is arbitrary; it is fixed so that the
      projection correlates non-negatively with the channel-mean map
      ``m_xy = (1/K) sum_k A_xyk`` (``sum_xy (O V_1)_xy m_xy >= 0``), i.e. the map shows
      where the layer is active rather than where it is silent.
    * **Class-independent**: ``class_index`` is checked but not used; every class gets
      the same map.

    Args:
      model: any bound split model (only its number of classes is used).
      feature_map: A, (h, w, K).
      class_index: c, integer scalar in [0, classes) (checked when concrete; NaN map
        when traced and out of range).
      centre: subtract the mean over positions before the SVD.

    Returns:
      L, (h, w): relu of the projection. Cost: no forward or gradient; one SVD of an
      (h*w, K) matrix, O(h w K min(h w, K)).
    """
    check_explained(model, feature_map, class_index)
    height, width, channels = feature_map.shape
    with jax.default_matmul_precision("highest"):
        matrix = feature_map.reshape(height * width, channels)
        if centre:
            matrix = matrix - jnp.mean(matrix, axis=0, keepdims=True)
        _, _, right = jnp.linalg.svd(matrix, full_matrices=False)
        projection = matrix @ right[0]
        channel_mean = jnp.mean(feature_map, axis=-1).reshape(-1)
        sign = jnp.where(projection @ channel_mean < 0, -1.0, 1.0).astype(projection.dtype)
        saliency = jax.nn.relu(sign * projection).reshape(height, width)
    return nan_if_out_of_range(saliency, class_index, model.num_classes)
