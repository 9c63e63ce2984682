"""Import ``keras.applications.InceptionResNetV2`` weights into jaxcam's Flax model.

:class:`jaxcam.models.InceptionResNetV2` mirrors the Keras architecture layer for
layer, so a Keras model (ImageNet weights, or one fine-tuned on X-rays) becomes a
:class:`~jaxcam.models.base.CAMClassifier` with the same outputs (up to float32
rounding)::

    model = load_keras_inception_resnet_v2("xray.keras")          # -> SplitModel
    model = load_keras_inception_resnet_v2("notop.weights.h5", num_classes=2)

Accepted files: a Keras 3 ``.keras`` archive, a Keras 3 ``.weights.h5`` file, and a
legacy HDF5 ``.h5`` file (a full model, or weights only such as Keras' own ImageNet
files), each holding ``InceptionResNetV2`` either

* with its own top (``include_top=True``: GAP -> Dense ``predictions``),
* without a top (``include_top=False``, optionally ``pooling="avg"``): the classifier
  is then freshly initialised for ``num_classes`` from ``seed`` -- the starting point
  for fine-tuning -- and :attr:`KerasImport.fresh_classifier` is True, or
* with a CAM-compatible top added by the user: GlobalAveragePooling2D -> [Dropout]
  -> Dense (optionally followed by an Activation layer), the base being either
  flattened into the model or nested in it as one layer.

``.keras`` and full ``.h5`` files are read with ``keras.models.load_model``. A
weights-only file carries no architecture: its HDF5 layout (with or without a top,
flat or nested base, input channels) is inspected with h5py, checked against
``num_classes`` / ``output``, and the architecture rebuilt with
``keras.applications.InceptionResNetV2(weights=None, include_top=False)`` [-> GAP ->
Dense] for Keras to load the weights into.

**Output activation.** The Dense (or trailing Activation) activation gives the
model's ``output``: ``relu``, ``softmax``, ``linear`` and ``exponential`` (-> ``exp``)
are supported. An explicit ``output`` argument always wins; when it differs from the
file's activation a :class:`UserWarning` says so (e.g. ``output="linear"`` on a
softmax model gives Grad-CAM the pre-softmax logits). Weights-only files do not record
the activation, so ``output`` is then required -- except for a legacy file whose Dense
is named ``predictions`` (``keras.applications``' own top), which is softmax. Without
a top, ``output`` defaults to jaxcam's ``"relu"``.

**Preprocessing.** Keras' ``preprocess_input`` maps uint8 pixels ``u`` to
``u / 127.5 - 1``; jaxcam's raw pixels are ``x = u / 255`` in [0, 1], so the model is
built with ``pixel_mean = pixel_std = 0.5`` (``(x - 0.5) / 0.5 = u / 127.5 - 1``).
The number of input channels is read from the first conv kernel.

**Mapping.** Keras names most layers by a global counter (``conv2d_12``,
``batch_normalization_12``), and ``model.layers`` is not in creation order, so the
weights are matched by *structure*: the graph is walked backwards from the layer
``conv_7b_ac`` through conv_7b, the 10 block8, mixed_7a, 20 block17, mixed_6a, 10
block35, mixed_5b and the stem down to the input, checking every layer kind, stride,
padding, residual scale and BatchNorm setting on the way, and each
Conv2D -> BatchNormalization (-> ReLU) found is assigned to the Flax ``ConvBN`` it
corresponds to (branch ``b``, conv ``c`` of its block). Conv kernels are HWIO in
both frameworks; a BatchNorm without scale maps ``beta`` -> params ``bn/bias`` and
``moving_mean`` / ``moving_variance`` -> batch_stats ``bn/mean`` / ``bn/var``; the
residual "up" convs keep their bias; the top Dense becomes ``classifier``. Every
shape is checked, every Flax leaf must be filled exactly once and every Keras weight
used exactly once.

Keras (``keras>=3`` with ``h5py``, the ``jaxcam[keras]`` extra) is imported lazily,
inside these functions, with ``KERAS_BACKEND=jax`` unless set otherwise; importing
jaxcam never needs it. Nothing is written to disk.
"""

from __future__ import annotations

import math
import os
import warnings
import zipfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from flax import traverse_util

from jaxcam.models.base import (
    OUTPUT_ACTIVATIONS,
    CAMClassifier,
    SplitModel,
    bind,
    check_output_activation,
)
from jaxcam.models.inception_resnet_v2 import InceptionResNetV2

NOT_INCEPTION_RESNET_V2 = "not keras.applications.InceptionResNetV2"
FEATURE_CHANNELS = 1536
KERAS_PIXEL_MEAN = 0.5
KERAS_PIXEL_STD = 0.5
# Conv2D layers in the Keras model: 203 conv2d_bn + 40 residual "up" convs + conv_7b.
_NUM_CONV_KERNELS = 244
_CONV_7B_KERNEL = (1, 1, 2080, 1536)
# Layers with weights: the 244 Conv2D and the 204 BatchNormalization after conv2d_bn's.
_NUM_WEIGHTED_LAYERS = 448
_BN_EPSILON = 1e-3

# Keras activation names -> jaxcam output activations.
_KERAS_TO_OUTPUT = {"relu": "relu", "softmax": "softmax", "linear": "linear", "exponential": "exp"}
# Layers that are the identity at inference and may sit between GAP and the Dense.
_INFERENCE_IDENTITY = ("Dropout", "AlphaDropout", "GaussianDropout", "GaussianNoise")
_INSTALL_HINT = "pip install 'jaxcam[keras]'"

# One step of a branch, in forward order: a conv2d_bn (strides, padding) or a pooling.
_Conv = tuple[str, int, str]
_CONV: _Conv = ("conv", 1, "same")
_CONV_S2: _Conv = ("conv", 2, "valid")
_AVG_POOL: _Conv = ("avg_pool", 1, "same")
_MAX_POOL: _Conv = ("max_pool", 2, "valid")

_STEM: tuple[tuple[str | None, _Conv], ...] = (
    ("conv_1a", ("conv", 2, "valid")),
    ("conv_2a", ("conv", 1, "valid")),
    ("conv_2b", _CONV),
    (None, _MAX_POOL),
    ("conv_3b", ("conv", 1, "valid")),
    ("conv_4a", ("conv", 1, "valid")),
    (None, _MAX_POOL),
)
_MIXED: dict[str, tuple[tuple[_Conv, ...], ...]] = {
    "mixed_5b": ((_CONV,), (_CONV, _CONV), (_CONV, _CONV, _CONV), (_AVG_POOL, _CONV)),
    "mixed_6a": ((_CONV_S2,), (_CONV, _CONV, _CONV_S2), (_MAX_POOL,)),
    "mixed_7a": ((_CONV, _CONV_S2), (_CONV, _CONV_S2), (_CONV, _CONV, _CONV_S2), (_MAX_POOL,)),
}
# Residual blocks: (count, residual scale, convs per branch); every conv is 1-strided, same.
_BLOCKS: dict[str, tuple[int, float, tuple[int, ...]]] = {
    "block35": (10, 0.17, (1, 2, 3)),
    "block17": (20, 0.1, (1, 3)),
    "block8": (10, 0.2, (1, 3)),
}


@dataclass(frozen=True)
class KerasImport:
    """A Keras InceptionResNetV2 converted to jaxcam.

    Attributes:
      module: the :class:`CAMClassifier` (InceptionResNetV2 backbone, Keras'
        preprocessing as ``pixel_mean = pixel_std = 0.5``).
      variables: ``{'params': ..., 'batch_stats': ...}`` for ``module``.
      fresh_classifier: True when the Keras model had no top and the classifier was
        initialised from ``seed`` (as ``module.init(jax.random.key(seed), ...)``
        would): fine-tune it before reading saliency maps.
      keras_output: the file's classifier activation as a jaxcam output name (the
        raw Keras name if jaxcam has no equivalent), or None when there is no top or
        the file does not record it.
      source: where the weights came from (a path, or ``"keras model <name>"``).
    """

    module: CAMClassifier
    variables: dict[str, Any]
    fresh_classifier: bool
    keras_output: str | None
    source: str

    def bind(self) -> SplitModel:
        """The module bound to its variables (:func:`jaxcam.models.bind`)."""
        return bind(self.module, self.variables)


def load_keras_inception_resnet_v2(
    path: str | os.PathLike[str],
    *,
    num_classes: int | None = None,
    output: str | None = None,
    seed: int = 0,
) -> SplitModel:
    """Load a Keras InceptionResNetV2 file as a bound jaxcam model.

    Same as :func:`import_keras_inception_resnet_v2` followed by ``.bind()``, and
    warns (:class:`UserWarning`) when the file has no classifier and a fresh one was
    initialised.
    """
    imported = import_keras_inception_resnet_v2(
        path, num_classes=num_classes, output=output, seed=seed
    )
    if imported.fresh_classifier:
        warnings.warn(
            f"{imported.source} has no classifier (include_top=False): initialised a fresh "
            f"{imported.module.num_classes}-class Dense from seed={seed}; fine-tune it "
            "before reading saliency maps",
            UserWarning,
            stacklevel=2,
        )
    return imported.bind()


def import_keras_inception_resnet_v2(
    path: str | os.PathLike[str],
    *,
    num_classes: int | None = None,
    output: str | None = None,
    seed: int = 0,
) -> KerasImport:
    """Read a Keras InceptionResNetV2 file into a jaxcam module and its variables.

    Args:
      path: a ``.keras`` archive, a ``.weights.h5`` file, or a legacy ``.h5`` (full
        model or weights only) of ``keras.applications.InceptionResNetV2``, with its
        own top, without a top, or with a GAP -> Dense top (see the module docstring).
      num_classes: required when the file has no classifier; otherwise, if given, it
        must equal the file's class count.
      output: output activation (one of :data:`OUTPUT_ACTIVATIONS`); defaults to the
        file's (``"relu"`` without a top). Required for weights-only files with a top
        other than Keras' own. If it differs from the file's, it wins, with a warning.
      seed: initialises a fresh classifier when the file has none.

    Raises:
      FileNotFoundError: ``path`` does not exist.
      ImportError: keras or h5py is missing.
      ValueError: not a Keras file; not an InceptionResNetV2; a top that is not
        GAP -> Dense; a class count different from ``num_classes``; a missing
        ``num_classes`` or ``output``.
    """
    file = Path(os.fspath(path))
    if not file.is_file():
        raise FileNotFoundError(f"Keras file not found: {str(file)!r}")
    _check_options(num_classes, output, seed)
    keras = _import_keras()
    model, activation_recorded = _read_keras_file(keras, file, num_classes, output)
    return _convert(
        model,
        num_classes=num_classes,
        output=output,
        seed=seed,
        activation_recorded=activation_recorded,
        source=str(file),
    )


def inception_resnet_v2_from_keras(
    model: Any,
    *,
    num_classes: int | None = None,
    output: str | None = None,
    seed: int = 0,
) -> KerasImport:
    """Convert an in-memory Keras 3 InceptionResNetV2 model (see
    :func:`import_keras_inception_resnet_v2` for the accepted tops and arguments)."""
    _check_options(num_classes, output, seed)
    keras = _import_keras()
    if not isinstance(model, keras.Model):
        raise TypeError(f"model must be a keras.Model, got {type(model).__name__}")
    return _convert(
        model,
        num_classes=num_classes,
        output=output,
        seed=seed,
        activation_recorded=True,
        source=f"keras model {model.name!r}",
    )


# --------------------------------------------------------------------------- options


def _check_options(num_classes: int | None, output: str | None, seed: int) -> None:
    if num_classes is not None:
        if isinstance(num_classes, bool) or not isinstance(num_classes, int | np.integer):
            raise TypeError(f"num_classes must be an int or None, got {type(num_classes).__name__}")
        if num_classes < 1:
            raise ValueError(f"num_classes must be >= 1, got {num_classes}")
    if output is not None:
        check_output_activation(output)
    if isinstance(seed, bool) or not isinstance(seed, int | np.integer):
        raise TypeError(f"seed must be an int, got {type(seed).__name__}")


# ------------------------------------------------------------------- keras and files


def _import_keras() -> Any:
    """Import Keras 3 (JAX backend unless KERAS_BACKEND says otherwise) and h5py."""
    os.environ.setdefault("KERAS_BACKEND", "jax")
    try:
        import h5py  # noqa: F401  (Keras needs it for .h5 files)
        import keras
    except ImportError as err:
        raise ImportError(
            f"importing Keras weights needs keras>=3 and h5py: {_INSTALL_HINT} ({err})"
        ) from err
    if int(keras.__version__.split(".")[0]) < 3:
        raise ImportError(
            f"importing Keras weights needs keras>=3, found {keras.__version__}: {_INSTALL_HINT}"
        )
    return keras


def _custom_objects() -> dict[str, Any]:
    """Keras' residual-scale layer, which legacy .h5 configs name without its module."""
    try:
        from keras.src.applications.inception_resnet_v2 import CustomScaleLayer
    except ImportError:  # pragma: no cover - a Keras without it cannot build the model
        return {}
    return {"CustomScaleLayer": CustomScaleLayer}


def _read_keras_file(
    keras: Any, file: Path, num_classes: int | None, output: str | None
) -> tuple[Any, bool]:
    """Load ``file`` as a Keras model; also whether it records the top's activation.

    A weights-only file's top is checked against ``num_classes`` and ``output`` before
    the architecture is built.
    """
    import h5py

    if zipfile.is_zipfile(file):
        return _load_model(keras, file), True
    if not h5py.is_hdf5(file):
        raise ValueError(
            f"{str(file)!r} is not a Keras file: expected a .keras archive or an HDF5 "
            ".h5 / .weights.h5 file"
        )
    with h5py.File(file, "r") as h5:
        try:
            full_model, layout = _inspect_h5(h5, file)
        except (KeyError, IndexError) as err:
            raise ValueError(f"{str(file)!r} is a malformed Keras HDF5 file: {err!r}") from err
    if full_model:
        return _load_model(keras, file), True
    assert layout is not None
    source = str(file)
    if layout.classes is None and num_classes is None:
        raise _no_classifier_error(source)
    if layout.classes is not None:
        _check_class_count(num_classes, layout.classes, source)
        if layout.activation is None and output is None:
            raise _unrecorded_activation_error(source)
    return _build_and_load_weights(keras, file, layout), layout.activation is not None


def _inspect_h5(h5: Any, file: Path) -> tuple[bool, _WeightsLayout | None]:
    """Whether ``h5`` holds a full model; for a weights-only file, its layout."""
    if "model_config" in h5.attrs:
        return True, None
    if "layer_names" in h5.attrs:
        return False, _legacy_weights_layout(h5, file)
    if "layers" in h5:
        if not file.name.endswith(".weights.h5"):
            raise ValueError(
                f"{str(file)!r} is a Keras 3 weights file: Keras only reads it under a name "
                "ending in .weights.h5; rename it"
            )
        return False, _keras3_weights_layout(h5, file)
    raise ValueError(
        f"{NOT_INCEPTION_RESNET_V2}: {str(file)!r} is an HDF5 file but neither a Keras "
        "model nor a Keras weights file"
    )


def _load_model(keras: Any, file: Path) -> Any:
    try:
        return keras.models.load_model(file, compile=False, custom_objects=_custom_objects())
    except Exception as err:
        raise ValueError(f"could not load the Keras model in {str(file)!r}: {err}") from err


@dataclass(frozen=True)
class _WeightsLayout:
    """What a weights-only file says about the model that saved it."""

    nested: bool  # the base is one layer of the saved model
    classes: int | None  # Dense top width; None without a top
    activation: str | None  # the top's activation when known (Keras' own top: softmax)
    in_channels: int


def _decode(names: Any) -> list[str]:
    return [n.decode("utf8") if isinstance(n, bytes) else str(n) for n in names]


def _check_kernel_count(shapes: list[tuple[int, ...]], file: Path) -> None:
    kernels = [s for s in shapes if len(s) == 4]
    if len(kernels) != _NUM_CONV_KERNELS or _CONV_7B_KERNEL not in kernels:
        raise ValueError(
            f"{NOT_INCEPTION_RESNET_V2}: {str(file)!r} holds {len(kernels)} conv kernels "
            f"(InceptionResNetV2 has {_NUM_CONV_KERNELS}, including conv_7b "
            f"{_CONV_7B_KERNEL})"
        )


def _dense_top(shapes: list[list[tuple[int, ...]]], file: Path) -> int | None:
    """Class count of the weighted layers after the base; they must be one Dense."""
    if not shapes:
        return None
    if len(shapes) > 1 or not shapes[0] or len(shapes[0][0]) != 2:
        raise ValueError(
            f"the top of {str(file)!r} is not CAM-compatible (jaxcam needs GAP -> Dense): "
            f"found {len(shapes)} weighted layers after the base, of weight shapes {shapes}"
        )
    return shapes[0][0][1]


def _legacy_weights_layout(h5: Any, file: Path) -> _WeightsLayout:
    """Layout of a legacy weights-only HDF5 file (e.g. Keras' ImageNet weights)."""
    layers = []  # (layer name, [weight names], [shapes]) of the layers with weights
    for name in _decode(h5.attrs["layer_names"]):
        group = h5[name]
        weight_names = _decode(group.attrs.get("weight_names", []))
        if weight_names:
            layers.append((name, weight_names, [tuple(group[w].shape) for w in weight_names]))
    _check_kernel_count([s for _, _, shapes in layers for s in shapes], file)

    def normalised(weight: str) -> str:
        return weight.split(":")[0]

    last_base = max(
        (
            i
            for i, (_, weights, _) in enumerate(layers)
            for w in weights
            if normalised(w).split("/")[-2:] in (["conv_7b", "kernel"], ["conv_7b_bn", "beta"])
        ),
        default=None,
    )
    if last_base is None:
        raise ValueError(
            f"{NOT_INCEPTION_RESNET_V2}: {str(file)!r} has no conv_7b / conv_7b_bn weights"
        )
    expected_base = 1 if len(layers[last_base][1]) > 3 else _NUM_WEIGHTED_LAYERS
    if last_base + 1 != expected_base:
        raise ValueError(
            f"{NOT_INCEPTION_RESNET_V2}: {str(file)!r} has {last_base + 1} layers with weights "
            f"up to conv_7b_bn, expected {expected_base}"
        )
    top = layers[last_base + 1 :]
    classes = _dense_top([shapes for _, _, shapes in top], file)
    known = classes is not None and top[0][0] == "predictions"
    return _WeightsLayout(
        nested=expected_base == 1,  # conv_7b_bn alone has 3 weights, a nested base all
        classes=classes,
        activation="softmax" if known else None,
        in_channels=layers[0][2][0][2],
    )


def _keras3_weights_layout(h5: Any, file: Path) -> _WeightsLayout:
    """Layout of a Keras 3 ``.weights.h5`` file (layers stored by class name and index)."""
    import h5py

    shapes: list[tuple[int, ...]] = []
    h5.visititems(
        lambda _, obj: shapes.append(tuple(obj.shape)) if isinstance(obj, h5py.Dataset) else None
    )
    _check_kernel_count(shapes, file)
    outer = h5["layers"]
    nested = [key for key in outer if "layers" in outer[key]]
    if len(nested) > 1:
        raise ValueError(
            f"{NOT_INCEPTION_RESNET_V2}: {str(file)!r} nests {len(nested)} models ({nested})"
        )
    base = outer[nested[0]]["layers"] if nested else outer

    def weight_shapes(group: Any) -> list[tuple[int, ...]]:
        variables = group.get("vars", {})
        return [tuple(variables[k].shape) for k in sorted(variables, key=int)]

    base_weighted = [key for key in base if weight_shapes(base[key])]
    top = [
        weight_shapes(outer[key])
        for key in outer
        if key not in nested
        and weight_shapes(outer[key])
        and (nested or len(weight_shapes(outer[key])[0]) == 2)
    ]
    if len(base_weighted) - (0 if nested else len(top)) != _NUM_WEIGHTED_LAYERS:
        raise ValueError(
            f"{NOT_INCEPTION_RESNET_V2}: {str(file)!r} holds {len(base_weighted)} layers with "
            f"weights in its base (InceptionResNetV2 has {_NUM_WEIGHTED_LAYERS}, plus its top)"
        )
    return _WeightsLayout(
        nested=bool(nested),
        classes=_dense_top(top, file),
        activation=None,
        in_channels=base["conv2d"]["vars"]["0"].shape[2],
    )


def _build_and_load_weights(keras: Any, file: Path, layout: _WeightsLayout) -> Any:
    """Rebuild the saved architecture with keras.applications and load the weights."""
    base = keras.applications.InceptionResNetV2(
        weights=None, include_top=False, input_shape=(None, None, layout.in_channels)
    )
    model = base
    if layout.classes is not None:
        pool = keras.layers.GlobalAveragePooling2D(name="avg_pool")
        dense = keras.layers.Dense(layout.classes, activation=layout.activation, name="predictions")
        if layout.nested:
            model = keras.Sequential([base, pool, dense])
        else:
            model = keras.Model(base.inputs, dense(pool(base.outputs[0])), name=base.name)
    try:
        model.load_weights(file)
    except Exception as err:
        raise ValueError(
            f"{NOT_INCEPTION_RESNET_V2}: the weights in {str(file)!r} do not fit "
            f"InceptionResNetV2 ({'nested base, ' if layout.nested else ''}"
            f"{'no top' if layout.classes is None else f'{layout.classes}-class top'}): {err}"
        ) from err
    return model


# -------------------------------------------------------------------- graph walking


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


def _activation_name(layer: Any) -> str:
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


def _contains_layer(model: Any, name: str) -> bool:
    for layer in model.layers:
        if layer.name == name or (hasattr(layer, "layers") and _contains_layer(layer, name)):
            return True
    return False


class _Walker:
    """Walks a Keras InceptionResNetV2 graph backwards, collecting its conv layers.

    ``convs`` maps a Flax path under ``backbone`` (e.g. ``("block35_1", "branch2_conv1")``)
    to its Keras (Conv2D, BatchNormalization or None).
    """

    def __init__(self, source: str) -> None:
        self.source = source
        self.convs: dict[tuple[str, ...], tuple[Any, Any | None]] = {}

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

    def conv(self, tensor: Any, step: _Conv, where: str, bias: bool = False) -> tuple[Any, Any]:
        """The Conv2D producing ``tensor``: checked, and returned with its input."""
        _, strides, padding = step
        conv = self.layer(tensor, "Conv2D", where)
        self.check(
            _pair(conv.strides) == (strides, strides),
            conv,
            f"strides {conv.strides}, expected {strides}",
            where,
        )
        self.check(conv.padding == padding, conv, f"padding {conv.padding!r}", where)
        self.check(_pair(conv.dilation_rate) == (1, 1), conv, "a dilation", where)
        self.check(getattr(conv, "groups", 1) == 1, conv, "groups", where)
        self.check(_activation_name(conv) == "linear", conv, "an activation", where)
        self.check(conv.use_bias == bias, conv, f"use_bias={conv.use_bias}", where)
        return conv, self.only_input(tensor, where)

    def conv_bn(
        self, tensor: Any, path: tuple[str, ...], step: _Conv, where: str, relu: bool = True
    ) -> Any:
        """Keras conv2d_bn (Conv2D -> BatchNormalization -> ReLU) producing ``tensor``."""
        if relu:
            act = self.layer(tensor, "Activation", where)
            self.check(_activation_name(act) == "relu", act, "a non-ReLU activation", where)
            tensor = self.only_input(tensor, where)
        bn = self.layer(tensor, "BatchNormalization", where)
        self.check(bn.center and not bn.scale, bn, "center/scale other than (True, False)", where)
        self.check(
            math.isclose(bn.epsilon, _BN_EPSILON), bn, f"epsilon {bn.epsilon} (not 1e-3)", where
        )
        conv, tensor = self.conv(self.only_input(tensor, where), step, where)
        self.convs[path] = (conv, bn)
        return tensor

    def pool(self, tensor: Any, step: _Conv, where: str) -> Any:
        kind, strides, padding = step
        pool = self.layer(
            tensor, "AveragePooling2D" if kind == "avg_pool" else "MaxPooling2D", where
        )
        self.check(_pair(pool.pool_size) == (3, 3), pool, f"pool size {pool.pool_size}", where)
        self.check(_pair(pool.strides) == (strides, strides), pool, "other strides", where)
        self.check(pool.padding == padding, pool, f"padding {pool.padding!r}", where)
        return self.only_input(tensor, where)

    def branch(
        self, tensor: Any, steps: tuple[_Conv, ...], prefix: tuple[str, ...], where: str
    ) -> Any:
        """Walk one branch back to its input; its conv ``c`` is Flax ``(*prefix[:-1],
        f"{prefix[-1]}_conv{c}")``."""
        conv_index = sum(step[0] == "conv" for step in steps)
        for step in reversed(steps):
            if step[0] == "conv":
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

    def mixed(self, tensor: Any, name: str) -> Any:
        spec = _MIXED[name]
        branches = self.concat(tensor, len(spec), name)
        ends = [
            self.branch(t, steps, (f"{name}_b{b}",), name)
            for b, (t, steps) in enumerate(zip(branches, spec, strict=True))
        ]
        return self.shared_input(ends, name)

    def block(self, tensor: Any, kind: str, index: int, scale: float, relu: bool) -> Any:
        """Residual block ``{kind}_{index}``: act(x + scale * up(concat(branches(x))))."""
        where = f"{kind}_{index}"
        if relu:
            act = self.layer(tensor, "Activation", where)
            self.check(_activation_name(act) == "relu", act, "a non-ReLU activation", where)
            tensor = self.only_input(tensor, where)
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
        up, mixed = self.conv(up_out, _CONV, where, bias=True)
        self.convs[(where, "up")] = (up, None)
        convs_per_branch = _BLOCKS[kind][2]
        branches = self.concat(mixed, len(convs_per_branch), where)
        ends = [
            self.branch(t, (_CONV,) * n, (where, f"branch{b}"), where)
            for b, (t, n) in enumerate(zip(branches, convs_per_branch, strict=True))
        ]
        return self.shared_input([x, *ends], where)

    def backbone(self, features: Any) -> Any:
        """Walk from conv_7b_ac's output to the image input; return the input tensor."""
        tensor = self.conv_bn(features, ("conv_7b",), _CONV, "conv_7b")
        for kind, mixed in (
            ("block8", "mixed_7a"),
            ("block17", "mixed_6a"),
            ("block35", "mixed_5b"),
        ):
            count, scale, _ = _BLOCKS[kind]
            for index in range(count, 0, -1):
                last = kind == "block8" and index == count
                tensor = self.block(tensor, kind, index, 1.0 if last else scale, relu=not last)
            tensor = self.mixed(tensor, mixed)
        for name, step in reversed(_STEM):
            if name is None:
                tensor = self.pool(tensor, step, "the stem")
            else:
                tensor = self.conv_bn(tensor, (name,), step, "the stem")
        return tensor


def _walk(walker: _Walker, model: Any) -> list[Any]:
    """Walk the whole model; return its top layers (between conv_7b_ac and the output).

    Walks back from the model's output through the top (descending into a nested base
    model), then through the backbone (:meth:`_Walker.backbone`); the image must enter
    the base straight from an InputLayer.
    """
    tensor = _single_output(model, walker.source)
    top: list[Any] = []
    outer_calls: list[Any] = []  # nested-model calls: their inputs must be plain inputs
    while True:
        layer = _producer(tensor)
        if layer.name == "conv_7b_ac" and _kind(layer) == "Activation":
            break
        if hasattr(layer, "layers") and hasattr(layer, "outputs"):  # a nested model
            outer_calls.append(tensor)
            tensor = _single_output(layer, walker.source)
            continue
        inputs = _node_inputs(tensor)
        if _kind(layer) == "InputLayer" or len(inputs) != 1:
            raise ValueError(
                f"the top of {walker.source} is not CAM-compatible (jaxcam needs GAP -> Dense): "
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
                f"{walker.source}: layers before the InceptionResNetV2 input are not supported "
                f"(found {_kind(layer)} {layer.name!r}); preprocess images outside the model"
            )
    return top[::-1]


def _parse_top(layers: list[Any], source: str) -> tuple[Any | None, str | None]:
    """The top's Dense (None without a top) and its activation's Keras name."""
    kinds = [_kind(layer) for layer in layers if _kind(layer) not in _INFERENCE_IDENTITY]
    kept = [layer for layer in layers if _kind(layer) not in _INFERENCE_IDENTITY]
    if kinds in ([], ["GlobalAveragePooling2D"]):
        return None, None
    trailing = kinds[2:] == ["Activation"] and _activation_name(kept[1]) == "linear"
    if kinds[:2] != ["GlobalAveragePooling2D", "Dense"] or (len(kinds) > 2 and not trailing):
        raise ValueError(
            f"the top of {source} is not CAM-compatible (jaxcam needs GAP -> Dense): got "
            + " -> ".join(f"{kind} {layer.name!r}" for kind, layer in zip(kinds, kept, strict=True))
        )
    if getattr(kept[0], "keepdims", False):
        raise ValueError(f"{source}: GlobalAveragePooling2D {kept[0].name!r} keeps its dims")
    return kept[1], _activation_name(kept[-1])


# ---------------------------------------------------------------------- conversion


def _numpy(variable: Any) -> np.ndarray:
    from keras import ops

    return np.asarray(ops.convert_to_numpy(variable.value))


def _convert(
    model: Any,
    *,
    num_classes: int | None,
    output: str | None,
    seed: int,
    activation_recorded: bool,
    source: str,
) -> KerasImport:
    if not _contains_layer(model, "conv_7b_ac"):
        names = [layer.name for layer in model.layers]
        shown = ", ".join(names[:8]) + (", ..." if len(names) > 8 else "")
        raise ValueError(
            f"{NOT_INCEPTION_RESNET_V2}: {source} has no layer 'conv_7b_ac' ({len(names)} "
            f"layers: {shown})"
        )
    walker = _Walker(source)
    top = _walk(walker, model)
    dense, activation = _parse_top(top, source)

    if dense is None:
        if num_classes is None:
            raise _no_classifier_error(source)
        keras_output = None
        output = output or "relu"
    else:
        num_classes = _check_class_count(num_classes, int(dense.kernel.shape[-1]), source)
        keras_output = _KERAS_TO_OUTPUT.get(activation, activation) if activation_recorded else None
        output = _choose_output(output, keras_output, activation_recorded, source)

    conv_1a = walker.convs[("conv_1a",)][0]
    module = CAMClassifier(
        backbone=InceptionResNetV2(),
        num_classes=num_classes,
        output=output,
        in_channels=int(conv_1a.kernel.shape[2]),
        pixel_mean=KERAS_PIXEL_MEAN,
        pixel_std=KERAS_PIXEL_STD,
    )
    variables = _fill_variables(module, walker.convs, dense, seed, model, source)
    return KerasImport(
        module=module,
        variables=variables,
        fresh_classifier=dense is None,
        keras_output=keras_output,
        source=source,
    )


def _no_classifier_error(source: str) -> ValueError:
    return ValueError(
        f"{source} has no classifier (include_top=False): pass num_classes= to initialise a "
        "fresh one"
    )


def _unrecorded_activation_error(source: str) -> ValueError:
    return ValueError(
        f"{source} holds weights only and does not record the classifier's activation: "
        f"pass output= (one of {OUTPUT_ACTIVATIONS}; 'softmax' for Keras' own top)"
    )


def _check_class_count(num_classes: int | None, classes: int, source: str) -> int:
    """The file's class count, which must equal ``num_classes`` when that is given."""
    if num_classes is not None and num_classes != classes:
        raise ValueError(
            f"num_classes={num_classes}, but the classifier in {source} has {classes} classes"
        )
    return classes


def _choose_output(
    output: str | None, keras_output: str | None, recorded: bool, source: str
) -> str:
    if not recorded:
        if output is None:
            raise _unrecorded_activation_error(source)
        return output
    if output is None:
        if keras_output not in OUTPUT_ACTIVATIONS:
            raise ValueError(
                f"the classifier of {source} has activation {keras_output!r}, which jaxcam does "
                f"not support (outputs: {OUTPUT_ACTIVATIONS}); pass output= to override it "
                "(e.g. 'linear' for its logits)"
            )
        return keras_output
    if output != keras_output:
        warnings.warn(
            f"the classifier of {source} has activation {keras_output!r}; using "
            f"output={output!r} as requested",
            UserWarning,
            stacklevel=4,
        )
    return output


def _fill_variables(
    module: CAMClassifier,
    convs: dict[tuple[str, ...], tuple[Any, Any | None]],
    dense: Any | None,
    seed: int,
    model: Any,
    source: str,
) -> dict[str, Any]:
    """Flax variables of ``module`` from the Keras layers, every leaf set exactly once."""
    size = module.backbone.min_input_size
    init: Callable[[], Any] = lambda: module.init(
        jax.random.key(0), jnp.zeros((1, size, size, module.in_channels), jnp.float32)
    )
    target = traverse_util.flatten_dict(jax.eval_shape(init))
    filled: dict[tuple[str, ...], jax.Array] = {}
    used: set[int] = set()

    def put(key: tuple[str, ...], variable: Any) -> None:
        where = "/".join(key)
        if key not in target:
            raise ValueError(
                f"{NOT_INCEPTION_RESNET_V2}: {source}: Keras weight {variable.path!r} has no "
                f"jaxcam counterpart {where}"
            )
        if key in filled or id(variable) in used:
            raise ValueError(f"{source}: {where} / {variable.path!r} would be set twice")
        value = _numpy(variable)
        if value.shape != target[key].shape:
            raise ValueError(
                f"{NOT_INCEPTION_RESNET_V2}: {source}: Keras weight {variable.path!r} has shape "
                f"{value.shape}, jaxcam's {where} needs {target[key].shape}"
            )
        filled[key] = jnp.asarray(value, target[key].dtype)
        used.add(id(variable))

    for path, (conv, bn) in convs.items():
        base = ("backbone", *path)
        if bn is None:  # residual "up" conv, with a bias
            put(("params", *base, "kernel"), conv.kernel)
            put(("params", *base, "bias"), conv.bias)
            continue
        put(("params", *base, "conv", "kernel"), conv.kernel)
        put(("params", *base, "bn", "bias"), bn.beta)
        put(("batch_stats", *base, "bn", "mean"), bn.moving_mean)
        put(("batch_stats", *base, "bn", "var"), bn.moving_variance)

    if dense is None:
        fresh = module.init(
            jax.random.key(seed),
            jnp.zeros((1, FEATURE_CHANNELS), jnp.float32),
            method=CAMClassifier.pooled_logits,
        )
        filled.update(traverse_util.flatten_dict(fresh))
    else:
        put(("params", "classifier", "kernel"), dense.kernel)
        if dense.use_bias:
            put(("params", "classifier", "bias"), dense.bias)
        else:
            filled[("params", "classifier", "bias")] = jnp.zeros(
                target[("params", "classifier", "bias")].shape, jnp.float32
            )

    leftover = [w.path for w in model.weights if id(w) not in used]
    if leftover:
        raise ValueError(
            f"{NOT_INCEPTION_RESNET_V2}: {source}: {len(leftover)} Keras weight(s) have no "
            f"jaxcam counterpart: {leftover[:5]}"
        )
    missing = sorted("/".join(key) for key in target.keys() - filled.keys())
    if missing:
        raise ValueError(
            f"{NOT_INCEPTION_RESNET_V2}: {source}: {len(missing)} jaxcam variable(s) got no "
            f"Keras weight: {missing[:5]}"
        )
    return traverse_util.unflatten_dict(filled)


__all__ = [
    "FEATURE_CHANNELS",
    "KERAS_PIXEL_MEAN",
    "KERAS_PIXEL_STD",
    "NOT_INCEPTION_RESNET_V2",
    "KerasImport",
    "import_keras_inception_resnet_v2",
    "inception_resnet_v2_from_keras",
    "load_keras_inception_resnet_v2",
]
