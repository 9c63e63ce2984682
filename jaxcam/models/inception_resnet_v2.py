"""Inception-ResNet-v2 backbone (Szegedy et al. 2017, "Inception-v4, Inception-ResNet
and the Impact of Residual Connections on Learning", AAAI).

The structure is that of ``keras.applications.InceptionResNetV2`` (itself the
TF-slim layout, which differs from the paper's diagrams in some filter counts and in
the number of blocks: 10 / 20 / 10 instead of 5 / 10 / 5). It is written down once, as
the table :data:`IRV2_STRUCTURE`, from which both the Flax module and the Keras weight
import (:mod:`jaxcam.models.keras_weights`) are derived. Shapes at 299x299:

    stem (VALID convs, two 3x3/2 max-pools)   -> 35 x 35 x 192
    mixed_5b (Inception-A)                    -> 35 x 35 x 320
    10 x block35, residual scale 0.17         -> 35 x 35 x 320
    mixed_6a (Reduction-A)                    -> 17 x 17 x 1088
    20 x block17, residual scale 0.1          -> 17 x 17 x 1088
    mixed_7a (Reduction-B)                    ->  8 x  8 x 2080
    10 x block8, scale 0.2 (last: 1.0, no ReLU) -> 8 x 8 x 2080
    conv_7b 1x1                               ->  8 x  8 x 1536   (= A)

As in Keras' ``conv2d_bn``, every conv has no bias and is followed by BatchNorm
*without* a scale (gamma) -- :data:`BN_EPSILON`, :data:`BN_MOMENTUM` -- and a ReLU; the
1x1 "up" projection closing each residual block has a bias and no BatchNorm.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any, ClassVar

import flax.linen as nn
import jax
import jax.numpy as jnp

Array = jax.Array
Kernel = int | tuple[int, int]

BN_EPSILON = 1e-3
BN_MOMENTUM = 0.99
POOL_WINDOW = 3  # every pooling is 3x3
UP_KERNEL = 1  # the residual "up" projection is a 1x1 conv (with bias) to the trunk width


@dataclass(frozen=True)
class Conv:
    """One Keras ``conv2d_bn``: conv (no bias) -> BatchNorm (no scale) -> ReLU.

    ``filters`` is the full-width count (the module multiplies it by ``width_scale``);
    ``padding`` is ``"SAME"`` or ``"VALID"``.
    """

    filters: int
    kernel: Kernel
    strides: int = 1
    padding: str = "SAME"


@dataclass(frozen=True)
class Pool:
    """A :data:`POOL_WINDOW`-square pooling, ``kind`` ``"max"`` or ``"avg"``.

    Average pooling does not count padded zeros (Keras/TF "same" pooling).
    """

    kind: str
    strides: int
    padding: str


Step = Conv | Pool
Branch = tuple[Step, ...]  # the layers of one branch, in forward order

MAX_POOL = Pool("max", strides=2, padding="VALID")
AVG_POOL = Pool("avg", strides=1, padding="SAME")


@dataclass(frozen=True)
class MixedBlock:
    """A block without residual, ``name``: its branches all read the block's input and
    are concatenated on channels (a branch of pools only passes the input's channels).

    Flax names conv ``c`` of branch ``b`` (pools not counted) ``{name}_b{b}_conv{c}``.
    """

    name: str
    branches: tuple[Branch, ...]


@dataclass(frozen=True)
class ResidualStage:
    """``count`` residual blocks ``{kind}_1`` .. ``{kind}_{count}``, each
    ``x -> relu(x + scale * up(concat(branches(x))))`` with ``up`` a 1x1 conv back to
    the width of ``x``. With ``plain_last`` the last block has scale 1.0 and no ReLU.

    Flax names conv ``c`` of branch ``b`` of block ``i`` ``{kind}_{i}/branch{b}_conv{c}``
    and its up projection ``{kind}_{i}/up``.
    """

    kind: str
    count: int
    scale: float
    branches: tuple[tuple[Conv, ...], ...]
    plain_last: bool = False


@dataclass(frozen=True)
class Stage:
    """A mixed block (which sets the trunk width) followed by residual blocks."""

    entry: MixedBlock
    residual: ResidualStage


@dataclass(frozen=True)
class InceptionResNetV2Structure:
    """The whole network: named stem layers (``None`` for a pooling), stages, and the
    final named conv whose output is the feature map A."""

    stem: tuple[tuple[str | None, Step], ...]
    stages: tuple[Stage, ...]
    final: tuple[str, Conv]

    @property
    def repeats(self) -> tuple[int, ...]:
        """Residual blocks per stage."""
        return tuple(stage.residual.count for stage in self.stages)

    def with_repeats(self, repeats: tuple[int, ...]) -> InceptionResNetV2Structure:
        """The same structure with ``repeats[i]`` residual blocks in stage ``i``."""
        if len(repeats) != len(self.stages) or min(repeats, default=0) < 0:
            raise ValueError(f"repeats must be {len(self.stages)} non-negative ints, got {repeats}")
        stages = tuple(
            dataclasses.replace(stage, residual=dataclasses.replace(stage.residual, count=int(n)))
            for stage, n in zip(self.stages, repeats, strict=True)
        )
        return dataclasses.replace(self, stages=stages)

    def trunk_channels(self, width_scale: float = 1.0) -> tuple[int, ...]:
        """Channels after the stem and after each stage's mixed block (which the
        residual blocks keep): (192, 320, 1088, 2080) at full width."""
        channels = [scaled_filters(_last_conv(self.stem).filters, width_scale)]
        for stage in self.stages:
            branch_channels = (
                scaled_filters(_last_conv(branch).filters, width_scale)
                if any(isinstance(step, Conv) for step in branch)
                else channels[-1]
                for branch in stage.entry.branches
            )
            channels.append(sum(branch_channels))
        return tuple(channels)

    def feature_channels(self, width_scale: float = 1.0) -> int:
        """Channels of the feature map A (the final conv's filters)."""
        return scaled_filters(self.final[1].filters, width_scale)


def _last_conv(steps: tuple[Step, ...] | tuple[tuple[str | None, Step], ...]) -> Conv:
    layers = [step[1] if isinstance(step, tuple) else step for step in steps]
    return [layer for layer in layers if isinstance(layer, Conv)][-1]


def scaled_filters(filters: int, width_scale: float) -> int:
    """A conv's filter count at ``width_scale`` (at least 1)."""
    return max(1, round(filters * width_scale))


IRV2_STRUCTURE = InceptionResNetV2Structure(
    # 299 -> 149 -> 147 -> 147 -> 73 -> 73 -> 71 -> 35 (x 192).
    stem=(
        ("conv_1a", Conv(32, 3, strides=2, padding="VALID")),
        ("conv_2a", Conv(32, 3, padding="VALID")),
        ("conv_2b", Conv(64, 3)),
        (None, MAX_POOL),
        ("conv_3b", Conv(80, 1, padding="VALID")),
        ("conv_4a", Conv(192, 3, padding="VALID")),
        (None, MAX_POOL),
    ),
    stages=(
        Stage(
            MixedBlock(  # Inception-A: 35 x 35 x 320
                "mixed_5b",
                (
                    (Conv(96, 1),),
                    (Conv(48, 1), Conv(64, 5)),
                    (Conv(64, 1), Conv(96, 3), Conv(96, 3)),
                    (AVG_POOL, Conv(64, 1)),
                ),
            ),
            ResidualStage(
                "block35",
                count=10,
                scale=0.17,
                branches=(
                    (Conv(32, 1),),
                    (Conv(32, 1), Conv(32, 3)),
                    (Conv(32, 1), Conv(48, 3), Conv(64, 3)),
                ),
            ),
        ),
        Stage(
            MixedBlock(  # Reduction-A: 17 x 17 x 1088
                "mixed_6a",
                (
                    (Conv(384, 3, strides=2, padding="VALID"),),
                    (Conv(256, 1), Conv(256, 3), Conv(384, 3, strides=2, padding="VALID")),
                    (MAX_POOL,),
                ),
            ),
            ResidualStage(
                "block17",
                count=20,
                scale=0.1,
                branches=((Conv(192, 1),), (Conv(128, 1), Conv(160, (1, 7)), Conv(192, (7, 1)))),
            ),
        ),
        Stage(
            MixedBlock(  # Reduction-B: 8 x 8 x 2080
                "mixed_7a",
                (
                    (Conv(256, 1), Conv(384, 3, strides=2, padding="VALID")),
                    (Conv(256, 1), Conv(288, 3, strides=2, padding="VALID")),
                    (Conv(256, 1), Conv(288, 3), Conv(320, 3, strides=2, padding="VALID")),
                    (MAX_POOL,),
                ),
            ),
            ResidualStage(
                "block8",
                count=10,
                scale=0.2,
                branches=((Conv(192, 1),), (Conv(192, 1), Conv(224, (1, 3)), Conv(256, (3, 1)))),
                plain_last=True,
            ),
        ),
    ),
    final=("conv_7b", Conv(1536, 1)),
)
FEATURE_CHANNELS = IRV2_STRUCTURE.feature_channels()  # 1536


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
            use_running_average=not train,
            use_scale=False,
            momentum=BN_MOMENTUM,
            epsilon=BN_EPSILON,
            name="bn",
        )(x)
        return nn.relu(x) if self.activate else x


def _pool(x: Array, pool: Pool) -> Array:
    window, strides = (POOL_WINDOW, POOL_WINDOW), (pool.strides, pool.strides)
    if pool.kind == "max":
        return nn.max_pool(x, window, strides=strides, padding=pool.padding)
    if pool.kind == "avg":
        return nn.avg_pool(
            x, window, strides=strides, padding=pool.padding, count_include_pad=False
        )
    raise ValueError(f"pool kind must be 'max' or 'avg', got {pool.kind!r}")


def _branch(x: Array, steps: Branch, prefix: str, width_scale: float, train: bool) -> Array:
    """Run one branch (inside a compact method); its conv ``c`` is ``{prefix}_conv{c}``."""
    convs = 0
    for step in steps:
        if isinstance(step, Pool):
            x = _pool(x, step)
            continue
        conv = ConvBN(
            scaled_filters(step.filters, width_scale),
            step.kernel,
            strides=step.strides,
            padding=step.padding,
            name=f"{prefix}_conv{convs}",
        )
        x = conv(x, train)
        convs += 1
    return x


class InceptionResNetBlock(nn.Module):
    """Residual Inception block: x -> act(x + scale * up(concat(branches(x)))).

    ``branches`` are a :class:`ResidualStage`'s; the shape (B, h, w, C) is preserved.
    """

    branches: tuple[tuple[Conv, ...], ...]
    scale: float
    activate: bool = True
    width_scale: float = 1.0

    @nn.compact
    def __call__(self, x: Array, train: bool = False) -> Array:
        mixed = jnp.concatenate(
            [
                _branch(x, convs, f"branch{b}", self.width_scale, train)
                for b, convs in enumerate(self.branches)
            ],
            axis=-1,
        )
        up = nn.Conv(x.shape[-1], _pair(UP_KERNEL), use_bias=True, name="up")(mixed)
        x = x + self.scale * up
        return nn.relu(x) if self.activate else x


class InceptionResNetV2(nn.Module):
    """Inception-ResNet-v2 backbone: normalised images (B, H, W, C) -> A (B, h, w, 1536).

    Attributes:
      repeats: residual blocks per stage (block35 / block17 / block8); None (the
        default) takes ``structure``'s counts (Keras: 10, 20, 10).
      width_scale: multiplies every conv's filter count (1.0 = Keras); the residual
        "up" convs follow the trunk width. Shrink it for fast tests.
      structure: the layer table (default :data:`IRV2_STRUCTURE`, Keras' network).

    ``min_input_size`` is 75, Keras' minimum: the VALID stem and reductions map
    75x75 to a 1x1 map (299 -> 8x8), and 74 would leave nothing.
    """

    repeats: tuple[int, ...] | None = None
    width_scale: float = 1.0
    structure: InceptionResNetV2Structure = IRV2_STRUCTURE
    min_input_size: ClassVar[int] = 75

    @property
    def layout(self) -> InceptionResNetV2Structure:
        """``structure`` with ``repeats`` applied: the network this module builds."""
        if self.repeats is None:
            return self.structure
        return self.structure.with_repeats(tuple(self.repeats))

    @nn.compact
    def __call__(self, x: Array, train: bool = False) -> Array:
        layout = self.layout
        if self.width_scale <= 0:
            raise ValueError(f"width_scale must be > 0, got {self.width_scale}")
        for name, step in layout.stem:
            x = _pool(x, step) if isinstance(step, Pool) else self._conv_bn(step, name)(x, train)
        for stage in layout.stages:
            entry = stage.entry
            x = jnp.concatenate(
                [
                    _branch(x, steps, f"{entry.name}_b{b}", self.width_scale, train)
                    for b, steps in enumerate(entry.branches)
                ],
                axis=-1,
            )
            x = self._residual_blocks(x, stage.residual, train)
        name, conv = layout.final
        return self._conv_bn(conv, name)(x, train)

    def _conv_bn(self, step: Conv, name: str | None) -> ConvBN:
        filters = scaled_filters(step.filters, self.width_scale)
        return ConvBN(filters, step.kernel, step.strides, step.padding, name=name)

    def _residual_blocks(self, x: Array, stage: ResidualStage, train: bool) -> Array:
        for i in range(stage.count):
            last = stage.plain_last and i == stage.count - 1
            x = InceptionResNetBlock(
                stage.branches,
                scale=1.0 if last else stage.scale,
                activate=not last,
                width_scale=self.width_scale,
                name=f"{stage.kind}_{i + 1}",
            )(x, train)
        return x


def inception_resnet_v2(**kwargs: Any) -> InceptionResNetV2:
    """Inception-ResNet-v2 backbone with Keras' defaults: 299x299 -> 8x8x1536."""
    return InceptionResNetV2(**kwargs)


__all__ = [
    "AVG_POOL",
    "BN_EPSILON",
    "BN_MOMENTUM",
    "FEATURE_CHANNELS",
    "IRV2_STRUCTURE",
    "MAX_POOL",
    "POOL_WINDOW",
    "UP_KERNEL",
    "Conv",
    "ConvBN",
    "InceptionResNetBlock",
    "InceptionResNetV2",
    "InceptionResNetV2Structure",
    "MixedBlock",
    "Pool",
    "ResidualStage",
    "Stage",
    "inception_resnet_v2",
    "scaled_filters",
]
