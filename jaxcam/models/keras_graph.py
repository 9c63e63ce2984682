"""Walking a Keras InceptionResNetV2 graph against jaxcam's structure table.

Everything expected of the Keras model -- layer kinds, filters, kernels, strides,
padding, residual scales, the BatchNorm epsilon, the numbers of layers -- is read from
the backbone's :class:`~jaxcam.models.inception_resnet_v2.InceptionResNetV2Structure`
(:data:`~jaxcam.models.inception_resnet_v2.IRV2_STRUCTURE` by default), never restated
here. Keras itself is not imported: the functions only read the model they are given.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass
from typing import Any

from jaxcam.models.inception_resnet_v2 import (
    BN_EPSILON,
    POOL_WINDOW,
    UP_KERNEL,
    Conv,
    InceptionResNetV2,
    MixedBlock,
    Pool,
    ResidualStage,
    Step,
    scaled_filters,
)

NOT_INCEPTION_RESNET_V2 = "not keras.applications.InceptionResNetV2"

# Layers that are the identity at inference and may sit between GAP and the Dense.
_INFERENCE_IDENTITY = ("Dropout", "AlphaDropout", "GaussianDropout", "GaussianNoise")
_POOL_LAYERS = {"max": "MaxPooling2D", "avg": "AveragePooling2D"}

# A Flax path under ``backbone`` -> its Keras (Conv2D, BatchNormalization or None).
ConvLayers = dict[tuple[str, ...], tuple[Any, Any | None]]


@dataclass(frozen=True)
class ExpectedKerasWeights:
    """What the Keras base model of a backbone holds (its top not counted).

    Attributes:
      conv_kernels: Conv2D layers: one per ``conv2d_bn`` and one per residual "up" conv.
      weighted_layers: those Conv2D plus the BatchNormalization of each ``conv2d_bn``.
      final_kernel: the final conv's (``conv_7b``) kernel shape, HWIO.
    """

    conv_kernels: int
    weighted_layers: int
    final_kernel: tuple[int, int, int, int]


def expected_keras_weights(backbone: InceptionResNetV2) -> ExpectedKerasWeights:
    """Count the Keras layers with weights that ``backbone``'s layout implies
    (InceptionResNetV2(): 244 Conv2D, 448 layers with weights, conv_7b 1x1x2080x1536)."""
    layout = backbone.layout
    convs = lambda steps: sum(isinstance(step, Conv) for step in steps)
    conv_bn = convs(step for _, step in layout.stem) + 1  # + the final conv
    up = 0
    for stage in layout.stages:
        conv_bn += sum(convs(branch) for branch in stage.entry.branches)
        conv_bn += stage.residual.count * sum(convs(branch) for branch in stage.residual.branches)
        up += stage.residual.count
    final = layout.final[1]
    kernel = _pair(final.kernel)
    in_channels = layout.trunk_channels(backbone.width_scale)[-1]
    out_channels = layout.feature_channels(backbone.width_scale)
    return ExpectedKerasWeights(
        conv_kernels=conv_bn + up,
        weighted_layers=2 * conv_bn + up,
        final_kernel=(kernel[0], kernel[1], in_channels, out_channels),
    )


def keras_names(conv_name: str) -> tuple[str, str, str]:
    """Keras ``conv2d_bn(name=...)``'s Conv2D, BatchNormalization and Activation names."""
    return conv_name, f"{conv_name}_bn", f"{conv_name}_ac"


def final_activation_name(backbone: InceptionResNetV2) -> str:
    """The Keras layer whose output is the feature map A (``conv_7b_ac``)."""
    return keras_names(backbone.layout.final[0])[2]


# ---------------------------------------------------------------- Keras graph access


def _history(tensor: Any) -> tuple[Any, int, int]:
    operation, node_index, tensor_index = tensor._keras_history
    return operation, node_index, tensor_index


def _producer(tensor: Any) -> Any:
    return _history(tensor)[0]


def _same_tensor(a: Any, b: Any) -> bool:
    (op_a, node_a, index_a), (op_b, node_b, index_b) = _history(a), _history(b)
    return op_a is op_b and node_a == node_b and index_a == index_b


def _node_inputs(tensor: Any) -> list[Any]:
    operation, node_index, _ = _history(tensor)
    return list(operation._inbound_nodes[node_index].input_tensors)


def _kind(layer: Any) -> str:
    return type(layer).__name__


def activation_name(layer: Any) -> str:
    """The Keras name of a layer's ``activation`` (e.g. ``"relu"``)."""
    activation = getattr(layer, "activation", None)
    return getattr(activation, "__name__", repr(activation))


def _pair(value: Any) -> tuple[int, ...]:
    return tuple(value) if isinstance(value, tuple | list) else (value, value)


def _single_output(model: Any, where: str) -> Any:
    try:
        outputs = list(model.outputs)
    except (AttributeError, ValueError) as err:
        raise ValueError(f"{where}: the Keras model has no outputs yet: build it first") from err
    if len(outputs) != 1:
        raise ValueError(f"{where}: the Keras model has {len(outputs)} outputs, expected 1")
    return outputs[0]


def contains_layer(model: Any, name: str) -> bool:
    """Whether ``model`` or a model nested in it has a layer called ``name``."""
    for layer in model.layers:
        if layer.name == name or (hasattr(layer, "layers") and contains_layer(layer, name)):
            return True
    return False


# ------------------------------------------------------------------------- the walk


class _Walker:
    """Walks a Keras InceptionResNetV2 graph backwards, collecting its conv layers
    into ``convs`` (:data:`ConvLayers`), e.g. ``("block35_1", "branch2_conv1")``."""

    def __init__(self, source: str, backbone: InceptionResNetV2) -> None:
        self.source = source
        self.layout = backbone.layout
        self.width_scale = backbone.width_scale
        self.trunk_channels = self.layout.trunk_channels(backbone.width_scale)
        self.convs: ConvLayers = {}

    def fail(self, message: str) -> ValueError:
        return ValueError(f"{NOT_INCEPTION_RESNET_V2}: {self.source}: {message}")

    def layer(self, tensor: Any, kind: str, where: str) -> Any:
        layer = _producer(tensor)
        if _kind(layer) != kind:
            raise self.fail(f"expected a {kind} in {where}, found {_kind(layer)} {layer.name!r}")
        return layer

    def only_input(self, tensor: Any, where: str) -> Any:
        inputs = _node_inputs(tensor)
        if len(inputs) != 1:
            layer = _producer(tensor)
            raise self.fail(f"{layer.name!r} in {where} has {len(inputs)} inputs, expected 1")
        return inputs[0]

    def check(self, ok: bool, layer: Any, what: str, where: str) -> None:
        if not ok:
            raise self.fail(f"{_kind(layer)} {layer.name!r} in {where} has {what}")

    def relu(self, tensor: Any, where: str) -> Any:
        """Check that ``tensor`` comes from a ReLU Activation; return its input."""
        act = self.layer(tensor, "Activation", where)
        self.check(activation_name(act) == "relu", act, "a non-ReLU activation", where)
        return self.only_input(tensor, where)

    def conv(self, tensor: Any, spec: Conv, where: str, bias: bool = False) -> tuple[Any, Any]:
        """The Conv2D producing ``tensor`` (``spec.filters`` already width-scaled):
        checked, and returned with its input."""
        conv = self.layer(tensor, "Conv2D", where)
        strides, padding = (spec.strides, spec.strides), spec.padding.lower()
        self.check(
            conv.filters == spec.filters,
            conv,
            f"{conv.filters} filters, expected {spec.filters}",
            where,
        )
        kernel = _pair(spec.kernel)
        self.check(
            _pair(conv.kernel_size) == kernel,
            conv,
            f"kernel size {conv.kernel_size}, expected {kernel}",
            where,
        )
        self.check(
            _pair(conv.strides) == strides,
            conv,
            f"strides {conv.strides}, expected {spec.strides}",
            where,
        )
        self.check(conv.padding == padding, conv, f"padding {conv.padding!r}", where)
        self.check(_pair(conv.dilation_rate) == (1, 1), conv, "a dilation", where)
        self.check(getattr(conv, "groups", 1) == 1, conv, "groups", where)
        self.check(activation_name(conv) == "linear", conv, "an activation", where)
        self.check(conv.use_bias == bias, conv, f"use_bias={conv.use_bias}", where)
        return conv, self.only_input(tensor, where)

    def conv_bn(self, tensor: Any, path: tuple[str, ...], spec: Conv, where: str) -> Any:
        """Keras conv2d_bn (Conv2D -> BatchNormalization -> ReLU) producing ``tensor``."""
        tensor = self.relu(tensor, where)
        bn = self.layer(tensor, "BatchNormalization", where)
        self.check(bn.center and not bn.scale, bn, "center/scale other than (True, False)", where)
        self.check(
            math.isclose(bn.epsilon, BN_EPSILON),
            bn,
            f"epsilon {bn.epsilon} (not {BN_EPSILON})",
            where,
        )
        scaled = dataclasses.replace(spec, filters=scaled_filters(spec.filters, self.width_scale))
        conv, tensor = self.conv(self.only_input(tensor, where), scaled, where)
        self.convs[path] = (conv, bn)
        return tensor

    def pool(self, tensor: Any, spec: Pool, where: str) -> Any:
        pool = self.layer(tensor, _POOL_LAYERS[spec.kind], where)
        window = (POOL_WINDOW, POOL_WINDOW)
        self.check(_pair(pool.pool_size) == window, pool, f"pool size {pool.pool_size}", where)
        strides = (spec.strides, spec.strides)
        self.check(_pair(pool.strides) == strides, pool, "other strides", where)
        padding = spec.padding.lower()
        self.check(pool.padding == padding, pool, f"padding {pool.padding!r}", where)
        return self.only_input(tensor, where)

    def branch(
        self, tensor: Any, steps: tuple[Step, ...], prefix: tuple[str, ...], where: str
    ) -> Any:
        """Walk one branch back to its input; its conv ``c`` is Flax ``(*prefix[:-1],
        f"{prefix[-1]}_conv{c}")``."""
        conv_index = sum(isinstance(step, Conv) for step in steps)
        for step in reversed(steps):
            if isinstance(step, Conv):
                conv_index -= 1
                path = (*prefix[:-1], f"{prefix[-1]}_conv{conv_index}")
                tensor = self.conv_bn(tensor, path, step, where)
            else:
                tensor = self.pool(tensor, step, where)
        return tensor

    def concat(self, tensor: Any, count: int, where: str) -> list[Any]:
        concat = self.layer(tensor, "Concatenate", where)
        branches = _node_inputs(tensor)
        self.check(len(branches) == count, concat, f"{len(branches)} branches", where)
        return branches

    def shared_input(self, inputs: list[Any], where: str) -> Any:
        if not all(_same_tensor(t, inputs[0]) for t in inputs):
            raise self.fail(f"the branches of {where} do not share one input")
        return inputs[0]

    def mixed(self, tensor: Any, block: MixedBlock) -> Any:
        name = block.name
        branches = self.concat(tensor, len(block.branches), name)
        ends = [
            self.branch(t, steps, (f"{name}_b{b}",), name)
            for b, (t, steps) in enumerate(zip(branches, block.branches, strict=True))
        ]
        return self.shared_input(ends, name)

    def block(self, tensor: Any, stage: ResidualStage, index: int, channels: int) -> Any:
        """Residual block ``{kind}_{index}`` of ``channels`` trunk channels:
        act(x + scale * up(concat(branches(x))))."""
        where = f"{stage.kind}_{index}"
        last = stage.plain_last and index == stage.count
        scale = 1.0 if last else stage.scale
        if not last:
            tensor = self.relu(tensor, where)
        add = _producer(tensor)
        inputs = _node_inputs(tensor)
        scale_value = getattr(add, "scale", None)
        if isinstance(scale_value, bool) or not isinstance(scale_value, int | float):
            scale_value = None
        if scale_value is None or len(inputs) != 2:
            raise self.fail(
                f"expected the residual scale layer of {where}, found {_kind(add)} {add.name!r}"
            )
        self.check(
            math.isclose(scale_value, scale), add, f"scale {scale_value}, not {scale}", where
        )
        x, up_out = inputs
        up, mixed = self.conv(up_out, Conv(channels, UP_KERNEL), where, bias=True)
        self.convs[(where, "up")] = (up, None)
        branches = self.concat(mixed, len(stage.branches), where)
        ends = [
            self.branch(t, convs, (where, f"branch{b}"), where)
            for b, (t, convs) in enumerate(zip(branches, stage.branches, strict=True))
        ]
        return self.shared_input([x, *ends], where)

    def backbone(self, features: Any) -> Any:
        """Walk from the final conv's output to the image input; return the input tensor."""
        name, final = self.layout.final
        tensor = self.conv_bn(features, (name,), final, name)
        for index in reversed(range(len(self.layout.stages))):
            stage = self.layout.stages[index]
            for block in range(stage.residual.count, 0, -1):
                tensor = self.block(tensor, stage.residual, block, self.trunk_channels[index + 1])
            tensor = self.mixed(tensor, stage.entry)
        for stem_name, step in reversed(self.layout.stem):
            if isinstance(step, Pool):
                tensor = self.pool(tensor, step, "the stem")
            else:
                tensor = self.conv_bn(tensor, (str(stem_name),), step, "the stem")
        return tensor


def walk_keras_model(
    model: Any, backbone: InceptionResNetV2, source: str
) -> tuple[ConvLayers, list[Any]]:
    """Match ``model``'s layers to ``backbone``'s: its conv layers by Flax path, and its
    top layers (between the final activation, ``conv_7b_ac``, and the output).

    Walks back from the model's output through the top (descending into a nested base
    model), then through the backbone; the image must enter the base straight from an
    InputLayer. Raises ValueError where the model differs from ``backbone.layout``.
    """
    walker = _Walker(source, backbone)
    features_layer = final_activation_name(backbone)
    tensor = _single_output(model, source)
    top: list[Any] = []
    outer_calls: list[Any] = []  # nested-model calls: their inputs must be plain inputs
    while True:
        layer = _producer(tensor)
        if layer.name == features_layer and _kind(layer) == "Activation":
            break
        if hasattr(layer, "layers") and hasattr(layer, "outputs"):  # a nested model
            outer_calls.append(tensor)
            tensor = _single_output(layer, source)
            continue
        inputs = _node_inputs(tensor)
        if _kind(layer) == "InputLayer" or len(inputs) != 1:
            raise ValueError(
                f"the top of {source} is not CAM-compatible (jaxcam needs GAP -> Dense): "
                f"layer {layer.name!r} ({_kind(layer)}) has {len(inputs)} inputs"
            )
        top.append(layer)
        tensor = inputs[0]
    image = walker.backbone(tensor)
    # The base's image input, and the input of each nested call, must be a plain Input.
    for start in [image, *(walker.only_input(call, "the nested model") for call in outer_calls)]:
        layer = _producer(start)
        if _kind(layer) != "InputLayer":
            raise ValueError(
                f"{source}: layers before the InceptionResNetV2 input are not supported "
                f"(found {_kind(layer)} {layer.name!r}); preprocess images outside the model"
            )
    return walker.convs, top[::-1]


def parse_top(layers: list[Any], source: str) -> tuple[Any | None, str | None]:
    """The top's Dense (None without a top) and its activation's Keras name."""
    kept = [layer for layer in layers if _kind(layer) not in _INFERENCE_IDENTITY]
    kinds = [_kind(layer) for layer in kept]
    if kinds in ([], ["GlobalAveragePooling2D"]):
        return None, None
    trailing = kinds[2:] == ["Activation"] and activation_name(kept[1]) == "linear"
    if kinds[:2] != ["GlobalAveragePooling2D", "Dense"] or (len(kinds) > 2 and not trailing):
        raise ValueError(
            f"the top of {source} is not CAM-compatible (jaxcam needs GAP -> Dense): got "
            + " -> ".join(f"{kind} {layer.name!r}" for kind, layer in zip(kinds, kept, strict=True))
        )
    if getattr(kept[0], "keepdims", False):
        raise ValueError(f"{source}: GlobalAveragePooling2D {kept[0].name!r} keeps its dims")
    return kept[1], activation_name(kept[-1])
