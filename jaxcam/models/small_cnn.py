"""A small VGG-style CNN: the foundation's fast model for the phantom X-rays."""

from __future__ import annotations

from typing import ClassVar

import flax.linen as nn
import jax


class SmallCNN(nn.Module):
    """Stages of (conv3x3 -> BatchNorm -> ReLU) x 2, a 2x2 max-pool between stages.

    Input (B, H, W, C) -> feature map A (B, H / 2^(S-1), W / 2^(S-1), widths[-1]).
    With the defaults a 128x128 image gives a 16x16x64 map.
    """

    widths: tuple[int, ...] = (8, 16, 32, 64)
    min_input_size: ClassVar[int] = 8

    @nn.compact
    def __call__(self, x: jax.Array, train: bool = False) -> jax.Array:
        for stage, width in enumerate(self.widths):
            if stage > 0:
                x = nn.max_pool(x, (2, 2), strides=(2, 2))
            for _ in range(2):
                x = nn.Conv(width, (3, 3), use_bias=False)(x)
                x = nn.BatchNorm(use_running_average=not train, momentum=0.9)(x)
                x = nn.relu(x)
        return x
