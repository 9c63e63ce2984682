"""Importing keras.applications.InceptionResNetV2 weights (jaxcam.models.keras_weights).

One full-size Keras model (random weights, random BatchNorm statistics, JAX backend)
is built per module and shared: its outputs are compared with jaxcam's once (the
8x8x1536 feature map and the scores), and every saved file format is then checked by
exact equality of the imported variables with that verified import.
"""

from __future__ import annotations

import dataclasses
import os
import subprocess
import sys
import warnings

import jax
import jax.numpy as jnp
import numpy as np
import pytest

os.environ.setdefault("KERAS_BACKEND", "jax")
keras = pytest.importorskip("keras")
h5py = pytest.importorskip("h5py")

# Keras 3 itself converts variables with np.array(x) on NumPy 2, which warns thousands
# of times while saving; that noise is not jaxcam's.
pytestmark = [
    pytest.mark.filterwarnings("ignore:__array__ implementation:DeprecationWarning"),
    pytest.mark.slow,  # Keras builds full-size InceptionResNetV2 graphs: `make test-slow`
]

from jaxcam.models import CAMClassifier  # noqa: E402
from jaxcam.models.inception_resnet_v2 import (  # noqa: E402
    IRV2_STRUCTURE,
    Conv,
    InceptionResNetV2,
    scaled_filters,
)
from jaxcam.models.keras_graph import expected_keras_weights  # noqa: E402
from jaxcam.models.keras_weights import (  # noqa: E402
    NOT_INCEPTION_RESNET_V2,
    import_keras_inception_resnet_v2,
    inception_resnet_v2_from_keras,
    load_keras_inception_resnet_v2,
)

SIZE = 299
CAM_TOP = "needs GAP -> Dense"


def _randomise(layers, rng: np.random.Generator) -> None:
    """Non-trivial BatchNorm statistics and biases (Keras initialises them to 0 / 1)."""
    for layer in layers:
        if isinstance(layer, keras.layers.BatchNormalization):
            n = layer.beta.shape[0]
            layer.beta.assign(rng.normal(0.0, 0.2, n).astype(np.float32))
            layer.moving_mean.assign(rng.normal(0.0, 0.2, n).astype(np.float32))
            layer.moving_variance.assign(rng.uniform(0.5, 2.0, n).astype(np.float32))
        elif isinstance(layer, keras.layers.Conv2D | keras.layers.Dense) and layer.use_bias:
            layer.bias.assign(rng.normal(0.0, 0.1, layer.bias.shape).astype(np.float32))


def _dense_top(base, classes: int, activation: str, *, dropout: bool = False, names=(None, None)):
    """base -> GlobalAveragePooling2D -> [Dropout] -> Dense, flat (sharing base's weights)."""
    x = keras.layers.GlobalAveragePooling2D(name=names[0])(base.output)
    if dropout:
        x = keras.layers.Dropout(0.3)(x)
    out = keras.layers.Dense(classes, activation=activation, name=names[1])(x)
    return keras.Model(base.input, out)


def _save_legacy_weights(model, path) -> None:
    """A legacy weights-only HDF5 file, the format of Keras' own ImageNet weights."""
    from keras.src.legacy.saving import legacy_h5_format

    with h5py.File(path, "w") as file:
        legacy_h5_format.save_weights_to_hdf5_group(file, model)


@pytest.fixture(scope="module")
def keras_models():
    """The shared Keras base (include_top=False, 299x299x3) and tops built on it."""
    keras.utils.set_random_seed(0)  # Keras' initialisers draw the kernels: make them fixed
    rng = np.random.default_rng(0)
    base = keras.applications.InceptionResNetV2(
        weights=None, include_top=False, input_shape=(SIZE, SIZE, 3)
    )
    _randomise(base.layers, rng)
    custom = _dense_top(base, 2, "relu", dropout=True)  # a fine-tuned X-ray model
    applications_top = _dense_top(base, 5, "softmax", names=("avg_pool", "predictions"))
    nested = keras.Sequential(
        [base, keras.layers.GlobalAveragePooling2D(), keras.layers.Dense(2, activation="softmax")]
    )
    for model in (custom, applications_top, nested):
        _randomise(model.layers[-1:], rng)
    return {"base": base, "custom": custom, "applications_top": applications_top, "nested": nested}


@pytest.fixture(scope="module")
def reference(keras_models):
    """The in-memory import of the custom-top model, verified against Keras below."""
    return inception_resnet_v2_from_keras(keras_models["custom"])


@pytest.fixture(scope="module")
def saved(keras_models, tmp_path_factory):
    """Every file format, saved once: {name: path}."""
    folder = tmp_path_factory.mktemp("keras_files")
    paths = {}
    custom = keras_models["custom"]
    paths["custom.keras"] = folder / "custom.keras"
    custom.save(paths["custom.keras"])
    paths["custom.weights.h5"] = folder / "custom.weights.h5"
    custom.save_weights(paths["custom.weights.h5"])
    paths["custom.h5"] = folder / "custom.h5"
    with warnings.catch_warnings():  # Keras warns that .h5 is a legacy format
        warnings.simplefilter("ignore")
        custom.save(paths["custom.h5"])
    paths["applications_legacy.h5"] = folder / "applications_legacy.h5"
    _save_legacy_weights(keras_models["applications_top"], paths["applications_legacy.h5"])
    paths["notop.weights.h5"] = folder / "notop.weights.h5"
    keras_models["base"].save_weights(paths["notop.weights.h5"])
    paths["nested.keras"] = folder / "nested.keras"
    keras_models["nested"].save(paths["nested.keras"])
    return paths


def _images() -> np.ndarray:
    """Two raw images in [0, 1]: noise, and a smooth colour gradient."""
    rng = np.random.default_rng(1)
    ramp = np.linspace(0.0, 1.0, SIZE, dtype=np.float32)
    gradient = np.stack(np.broadcast_arrays(ramp[:, None], ramp[None, :], 0.3), axis=-1)
    return np.stack([rng.uniform(size=(SIZE, SIZE, 3)), gradient]).astype(np.float32)


def _assert_same_tree(actual, expected) -> None:
    assert jax.tree_util.tree_structure(actual) == jax.tree_util.tree_structure(expected)
    leaves = zip(
        jax.tree_util.tree_leaves(actual), jax.tree_util.tree_leaves(expected), strict=True
    )
    for a, e in leaves:
        assert a.dtype == e.dtype and a.shape == e.shape
        np.testing.assert_array_equal(np.asarray(a), np.asarray(e))


def _backbone(variables):
    return {kind: {"backbone": tree["backbone"]} for kind, tree in variables.items()}


def test_features_and_scores_match_keras(keras_models, reference):
    base, custom = keras_models["base"], keras_models["custom"]
    module = reference.module
    assert (module.num_classes, module.output, module.in_channels) == (2, "relu", 3)
    assert (module.pixel_mean, module.pixel_std) == (0.5, 0.5)
    assert not reference.fresh_classifier and reference.keras_output == "relu"

    images = _images()
    probe = keras.Model(base.input, [base.get_layer("conv_7b_ac").output, custom.output])
    preprocessed = keras.applications.inception_resnet_v2.preprocess_input(images * 255.0)
    keras_features, keras_scores = probe.predict(preprocessed, verbose=0)  # jitted: fastest

    features = np.asarray(
        jax.jit(lambda v, x: module.apply(v, x, method=CAMClassifier.features))(
            reference.variables, jnp.asarray(images)
        )
    )
    scores = np.asarray(module.apply(reference.variables, features, method=CAMClassifier.head))
    assert features.shape == keras_features.shape == (2, 8, 8, 1536)
    scale = np.abs(keras_features).max()
    assert 0.1 < scale < 100 and 0.2 < (keras_features > 0).mean() < 0.9  # a non-degenerate A
    assert np.abs(keras_scores).max() > 0.1
    # Both sides compute in float32 through ~450 layers, with the BatchNorm arithmetic
    # arranged differently (Keras: (x - mean) * rsqrt(var + eps) + beta), so they agree to
    # rounding only: measured max |error| 1.1e-6 on A (max |A| 1.66, i.e. 6e-7 relative,
    # ~5 float32 ulps) and 1.2e-7 on the scores (~0.2-0.75). The bounds leave ~100x margin;
    # a wrongly mapped weight gives errors of order 1.
    np.testing.assert_allclose(features, keras_features, rtol=0, atol=1e-4 * scale)
    np.testing.assert_allclose(scores, keras_scores, rtol=0, atol=1e-5)


@pytest.mark.parametrize(
    ("name", "options"),
    [("custom.keras", {}), ("custom.h5", {}), ("custom.weights.h5", {"output": "relu"})],
)
def test_every_format_gives_the_verified_variables(saved, reference, name, options):
    imported = import_keras_inception_resnet_v2(saved[name], **options)
    assert imported.module == reference.module and not imported.fresh_classifier
    _assert_same_tree(imported.variables, reference.variables)
    assert imported.keras_output == (None if name.endswith(".weights.h5") else "relu")


def test_keras_own_top_from_legacy_weights_is_softmax(keras_models, saved, reference):
    # Keras' ImageNet files are of this kind: weights only, the Dense named "predictions".
    model = load_keras_inception_resnet_v2(saved["applications_legacy.h5"])
    assert (model.num_classes, model.output) == (5, "softmax")
    _assert_same_tree(_backbone(model.variables), _backbone(reference.variables))
    dense = keras_models["applications_top"].get_layer("predictions")
    np.testing.assert_array_equal(model.variables["params"]["classifier"]["kernel"], dense.kernel)
    np.testing.assert_array_equal(model.variables["params"]["classifier"]["bias"], dense.bias)


def test_nested_base(keras_models, saved, reference):
    imported = import_keras_inception_resnet_v2(saved["nested.keras"])
    assert (imported.module.num_classes, imported.module.output) == (2, "softmax")
    _assert_same_tree(_backbone(imported.variables), _backbone(reference.variables))
    dense = keras_models["nested"].layers[-1]
    np.testing.assert_array_equal(
        imported.variables["params"]["classifier"]["kernel"], dense.kernel
    )


def test_no_top_gets_a_fresh_classifier(saved, reference):
    with pytest.warns(UserWarning, match="no classifier"):
        model = load_keras_inception_resnet_v2(saved["notop.weights.h5"], num_classes=3, seed=4)
    assert (model.num_classes, model.output) == (3, "relu")
    _assert_same_tree(_backbone(model.variables), _backbone(reference.variables))
    fresh = model.module.init(
        jax.random.key(4), jnp.zeros((1, 1536)), method=CAMClassifier.pooled_logits
    )
    _assert_same_tree(model.variables["params"]["classifier"], fresh["params"]["classifier"])
    with pytest.raises(ValueError, match="pass num_classes="):
        import_keras_inception_resnet_v2(saved["notop.weights.h5"])


def test_single_channel_model():
    # An X-ray model trained from scratch on 1-channel images (weights=None allows it).
    base = keras.applications.InceptionResNetV2(
        weights=None, include_top=False, input_shape=(None, None, 1)
    )
    imported = inception_resnet_v2_from_keras(base, num_classes=2)
    assert imported.module.in_channels == 1 and imported.fresh_classifier
    kernel = imported.variables["params"]["backbone"]["conv_1a"]["conv"]["kernel"]
    np.testing.assert_array_equal(kernel, keras.ops.convert_to_numpy(base.layers[1].kernel))


def test_output_override_and_unsupported_activation(keras_models):
    with pytest.warns(UserWarning, match="activation 'relu'; using output='linear'"):
        imported = inception_resnet_v2_from_keras(keras_models["custom"], output="linear")
    assert imported.module.output == "linear" and imported.keras_output == "relu"
    with pytest.raises(ValueError, match=r"num_classes=3, but .* has 2 classes"):
        inception_resnet_v2_from_keras(keras_models["custom"], num_classes=3)
    sigmoid = _dense_top(keras_models["base"], 2, "sigmoid")
    with pytest.raises(ValueError, match="activation 'sigmoid'.*pass output="):
        inception_resnet_v2_from_keras(sigmoid)
    with pytest.warns(UserWarning, match="activation 'sigmoid'"):
        assert inception_resnet_v2_from_keras(sigmoid, output="linear").module.output == "linear"


def test_file_errors(saved, tmp_path):
    before = sorted(os.listdir(saved["custom.keras"].parent))
    with pytest.raises(FileNotFoundError, match="missing.keras"):
        import_keras_inception_resnet_v2(tmp_path / "missing.keras")
    # Weights-only files are checked before Keras builds the architecture: these fail fast.
    with pytest.raises(ValueError, match=r"num_classes=3, but .* has 2 classes"):
        import_keras_inception_resnet_v2(saved["custom.weights.h5"], num_classes=3, output="relu")
    with pytest.raises(ValueError, match="does not record the classifier's activation"):
        import_keras_inception_resnet_v2(saved["custom.weights.h5"])
    text = tmp_path / "notes.h5"
    text.write_text("not hdf5")
    with pytest.raises(ValueError, match="is not a Keras file"):
        import_keras_inception_resnet_v2(text)
    with pytest.raises(ValueError, match="output activation must be one of"):
        import_keras_inception_resnet_v2(saved["custom.keras"], output="sigmoid")
    with pytest.raises(TypeError, match="num_classes must be an int"):
        import_keras_inception_resnet_v2(saved["custom.keras"], num_classes=2.0)
    assert sorted(os.listdir(saved["custom.keras"].parent)) == before  # nothing written


def test_small_model_is_rejected(tmp_path):
    small = keras.Sequential(
        [
            keras.Input((16, 16, 3)),
            keras.layers.Conv2D(4, 3),
            keras.layers.GlobalAveragePooling2D(),
            keras.layers.Dense(2),
        ]
    )
    small.save(tmp_path / "small.keras")
    small.save_weights(tmp_path / "small.weights.h5")
    for name in ("small.keras", "small.weights.h5"):
        with pytest.raises(ValueError, match=f"{NOT_INCEPTION_RESNET_V2}: .*{name}"):
            import_keras_inception_resnet_v2(tmp_path / name, output="linear")


def test_non_cam_tops_are_rejected(keras_models, tmp_path):
    base = keras_models["base"]
    pooled = keras.layers.GlobalAveragePooling2D()(base.output)
    hidden = keras.Model(
        base.input, keras.layers.Dense(2)(keras.layers.Dense(8, activation="relu")(pooled))
    )
    max_pooled = keras.Model(
        base.input, keras.layers.Dense(2)(keras.layers.GlobalMaxPooling2D()(base.output))
    )
    for model in (hidden, max_pooled):
        with pytest.raises(ValueError, match=CAM_TOP):
            inception_resnet_v2_from_keras(model)
    hidden.save_weights(tmp_path / "hidden.weights.h5")
    with pytest.raises(ValueError, match=CAM_TOP):
        import_keras_inception_resnet_v2(tmp_path / "hidden.weights.h5", output="linear")
    assert sorted(os.listdir(tmp_path)) == ["hidden.weights.h5"]


def test_preprocessing_inside_the_model_is_rejected(keras_models):
    inputs = keras.Input((SIZE, SIZE, 3))
    rescaled = keras.layers.Rescaling(1 / 127.5, offset=-1.0)(inputs)
    features = keras_models["base"](rescaled)
    model = keras.Model(
        inputs, keras.layers.Dense(2)(keras.layers.GlobalAveragePooling2D()(features))
    )
    with pytest.raises(ValueError, match="layers before the InceptionResNetV2 input"):
        inception_resnet_v2_from_keras(model)


def test_missing_keras_is_a_clear_import_error(monkeypatch):
    monkeypatch.setitem(sys.modules, "keras", None)
    with pytest.raises(ImportError, match=r"pip install 'jaxcam\[keras\]'"):
        inception_resnet_v2_from_keras(object())


def test_importing_jaxcam_does_not_import_keras():
    code = (
        "import sys, jaxcam, jaxcam.models, jaxcam.models.keras_weights; "
        "assert 'keras' not in sys.modules"
    )
    subprocess.run([sys.executable, "-c", code], check=True, timeout=120)


# --- the importer reads jaxcam's structure table ------------------------------------------


def _weighted_layer_counts(model) -> tuple[int, int]:
    """(Conv2D layers, layers with weights) of a Keras model, counted by Keras."""
    convs = sum(isinstance(layer, keras.layers.Conv2D) for layer in model.layers)
    return convs, sum(bool(layer.weights) for layer in model.layers)


def test_keras_counts_its_layers_as_the_table_says(keras_models):
    expected = expected_keras_weights(InceptionResNetV2())
    assert _weighted_layer_counts(keras_models["base"]) == (244, 448)
    assert (expected.conv_kernels, expected.weighted_layers) == (244, 448)
    assert tuple(keras_models["base"].get_layer("conv_7b").kernel.shape) == expected.final_kernel


ZEROS = {"kernel_initializer": "zeros"}


def _keras_from_table(backbone: InceptionResNetV2, size: int = 75):
    """A Keras model laid out like keras.applications' InceptionResNetV2 (conv2d_bn,
    CustomScaleLayer), with ``backbone``'s blocks and widths; its output is conv_7b_ac.

    The kernels start at zero (Keras' random initialisers compile once per shape, which
    is slow): :func:`_random_kernels` fills them.
    """
    from keras.src.applications.inception_resnet_v2 import CustomScaleLayer

    layers = keras.layers

    def conv_bn(x, conv: Conv, name=None):
        filters = scaled_filters(conv.filters, backbone.width_scale)
        padding = conv.padding.lower()
        x = layers.Conv2D(
            filters, conv.kernel, conv.strides, padding, use_bias=False, name=name, **ZEROS
        )(x)
        bn_name, relu_name = (f"{name}_bn", f"{name}_ac") if name else (None, None)
        x = layers.BatchNormalization(scale=False, epsilon=1e-3, name=bn_name)(x)
        return layers.Activation("relu", name=relu_name)(x)

    def branch(x, steps):
        for step in steps:
            if isinstance(step, Conv):
                x = conv_bn(x, step)
            else:
                pool = layers.MaxPooling2D if step.kind == "max" else layers.AveragePooling2D
                x = pool(3, step.strides, step.padding.lower())(x)
        return x

    inputs = keras.Input((size, size, 3))
    x = inputs
    for name, step in backbone.layout.stem:
        x = conv_bn(x, step, name) if isinstance(step, Conv) else branch(x, (step,))
    for stage in backbone.layout.stages:
        x = layers.Concatenate()([branch(x, steps) for steps in stage.entry.branches])
        residual = stage.residual
        for i in range(1, residual.count + 1):
            last = residual.plain_last and i == residual.count
            mixed = layers.Concatenate()([branch(x, convs) for convs in residual.branches])
            up = layers.Conv2D(x.shape[-1], 1, padding="same", use_bias=True, **ZEROS)(mixed)
            x = CustomScaleLayer(1.0 if last else residual.scale)([x, up])
            if not last:
                x = layers.Activation("relu")(x)
    name, final = backbone.layout.final
    return keras.Model(inputs, conv_bn(x, final, name))


def _random_kernels(layers, rng: np.random.Generator) -> None:
    """He-normal conv kernels, drawn with NumPy."""
    for layer in layers:
        if isinstance(layer, keras.layers.Conv2D):
            shape = layer.kernel.shape
            std = np.sqrt(2.0 / np.prod(shape[:-1]))
            layer.kernel.assign(rng.normal(0.0, std, shape).astype(np.float32))


def test_importer_follows_the_structure_table():
    backbone = InceptionResNetV2(repeats=(1, 2, 1), width_scale=1 / 16)
    model = _keras_from_table(backbone)
    rng = np.random.default_rng(3)
    _random_kernels(model.layers, rng)
    _randomise(model.layers, rng)
    # Keras' own count of the tiny model: 5 + 7 + 6 + 4 + 2*4 + 7 + 4 + 1 = 42 conv2d_bn
    # and 4 "up" convs; the table gives the same.
    expected = expected_keras_weights(backbone)
    assert _weighted_layer_counts(model) == (46, 88)
    assert (expected.conv_kernels, expected.weighted_layers) == (46, 88)

    imported = inception_resnet_v2_from_keras(model, num_classes=2, backbone=backbone)
    assert imported.module.backbone == backbone and imported.module.in_channels == 3
    images = np.random.default_rng(4).uniform(size=(2, 75, 75, 3)).astype(np.float32)
    keras_features = model.predict(images / 0.5 - 1.0, verbose=0)  # preprocess_input(255 x)
    features_fn = lambda v, x: imported.module.apply(v, x, method=CAMClassifier.features)
    args = (imported.variables, jnp.asarray(images))
    # One XLA program with backend optimisations off: the fastest to compile and run once.
    options = {"xla_backend_optimization_level": 0}
    features = jax.jit(features_fn).lower(*args).compile(compiler_options=options)(*args)
    assert features.shape == keras_features.shape == (2, 1, 1, 96)
    scale = np.abs(keras_features).max()
    assert scale > 0.1
    # Float32 rounding only (measured max |error| 1.9e-6 at max |A| 7.9); a wrongly
    # mapped weight gives errors of order 1.
    np.testing.assert_allclose(features, keras_features, rtol=0, atol=1e-4 * scale)

    # The same Keras model against other tables: the default (full width), one block17
    # fewer, or another block17 residual scale.
    with pytest.raises(
        ValueError, match=f"{NOT_INCEPTION_RESNET_V2}: .* 96 filters, expected 1536"
    ):
        inception_resnet_v2_from_keras(model, num_classes=2)
    fewer = backbone.clone(repeats=(1, 1, 1))
    with pytest.raises(ValueError, match="expected a Concatenate in mixed_6a, found Activation"):
        inception_resnet_v2_from_keras(model, num_classes=2, backbone=fewer)
    stage = IRV2_STRUCTURE.stages[1]
    rescaled = dataclasses.replace(stage, residual=dataclasses.replace(stage.residual, scale=0.3))
    changed = dataclasses.replace(
        IRV2_STRUCTURE, stages=(IRV2_STRUCTURE.stages[0], rescaled, IRV2_STRUCTURE.stages[2])
    )
    with pytest.raises(ValueError, match=r"block17_2 has scale 0.1, not 0.3"):
        inception_resnet_v2_from_keras(
            model, num_classes=2, backbone=backbone.clone(structure=changed)
        )
