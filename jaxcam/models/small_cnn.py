"""A small VGG-style CNN: the foundation's fast model for the phantom X-rays."""

from __future__ import annotations

from typing import ClassVar

import flax.linen as nn
import jax

#: The nonlinearities :class:`SmallCNN` accepts; ``gelu`` is the exact (erf) form.
ACTIVATIONS: tuple[str, ...] = ("relu", "gelu")


class SmallCNN(nn.Module):
    """Stages of (conv3x3 -> BatchNorm -> activation) x 2, a 2x2 max-pool between stages.

    Input (B, H, W, C) -> feature map A (B, H / 2^(S-1), W / 2^(S-1), widths[-1]).
    With the defaults a 128x128 image gives a 16x16x64 map. ``activation`` is ``relu``
    (default) or ``gelu`` (exact erf form, smooth: nonzero 2nd/3rd derivatives);
    ValueError otherwise. It adds no parameters, so the variables do not depend on it.
    """

    widths: tuple[int, ...] = (8, 16, 32, 64)
    activation: str = "relu"
    min_input_size: ClassVar[int] = 8

    def __post_init__(self) -> None:
        if self.activation not in ACTIVATIONS:
            raise ValueError(f"activation must be one of {ACTIVATIONS}, got {self.activation!r}")
        super().__post_init__()

    @nn.compact
    def __call__(self, x: jax.Array, train: bool = False) -> jax.Array:
        for stage, width in enumerate(self.widths):
            if stage > 0:
                x = nn.max_pool(x, (2, 2), strides=(2, 2))
            for _ in range(2):
                x = nn.Conv(width, (3, 3), use_bias=False)(x)
                x = nn.BatchNorm(use_running_average=not train, momentum=0.9)(x)
                x = nn.relu(x) if self.activation == "relu" else nn.gelu(x, approximate=False)
        return x
