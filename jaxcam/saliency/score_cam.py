"""Score-CAM (Wang et al. 2020, "Score-CAM: score-weighted visual explanations for
convolutional neural networks", CVPR workshops)."""

from __future__ import annotations

import jax
import jax.numpy as jnp

from jaxcam.checks import nan_if_out_of_range
from jaxcam.derivatives import check_chunk_size
from jaxcam.models.outputs import apply_output
from jaxcam.models.protocol import Explainable, check_explained

Array = jax.Array
SCORE_CAM_WEIGHTS: tuple[str, ...] = ("softmax", "increase")


def channel_mask(channel: Array, size: tuple[int, int]) -> Array:
    """One channel A^k (h, w) -> its mask H^k (H, W) in [0, 1].

    Bilinear upsampling to the image size, then min-max normalisation (the paper's
    ``s(Up(A^k))``). A channel that is constant after upsampling carries no spatial
    information and gets the all-zero mask (its masked image is the black image).
    """
    upsampled = jax.image.resize(channel, size, method="bilinear")
    low, high = jnp.min(upsampled), jnp.max(upsampled)
    spread = high - low
    usable = spread > 0
    return jnp.where(usable, (upsampled - low) / jnp.where(usable, spread, 1.0), 0.0)


def image_logits(model: Explainable, image: Array) -> Array:
    """The whole network's logits (classes,) for one image (H, W, C): ``model.image_logits``."""
    return model.image_logits(image)


def score_cam(
    model: Explainable,
    feature_map: Array,
    class_index: Array,
    *,
    image: Array,
    weights: str = "softmax",
    chunk_size: int | None = 16,
) -> Array:
    """Score-CAM map ``relu(sum_k a_k A^k)``, with ``a_k`` from one masked forward per channel.

    Each channel's mask ``H^k`` (:func:`channel_mask`) multiplies the raw image
    (``X o H^k``: masking goes towards black, 0, as AD's explanation image does), and
    the whole network scores the masked image:

    * ``weights="softmax"`` (the paper's Algorithm 1): ``a = softmax_k(S^c(X o H^k))``,
      the class logit of each masked image, normalised over the K channels (the
      baseline term ``- S^c(X_b)`` of Definition 1 cancels in the softmax);
    * ``weights="increase"`` (Definition 1, the increase of confidence):
      ``a_k = Y^c(X o H^k) - Y^c(X_b)``, Y the model's output, X_b the black image.

    Args:
      model: any bound split model (a :class:`jaxcam.models.LayerModel` too: the masks
        come from A_L, the forwards run the whole network).
      feature_map: A, (h, w, K), of ``image``.
      class_index: c, integer scalar in [0, classes) (checked when concrete; NaN map
        when traced and out of range).
      image: the raw image X (H, W, C) that A comes from (the evaluation and
        ``saliency_maps`` pass it).
      weights: ``softmax`` or ``increase``.
      chunk_size: masked images per batched forward (``jax.lax.map`` over chunks of the K
        channels, memory-bounded); ``None``: all K at once.

    Returns:
      L^c, (h, w). Cost: K forwards of the whole network per image (``increase``: K + 1),
      e.g. 64 for the small CNN, 512 for ResNet-18, 2048 for ResNet-50.
    """
    check_explained(model, feature_map, class_index)
    chunk_size = check_chunk_size(chunk_size)
    if weights not in SCORE_CAM_WEIGHTS:
        raise ValueError(f"weights must be one of {SCORE_CAM_WEIGHTS}, got {weights!r}")
    if getattr(image, "ndim", None) != 3:
        shape = getattr(image, "shape", None)
        raise ValueError(f"score_cam takes one image of shape (H, W, C), got shape {shape}")
    size = (image.shape[0], image.shape[1])
    channels = jnp.moveaxis(feature_map, -1, 0)  # (K, h, w)

    def masked_logits(channel: Array) -> Array:
        mask = channel_mask(channel, size).astype(image.dtype)
        return image_logits(model, image * mask[..., None])

    count = channels.shape[0]
    batch = count if chunk_size is None else min(chunk_size, count)
    logits = jax.lax.map(masked_logits, channels, batch_size=batch)  # (K, classes)
    with jax.default_matmul_precision("highest"):
        if weights == "softmax":
            channel_weights = jax.nn.softmax(logits[:, class_index])
        else:
            black = apply_output(image_logits(model, jnp.zeros_like(image)), model.output)
            masked = apply_output(logits, model.output)[:, class_index]
            channel_weights = masked - black[class_index]
        saliency = jax.nn.relu(jnp.einsum("hwk,k->hw", feature_map, channel_weights))
    return nan_if_out_of_range(saliency, class_index, model.num_classes)
