"""ConvNeXt backbones (Liu et al. 2022, "A ConvNet for the 2020s").

The layout follows torchvision's ``convnext_tiny``: a 4x4 stride-4 patchify stem
(conv with bias, then LayerNorm over channels); four stages of blocks; between stages
a downsample (LayerNorm, then a 2x2 stride-2 conv with bias). A block is

    depthwise 7x7 conv (bias) -> LayerNorm -> Dense 4*dim -> GELU (exact erf form)
    -> Dense dim -> layer scale (a learned per-channel vector, init 1e-6) -> + input

Every LayerNorm has epsilon 1e-6. Stochastic depth is the identity at inference and
is left out. Weights are initialised as in torchvision: kernels truncated normal
(std 0.02), biases zero.

Difference from torchvision, for CAM: torchvision applies its final LayerNorm to the
*pooled* features (avgpool -> LayerNorm -> Linear). A CAM head must be GAP -> dense,
so the final LayerNorm (``final_norm``, same parameters) is applied per position,
before pooling, inside the backbone. The backbone returns that normalised last map:
(B, H, W, C) -> (B, floor(H / 32), floor(W / 32), dims[-1]) (7x7x768 at 224x224).

Layer names (:func:`jaxcam.models.layer_names`): ``backbone/stem``,
``backbone/stage{s}_block{b}`` (1-based), ``backbone/downsample{s}`` (s >= 2, the
downsample in front of stage s), ``backbone/final_norm`` (the backbone's output) and
the modules inside them (``.../dwconv``, ``.../pwconv1``...).
"""

from __future__ import annotations

from typing import Any, ClassVar

import flax.linen as nn
import jax

Array = jax.Array

_EPSILON = 1e-6
_LAYER_SCALE_INIT = 1e-6
_KERNEL_INIT = nn.initializers.truncated_normal(0.02)


def _layer_norm(name: str) -> nn.LayerNorm:
    """LayerNorm over the channel (last) axis, epsilon 1e-6, as torchvision's."""
    return nn.LayerNorm(epsilon=_EPSILON, use_fast_variance=False, name=name)


def _conv(features: int, kernel: int, strides: int, name: str, **kwargs: Any) -> nn.Conv:
    """Conv with bias and no padding unless given (torchvision's ``padding=0``)."""
    kwargs.setdefault("padding", "VALID")
    return nn.Conv(
        features,
        (kernel, kernel),
        strides=(strides, strides),
        kernel_init=_KERNEL_INIT,
        name=name,
        **kwargs,
    )


class Stem(nn.Module):
    """Patchify stem: 4x4 stride-4 conv -> LayerNorm, (B, H, W, C) -> (B, H/4, W/4, features)."""

    features: int

    @nn.compact
    def __call__(self, x: Array) -> Array:
        x = _conv(self.features, 4, 4, name="conv")(x)
        return _layer_norm("norm")(x)


class Downsample(nn.Module):
    """LayerNorm -> 2x2 stride-2 conv: (B, h, w, C) -> (B, h/2, w/2, features)."""

    features: int

    @nn.compact
    def __call__(self, x: Array) -> Array:
        x = _layer_norm("norm")(x)
        return _conv(self.features, 2, 2, name="conv")(x)


class ConvNeXtBlock(nn.Module):
    """One ConvNeXt block (see the module doc): (B, h, w, dim) -> (B, h, w, dim)."""

    dim: int

    @nn.compact
    def __call__(self, x: Array) -> Array:
        y = _conv(
            self.dim,
            7,
            1,
            name="dwconv",
            padding=((3, 3), (3, 3)),
            feature_group_count=self.dim,
        )(x)
        y = _layer_norm("norm")(y)
        y = nn.Dense(4 * self.dim, kernel_init=_KERNEL_INIT, name="pwconv1")(y)
        y = nn.gelu(y, approximate=False)
        y = nn.Dense(self.dim, kernel_init=_KERNEL_INIT, name="pwconv2")(y)
        layer_scale = self.param(
            "layer_scale", nn.initializers.constant(_LAYER_SCALE_INIT), (self.dim,)
        )
        return x + layer_scale * y


class ConvNeXt(nn.Module):
    """ConvNeXt backbone: normalised images (B, H, W, C) -> normalised last map A (B, h, w, K).

    Attributes:
      depths: blocks per stage, (3, 3, 9, 3) for ConvNeXt-T.
      dims: channels per stage, (96, 192, 384, 768) for ConvNeXt-T; K = dims[-1].
        Shrink both for fast tests.

    ``min_input_size`` is 32, the total stride of four stages (stem 4 x three
    downsamples): at 32x32 the map is 1x1. Sizes that are not multiples of the stride
    are floored, as in torchvision (the convs have no padding).
    """

    depths: tuple[int, ...] = (3, 3, 9, 3)
    dims: tuple[int, ...] = (96, 192, 384, 768)
    min_input_size: ClassVar[int] = 32

    @nn.compact
    def __call__(self, x: Array, train: bool = False) -> Array:
        del train  # no BatchNorm, no dropout: the same forward in training
        if not self.depths or len(self.depths) != len(self.dims):
            raise ValueError(
                f"depths and dims must be non-empty and of the same length, got "
                f"depths={self.depths}, dims={self.dims}"
            )
        if min(self.depths) < 1 or min(self.dims) < 1:
            raise ValueError(
                f"every depth and dim must be >= 1, got depths={self.depths}, dims={self.dims}"
            )
        x = Stem(self.dims[0], name="stem")(x)
        for stage, (depth, dim) in enumerate(zip(self.depths, self.dims, strict=True), start=1):
            if stage > 1:
                x = Downsample(dim, name=f"downsample{stage}")(x)
            for index in range(1, depth + 1):
                x = ConvNeXtBlock(dim, name=f"stage{stage}_block{index}")(x)
        return _layer_norm("final_norm")(x)


def convnext_tiny(**kwargs: Any) -> ConvNeXt:
    """ConvNeXt-T backbone (depths 3-3-9-3, dims 96-192-384-768): 224x224 -> 7x7x768.

    Keyword arguments override the attributes (e.g. tiny ``depths`` and ``dims``).
    """
    return ConvNeXt(**kwargs)


__all__ = ["ConvNeXt", "ConvNeXtBlock", "Downsample", "Stem", "convnext_tiny"]
