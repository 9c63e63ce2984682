"""Shared fixtures: tiny models whose feature maps and heads the tests control."""

from __future__ import annotations

from typing import ClassVar

import flax.linen as nn
import jax
import jax.extend
import jax.numpy as jnp
import numpy as np

from jaxcam.models import CAMClassifier, bind

jax.config.update("jax_numpy_dtype_promotion", "strict")


class IdentityBackbone(nn.Module):
    """A = the normalised image itself: the tests then choose A directly."""

    min_input_size: ClassVar[int] = 1

    def __call__(self, x: jax.Array, train: bool = False) -> jax.Array:
        return x


def head_model(
    channels: int = 3,
    num_classes: int = 2,
    output: str = "relu",
    hidden: tuple[int, ...] = (),
    size: int = 4,
    seed: int = 0,
    dtype: jnp.dtype = jnp.float32,
):
    """A bound CAMClassifier whose feature map is its (normalised) input.

    With ``pixel_mean=0, pixel_std=1`` the image *is* A, so per-example saliency
    functions can be called with any A of shape (size, size, channels).
    """
    module = CAMClassifier(
        backbone=IdentityBackbone(),
        num_classes=num_classes,
        output=output,
        hidden=hidden,
        in_channels=channels,
        pixel_mean=0.0,
        pixel_std=1.0,
    )
    variables = module.init(jax.random.key(seed), jnp.zeros((1, size, size, channels), dtype))
    variables = jax.tree.map(lambda v: v.astype(dtype), variables)
    return bind(module, variables)


def random_feature_map(shape, seed: int = 1, dtype=jnp.float32) -> jax.Array:
    """Non-negative A (post-ReLU, as a last conv layer gives)."""
    return jnp.asarray(np.random.default_rng(seed).uniform(0.0, 1.0, size=shape), dtype)


def dot_precisions(closed_jaxpr) -> list:
    """The precision of every dot_general in a traced program, sub-jaxprs included."""
    found = []

    def walk(jaxpr):
        for eqn in jaxpr.eqns:
            if eqn.primitive.name == "dot_general":
                found.append(eqn.params["precision"])
            for sub in jax.extend.core.jaxprs_in_params(eqn.params):
                walk(sub)

    walk(closed_jaxpr.jaxpr)
    return found
