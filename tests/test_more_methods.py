"""Issue 11's methods against values worked out by hand or computed independently:
HiResCAM, XGrad-CAM, LayerCAM, Score-CAM, Ablation-CAM, Eigen-CAM."""

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
    toy_model,
)

from jaxcam.models import CAMClassifier, FeatureMapInput, bind
from jaxcam.saliency import (
    SALIENCY_METHODS,
    ablation_cam,
    class_score_gradient,
    eigen_cam,
    grad_cam,
    hires_cam,
    layer_cam,
    saliency_maps,
    score_cam,
    xgrad_cam,
)

HIGHEST = (jax.lax.Precision.HIGHEST, jax.lax.Precision.HIGHEST)
GRADIENT_METHODS = (hires_cam, xgrad_cam, layer_cam)


class MaxPoolClassifier(CAMClassifier):
    """Global max pooling: dS/dA is the class weight at each channel's maximum, 0 elsewhere."""

    def pool(self, feature_map):
        return jnp.max(feature_map, axis=(-3, -2))


def max_pool_model(kernel):
    module = MaxPoolClassifier(
        backbone=FeatureMapInput(),
        num_classes=2,
        output="linear",
        in_channels=4,
        pixel_mean=0.0,
        pixel_std=1.0,
    )
    params = {"classifier": {"kernel": jnp.asarray(kernel), "bias": jnp.zeros(2)}}
    return bind(module, {"params": params})


# A (2, 2, 4) by channel; maxima unique except in the all-zero channel 3.
HAND_A = jnp.stack(
    [
        jnp.array([[1.0, 4.0], [2.0, 3.0]]),  # max 4 at (0, 1), sum 10
        jnp.array([[1.0, 5.0], [0.0, 2.0]]),  # max 5 at (0, 1), sum 8
        jnp.array([[0.0, 0.0], [3.0, 1.0]]),  # max 3 at (1, 0), sum 4
        jnp.zeros((2, 2)),  # sum 0: XGrad-CAM's weight must be 0, not 0/0
    ],
    axis=-1,
)
HAND_KERNEL = [[2.0, 0.0], [-1.0, 0.0], [0.5, 0.0], [7.0, 0.0]]  # class 0: w = (2, -1, .5, 7)


def test_gradient_methods_by_hand_on_a_max_pooling_head():
    # dS^0/dA_xyk = w_k at channel k's maximum: (0, 1) gets 2 (k=0) and -1 (k=1), (1, 0)
    # gets 0.5 (k=2); channel 3 is all 0 (its tied gradient meets A = 0).
    model = max_pool_model(HAND_KERNEL)
    # HiResCAM: sum_k g * A = 2*4 - 1*5 = 3 at (0, 1), 0.5*3 = 1.5 at (1, 0).
    np.testing.assert_allclose(hires_cam(model, HAND_A, 0), [[0.0, 3.0], [1.5, 0.0]], atol=1e-6)
    # LayerCAM: relu(g) drops the -1: 2*4 = 8 at (0, 1).
    np.testing.assert_allclose(layer_cam(model, HAND_A, 0), [[0.0, 8.0], [1.5, 0.0]], atol=1e-6)
    # XGrad-CAM: a_k = w_k max_k / sum_k = (0.8, -0.625, 0.375, 0); map = relu(sum_k a_k A_k).
    want = [[0.8 - 0.625, 3.2 - 3.125], [1.6 + 1.125, 2.4 - 1.25 + 0.375]]
    np.testing.assert_allclose(xgrad_cam(model, HAND_A, 0), want, rtol=1e-5, atol=1e-6)
    # Grad-CAM averages the gradient over the 4 positions instead: weights w_k / 4.
    want = [[0.5 - 0.25, 2.0 - 1.25], [1.0 + 0.375, 1.5 - 0.5 + 0.125]]
    np.testing.assert_allclose(grad_cam(model, HAND_A, 0), want, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("output", ["linear", "softmax"])
def test_gap_dense_head_gives_grad_cam_for_hires_and_xgrad_cam(output):
    # For GAP -> dense the gradient is the same at every position (dY/dS . w / z), so
    # HiResCAM's element-wise sum and XGrad-CAM's A-weighted mean give Grad-CAM's map.
    model = head_model(channels=5, num_classes=3, output=output, size=4)
    a = random_feature_map((4, 4, 5))
    c = next(c for c in range(3) if float(jnp.max(grad_cam(model, a, c))) > 0)
    reference = grad_cam(model, a, c)
    np.testing.assert_allclose(hires_cam(model, a, c), reference, rtol=1e-5, atol=1e-7)
    np.testing.assert_allclose(xgrad_cam(model, a, c), reference, rtol=1e-5, atol=1e-7)
    gradient = class_score_gradient(model, a, c)
    np.testing.assert_allclose(gradient, jnp.broadcast_to(gradient[0, 0], a.shape), rtol=1e-6)
    # The gradient has both signs over channels, so LayerCAM (relu of it) differs.
    assert float(jnp.min(gradient)) < 0 < float(jnp.max(gradient))
    assert float(jnp.max(jnp.abs(layer_cam(model, a, c) - hires_cam(model, a, c)))) > 1e-4


def test_layer_cam_with_non_negative_gradients_is_hires_cam_by_hand():
    # Linear output, class column made >= 0: dS/dA = |w| / z >= 0 everywhere, so
    # LayerCAM = HiResCAM = relu(A |w| / z).
    model = head_model(channels=5, num_classes=3, output="linear", size=4)
    params = jax.tree.map(lambda x: x, model.variables["params"])
    params["classifier"]["kernel"] = jnp.abs(params["classifier"]["kernel"])
    model = bind(model.module, {"params": params})
    a = random_feature_map((4, 4, 5))
    kernel = np.asarray(model.class_weights(), np.float64)
    want = np.maximum(np.asarray(a, np.float64) @ kernel[:, 1] / 16.0, 0.0)
    np.testing.assert_allclose(hires_cam(model, a, 1), want, rtol=1e-5, atol=1e-7)
    np.testing.assert_allclose(layer_cam(model, a, 1), want, rtol=1e-5, atol=1e-7)


def python_loop_score_cam(model, image, c, weights):
    """Score-CAM written out: one forward of the whole network per channel, in numpy."""
    module, variables = model.module, model.variables
    a = np.asarray(model.features(image), np.float64)
    logits, scores = [], []
    for k in range(a.shape[-1]):
        up = np.asarray(
            jax.image.resize(jnp.asarray(a[..., k], jnp.float32), image.shape[:2], "bilinear"),
            np.float64,
        )
        spread = up.max() - up.min()
        mask = (up - up.min()) / spread if spread > 0 else np.zeros_like(up)
        masked = jnp.asarray(np.asarray(image) * mask[..., None], jnp.float32)[None]
        logits.append(
            module.apply(variables, masked, method=lambda m, x: m.logits(m.features(x)))[0, c]
        )
        scores.append(module.apply(variables, masked)[0, c])
    if weights == "softmax":
        logits = np.asarray(logits, np.float64)
        w = np.exp(logits - logits.max())
        w /= w.sum()
    else:
        black = module.apply(variables, jnp.zeros((1, *image.shape), jnp.float32))[0, c]
        w = np.asarray(scores, np.float64) - float(black)
    return np.maximum(a @ w, 0.0)


@pytest.mark.parametrize("weights", ["softmax", "increase"])
def test_score_cam_batched_equals_a_python_loop(weights):
    model = toy_model("softmax")  # 16x16x2 images -> A (4, 4, 6), 3 classes
    image = jnp.asarray(np.random.default_rng(3).uniform(size=(16, 16, 2)), jnp.float32)
    a = model.features(image)
    want = python_loop_score_cam(model, image, 2, weights)
    assert want.max() > 0
    for chunk in (4, None):  # 4 does not divide K = 6: the last chunk is partial
        got = score_cam(model, a, 2, image=image, weights=weights, chunk_size=chunk)
        np.testing.assert_allclose(got, want, rtol=2e-5, atol=1e-6 * want.max())


def test_score_cam_gets_its_image_in_the_batched_step():
    model = toy_model("softmax")
    images = np.random.default_rng(4).uniform(size=(2, 16, 16, 2)).astype(np.float32)
    maps, classes = saliency_maps(model, images, np.array([0, 2]), "score_cam", chunk_size=3)
    for i, c in enumerate((0, 2)):
        image = jnp.asarray(images[i])
        raw = score_cam(model, model.features(image), c, image=image)
        want = normalise_reference(lanczos3_upsample_reference(raw, (16, 16)))  # numpy
        np.testing.assert_allclose(maps[i], want, atol=2e-5)
    np.testing.assert_array_equal(classes, [0, 2])


def brute_force_ablation(model, image, c):
    """Ablation-CAM written out: K full forwards, channel k of A zeroed in the k-th."""
    module, variables = model.module, model.variables
    a = np.asarray(model.features(image), np.float64)
    y = float(module.apply(variables, image[None])[0, c])
    drops = []
    for k in range(a.shape[-1]):
        keep = jnp.ones(a.shape[-1]).at[k].set(0.0)
        y_k = module.apply(
            variables, image[None], method=lambda m, x, keep=keep: m.head(m.features(x) * keep)
        )
        drops.append((y - float(y_k[0, c])) / y)
    return np.maximum(a @ np.asarray(drops), 0.0)


@pytest.mark.parametrize(
    "make", [lambda: toy_model("softmax"), lambda: head_model(4, 3, "exp", (5,), size=3)]
)
def test_ablation_cam_pooled_shortcut_equals_brute_force_ablation(make):
    model = make()
    shape = (16, 16, 2) if model.module.in_channels == 2 else (3, 3, 4)
    image = jnp.asarray(np.random.default_rng(5).uniform(size=shape), jnp.float32)
    a = model.features(image)
    c = int(jnp.argmax(model.logits(a)))
    want = brute_force_ablation(model, image, c)
    assert want.max() > 0
    assert model.has_linear_pooling
    for options in ({}, {"path": "pooled"}, {"path": "general", "chunk_size": 3}):
        got = ablation_cam(model, a, c, **options)
        np.testing.assert_allclose(got, want, rtol=2e-4, atol=1e-5 * want.max())


def test_ablation_cam_by_hand_for_a_linear_head():
    # S^c = sum_k w_k mean(A_k) + b: removing channel k drops Y by w_k mean(A_k).
    model = head_model(channels=3, num_classes=2, output="linear", size=2)
    a = random_feature_map((2, 2, 3), seed=7)
    kernel = np.asarray(model.class_weights(), np.float64)[:, 1]
    bias = float(model.variables["params"]["classifier"]["bias"][1])
    means = np.asarray(a, np.float64).mean(axis=(0, 1))
    y = means @ kernel + bias
    want = np.maximum(np.asarray(a, np.float64) @ (kernel * means / y), 0.0)
    np.testing.assert_allclose(ablation_cam(model, a, 1), want, rtol=1e-5, atol=1e-7)


@pytest.mark.parametrize("centre", [False, True])
def test_eigen_cam_equals_the_numpy_svd_projection(centre):
    model = head_model(channels=5, num_classes=2, output="softmax", size=4)
    rng = np.random.default_rng(8)
    a = rng.uniform(size=(4, 4, 5)) * rng.uniform(size=(4, 4, 1))  # a shared spatial pattern
    matrix = a.reshape(16, 5)
    if centre:
        matrix = matrix - matrix.mean(axis=0)
    _, _, vt = np.linalg.svd(matrix)
    projection = matrix @ vt[0]
    if projection @ a.mean(axis=-1).reshape(-1) < 0:  # the documented sign rule
        projection = -projection
    want = np.maximum(projection, 0.0).reshape(4, 4)
    got = eigen_cam(model, jnp.asarray(a, jnp.float32), 0, centre=centre)
    np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-6)
    np.testing.assert_array_equal(
        got, eigen_cam(model, jnp.asarray(a, jnp.float32), 1, centre=centre)
    )
    if not centre:  # non-negative A: V_1 >= 0, the projection needs no clipping
        assert projection.min() >= -1e-9
    else:
        assert want.min() == 0.0 < want.max()


def test_every_new_method_is_registered():
    for name, fn in {
        "hires_cam": hires_cam,
        "xgrad_cam": xgrad_cam,
        "layer_cam": layer_cam,
        "score_cam": score_cam,
        "ablation_cam": ablation_cam,
        "eigen_cam": eigen_cam,
    }.items():
        assert SALIENCY_METHODS[name] is fn


@pytest.mark.parametrize("method", [*GRADIENT_METHODS, ablation_cam, eigen_cam])
def test_checks_nan_for_a_traced_bad_class_and_highest_precision(method):
    model = head_model(channels=3, num_classes=4, output="softmax", size=3)
    a = random_feature_map((3, 3, 3))
    with pytest.raises(ValueError, match="class_index 4 is out of range"):
        method(model, a, 4)
    traced = jax.jit(lambda c: method(model, a, c))
    assert bool(jnp.all(jnp.isnan(traced(5))))
    np.testing.assert_allclose(traced(2), method(model, a, 2), rtol=1e-5, atol=1e-7)
    with jax.default_matmul_precision("bfloat16"):
        found = dot_precisions(jax.make_jaxpr(lambda x: method(model, x, 1))(a))
    assert found and all(p == HIGHEST for p in found)


def test_bad_options_are_refused():
    model = toy_model("softmax")
    image = jnp.zeros((16, 16, 2))
    a = model.features(image)
    with pytest.raises(ValueError, match="weights must be one of"):
        score_cam(model, a, 0, image=image, weights="max")
    with pytest.raises(ValueError, match=r"one image of shape \(H, W, C\)"):
        score_cam(model, a, 0, image=image[None])
    with pytest.raises(TypeError, match="chunk_size must be an integer"):
        score_cam(model, a, 0, image=image, chunk_size=2.5)
    with pytest.raises(ValueError, match="path must be"):
        ablation_cam(model, a, 0, path="fast")
