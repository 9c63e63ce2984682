"""experiments/higher_order.py and higher_order_layers.py on tiny settings: exact vs
closed-form Grad-CAM++; SmallCNN's activation option."""

import argparse
import json
import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from conftest import load_script

import jaxcam
from jaxcam.models import SmallCNN
from jaxcam.saliency import grad_cam_plus_plus, grad_cam_plus_plus_derivatives


def load():
    return load_script("experiments/higher_order.py")


@pytest.mark.slow  # a whole experiment: `make test-slow` (and CI) runs it
def test_higher_order_experiment_rows(tmp_path, capsys):
    tiny = ["--train-size", "8", "--test-size", "4", "--epochs", "1", "--image-size", "32"]
    synthetic = ["--examples", "8", "--shape", "3,3,8", "--classes", "4", "--hidden", "16"]
    results = load().main([*tiny, *synthetic, "--out", str(tmp_path)])
    printed = capsys.readouterr().out
    saved = json.loads((tmp_path / "results.json").read_text())
    rows = results["rows"]
    assert saved["rows"] == rows
    for name in rows:
        assert any(line.startswith(f"{name} ") for line in printed.splitlines()), name

    for name in ("linear exp", "phantom exp"):  # Y = exp(S), S linear in A: closed form exact
        assert rows[name]["alpha_error"]["max"] < 1e-4
        assert rows[name]["correlation"]["min"] > 0.9999
    for name in ("linear relu", "phantom relu"):  # d2 = d3 = 0: alpha := 0, zero maps
        assert rows[name]["zero_maps"]["exact"] == 1.0
        assert rows[name]["zero_maps"]["closed"] < 1.0
        assert rows[name]["correlation"]["mean"] is None
    saturated = rows["saturated softmax"]
    assert saturated["logit_size_median"] > 2900
    assert saturated["zero_maps"]["naive"] == 1.0  # the paper's §5.3 failure
    assert saturated["zero_maps"]["exact"] < 1.0  # the stable form avoids it
    assert rows["mlp exp"]["alpha_error"]["max"] > 1e-3  # the closed form ignores curvature
    assert saved["phantom"]["feature_map"] == [4, 4, 64]


# ----------------------------------------------------------------------------
# SmallCNN's activation option and experiments/higher_order_layers.py.


def pre_activation_and_output(activation: str, images: np.ndarray):
    """(BatchNorm_1's output, the backbone's output) of a one-stage SmallCNN, seed 0."""
    module = SmallCNN(widths=(2,), activation=activation)
    variables = module.init(jax.random.key(0), jnp.zeros((1, 8, 8, 1)))
    output, state = module.apply(
        variables, jnp.asarray(images), capture_intermediates=True, mutable=["intermediates"]
    )
    (pre,) = state["intermediates"]["BatchNorm_1"]["__call__"]
    return variables, np.asarray(pre, np.float64), np.asarray(output, np.float64)


def test_small_cnn_activation_option():
    images = 4.0 * np.random.default_rng(0).uniform(size=(2, 8, 8, 1)).astype(np.float32)
    relu_variables, pre, relu_out = pre_activation_and_output("relu", images)
    gelu_variables, gelu_pre, gelu_out = pre_activation_and_output("gelu", images)
    default = SmallCNN(widths=(2,))
    assert default.activation == "relu"
    np.testing.assert_array_equal(
        np.asarray(default.apply(relu_variables, jnp.asarray(images))), relu_out
    )
    # No parameters of its own: the same variables (checkpoints stay loadable) and inputs.
    shapes = jax.tree.map(np.shape, gelu_variables)
    assert shapes["params"] == {
        "Conv_0": {"kernel": (3, 3, 1, 2)},
        "BatchNorm_0": {"scale": (2,), "bias": (2,)},
        "Conv_1": {"kernel": (3, 3, 2, 2)},
        "BatchNorm_1": {"scale": (2,), "bias": (2,)},
    }
    jax.tree.map(np.testing.assert_array_equal, relu_variables, gelu_variables)

    np.testing.assert_array_equal(relu_out, np.maximum(pre, 0.0))
    x = gelu_pre  # the last activation's input (the first one's differs from ReLU's)
    assert np.min(x) < -1.0 and np.max(x) > 1.0  # both sides of the nonlinearity
    erf = np.vectorize(math.erf)
    exact_gelu = x * 0.5 * (1.0 + erf(x / math.sqrt(2.0)))
    tanh_gelu = 0.5 * x * (1.0 + np.tanh(math.sqrt(2.0 / math.pi) * (x + 0.044715 * x**3)))
    np.testing.assert_allclose(gelu_out, exact_gelu, atol=2e-6)
    assert np.max(np.abs(exact_gelu - tanh_gelu)) > 1e-4  # so the check tells erf from tanh

    with pytest.raises(ValueError, match="activation must be one of"):
        SmallCNN(activation="tanh")
    with pytest.raises(ValueError, match="activation must be one of"):
        jaxcam.create_model("small_cnn", activation="swish")
    assert jaxcam.create_model("small_cnn", activation="gelu").backbone.activation == "gelu"


def layers_load():
    return load_script("experiments/higher_order_layers.py")


def untrained_small_cnn(activation: str):
    """A one-stage (8x8x2 maps) 3-class small CNN with an ``exp`` output, seed 0, bound."""
    module = jaxcam.create_model(
        "small_cnn", num_classes=3, output="exp", widths=(2,), activation=activation
    )
    return jaxcam.bind(module, module.init(jax.random.key(0), jnp.zeros((1, 8, 8, 1))))


def tiny_images() -> jax.Array:
    return jnp.asarray(4.0 * np.random.default_rng(1).uniform(size=(2, 8, 8, 1)), jnp.float32)


def test_relu_network_exp_score_closed_form_is_exact_at_inner_layers():
    # Below any layer the ReLU body is piecewise linear, so S is (locally) linear in A_L
    # and Y = exp(S) has d2 = Y g^2, d3 = Y g^3: alpha and the map are the closed form's.
    script = layers_load()
    layers = ("backbone/Conv_0", "backbone/BatchNorm_1")
    args = argparse.Namespace(layers=layers, alpha_rtol=1e-3)
    rows = script.layer_rows("relu", untrained_small_cnn("relu"), tiny_images(), args)
    assert list(rows) == [f"relu {layer}" for layer in layers]
    for row in rows.values():
        assert row["shape"] == [8, 8, 2] and row["examples"] == 2
        assert row["alpha_changed"]["max"] == 0.0
        assert row["one_minus_corr"]["defined"] == 2
        assert abs(row["one_minus_corr"]["max"]) < 1e-5
        assert row["weight_change"]["max"] < 1e-5
        assert row["zero_maps"] == {"exact": 0.0, "closed": 0.0}


def test_gelu_network_exp_score_differs_below_its_last_activation():
    script = layers_load()
    model = untrained_small_cnn("gelu")
    args = argparse.Namespace(layers=("backbone/BatchNorm_0", "backbone"), alpha_rtol=1e-3)
    inner, last = script.layer_rows("gelu", model, tiny_images(), args).values()
    # A GELU follows BatchNorm_0: S is curved in A, the closed form misses d2/d3 terms.
    assert inner["alpha_changed"]["mean"] > 0.1
    assert inner["weight_change"]["mean"] > 1e-3
    # After the last GELU the head (GAP -> dense) is linear in A: exp makes it exact.
    assert last["alpha_changed"]["max"] == 0.0
    assert last["weight_change"]["max"] < 1e-5

    # The script's eq. 7 from the derivatives is the library's map.
    @jax.jit
    def both_maps(feature_map: jax.Array) -> tuple[jax.Array, jax.Array]:
        derivatives = grad_cam_plus_plus_derivatives(model, feature_map, 2)
        _, _, saliency = script.weights_and_map(feature_map, *derivatives)
        return saliency, grad_cam_plus_plus(model, feature_map, 2)

    ours, library = both_maps(model.features(tiny_images()[0]))
    assert np.max(library) > 0  # (class 1's map is all zero here)
    np.testing.assert_allclose(ours, library, rtol=1e-6, atol=1e-7)


@pytest.mark.slow
def test_higher_order_layers_experiment(tmp_path, capsys):
    tiny = ["--train-size", "8", "--test-size", "2", "--epochs", "1", "--image-size", "32"]
    tiny += ["--accuracy-size", "4"]
    layers = "backbone/BatchNorm_4,backbone"
    small = ["--widths", "2,2,2", "--output", "exp", "--layers", layers, "--out", str(tmp_path)]
    results = layers_load().main([*tiny, *small])
    printed = capsys.readouterr().out
    saved = json.loads((tmp_path / "results.json").read_text())
    rows = results["rows"]
    assert saved["rows"] == rows
    names = [f"{net} {layer}" for net in ("relu", "gelu") for layer in layers.split(",")]
    assert list(rows) == names
    for name in names:
        network, layer = name.split(" ")
        cells = [[cell.strip() for cell in line.split("|")] for line in printed.splitlines()]
        assert [network, layer.removeprefix("backbone/")] in [row[:2] for row in cells], name
    assert set(saved["networks"]) == {"relu", "gelu"}
    for network in saved["networks"].values():  # of 4 images
        assert network["test_accuracy"] in (0.0, 0.25, 0.5, 0.75, 1.0)
    for name in ("relu backbone/BatchNorm_4", "relu backbone", "gelu backbone"):
        assert rows[name]["alpha_changed"]["max"] == 0.0, name  # exp, piecewise-linear rest
    assert rows["gelu backbone/BatchNorm_4"]["alpha_changed"]["mean"] > 0.0
