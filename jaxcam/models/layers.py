"""Explaining any layer: a classifier split at a named intermediate of its backbone.

A **layer name** is the Flax module path, joined by ``/``, of a submodule of the
backbone whose ``__call__`` returns a feature map (B, h, w, K) and runs once per forward:
``backbone`` (the backbone's output, the default target), ``backbone/stage3_block1``
(a ResNet block's output), ``backbone/stage3_block1/Conv_0`` (a conv inside it).
:func:`layer_names` lists them with their per-image shapes; an unknown name raises
ValueError naming the known ones. Functions (``nn.relu``, ``nn.max_pool``) are not
modules and have no name: the module that produced their input, or the block that
contains them, does.

:func:`split_at` gives a per-example split model at layer L (:class:`LayerModel`):

    features(image) -> A_L        the layer's output for one image, (h, w, K)
    logits(A_L)     -> S          the network's logits with the layer's output replaced
                                  by A_L (``flax.linen.intercept_methods``)

so every saliency method works on it unchanged. Derivatives of ``logits`` with respect
to A_L are derivatives with respect to the layer's activations, to any order: they equal
those with respect to a zero perturbation added at the layer (what ``Module.perturb``
gives, without rewriting the model). Where the rest of the network reads the image
through other paths as well (a layer inside a residual block: the shortcut), those paths
stay as they are, computed from the image, and the derivatives are partial ones, as
pytorch-grad-cam's hooks take them; ``logits`` then needs the image, which
:meth:`LayerModel.for_image` binds (``saliency_maps`` and ``evaluate`` bind it per
image). Whether the rest reads
the image is decided once, from the traced program (:func:`reads_first_input`).

The fast exact Grad-CAM++ path needs the pooled head right after A: ``split_at`` returns
the bound model itself for ``backbone`` and for a layer whose output *is* the
backbone's output (e.g. ``backbone/stage4_block2`` of a ResNet-18), so that path stays
automatic there; any other layer uses the general path (h*w*K directions through the
rest of the network).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import Any, cast

import flax.linen as nn
import jax
import jax.numpy as jnp
from flax import struct

from jaxcam.checks import check_feature_map
from jaxcam.models.base import CAMClassifier, SplitModel
from jaxcam.models.outputs import apply_output
from jaxcam.taylor.dataflow import reads_first_input

Array = jax.Array
BACKBONE = "backbone"


def _path(layer: str) -> tuple[str, ...]:
    return tuple(layer.split("/"))


def _placeholder_image(model: SplitModel, dtype: Any = None) -> Array:
    """A black image of the architecture's minimum size: shapes for tracing.

    ``dtype`` defaults to that of the model's floating parameters (float32 unless the
    variables were cast), so tracing never mixes float widths.
    """
    if dtype is None:
        floats = [
            v.dtype
            for v in jax.tree.leaves(model.variables)
            if jnp.issubdtype(v.dtype, jnp.floating)
        ]
        dtype = floats[0] if floats else jnp.float32
    module = model.module
    size = max(1, int(module.min_input_size))
    return jnp.zeros((size, size, module.in_channels), dtype)


def _run(
    model: SplitModel,
    image: Array,
    on_call: Callable[[tuple[str, ...], Callable[[], Array]], Array],
    head: bool,
) -> Array:
    """One forward of one image (H, W, C) with every submodule ``__call__`` passed to
    ``on_call(path, call)``; returns A (1, h, w, K) or, with ``head``, the logits (1, classes).
    """

    def interceptor(next_fun, args, kwargs, context):
        if context.method_name != "__call__" or not context.module.path:
            return next_fun(*args, **kwargs)
        return on_call(tuple(context.module.path), lambda: next_fun(*args, **kwargs))

    def forward(module: nn.Module, x: Array) -> Array:
        with nn.intercept_methods(interceptor):
            feature_map = module.features(x)
            return module.logits(feature_map) if head else feature_map

    # Without ``mutable``, ``apply`` returns the method's output alone.
    return cast(Array, model.module.apply(model.variables, image[None], method=forward))


def layer_names(
    model: SplitModel, image_shape: tuple[int, int, int] | None = None
) -> dict[str, tuple[int, ...]]:
    """Layer name -> per-image feature map shape (h, w, K), in the order the layers run.

    Args:
      model: a bound split model (:func:`jaxcam.bind`).
      image_shape: (H, W, C) the shapes are given for; default the architecture's
        minimum input size (names do not depend on it).

    Only modules under ``backbone`` whose ``__call__`` returns a rank-4 map and runs once
    per forward are listed. Costs one abstract trace (``jax.eval_shape``), no compute.
    """
    return {name: shape for name, (shape, _) in _trace_layers(model, image_shape).items()}


def _trace_layers(
    model: SplitModel, image_shape: tuple[int, int, int] | None = None
) -> dict[str, tuple[tuple[int, ...], bool]]:
    """name -> (per-image shape, whether the output is the backbone's output itself)."""
    image = _placeholder_image(model)
    if image_shape is not None:
        image = jnp.zeros(tuple(image_shape), image.dtype)
    seen: dict[tuple[str, ...], list[Any]] = {}

    def record(path: tuple[str, ...], call: Callable[[], Array]) -> Array:
        out = call()
        seen.setdefault(path, []).append(out)
        return out

    def trace(x: Array) -> dict[str, tuple[tuple[int, ...], bool]]:
        _run(model, x, record, head=False)
        found = {}
        backbone = seen.get((BACKBONE,), [None])[-1]
        for path, outs in seen.items():
            (out,) = outs[:1]
            if path[0] != BACKBONE or len(outs) != 1 or getattr(out, "ndim", 0) != 4:
                continue
            found["/".join(path)] = (tuple(out.shape[1:]), out is backbone)
        return found

    found: dict[str, tuple[tuple[int, ...], bool]] = {}
    jax.eval_shape(lambda x: found.update(trace(x)) or 0, image)
    return found


def _substituted_logits(model: SplitModel, layer: str, image: Array, feature_map: Array) -> Array:
    """Logits (classes,) of ``image`` with the output of ``layer`` replaced by A_L (h, w, K)."""
    target = _path(layer)
    calls = []

    def substitute(path: tuple[str, ...], call: Callable[[], Array]) -> Array:
        if path != target:
            return call()
        calls.append(path)
        return feature_map[None]

    logits = _run(model, image, substitute, head=True)[0]
    if len(calls) != 1:
        raise ValueError(f"layer {layer!r} ran {len(calls)} times in one forward (expected 1)")
    return logits


def _captured_features(model: SplitModel, layer: str, image: Array) -> Array:
    """A_L (h, w, K): the output of ``layer`` for one image."""
    target = _path(layer)
    captured = []

    def capture(path: tuple[str, ...], call: Callable[[], Array]) -> Array:
        out = call()
        if path == target:
            captured.append(out)
        return out

    _run(model, image, capture, head=False)
    if len(captured) != 1:
        raise ValueError(f"layer {layer!r} ran {len(captured)} times in one forward (expected 1)")
    return captured[0][0]


@struct.dataclass
class LayerModel:
    """A bound classifier split at a named layer L of its backbone (see the module doc).

    Per-example pure functions, like :class:`jaxcam.models.SplitModel` (every member of
    :class:`jaxcam.models.Explainable`), and a pytree (the variables and a bound image are
    leaves), so jitted steps take it as an argument.

    Attributes:
      base: the bound classifier.
      layer: the layer name, e.g. ``backbone/stage3_block2``.
      channels: K of A_L.
      reads_image: whether the network after L also reads the image through other paths
        (then ``logits`` needs :meth:`for_image`).
      image: the image (H, W, C) bound by :meth:`for_image`, or ``None``.
    """

    base: SplitModel
    layer: str = struct.field(pytree_node=False)
    channels: int = struct.field(pytree_node=False)
    reads_image: bool = struct.field(pytree_node=False)
    image: Array | None = None

    @property
    def module(self) -> CAMClassifier:
        return self.base.module

    @property
    def output(self) -> str:
        return self.base.output

    @property
    def num_classes(self) -> int:
        return self.base.num_classes

    @property
    def has_linear_pooling(self) -> bool:
        """False: the rest of the network after L is not a pooled head (general path)."""
        return False

    @property
    def feature_channels(self) -> int:
        return self.channels

    def for_image(self, image: Array) -> LayerModel:
        """This split, with ``logits`` taking the network's other paths from ``image`` (H, W, C)."""
        return dataclasses.replace(self, image=image)

    def features(self, image: Array) -> Array:
        """Image (H, W, C) -> A_L (h, w, K)."""
        if getattr(image, "ndim", None) != 3:
            raise ValueError(
                "LayerModel.features takes one image of shape (H, W, C), got shape "
                f"{getattr(image, 'shape', None)}"
            )
        return _captured_features(self.base, self.layer, image)

    def logits(self, feature_map: Array) -> Array:
        """A_L (h, w, K) -> logits S (classes,): the network with A_L at layer L."""
        check_feature_map(feature_map, self.channels)
        image = self.image
        if image is None:
            if self.reads_image:
                raise ValueError(
                    f"the network after layer {self.layer!r} also reads the image through other "
                    "paths (e.g. a residual shortcut), so its logits need the image: use "
                    "model.for_image(image) (saliency_maps and evaluate do, per image)"
                )
            image = _placeholder_image(self.base, feature_map.dtype)
        return _substituted_logits(self.base, self.layer, image, feature_map)

    def image_logits(self, image: Array) -> Array:
        """Image (H, W, C) -> logits S (classes,): the whole network, nothing substituted."""
        return self.base.image_logits(image)

    def scores(self, image: Array) -> Array:
        """Image (H, W, C) -> scores Y (classes,): the model's output."""
        return apply_output(self.image_logits(image), self.output)

    def first_layer(self) -> tuple[Array, Array]:
        raise ValueError(
            f"no dense layer follows pooling right after layer {self.layer!r} "
            "(has_linear_pooling is False): use the general path"
        )

    def logits_after_first_layer(self, x: Array) -> Array:
        raise ValueError(
            f"no dense layer follows pooling right after layer {self.layer!r} "
            "(has_linear_pooling is False): use the general path"
        )

    def class_weights(self) -> Array:
        raise ValueError(
            f"CAM needs the backbone's output with a GAP -> dense head; layer {self.layer!r} "
            "lies inside the backbone: use grad_cam or another gradient method"
        )


def split_at(model: SplitModel | LayerModel, layer: str = BACKBONE) -> SplitModel | LayerModel:
    """The per-example split of ``model`` at ``layer`` (a name from :func:`layer_names`).

    Returns ``model`` itself for ``backbone`` and for a layer whose output is the
    backbone's output (the fast paths stay); otherwise a :class:`LayerModel`.
    Raises ValueError for an unknown name, listing the known ones.
    """
    if isinstance(model, LayerModel):
        model = model.base
    if not isinstance(model, SplitModel):
        raise TypeError(f"split_at expects a bound SplitModel, got {type(model).__name__}")
    if not isinstance(layer, str):
        raise TypeError(f"layer must be a module path string, got {layer!r}")
    layers = _trace_layers(model)
    if layer not in layers:
        raise ValueError(f"unknown layer {layer!r}; known layers: {', '.join(layers)}")
    shape, is_backbone_output = layers[layer]
    if layer == BACKBONE or is_backbone_output:
        return model
    image = _placeholder_image(model)
    program = jax.make_jaxpr(lambda x, a: _substituted_logits(model, layer, x, a))(
        image, jnp.zeros(shape, image.dtype)
    )
    return LayerModel(
        base=model, layer=layer, channels=int(shape[-1]), reads_image=reads_first_input(program)
    )


__all__ = ["BACKBONE", "LayerModel", "layer_names", "reads_first_input", "split_at"]
