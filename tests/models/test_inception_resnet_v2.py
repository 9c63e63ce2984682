"""The InceptionResNetV2 structure table: the Flax module and the Keras import read it.

The parameter tree is written out here independently of the module (names and shapes
following the naming scheme that checkpoints rely on) and compared with
``jax.eval_shape`` of the module; at full width its total is Keras' own count.
"""

from __future__ import annotations

import dataclasses

import jax
import jax.numpy as jnp
import numpy as np
from flax import traverse_util

from jaxcam.models.inception_resnet_v2 import (
    BN_EPSILON,
    FEATURE_CHANNELS,
    IRV2_STRUCTURE,
    Conv,
    InceptionResNetV2,
)
from jaxcam.models.keras_graph import ExpectedKerasWeights, expected_keras_weights

TINY = {"repeats": (1, 2, 1), "width_scale": 1 / 16}


def _table_shapes(structure, width_scale: float, in_channels: int) -> dict[tuple, tuple]:
    """Variable path -> shape, worked out from the table alone."""
    scaled = lambda filters: max(1, round(filters * width_scale))
    shapes: dict[tuple, tuple] = {}

    def conv_bn(path: tuple, conv: Conv, channels: int) -> int:
        kernel = (conv.kernel, conv.kernel) if isinstance(conv.kernel, int) else conv.kernel
        out = scaled(conv.filters)
        shapes[("params", *path, "conv", "kernel")] = (*kernel, channels, out)
        shapes[("params", *path, "bn", "bias")] = (out,)
        shapes[("batch_stats", *path, "bn", "mean")] = (out,)
        shapes[("batch_stats", *path, "bn", "var")] = (out,)
        return out

    def branch(path: tuple, steps, channels: int) -> int:
        convs = [step for step in steps if isinstance(step, Conv)]
        for c, conv in enumerate(convs):
            channels = conv_bn((*path[:-1], f"{path[-1]}_conv{c}"), conv, channels)
        return channels

    channels = in_channels
    for name, step in structure.stem:
        if isinstance(step, Conv):
            channels = conv_bn((name,), step, channels)
    for stage in structure.stages:
        entry = stage.entry
        channels = sum(
            branch((f"{entry.name}_b{b}",), steps, channels)
            for b, steps in enumerate(entry.branches)
        )
        for i in range(1, stage.residual.count + 1):
            block = f"{stage.residual.kind}_{i}"
            mixed = sum(
                branch((block, f"branch{b}"), convs, channels)
                for b, convs in enumerate(stage.residual.branches)
            )
            shapes[("params", block, "up", "kernel")] = (1, 1, mixed, channels)
            shapes[("params", block, "up", "bias")] = (channels,)
    name, final = structure.final
    conv_bn((name,), final, channels)
    return shapes


def _module_shapes(backbone, size: int, channels: int = 3) -> dict[tuple, tuple]:
    x = jax.ShapeDtypeStruct((1, size, size, channels), jnp.float32)
    tree = jax.eval_shape(backbone.init, jax.random.key(0), x)
    return {path: tuple(leaf.shape) for path, leaf in traverse_util.flatten_dict(tree).items()}


def test_table_is_keras_inception_resnet_v2():
    # Keras' include_top=False InceptionResNetV2: 54,336,736 weights incl. BN statistics,
    # 192 / 320 / 1088 / 2080 channels after the stem and mixed_5b / 6a / 7a, A of 1536.
    full = _table_shapes(IRV2_STRUCTURE, 1.0, 3)
    assert sum(int(np.prod(shape)) for shape in full.values()) == 54_336_736
    assert IRV2_STRUCTURE.trunk_channels() == (192, 320, 1088, 2080)
    assert IRV2_STRUCTURE.repeats == InceptionResNetV2().layout.repeats == (10, 20, 10)
    assert FEATURE_CHANNELS == 1536 and BN_EPSILON == 1e-3
    # 204 conv2d_bn (5 stem, 7 + 4 + 7 in mixed_*, 10*6 + 20*4 + 10*4 in blocks, conv_7b)
    # and one "up" conv per residual block.
    assert sum(path[-2:] == ("conv", "kernel") for path in full) == 204
    assert sum(path[-2:] == ("up", "kernel") for path in full) == 40


def test_module_parameters_are_the_tables():
    backbone = InceptionResNetV2(**TINY)
    shapes = _module_shapes(backbone, 75)
    assert shapes == _table_shapes(backbone.layout, 1 / 16, 3)
    # By hand at width 1/16: stem 192/16 = 12 channels; mixed_5b 6+4+6+4 = 20;
    # mixed_6a 24+24+20 = 68; mixed_7a 24+18+20+68 = 130; A 1536/16 = 96.
    assert backbone.layout.trunk_channels(1 / 16) == (12, 20, 68, 130)
    assert shapes[("params", "block35_1", "up", "kernel")] == (1, 1, 2 + 2 + 4, 20)
    assert shapes[("params", "block17_2", "up", "kernel")] == (1, 1, 12 + 12, 68)
    assert shapes[("params", "conv_7b", "conv", "kernel")] == (1, 1, 130, 96)
    assert ("params", "block17_3", "up", "kernel") not in shapes


def test_changed_table_changes_the_module():
    stage = IRV2_STRUCTURE.stages[0]
    wider_b0 = (Conv(128, 1),) + stage.entry.branches[0][1:]
    entry = dataclasses.replace(stage.entry, branches=(wider_b0, *stage.entry.branches[1:]))
    changed = dataclasses.replace(
        IRV2_STRUCTURE,
        stages=(dataclasses.replace(stage, entry=entry), *IRV2_STRUCTURE.stages[1:]),
    )
    backbone = InceptionResNetV2(repeats=(1, 1, 1), width_scale=1 / 16, structure=changed)
    shapes = _module_shapes(backbone, 75)
    assert shapes == _table_shapes(backbone.layout, 1 / 16, 3)
    # mixed_5b's first branch: 128/16 = 8 instead of 6 channels, so 22 in the trunk.
    assert shapes[("params", "mixed_5b_b0_conv0", "conv", "kernel")] == (1, 1, 12, 8)
    assert shapes[("params", "block35_1", "up", "kernel")] == (1, 1, 8, 22)


def test_keras_layer_counts_come_from_the_table():
    # 244 Conv2D (204 conv2d_bn + 40 "up") and 448 layers with weights (+ 204 BN).
    assert expected_keras_weights(InceptionResNetV2()) == ExpectedKerasWeights(
        conv_kernels=244, weighted_layers=448, final_kernel=(1, 1, 2080, 1536)
    )
    # Blocks (1, 2, 1) at width 1/16: conv2d_bn 5 + 7 + 6 + 4 + 2*4 + 7 + 4 + 1 = 42,
    # 4 "up" convs; conv_7b maps mixed_7a's 130 channels to 96.
    assert expected_keras_weights(InceptionResNetV2(**TINY)) == ExpectedKerasWeights(
        conv_kernels=46, weighted_layers=88, final_kernel=(1, 1, 130, 96)
    )
    # One block17 fewer in the table: 4 conv2d_bn and one "up" conv fewer.
    stage = IRV2_STRUCTURE.stages[1]
    fewer = dataclasses.replace(stage, residual=dataclasses.replace(stage.residual, count=19))
    changed = dataclasses.replace(
        IRV2_STRUCTURE, stages=(IRV2_STRUCTURE.stages[0], fewer, IRV2_STRUCTURE.stages[2])
    )
    counts = expected_keras_weights(InceptionResNetV2(structure=changed))
    assert (counts.conv_kernels, counts.weighted_layers) == (244 - 5, 448 - 9)
