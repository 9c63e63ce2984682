"""The transposed exact path (piecewise-linear bodies) and the detection that picks it."""

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from test_derivatives_taylor import assert_all_close, reference, weights

import jaxcam
from jaxcam.derivatives import (
    is_piecewise_linear_at,
    pure_derivatives,
    pure_derivatives_transposed,
)
from jaxcam.models import head_only_model, split_at
from jaxcam.saliency import grad_cam_plus_plus, grad_cam_plus_plus_derivatives
from jaxcam.saliency.scores import class_score


def tiny_resnet(classes, dtype=jnp.float64):
    module = jaxcam.create_model(
        "resnet18", num_classes=classes, output="softmax", in_channels=3, width=2
    )
    image = jax.random.uniform(jax.random.key(1), (64, 64, 3), dtype)
    variables = module.init(jax.random.key(0), image[None].astype(jnp.float32))
    # Non-trivial BatchNorm statistics, so inference-mode BN is a real affine map.
    variables = jax.tree.map(lambda v: v.astype(dtype), variables)
    variables = jax.tree_util.tree_map_with_path(
        lambda path, v: (
            v + 0.1 * jnp.cos(jnp.arange(v.size, dtype=dtype).reshape(v.shape))
            if "batch_stats" in jax.tree_util.keystr(path)
            else v
        ),
        variables,
    )
    return jaxcam.bind(module, variables), image


@pytest.mark.slow  # about a minute on 2 CPU cores (nested-jvp and Hessian references)
@pytest.mark.parametrize(
    "layer",
    [
        "backbone/stage3_block2",  # a block's output: the rest is stage 4 and the head
        "backbone/stage3_block1/Conv_1",  # inside a block: the shortcut reads the image
        "backbone/stage4_block1/Conv_0",  # inside the last stage, strided
    ],
)
def test_transposed_equals_nested_jvp_and_hessian_at_inner_resnet_layers(layer):
    with jax.enable_x64(True):
        model, image = tiny_resnet(classes=3)
        target = split_at(model, layer).for_image(image)
        a = target.features(image)
        c = 1
        assert is_piecewise_linear_at(target.logits, a)

        @jax.jit
        def paths(target, a):
            transposed = grad_cam_plus_plus_derivatives(target, a, c, path="transposed")
            nested = grad_cam_plus_plus_derivatives(
                target, a, c, path="general", derivative_method="nested_jvp"
            )
            score = class_score("softmax", c, target.logits(a))
            f = lambda x: score(target.logits(x))  # noqa: E731
            n = a.size
            hessian_diagonal = jnp.diag(jax.hessian(f)(a).reshape(n, n)).reshape(a.shape)
            maps = [grad_cam_plus_plus(target, a, c, path=p) for p in ("auto", "general")]
            return transposed, nested, hessian_diagonal, jax.grad(f)(a), maps

        transposed, nested, hessian_diagonal, gradient, (auto, general) = paths(target, a)
        assert_all_close(transposed, nested, rtol=1e-10, atol=1e-14)
        np.testing.assert_allclose(transposed[1], hessian_diagonal, rtol=1e-10, atol=1e-14)
        np.testing.assert_allclose(transposed[0], gradient, rtol=1e-10, atol=1e-14)
        assert float(jnp.max(jnp.abs(transposed[2]))) > 0  # the softmax's third derivatives
        np.testing.assert_allclose(auto, general, rtol=1e-10, atol=1e-14)


def test_transposed_takes_forward_passes_when_a_is_smaller_than_the_classes():
    # n = 4 elements of x, C = 6 classes: the Jacobian by 4 forward passes.
    with jax.enable_x64(True):
        kernel = weights(0, 4, 6)
        logits = lambda x: jax.nn.relu(x.reshape(-1) - 0.3) @ kernel  # noqa: E731
        score = lambda z: jax.nn.logsumexp(2.0 * z) + jnp.tanh(z[2])  # noqa: E731
        x = jnp.asarray(np.random.default_rng(1).uniform(0, 1, size=(1, 2, 2)))
        got = pure_derivatives_transposed(score, logits, x)
        want = reference(lambda y: score(logits(y)), x)
        assert_all_close(got, want, rtol=1e-10, atol=1e-13)


def test_transposed_with_many_directions_equals_the_general_path():
    with jax.enable_x64(True):
        kernel, dense = weights(1, 3, 3, 2, 5), weights(2, 5, 4)

        def logits(a):
            y = jax.lax.conv_general_dilated(
                a[None], kernel, (1, 1), "SAME", dimension_numbers=("NHWC", "HWIO", "NHWC")
            )[0]
            y = nn.max_pool(jax.nn.relu(y)[None], (2, 2), strides=(2, 2))[0]
            return jnp.mean(y, axis=(0, 1)) @ dense

        score = class_score("softmax", 2, logits(jnp.ones((4, 4, 2))))
        a = jnp.asarray(np.random.default_rng(2).normal(size=(4, 4, 2)))
        got = jax.jit(lambda a: pure_derivatives_transposed(score, logits, a))(a)
        want = jax.jit(
            lambda a: pure_derivatives(lambda x: score(logits(x)), a, method="nested_jvp")
        )(a)
        assert_all_close(got, want, rtol=1e-10, atol=1e-14)


def conv(a, kernel, groups=1):
    return jax.lax.conv_general_dilated(
        a[None],
        kernel,
        (1, 1),
        "SAME",
        dimension_numbers=("NHWC", "HWIO", "NHWC"),
        feature_group_count=groups,
    )[0]


def layer_norm(x):
    mean = jnp.mean(x, axis=-1, keepdims=True)
    variance = jnp.mean((x - mean) ** 2, axis=-1, keepdims=True)
    return (x - mean) * jax.lax.rsqrt(variance + 1e-6)


def convnext_like_body(a):
    """A ConvNeXt block (depthwise 3x3, LayerNorm, dense-GELU-dense, layer scale, residual)
    then LayerNorm, GAP and a class layer: (4, 4, 3) -> logits (4,)."""
    y = conv(a, 0.4 * weights(10, 3, 3, 1, 3), groups=3)
    y = jax.nn.gelu(layer_norm(y) @ weights(11, 3, 8), approximate=False) @ weights(12, 8, 3)
    x = a + weights(13, 3) * y
    return jnp.mean(layer_norm(x), axis=(0, 1)) @ weights(14, 3, 4)


def vit_like_body(a):
    """A pre-norm transformer block on the 2x2 patch tokens and a class token (softmax
    attention, one head; GELU (tanh form) MLP), then LayerNorm, GAP over patches, dense."""
    tokens = jnp.concatenate([weights(20, 1, 4), a.reshape(-1, 4)])
    x = layer_norm(tokens)
    q, k, v = (x @ weights(21 + i, 4, 4) for i in range(3))
    attention = jax.nn.softmax(q @ k.T / 2.0, axis=-1)
    tokens = tokens + (attention @ v) @ weights(24, 4, 4)
    mlp = jax.nn.gelu(layer_norm(tokens) @ weights(25, 4, 6), approximate=True)
    tokens = tokens + jax.nn.silu(mlp) @ weights(26, 6, 4)
    return jnp.mean(layer_norm(tokens)[1:], axis=0) @ weights(27, 4, 3)


@pytest.mark.parametrize(
    ("body", "shape"), [(convnext_like_body, (4, 4, 3)), (vit_like_body, (2, 2, 4))]
)
def test_smooth_body_rules_equal_nested_jvp_in_float64(body, shape):
    with jax.enable_x64(True):
        a = jnp.asarray(np.random.default_rng(3).normal(size=shape))
        assert not is_piecewise_linear_at(body, a)
        score = class_score("softmax", 0, body(a))
        f = lambda x: score(body(x))  # noqa: E731
        taylor, nested = jax.jit(
            lambda a: [
                pure_derivatives(f, a, method=method, chunk_size=7)
                for method in ("taylor", "nested_jvp")
            ]
        )(a)
        assert_all_close(taylor, nested, rtol=1e-10, atol=1e-13)
        assert float(jnp.max(jnp.abs(taylor[2]))) > 1e-6  # the body's own curvature


def bn_relu_body(a):
    y = conv(a, weights(30, 3, 3, 2, 2))
    y = (y - 0.1) * jax.lax.rsqrt(jnp.asarray(0.5) + 1e-5) * 1.3 + 0.2  # inference BN
    y = jax.nn.relu(y) + a  # residual
    y = nn.max_pool(y[None], (2, 2), strides=(2, 2))[0]
    y = jax.lax.reduce_window(y, 0.0, jax.lax.add, (2, 2, 1), (1, 1, 1), "VALID") / 4.0
    return jnp.concatenate([jnp.max(y, axis=(0, 1)), jnp.mean(y, axis=(0, 1))]) @ weights(31, 4, 3)


@pytest.mark.parametrize(
    ("body", "piecewise_linear"),
    [
        (bn_relu_body, True),
        (lambda a: jnp.abs(a).sum(axis=(0, 1)) @ weights(32, 2, 3), True),
        (lambda a: jnp.clip(a, -0.5, 0.5).reshape(-1)[:3] * 2.0, True),
        (lambda a: jnp.zeros(3) + jnp.sum(jnp.sign(a)), True),  # piecewise constant
        (lambda a: jax.nn.gelu(a).sum(axis=(0, 1)) @ weights(33, 2, 3), False),
        (lambda a: jax.nn.silu(a).sum(axis=(0, 1)) @ weights(34, 2, 3), False),
        (lambda a: (a * a).sum(axis=(0, 1)) @ weights(35, 2, 3), False),  # product of two
        (lambda a: layer_norm(a).sum(axis=(0, 1)) @ weights(36, 2, 3), False),
        (lambda a: jax.nn.softmax(a.reshape(-1))[:3], False),
        (lambda a: a.sum(axis=(0, 1)) @ weights(37, 2, 3) / jnp.sum(a), False),  # divisor
    ],
)
def test_detection_reads_the_traced_program(body, piecewise_linear):
    a = jnp.asarray(np.random.default_rng(4).normal(size=(4, 4, 2)), jnp.float32)
    assert is_piecewise_linear_at(body, a) is piecewise_linear


def test_detection_on_models_and_the_transposed_path_refuses_a_smooth_head():
    a = jnp.asarray(np.random.default_rng(5).uniform(size=(2, 2, 4)), jnp.float32)
    linear_head = head_only_model((2, 2, 4), num_classes=3, output="softmax")
    gelu_head = head_only_model((2, 2, 4), num_classes=3, hidden=(5,), output="softmax")
    assert is_piecewise_linear_at(linear_head.logits, a)
    assert not is_piecewise_linear_at(gelu_head.logits, a)
    with pytest.raises(ValueError, match="piecewise linear"):
        grad_cam_plus_plus_derivatives(gelu_head, a, 0, path="transposed")
    # The same head through the transposed and the general path.
    transposed = grad_cam_plus_plus_derivatives(linear_head, a, 2, path="transposed")
    general = grad_cam_plus_plus_derivatives(linear_head, a, 2, path="general")
    assert_all_close(transposed, general, rtol=1e-5, atol=1e-7)


@pytest.mark.slow  # compiles nested jvp through two small networks (~1 minute)
@pytest.mark.parametrize(
    ("name", "kwargs", "size", "layer"),
    [
        ("convnext_tiny", {"depths": (1, 1), "dims": (2, 4)}, 32, "backbone/stage2_block1/dwconv"),
        (
            "vit_b16",
            {"patch_size": 8, "dim": 4, "depth": 2, "heads": 2, "mlp_dim": 6, "image_size": 16},
            16,
            "backbone/block1",
        ),
    ],
)
def test_registered_smooth_networks_taylor_equals_nested_jvp_in_float64(name, kwargs, size, layer):
    module = jaxcam.create_model(name, num_classes=3, output="softmax", in_channels=1, **kwargs)
    variables = module.init(jax.random.key(3), jnp.zeros((1, size, size, 1)))
    # Flax's LayerNorm promotes its statistics with float32: standard promotion for float64.
    with jax.enable_x64(True), jax.numpy_dtype_promotion("standard"):
        image = jax.random.uniform(jax.random.key(2), (size, size, 1), jnp.float64)
        # Every vector parameter of at most 8 entries (layer scales, biases, norms) shifted
        # by 1, so the layer scales are about 1 instead of 1e-6: every block does something.
        variables = jax.tree.map(
            lambda v: v.astype(jnp.float64) + (1.0 if v.ndim == 1 and v.shape[0] <= 8 else 0.0),
            variables,
        )
        model = jaxcam.bind(module, variables)
        target = split_at(model, layer).for_image(image)
        a = target.features(image)
        assert not is_piecewise_linear_at(target.logits, a)

        @jax.jit
        def both(target, a):
            return [
                grad_cam_plus_plus_derivatives(target, a, 1, derivative_method=method)
                for method in ("taylor", "nested_jvp")
            ]

        taylor, nested = both(target, a)
        assert_all_close(taylor, nested, rtol=1e-10, atol=1e-14)
        assert float(jnp.max(jnp.abs(taylor[2]))) > 0
