"""ResNet backbones (He et al. 2016, "Deep Residual Learning for Image Recognition").

The layout follows torchvision's ResNet ("v1.5"): in a bottleneck block the stride
of a down-sampling block sits on the 3x3 conv, not on the first 1x1 conv as in the
paper. Convolutions have no bias; every conv is followed by BatchNorm (torchvision's
momentum 0.1, i.e. Flax ``momentum=0.9``, and epsilon 1e-5). Padding is explicit and
symmetric, as in torchvision, so a 224x224 image gives a 7x7 map.

The backbone returns the last stage's feature map A (no pooling, no classifier):
(B, H, W, C) -> (B, ceil(H / 32), ceil(W / 32), K), with K = 8 * width for basic
blocks and 32 * width for bottleneck blocks (512 and 2048 at the default width).
"""

from __future__ import annotations

from typing import Any, ClassVar

import flax.linen as nn
import jax

Array = jax.Array

BLOCK_KINDS: tuple[str, ...] = ("basic", "bottleneck")
_EXPANSION = {"basic": 1, "bottleneck": 4}


def _norm(train: bool, **kwargs: Any) -> nn.BatchNorm:
    return nn.BatchNorm(use_running_average=not train, momentum=0.9, epsilon=1e-5, **kwargs)


def _conv(features: int, kernel: int, strides: int = 1, **kwargs: Any) -> nn.Conv:
    pad = kernel // 2
    return nn.Conv(
        features,
        (kernel, kernel),
        strides=(strides, strides),
        padding=((pad, pad), (pad, pad)),
        use_bias=False,
        **kwargs,
    )


def _shortcut(x: Array, y: Array, strides: int, train: bool) -> Array:
    """Identity, or a strided 1x1 projection + BN when the shape changes."""
    if x.shape == y.shape:
        return x
    x = _conv(y.shape[-1], 1, strides, name="downsample_conv")(x)
    return _norm(train, name="downsample_bn")(x)


class BasicBlock(nn.Module):
    """Two 3x3 convs (ResNet-18/34): (B, H, W, C) -> (B, H/s, W/s, features)."""

    features: int
    strides: int = 1

    @nn.compact
    def __call__(self, x: Array, train: bool = False) -> Array:
        y = _conv(self.features, 3, self.strides)(x)
        y = nn.relu(_norm(train)(y))
        y = _conv(self.features, 3)(y)
        y = _norm(train)(y)
        return nn.relu(y + _shortcut(x, y, self.strides, train))


class BottleneckBlock(nn.Module):
    """1x1 -> 3x3 (strided, v1.5) -> 1x1 x4: (B, H, W, C) -> (B, H/s, W/s, 4 * features)."""

    features: int
    strides: int = 1

    @nn.compact
    def __call__(self, x: Array, train: bool = False) -> Array:
        y = _conv(self.features, 1)(x)
        y = nn.relu(_norm(train)(y))
        y = _conv(self.features, 3, self.strides)(y)
        y = nn.relu(_norm(train)(y))
        y = _conv(self.features * _EXPANSION["bottleneck"], 1)(y)
        y = _norm(train)(y)
        return nn.relu(y + _shortcut(x, y, self.strides, train))


class ResNet(nn.Module):
    """ResNet backbone: normalised images (B, H, W, C) -> last stage's map A (B, h, w, K).

    Attributes:
      stage_sizes: blocks per stage, e.g. (2, 2, 2, 2) for ResNet-18,
        (3, 4, 6, 3) for ResNet-50.
      block: ``"basic"`` or ``"bottleneck"``.
      width: base width (64 in the paper); stage ``i`` has ``width * 2**i``
        channels before the bottleneck expansion. Shrink it for fast tests.

    ``min_input_size`` is 32, the network's total stride (stem 4 x three strided
    stages): at 32x32 the map is 1x1; below that the last stages' windows would
    consist mostly of padding.
    """

    stage_sizes: tuple[int, ...] = (2, 2, 2, 2)
    block: str = "basic"
    width: int = 64
    min_input_size: ClassVar[int] = 32

    @nn.compact
    def __call__(self, x: Array, train: bool = False) -> Array:
        if self.block not in BLOCK_KINDS:
            raise ValueError(f"block must be one of {BLOCK_KINDS}, got {self.block!r}")
        if self.width < 1 or not self.stage_sizes or min(self.stage_sizes) < 1:
            raise ValueError(
                f"width and every stage size must be >= 1, got width={self.width}, "
                f"stage_sizes={self.stage_sizes}"
            )
        block_cls = BasicBlock if self.block == "basic" else BottleneckBlock

        # Stem: 7x7/2 conv -> BN -> ReLU -> 3x3/2 max-pool (padding 1).
        x = _conv(self.width, 7, 2, name="stem_conv")(x)
        x = nn.relu(_norm(train, name="stem_bn")(x))
        x = nn.max_pool(x, (3, 3), strides=(2, 2), padding=((1, 1), (1, 1)))

        for stage, num_blocks in enumerate(self.stage_sizes):
            for index in range(num_blocks):
                strides = 2 if stage > 0 and index == 0 else 1
                x = block_cls(
                    self.width * 2**stage,
                    strides=strides,
                    name=f"stage{stage + 1}_block{index + 1}",
                )(x, train=train)
        return x


def resnet18(**kwargs: Any) -> ResNet:
    """ResNet-18 backbone (basic blocks, 2-2-2-2): 224x224 -> 7x7x512."""
    return ResNet(stage_sizes=(2, 2, 2, 2), block="basic", **kwargs)


def resnet50(**kwargs: Any) -> ResNet:
    """ResNet-50 v1.5 backbone (bottleneck blocks, 3-4-6-3): 224x224 -> 7x7x2048."""
    return ResNet(stage_sizes=(3, 4, 6, 3), block="bottleneck", **kwargs)


__all__ = ["BLOCK_KINDS", "BasicBlock", "BottleneckBlock", "ResNet", "resnet18", "resnet50"]
