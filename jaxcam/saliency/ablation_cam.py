"""Ablation-CAM (Desai & Ramaswamy 2020, "Ablation-CAM: visual explanations for deep
convolutional network via gradient-free localization", WACV)."""

from __future__ import annotations

import jax
import jax.numpy as jnp

from jaxcam.checks import nan_if_out_of_range
from jaxcam.derivatives import check_chunk_size
from jaxcam.models.outputs import apply_output, check_output_activation
from jaxcam.models.protocol import Explainable, check_explained

Array = jax.Array

# Automatic chunking of the general path: (channels in a chunk) x (elements of A) below this.
_CHUNK_ELEMENTS = 1 << 22


def ablated_logits(
    model: Explainable,
    feature_map: Array,
    *,
    path: str = "auto",
    chunk_size: int | None = None,
) -> Array:
    """Logits (K, classes) with channel k of A (h, w, K) set to 0, for every k.

    ``pooled`` (``auto`` picks it when ``model.has_linear_pooling``): the head reads A
    only through ``s = GAP(A) @ M + b`` (M the first dense kernel), and zeroing channel k
    moves s by ``-GAP(A)_k M_k`` exactly, so the K ablated heads start after that layer
    (``logits_after_first_layer`` vmapped over K rows): no pass over A at all.
    ``general``: ``model.logits`` vmapped over the K ablated maps, in chunks of
    ``chunk_size`` (``None``: automatic, ~16 MB of maps per chunk); for a
    :class:`jaxcam.models.LayerModel` each is a pass through the rest of the network.
    """
    if path not in ("auto", "pooled", "general"):
        raise ValueError(f"path must be 'auto', 'pooled' or 'general', got {path!r}")
    chunk_size = check_chunk_size(chunk_size)
    pooled_head = model.has_linear_pooling
    if path == "pooled" and not pooled_head:
        raise ValueError(
            "path='pooled' needs a head that starts with GAP then the first dense layer "
            "(has_linear_pooling): use path='general' or 'auto'"
        )
    channels = feature_map.shape[-1]
    if path == "pooled" or (path == "auto" and pooled_head):
        kernel, bias = model.first_layer()
        pooled = jnp.mean(feature_map, axis=(0, 1))
        first = pooled @ kernel + bias  # (m,)
        ablated = first[None, :] - pooled[:, None] * kernel  # (K, m)
        return jax.vmap(model.logits_after_first_layer)(ablated)

    def without(k: Array) -> Array:
        keep = (jnp.arange(channels) != k).astype(feature_map.dtype)
        return model.logits(feature_map * keep)

    if chunk_size is None:
        chunk_size = max(1, _CHUNK_ELEMENTS // feature_map.size)
    indices = jnp.arange(channels)
    return jax.lax.map(without, indices, batch_size=min(chunk_size, channels))


def ablation_cam(
    model: Explainable,
    feature_map: Array,
    class_index: Array,
    *,
    score: str | None = None,
    path: str = "auto",
    chunk_size: int | None = None,
) -> Array:
    """Ablation-CAM map ``relu(sum_k w_k A^k)``, ``w_k = (Y^c - Y^c_k) / Y^c``.

    The paper's ablation weight: ``Y^c_k`` is the class score with channel k of A set
    to 0 (:func:`ablated_logits`), i.e. the relative drop of the score when the channel
    is removed. ``score`` names Y (default the model's output activation: ``relu``,
    ``softmax``, ``linear``, ``exp``). For ``softmax`` and ``exp`` the ratio is taken in
    log space, ``1 - exp(log Y_k - log Y)``, so that saturated outputs keep their
    differences; where ``Y^c == 0`` (a ReLU output at 0) or the ratio is not finite,
    the weights are 0 and so is the map.

    Args:
      model: any bound split model.
      feature_map: A, (h, w, K).
      class_index: c, integer scalar in [0, classes) (checked when concrete; NaN map
        when traced and out of range).
      score: the class score (default the model's output activation).
      path: ``auto``, ``pooled`` or ``general`` (:func:`ablated_logits`).
      chunk_size: ablated maps per batched head pass on the general path.

    Returns:
      L^c, (h, w). Cost: pooled head, K passes through the layers after the first dense
      layer (for GAP -> dense: one K x classes product), no pass over A; general head
      (or a layer inside the backbone), K passes through the rest of the network.
    """
    check_explained(model, feature_map, class_index)
    score = check_output_activation(score or model.output)
    with jax.default_matmul_precision("highest"):
        logits = model.logits(feature_map)
        ablated = ablated_logits(model, feature_map, path=path, chunk_size=chunk_size)
        if score in ("softmax", "exp"):
            if score == "softmax":
                log_y = jax.nn.log_softmax(logits)[class_index]
                log_ablated = jax.nn.log_softmax(ablated, axis=-1)[:, class_index]
            else:
                log_y, log_ablated = logits[class_index], ablated[:, class_index]
            weights = -jnp.expm1(log_ablated - log_y)
        else:
            y = apply_output(logits, score)[class_index]
            y_ablated = apply_output(ablated, score)[:, class_index]
            usable = y != 0
            weights = (y - y_ablated) / jnp.where(usable, y, 1.0)
            weights = jnp.where(usable, weights, 0.0)
        weights = jnp.where(jnp.isfinite(weights), weights, 0.0)
        saliency = jax.nn.relu(jnp.einsum("hwk,k->hw", feature_map, weights))
    return nan_if_out_of_range(saliency, class_index, model.num_classes)
