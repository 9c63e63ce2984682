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
flat or nested base, input channels) is inspected with h5py
(:mod:`jaxcam.models.keras_files`), checked against ``num_classes`` / ``output``, and
the architecture rebuilt with
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
built with ``pixel_mean = KERAS_PIXEL_MEAN = 0.5`` and ``pixel_std = KERAS_PIXEL_STD =
0.5`` (``(x - 0.5) / 0.5 = u / 127.5 - 1``; :mod:`jaxcam.models.pixel_stats`).
The number of input channels is read from the first conv kernel.

**Mapping.** Keras names most layers by a global counter (``conv2d_12``,
``batch_normalization_12``), and ``model.layers`` is not in creation order, so the
weights are matched by *structure*
(:mod:`jaxcam.models.keras_graph`): the graph is walked backwards from the layer
``conv_7b_ac`` through the stages of the backbone's structure table
(:data:`~jaxcam.models.inception_resnet_v2.IRV2_STRUCTURE`: conv_7b, the block8
blocks, mixed_7a, the block17 blocks, mixed_6a, the block35 blocks, mixed_5b) and the
stem down to the input, checking every layer kind, filter count, kernel size, stride,
padding, residual scale and BatchNorm setting on the way against the table, and each
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

import os
import warnings
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
from jaxcam.models.inception_resnet_v2 import FEATURE_CHANNELS, Conv, InceptionResNetV2
from jaxcam.models.keras_files import (
    check_class_count,
    import_keras,
    no_classifier_error,
    read_keras_file,
    unrecorded_activation_error,
)
from jaxcam.models.keras_graph import (
    NOT_INCEPTION_RESNET_V2,
    ConvLayers,
    contains_layer,
    final_activation_name,
    parse_top,
    walk_keras_model,
)
from jaxcam.models.pixel_stats import KERAS_PIXEL_MEAN, KERAS_PIXEL_STD

# Keras activation names -> jaxcam output activations.
_KERAS_TO_OUTPUT = {"relu": "relu", "softmax": "softmax", "linear": "linear", "exponential": "exp"}


@dataclass(frozen=True)
class KerasImport:
    """A Keras InceptionResNetV2 converted to jaxcam.

    Attributes:
      module: the :class:`CAMClassifier` (InceptionResNetV2 backbone, Keras'
        preprocessing as ``pixel_mean``, ``pixel_std`` = :data:`KERAS_PIXEL_MEAN`,
        :data:`KERAS_PIXEL_STD`).
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
    keras = import_keras()
    model, activation_recorded = read_keras_file(keras, file, num_classes, output)
    return _convert(
        model,
        InceptionResNetV2(),
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
    backbone: InceptionResNetV2 | None = None,
) -> KerasImport:
    """Convert an in-memory Keras 3 InceptionResNetV2 model (see
    :func:`import_keras_inception_resnet_v2` for the accepted tops and arguments).

    ``backbone`` is the jaxcam backbone the Keras model must mirror, layer for layer
    (default ``InceptionResNetV2()``, i.e. ``keras.applications``'); a variant with
    other ``repeats``, ``width_scale`` or ``structure`` imports a Keras model built
    the same way.
    """
    _check_options(num_classes, output, seed)
    if backbone is None:
        backbone = InceptionResNetV2()
    elif not isinstance(backbone, InceptionResNetV2):
        raise TypeError(f"backbone must be an InceptionResNetV2, got {type(backbone).__name__}")
    keras = import_keras()
    if not isinstance(model, keras.Model):
        raise TypeError(f"model must be a keras.Model, got {type(model).__name__}")
    return _convert(
        model,
        backbone,
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


# ---------------------------------------------------------------------- conversion


def _numpy(variable: Any) -> np.ndarray:
    from keras import ops

    return np.asarray(ops.convert_to_numpy(variable.value))


def _convert(
    model: Any,
    backbone: InceptionResNetV2,
    *,
    num_classes: int | None,
    output: str | None,
    seed: int,
    activation_recorded: bool,
    source: str,
) -> KerasImport:
    features_layer = final_activation_name(backbone)
    if not contains_layer(model, features_layer):
        names = [layer.name for layer in model.layers]
        shown = ", ".join(names[:8]) + (", ..." if len(names) > 8 else "")
        raise ValueError(
            f"{NOT_INCEPTION_RESNET_V2}: {source} has no layer {features_layer!r} "
            f"({len(names)} layers: {shown})"
        )
    convs, top = walk_keras_model(model, backbone, source)
    dense, activation = parse_top(top, source)

    if dense is None:
        if num_classes is None:
            raise no_classifier_error(source)
        keras_output = None
        output = output or "relu"
    else:
        num_classes = check_class_count(num_classes, int(dense.kernel.shape[-1]), source)
        keras_output = (
            _KERAS_TO_OUTPUT.get(activation, activation)
            if activation_recorded and activation is not None
            else None
        )
        output = _choose_output(output, keras_output, activation_recorded, source)

    first_conv = next(name for name, step in backbone.layout.stem if isinstance(step, Conv))
    in_channels = int(convs[(str(first_conv),)][0].kernel.shape[2])  # HWIO
    module = CAMClassifier(
        backbone=backbone,
        num_classes=num_classes,
        output=output,
        in_channels=in_channels,
        pixel_mean=KERAS_PIXEL_MEAN,
        pixel_std=KERAS_PIXEL_STD,
    )
    variables = _fill_variables(module, convs, dense, seed, model, source)
    return KerasImport(
        module=module,
        variables=variables,
        fresh_classifier=dense is None,
        keras_output=keras_output,
        source=source,
    )


def _choose_output(
    output: str | None, keras_output: str | None, recorded: bool, source: str
) -> str:
    if not recorded:
        if output is None:
            raise unrecorded_activation_error(source)
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
    convs: ConvLayers,
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
        backbone = module.backbone
        channels = backbone.layout.feature_channels(backbone.width_scale)
        fresh = module.init(
            jax.random.key(seed),
            jnp.zeros((1, channels), jnp.float32),
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
