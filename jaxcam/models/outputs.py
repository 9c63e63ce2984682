"""The classifier's output activations: logits S -> scores Y (the paper's ReLU, and others)."""

from __future__ import annotations

import jax
import jax.numpy as jnp

Array = jax.Array

OUTPUT_ACTIVATIONS: tuple[str, ...] = ("relu", "softmax", "linear", "exp")


def check_output_activation(output: str) -> str:
    if output not in OUTPUT_ACTIVATIONS:
        raise ValueError(f"output activation must be one of {OUTPUT_ACTIVATIONS}, got {output!r}")
    return output


def apply_output(logits: Array, output: str) -> Array:
    """Output activation on logits ``S`` (..., classes) -> scores ``Y`` (..., classes)."""
    check_output_activation(output)
    if output == "relu":
        return jax.nn.relu(logits)
    if output == "softmax":
        return jax.nn.softmax(logits, axis=-1)
    if output == "exp":
        return jnp.exp(logits)
    return logits
