"""Head-only models: the input *is* the feature map A, for studying heads directly."""

from __future__ import annotations

from typing import ClassVar

import flax.linen as nn
import jax
import jax.numpy as jnp

from jaxcam.models.base import CAMClassifier, SplitModel, bind


class FeatureMapInput(nn.Module):
    """Identity backbone: A = the input, (B, h, w, K) -> (B, h, w, K)."""

    min_input_size: ClassVar[int] = 1

    def __call__(self, x: jax.Array, train: bool = False) -> jax.Array:
        return x


def head_only_model(
    shape: tuple[int, int, int],
    num_classes: int,
    output: str = "relu",
    hidden: tuple[int, ...] = (),
    seed: int = 0,
    dtype: jnp.dtype = jnp.float32,
) -> SplitModel:
    """A randomly initialised CAM head (GAP -> [GELU MLP] -> dense) over A of ``shape``.

    Normalisation is the identity (mean 0, std 1), so ``model.features(A) == A`` and
    the per-example saliency functions take any A of shape (h, w, K).
    """
    module = CAMClassifier(
        backbone=FeatureMapInput(),
        num_classes=num_classes,
        output=output,
        hidden=hidden,
        in_channels=shape[-1],
        pixel_mean=0.0,
        pixel_std=1.0,
    )
    variables = module.init(jax.random.key(seed), jnp.zeros((1, *shape), dtype))
    return bind(module, jax.tree.map(lambda v: v.astype(dtype), variables))
