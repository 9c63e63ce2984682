"""Initialising a classifier's variables, or only their shapes (for restoring checkpoints)."""

from __future__ import annotations

import functools
from typing import Any

import jax
import jax.numpy as jnp

from jaxcam.models.base import CAMClassifier

Array = jax.Array


@functools.partial(jax.jit, static_argnums=(0, 1))
def _init(model: CAMClassifier, image_shape: tuple[int, ...], key: Array) -> Any:
    return model.init(key, jnp.zeros((1, *image_shape), jnp.float32))


def init_variables(model: CAMClassifier, image_shape: tuple[int, ...], seed: int) -> Any:
    """Variables of ``model`` for images of shape (H, W, C) (compiled once per model)."""
    return _init(model, tuple(image_shape), jax.random.key(seed))


def variable_shapes(model: CAMClassifier, image_shape: tuple[int, ...]) -> Any:
    """The variables' structure, shapes and dtypes (``jax.ShapeDtypeStruct`` leaves) for
    images of shape (H, W, C), without computing them: what restoring a checkpoint needs."""
    return jax.eval_shape(lambda key: _init(model, tuple(image_shape), key), jax.random.key(0))
