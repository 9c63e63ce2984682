"""Reading Keras InceptionResNetV2 files: format detection, weights-only layouts, loading.

``.keras`` archives and full-model ``.h5`` files are loaded with
``keras.models.load_model``. A weights-only file (legacy ``.h5`` or Keras 3
``.weights.h5``) carries no architecture: its HDF5 layout is inspected with h5py
(checked against the layer counts that :func:`~jaxcam.models.keras_graph.expected_keras_weights`
derives from the structure table), and the architecture is rebuilt with
``keras.applications.InceptionResNetV2`` for Keras to load the weights into.
"""

from __future__ import annotations

import os
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from jaxcam.models.inception_resnet_v2 import IRV2_STRUCTURE, InceptionResNetV2
from jaxcam.models.keras_graph import NOT_INCEPTION_RESNET_V2, expected_keras_weights, keras_names
from jaxcam.models.outputs import OUTPUT_ACTIVATIONS

_INSTALL_HINT = "pip install 'jaxcam[keras]'"


# -------------------------------------------------------------- errors about the top


def no_classifier_error(source: str) -> ValueError:
    return ValueError(
        f"{source} has no classifier (include_top=False): pass num_classes= to initialise a "
        "fresh one"
    )


def unrecorded_activation_error(source: str) -> ValueError:
    return ValueError(
        f"{source} holds weights only and does not record the classifier's activation: "
        f"pass output= (one of {OUTPUT_ACTIVATIONS}; 'softmax' for Keras' own top)"
    )


def check_class_count(num_classes: int | None, classes: int, source: str) -> int:
    """The file's class count, which must equal ``num_classes`` when that is given."""
    if num_classes is not None and num_classes != classes:
        raise ValueError(
            f"num_classes={num_classes}, but the classifier in {source} has {classes} classes"
        )
    return classes


# ------------------------------------------------------------------- keras and files


def import_keras() -> Any:
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


def read_keras_file(
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
        raise no_classifier_error(source)
    if layout.classes is not None:
        check_class_count(num_classes, layout.classes, source)
        if layout.activation is None and output is None:
            raise unrecorded_activation_error(source)
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


# ----------------------------------------------------------- weights-only layouts


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
    expected = expected_keras_weights(InceptionResNetV2())
    kernels = [s for s in shapes if len(s) == 4]
    if len(kernels) != expected.conv_kernels or expected.final_kernel not in kernels:
        raise ValueError(
            f"{NOT_INCEPTION_RESNET_V2}: {str(file)!r} holds {len(kernels)} conv kernels "
            f"(InceptionResNetV2 has {expected.conv_kernels}, including "
            f"{IRV2_STRUCTURE.final[0]} {expected.final_kernel})"
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

    final_conv, final_bn, _ = keras_names(IRV2_STRUCTURE.final[0])
    last_weights = ([final_conv, "kernel"], [final_bn, "beta"])
    last_base = max(
        (
            i
            for i, (_, weights, _) in enumerate(layers)
            for w in weights
            if w.split(":")[0].split("/")[-2:] in last_weights
        ),
        default=None,
    )
    if last_base is None:
        raise ValueError(
            f"{NOT_INCEPTION_RESNET_V2}: {str(file)!r} has no {final_conv} / {final_bn} weights"
        )
    # The final BatchNormalization alone has 3 weights; a nested base has them all.
    nested = len(layers[last_base][1]) > 3
    expected_base = 1 if nested else expected_keras_weights(InceptionResNetV2()).weighted_layers
    if last_base + 1 != expected_base:
        raise ValueError(
            f"{NOT_INCEPTION_RESNET_V2}: {str(file)!r} has {last_base + 1} layers with weights "
            f"up to {final_bn}, expected {expected_base}"
        )
    top = layers[last_base + 1 :]
    classes = _dense_top([shapes for _, _, shapes in top], file)
    known = classes is not None and top[0][0] == "predictions"
    return _WeightsLayout(
        nested=nested,
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
    expected = expected_keras_weights(InceptionResNetV2()).weighted_layers
    if len(base_weighted) - (0 if nested else len(top)) != expected:
        raise ValueError(
            f"{NOT_INCEPTION_RESNET_V2}: {str(file)!r} holds {len(base_weighted)} layers with "
            f"weights in its base (InceptionResNetV2 has {expected}, plus its top)"
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
