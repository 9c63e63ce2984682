"""jaxcam.saliency: the paper's identities, exact vs closed form, §5.3, batching."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from conftest import (
    dot_precisions,
    head_model,
    lanczos3_upsample_reference,
    normalise_reference,
    random_feature_map,
)

from jaxcam.models import bind
from jaxcam.saliency import (
    cam,
    grad_cam,
    grad_cam_plus_plus,
    grad_cam_plus_plus_alpha,
    grad_cam_plus_plus_derivatives,
    normalise,
    saliency_maps,
    upsample,
)


def normalised(saliency):
    return saliency / jnp.max(saliency)


@pytest.mark.parametrize("output", ["relu", "linear", "exp"])
def test_cam_equals_grad_cam_for_gap_dense_head_eq12(output):
    model = head_model(channels=6, num_classes=3, output=output, size=5)
    a = random_feature_map((5, 5, 6))
    logits = model.logits(a)
    c = int(jnp.argmax(logits))  # relu: a class with positive logit, so dY/dS = 1
    assert float(logits[c]) > 0 or output != "relu"
    np.testing.assert_allclose(
        normalised(cam(model, a, c)), normalised(grad_cam(model, a, c)), atol=1e-6
    )


def test_grad_cam_weights_are_dense_weights_over_z():
    model = head_model(channels=4, num_classes=2, output="linear", size=3)
    a = random_feature_map((3, 3, 4))
    gradient = jax.grad(lambda x: model.logits(x)[1])(a)
    expected = model.class_weights()[:, 1] / 9.0
    np.testing.assert_allclose(gradient, jnp.broadcast_to(expected, (3, 3, 4)), rtol=1e-6)


def test_exact_equals_closed_form_for_exp_over_linear_head():
    model = head_model(channels=5, num_classes=3, output="exp", size=4)
    a = random_feature_map((4, 4, 5))
    for c in range(3):
        exact = grad_cam_plus_plus_derivatives(model, a, c)
        closed = grad_cam_plus_plus_derivatives(model, a, c, derivatives="closed_form")
        for got, want in zip(exact, closed, strict=True):
            np.testing.assert_allclose(got, want, rtol=2e-5, atol=1e-9)
        np.testing.assert_allclose(
            grad_cam_plus_plus(model, a, c),
            grad_cam_plus_plus(model, a, c, derivatives="closed_form"),
            rtol=2e-5,
            atol=1e-7,
        )


@pytest.mark.parametrize("output", ["softmax", "exp", "relu"])
def test_fast_pooled_path_equals_general_path_for_mlp_head(output):
    model = head_model(channels=4, num_classes=3, output=output, hidden=(5,), size=3)
    a = random_feature_map((3, 3, 4))
    c = int(jnp.argmax(model.logits(a)))
    pooled = grad_cam_plus_plus_derivatives(model, a, c, path="pooled")
    general = grad_cam_plus_plus_derivatives(model, a, c, path="general", chunk_size=5)
    for got, want in zip(pooled, general, strict=True):
        np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-7)


def test_exact_differs_from_closed_form_for_nonlinear_head():
    model = head_model(channels=4, num_classes=2, output="exp", hidden=(6,), size=3)
    a = random_feature_map((3, 3, 4))
    _, d2, _ = grad_cam_plus_plus_derivatives(model, a, 0)
    _, g2, _ = grad_cam_plus_plus_derivatives(model, a, 0, derivatives="closed_form")
    assert float(jnp.max(jnp.abs(d2 - g2))) > 1e-3 * float(jnp.max(jnp.abs(g2)))


@pytest.mark.parametrize("output", ["relu", "linear"])
def test_zero_denominator_convention_for_linear_head(output):
    # Exact d2 = d3 = 0 over a linear head: alpha = 0/0 := 0, so the map is all zero.
    model = head_model(channels=3, num_classes=2, output=output, size=4)
    kernel = model.variables["params"]["classifier"]["kernel"]
    model = bind(model.module, {"params": {"classifier": {"kernel": kernel, "bias": jnp.ones(2)}}})
    a = random_feature_map((4, 4, 3))
    c = int(jnp.argmax(model.logits(a)))
    assert float(model.logits(a)[c]) > 0
    d1, d2, d3 = grad_cam_plus_plus_derivatives(model, a, c)
    assert float(jnp.max(jnp.abs(d1))) > 0
    np.testing.assert_array_equal(d2, 0.0)
    np.testing.assert_array_equal(d3, 0.0)
    np.testing.assert_array_equal(grad_cam_plus_plus_alpha(a, d2, d3), 0.0)
    saliency = grad_cam_plus_plus(model, a, c)
    assert bool(jnp.all(jnp.isfinite(saliency)))
    np.testing.assert_array_equal(saliency, 0.0)
    np.testing.assert_array_equal(normalise(saliency), 0.0)


def test_alpha_by_hand():
    a = jnp.ones((1, 2, 1))  # sum_ab A = 2
    d2 = jnp.array([[[1.0], [0.0]]])
    d3 = jnp.array([[[0.5], [0.0]]])
    # alpha = 1 / (2*1 + 2*0.5) = 1/3, and 0/0 -> 0
    np.testing.assert_allclose(grad_cam_plus_plus_alpha(a, d2, d3), [[[1 / 3], [0.0]]], rtol=1e-6)


def saturated_softmax_model(bias):
    model = head_model(channels=4, num_classes=2, output="softmax", size=4)
    kernel = jnp.array([[0.3, -0.2], [-0.1, 0.4], [0.2, 0.1], [-0.3, -0.2]])
    return bind(
        model.module, {"params": {"classifier": {"kernel": kernel, "bias": jnp.array(bias)}}}
    )


def asymptotic_map(model, a, c):
    """Grad-CAM++ of softmax class c when |S1 - S0| is huge, derived by hand.

    With D = S1 - S0 linear in A and v = dD/dA: the loser's Y ~ exp(-D) gives
    d1 = -v, d2 = v^2, d3 = -v^3; the winner's Y ~ 1 - exp(-D) gives d1 = v,
    d2 = -v^2, d3 = v^3 (both up to the common positive factor).
    """
    v = jax.grad(lambda x: model.logits(x)[1] - model.logits(x)[0])(a)
    sign = 1.0 if c == 1 else -1.0
    d1, d2, d3 = sign * v, -sign * v**2, sign * v**3
    alpha = d2 / (2 * d2 + jnp.sum(a, axis=(0, 1)) * d3)
    weights = jnp.sum(alpha * jax.nn.relu(d1), axis=(0, 1))
    return jax.nn.relu(jnp.einsum("hwk,k->hw", a, weights))


@pytest.mark.parametrize("c", [0, 1])
def test_softmax_failure_of_section_5_3_and_the_stable_form(c):
    model = saturated_softmax_model([-3000.0, 3000.0])
    a = random_feature_map((4, 4, 4))
    logits = model.logits(a)
    assert float(logits[0]) < -2990 and float(logits[1]) > 2990
    naive = grad_cam_plus_plus(model, a, c, form="naive")
    np.testing.assert_array_equal(naive, 0.0)  # the paper's all-zero map
    stable = grad_cam_plus_plus(model, a, c)
    assert bool(jnp.all(jnp.isfinite(stable))) and float(jnp.max(stable)) > 0
    np.testing.assert_allclose(
        normalised(stable), normalised(asymptotic_map(model, a, c)), atol=1e-5
    )


@pytest.mark.parametrize("c", [0, 1])
def test_stable_and_naive_forms_agree_at_moderate_logits(c):
    model = saturated_softmax_model([0.0, 0.3])
    a = random_feature_map((4, 4, 4))
    naive = grad_cam_plus_plus(model, a, c, form="naive")
    stable = grad_cam_plus_plus(model, a, c)
    assert float(jnp.max(naive)) > 0
    np.testing.assert_allclose(normalised(stable), normalised(naive), atol=2e-6)
    np.testing.assert_allclose(
        normalised(grad_cam(model, a, c)),
        normalised(grad_cam(model, a, c, form="naive")),
        atol=2e-6,
    )


def test_naive_exp_overflow_never_reaches_the_map():
    model = head_model(channels=3, num_classes=2, output="exp", size=4)
    kernel = model.variables["params"]["classifier"]["kernel"]
    huge = bind(
        model.module, {"params": {"classifier": {"kernel": kernel, "bias": jnp.array([1e4, 1e4])}}}
    )
    a = random_feature_map((4, 4, 3))
    saliency = grad_cam_plus_plus(huge, a, 0, form="naive")
    assert bool(jnp.all(jnp.isfinite(saliency)))
    assert float(jnp.max(grad_cam_plus_plus(huge, a, 0))) > 0


def test_saliency_maps_batch_matches_per_example_and_is_normalised():
    model = head_model(channels=3, num_classes=2, output="exp", size=4)
    images = np.asarray(random_feature_map((3, 4, 4, 3)))
    maps, classes = saliency_maps(model, images, None, "grad_cam_plus_plus")
    assert maps.shape == (3, 4, 4) and classes.shape == (3,)
    for i in range(3):
        a = model.features(jnp.asarray(images[i]))
        np.testing.assert_array_equal(classes[i], jnp.argmax(model.logits(a)))
        # Written out in numpy (conftest): 4x4 -> 4x4 Lanczos is the identity, then / max.
        raw = grad_cam_plus_plus(model, a, classes[i])
        want = normalise_reference(lanczos3_upsample_reference(raw, (4, 4)))
        np.testing.assert_allclose(maps[i], want, atol=1e-6)
    assert float(maps.min()) >= 0.0 and np.allclose(maps.max(axis=(1, 2)), 1.0)
    explicit, used = saliency_maps(model, images, np.array([1, 0, 1]), "cam")
    np.testing.assert_array_equal(used, [1, 0, 1])


def test_lanczos_upsampling_keeps_constants_and_peak_location():
    np.testing.assert_allclose(upsample(jnp.full((4, 4), 0.7), (16, 16)), 0.7, rtol=1e-5)
    one_hot = jnp.zeros((4, 4)).at[1, 2].set(1.0)
    up = normalise(upsample(one_hot, (16, 16)))
    row, col = np.unravel_index(int(jnp.argmax(up)), (16, 16))
    assert 4 <= row < 8 and 8 <= col < 12 and up.shape == (16, 16)


def test_cam_rejects_a_head_with_hidden_layers():
    model = head_model(channels=3, num_classes=2, hidden=(4,), size=4)
    with pytest.raises(ValueError, match="GAP -> dense"):
        cam(model, random_feature_map((4, 4, 3)), 0)


def test_bad_inputs_raise_clear_errors():
    model = head_model(channels=3, num_classes=2, size=4)
    good = np.zeros((2, 4, 4, 3), np.float32)
    with pytest.raises(ValueError, match="rank 4"):
        saliency_maps(model, good[0], None)
    with pytest.raises(ValueError, match="3 channel"):
        saliency_maps(model, np.zeros((2, 4, 4, 1), np.float32), None)
    bad = good.copy()
    bad[1, 0, 2, 1] = np.nan
    with pytest.raises(ValueError, match=r"NaN/inf.*\(1, 0, 2, 1\)"):
        saliency_maps(model, bad, None)
    with pytest.raises(ValueError, match="out of range"):
        saliency_maps(model, good, np.array([0, 2]))
    with pytest.raises(TypeError, match="integers"):
        saliency_maps(model, good, np.array([0.0, 1.0]))
    with pytest.raises(TypeError, match="floating"):
        saliency_maps(model, good.astype(np.uint8), None)
    with pytest.raises(ValueError, match="unknown saliency method 'nope'"):
        saliency_maps(model, good, None, "nope")
    with pytest.raises(ValueError, match="derivatives"):
        grad_cam_plus_plus(model, jnp.zeros((4, 4, 3)), 0, derivatives="approx")
    with pytest.raises(ValueError, match="score form"):
        grad_cam_plus_plus(model, jnp.zeros((4, 4, 3)), 0, form="fast")


@pytest.mark.parametrize("path", ["pooled", "general"])
def test_grad_cam_plus_plus_derivatives_run_at_highest_precision(path):
    model = head_model(channels=3, num_classes=4, output="softmax", hidden=(5,), size=2)
    a = random_feature_map((2, 2, 3))
    with jax.default_matmul_precision("bfloat16"):
        traced = jax.make_jaxpr(lambda x: grad_cam_plus_plus_derivatives(model, x, 1, path=path))(a)
    found = dot_precisions(traced)
    highest = (jax.lax.Precision.HIGHEST, jax.lax.Precision.HIGHEST)
    assert found and all(p == highest for p in found)
