"""Inception-ResNet-v2 backbone (Szegedy et al. 2017, "Inception-v4, Inception-ResNet
and the Impact of Residual Connections on Learning", AAAI).

The structure is that of ``keras.applications.InceptionResNetV2`` (itself the
TF-slim layout, which differs from the paper's diagrams in some filter counts and in
the number of blocks: 10 / 20 / 10 instead of 5 / 10 / 5). Shapes at 299x299:

    stem (VALID convs, two 3x3/2 max-pools)   -> 35 x 35 x 192
    mixed_5b (Inception-A)                    -> 35 x 35 x 320
    10 x block35, residual scale 0.17         -> 35 x 35 x 320
    mixed_6a (Reduction-A)                    -> 17 x 17 x 1088
    20 x block17, residual scale 0.1          -> 17 x 17 x 1088
    mixed_7a (Reduction-B)                    ->  8 x  8 x 2080
    10 x block8, scale 0.2 (last: 1.0, no ReLU) -> 8 x 8 x 2080
    conv_7b 1x1                               ->  8 x  8 x 1536   (= A)

As in Keras' ``conv2d_bn``, every conv has no bias and is followed by BatchNorm
*without* a scale (gamma) -- epsilon 1e-3, momentum 0.99 -- and a ReLU; the 1x1
"up" projection closing each residual block has a bias and no BatchNorm.
"""

from __future__ import annotations

from typing import Any, ClassVar

import flax.linen as nn
import jax
import jax.numpy as jnp

Array = jax.Array
Kernel = int | tuple[int, int]

# Residual branches of each block kind: per branch, (filters, kernel) of each conv.
_BLOCK_BRANCHES: dict[str, tuple[tuple[tuple[int, Kernel], ...], ...]] = {
    "block35": (((32, 1),), ((32, 1), (32, 3)), ((32, 1), (48, 3), (64, 3))),
    "block17": (((192, 1),), ((128, 1), (160, (1, 7)), (192, (7, 1)))),
    "block8": (((192, 1),), ((192, 1), (224, (1, 3)), (256, (3, 1)))),
}


def _pair(kernel: Kernel) -> tuple[int, int]:
    return (kernel, kernel) if isinstance(kernel, int) else tuple(kernel)  # type: ignore[return-value]


class ConvBN(nn.Module):
    """Keras ``conv2d_bn``: conv (no bias) -> BatchNorm (no scale) -> optional ReLU."""

    features: int
    kernel: Kernel
    strides: int = 1
    padding: str = "SAME"
    activate: bool = True

    @nn.compact
    def __call__(self, x: Array, train: bool = False) -> Array:
        x = nn.Conv(
            self.features,
            _pair(self.kernel),
            strides=(self.strides, self.strides),
            padding=self.padding,
            use_bias=False,
            name="conv",
        )(x)
        x = nn.BatchNorm(
            use_running_average=not train, use_scale=False, momentum=0.99, epsilon=1e-3, name="bn"
        )(x)
        return nn.relu(x) if self.activate else x


class InceptionResNetBlock(nn.Module):
    """Residual Inception block: x -> act(x + scale * up(concat(branches(x)))).

    ``kind`` is ``block35`` (35x35 grid), ``block17`` (17x17) or ``block8`` (8x8);
    the shape (B, h, w, C) is preserved.
    """

    kind: str
    scale: float
    activate: bool = True
    width_scale: float = 1.0

    @nn.compact
    def __call__(self, x: Array, train: bool = False) -> Array:
        if self.kind not in _BLOCK_BRANCHES:
            raise ValueError(
                f"block kind must be one of {tuple(_BLOCK_BRANCHES)}, got {self.kind!r}"
            )
        branches = []
        for b, convs in enumerate(_BLOCK_BRANCHES[self.kind]):
            y = x
            for c, (filters, kernel) in enumerate(convs):
                y = ConvBN(_scaled(filters, self.width_scale), kernel, name=f"branch{b}_conv{c}")(
                    y, train
                )
            branches.append(y)
        mixed = jnp.concatenate(branches, axis=-1)
        up = nn.Conv(x.shape[-1], (1, 1), use_bias=True, name="up")(mixed)
        x = x + self.scale * up
        return nn.relu(x) if self.activate else x


def _scaled(filters: int, width_scale: float) -> int:
    return max(1, round(filters * width_scale))


class InceptionResNetV2(nn.Module):
    """Inception-ResNet-v2 backbone: normalised images (B, H, W, C) -> A (B, h, w, 1536).

    Attributes:
      repeats: number of block35 / block17 / block8 residual blocks (Keras: 10, 20, 10).
        The last block8 has residual scale 1.0 and no ReLU, as in Keras.
      width_scale: multiplies every conv's filter count (1.0 = Keras); the residual
        "up" convs follow the trunk width. Shrink it for fast tests.

    ``min_input_size`` is 75, Keras' minimum: the VALID stem and reductions map
    75x75 to a 1x1 map (299 -> 8x8), and 74 would leave nothing.
    """

    repeats: tuple[int, int, int] = (10, 20, 10)
    width_scale: float = 1.0
    min_input_size: ClassVar[int] = 75

    def _conv(self, features: int, kernel: Kernel, name: str, **kwargs: Any) -> ConvBN:
        return ConvBN(_scaled(features, self.width_scale), kernel, name=name, **kwargs)

    @nn.compact
    def __call__(self, x: Array, train: bool = False) -> Array:
        if len(self.repeats) != 3 or min(self.repeats) < 0:
            raise ValueError(f"repeats must be three non-negative ints, got {self.repeats}")
        if self.width_scale <= 0:
            raise ValueError(f"width_scale must be > 0, got {self.width_scale}")
        conv = self._conv
        valid = {"padding": "VALID"}

        def max_pool(y: Array) -> Array:
            return nn.max_pool(y, (3, 3), strides=(2, 2), padding="VALID")

        # Stem: 299 -> 149 -> 147 -> 147 -> 73 -> 73 -> 71 -> 35 (x 192).
        x = conv(32, 3, "conv_1a", strides=2, **valid)(x, train)
        x = conv(32, 3, "conv_2a", **valid)(x, train)
        x = conv(64, 3, "conv_2b")(x, train)
        x = max_pool(x)
        x = conv(80, 1, "conv_3b", **valid)(x, train)
        x = conv(192, 3, "conv_4a", **valid)(x, train)
        x = max_pool(x)

        # mixed_5b (Inception-A): 35 x 35 x 320.
        b0 = conv(96, 1, "mixed_5b_b0_conv0")(x, train)
        b1 = conv(48, 1, "mixed_5b_b1_conv0")(x, train)
        b1 = conv(64, 5, "mixed_5b_b1_conv1")(b1, train)
        b2 = conv(64, 1, "mixed_5b_b2_conv0")(x, train)
        b2 = conv(96, 3, "mixed_5b_b2_conv1")(b2, train)
        b2 = conv(96, 3, "mixed_5b_b2_conv2")(b2, train)
        # Keras/TF "same" average pooling does not count the padded zeros.
        b3 = nn.avg_pool(x, (3, 3), strides=(1, 1), padding="SAME", count_include_pad=False)
        b3 = conv(64, 1, "mixed_5b_b3_conv0")(b3, train)
        x = jnp.concatenate([b0, b1, b2, b3], axis=-1)

        x = self._blocks(x, "block35", 0.17, self.repeats[0], train)

        # mixed_6a (Reduction-A): 17 x 17 x 1088.
        b0 = conv(384, 3, "mixed_6a_b0_conv0", strides=2, **valid)(x, train)
        b1 = conv(256, 1, "mixed_6a_b1_conv0")(x, train)
        b1 = conv(256, 3, "mixed_6a_b1_conv1")(b1, train)
        b1 = conv(384, 3, "mixed_6a_b1_conv2", strides=2, **valid)(b1, train)
        x = jnp.concatenate([b0, b1, max_pool(x)], axis=-1)

        x = self._blocks(x, "block17", 0.1, self.repeats[1], train)

        # mixed_7a (Reduction-B): 8 x 8 x 2080.
        b0 = conv(256, 1, "mixed_7a_b0_conv0")(x, train)
        b0 = conv(384, 3, "mixed_7a_b0_conv1", strides=2, **valid)(b0, train)
        b1 = conv(256, 1, "mixed_7a_b1_conv0")(x, train)
        b1 = conv(288, 3, "mixed_7a_b1_conv1", strides=2, **valid)(b1, train)
        b2 = conv(256, 1, "mixed_7a_b2_conv0")(x, train)
        b2 = conv(288, 3, "mixed_7a_b2_conv1")(b2, train)
        b2 = conv(320, 3, "mixed_7a_b2_conv2", strides=2, **valid)(b2, train)
        x = jnp.concatenate([b0, b1, b2, max_pool(x)], axis=-1)

        x = self._blocks(x, "block8", 0.2, self.repeats[2], train, plain_last=True)

        # conv_7b: 8 x 8 x 1536.
        return conv(1536, 1, "conv_7b")(x, train)

    def _blocks(
        self, x: Array, kind: str, scale: float, count: int, train: bool, plain_last: bool = False
    ) -> Array:
        for i in range(count):
            last = plain_last and i == count - 1
            x = InceptionResNetBlock(
                kind,
                scale=1.0 if last else scale,
                activate=not last,
                width_scale=self.width_scale,
                name=f"{kind}_{i + 1}",
            )(x, train)
        return x


def inception_resnet_v2(**kwargs: Any) -> InceptionResNetV2:
    """Inception-ResNet-v2 backbone with Keras' defaults: 299x299 -> 8x8x1536."""
    return InceptionResNetV2(**kwargs)


__all__ = ["ConvBN", "InceptionResNetBlock", "InceptionResNetV2", "inception_resnet_v2"]
