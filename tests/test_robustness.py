"""Issue 10, "Robustness": every input the public API refuses, and every defined answer.

One test (or a few) per item of the issue; values are hand-worked or come from an
independent computation (plain float64 autodiff, a subclass's own forward pass).
"""

from __future__ import annotations

import warnings

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from conftest import dot_precisions, head_model, random_feature_map, toy_model

import jaxcam
from jaxcam.derivatives import pure_derivatives
from jaxcam.evaluation import MethodResult, evaluate, evaluate_methods, format_table
from jaxcam.metrics import (
    average_drop,
    black_average_drop,
    choose_alpha,
    masked_scores,
    summarise,
    summarise_drop,
    take,
    zero_sums,
)
from jaxcam.models import CAMClassifier, FeatureMapInput, bind, register_model
from jaxcam.saliency import cam, grad_cam, grad_cam_plus_plus, normalise, saliency_maps

HIGHEST = (jax.lax.Precision.HIGHEST, jax.lax.Precision.HIGHEST)
IMAGES = np.random.default_rng(0).uniform(size=(3, 16, 16, 2)).astype(np.float32)
LABELS = np.array([0, 1, 2], np.int32)
METHODS = {"CAM": ("cam", {}), "Grad-CAM": ("grad_cam", {})}


def mean_pixel_model(kernel, bias, output="linear"):
    """One-channel identity backbone over 2x2 images: Y = act(kernel * mean(I) + bias)."""
    model = head_model(channels=1, num_classes=len(bias), output=output, size=2)
    params = {"classifier": {"kernel": jnp.asarray([kernel]), "bias": jnp.asarray(bias)}}
    return bind(model.module, {"params": params})


# ----------------------------------------------------------------------------
# Item 1: float64 exact Grad-CAM++ (the default method) against plain float64 autodiff.


def plain_grad_cam_plus_plus(model, a, c):
    """Eq. 7-8 from jax.grad / jax.hessian / jacfwd(hessian) of the naive softmax Y^c."""

    def y(x):
        return jax.nn.softmax(model.logits(x))[c]

    n = a.size
    d1 = jax.grad(y)(a)
    d2 = jnp.diag(jax.hessian(y)(a).reshape(n, n)).reshape(a.shape)
    d3 = jnp.einsum("iii->i", jax.jacfwd(jax.hessian(y))(a).reshape(n, n, n)).reshape(a.shape)
    alpha = d2 / (2.0 * d2 + jnp.sum(a, axis=(0, 1)) * d3)
    weights = jnp.sum(alpha * jax.nn.relu(d1), axis=(0, 1))
    return jax.nn.relu(jnp.einsum("hwk,k->hw", a, weights))


@pytest.mark.slow  # ~20 s; test_derivatives_taylor pins the same paths to float64 references
@pytest.mark.parametrize("hidden", [(), (5,)])
def test_float64_default_grad_cam_plus_plus_equals_a_hessian_reference(hidden):
    # The stable score is Y / Y(A0), or (Y - Y(A0)) / (1 - Y(A0)) for the winner (here
    # Y = 0.61 / 0.64: both forms are used): it scales the weights by a positive
    # constant, so the normalised maps are equal. A map that is 0 stays 0.
    with jax.enable_x64(True):
        with jax.numpy_dtype_promotion("standard"):  # flax initialises float32 parameters
            model = head_model(3, 3, "softmax", hidden, size=2, dtype=jnp.float64)
        a = 4.0 * random_feature_map((2, 2, 3), dtype=jnp.float64)
        assert float(jnp.max(jax.nn.softmax(model.logits(a)))) > 0.5
        nonzero = 0
        for c in range(3):
            want = plain_grad_cam_plus_plus(model, a, c)
            scale = float(jnp.max(want))
            nonzero += scale > 0
            for path in ("auto", "general"):  # auto: the pooled path, the default
                got = grad_cam_plus_plus(model, a, c, path=path)
                assert got.dtype == jnp.float64
                if scale == 0:
                    np.testing.assert_array_equal(got, 0.0)
                else:
                    np.testing.assert_allclose(
                        got / jnp.max(got), want / scale, rtol=1e-10, atol=1e-12
                    )
        assert nonzero >= 2


# ----------------------------------------------------------------------------
# Item 2: subclasses get the fast path only when it is what they compute.


class MaxPoolClassifier(CAMClassifier):
    """Global max pooling instead of GAP."""

    def pool(self, feature_map):
        return jnp.max(feature_map, axis=(-3, -2))


class TanhClassifier(CAMClassifier):
    """A tanh hidden activation instead of GELU (GAP and the first dense layer kept)."""

    def logits_after_first_layer(self, x):
        layers = [*self.mlp, self.classifier]
        for dense in layers[1:]:
            x = dense(jnp.tanh(x))
        return x


class DeclaredTanhClassifier(TanhClassifier):
    keeps_linear_pooling = True


class OwnHeadClassifier(CAMClassifier):
    def head(self, feature_map):
        return jax.nn.sigmoid(self.logits(feature_map))


def subclass_model(cls, hidden=(5,), channels=4, size=3):
    module = cls(
        backbone=FeatureMapInput(),
        num_classes=3,
        output="softmax",
        hidden=hidden,
        in_channels=channels,
        pixel_mean=0.0,
        pixel_std=1.0,
    )
    return bind(module, module.init(jax.random.key(0), jnp.zeros((1, size, size, channels))))


def hand_logits(pool, activation, params, a):
    """A one-hidden-layer head written out: pool, dense, activation, dense."""
    hidden = pool(a, axis=(0, 1)) @ params["hidden_0"]["kernel"] + params["hidden_0"]["bias"]
    return activation(hidden) @ params["classifier"]["kernel"] + params["classifier"]["bias"]


@pytest.mark.parametrize(
    ("cls", "fast"),
    [(MaxPoolClassifier, False), (TanhClassifier, False), (DeclaredTanhClassifier, True)],
)
def test_subclass_maps_equal_the_general_path(cls, fast):
    pool, activation = (jnp.max, nn.gelu) if cls is MaxPoolClassifier else (jnp.mean, jnp.tanh)
    # Before issue 10 every subclass got the fast path (GAP, GELU): maps off by up to 100 %.
    model = subclass_model(cls)
    a = random_feature_map((3, 3, 4))
    want = hand_logits(pool, activation, model.variables["params"], a)
    np.testing.assert_allclose(model.logits(a), want, rtol=1e-5, atol=1e-6)
    base = hand_logits(jnp.mean, nn.gelu, model.variables["params"], a)  # the base class
    assert float(jnp.max(jnp.abs(want - base))) > 1e-3  # the subclass computes something else
    assert model.has_linear_pooling is fast
    nonzero = 0
    for c in range(3):
        general = grad_cam_plus_plus(model, a, c, path="general")
        nonzero += float(jnp.max(general)) > 0
        np.testing.assert_allclose(grad_cam_plus_plus(model, a, c), general, rtol=1e-4, atol=1e-6)
        if fast:
            np.testing.assert_allclose(
                grad_cam_plus_plus(model, a, c, path="pooled"), general, rtol=1e-4, atol=1e-6
            )
    assert nonzero >= 2
    if not fast:
        with pytest.raises(ValueError, match="path='pooled' needs a head that starts with GAP"):
            grad_cam_plus_plus(model, a, 0, path="pooled")


def test_cam_and_bind_refuse_heads_they_would_explain_wrongly():
    model = subclass_model(MaxPoolClassifier, hidden=())
    with pytest.raises(ValueError, match="CAM needs a conv -> GAP -> dense head.*overrides pool"):
        cam(model, random_feature_map((3, 3, 4)), 0)
    module = OwnHeadClassifier(backbone=FeatureMapInput(), in_channels=4)
    variables = module.init(jax.random.key(0), jnp.zeros((1, 3, 3, 4)))
    with pytest.raises(TypeError, match="overrides CAMClassifier.head"):
        bind(module, variables)


# ----------------------------------------------------------------------------
# Item 3: scores that overflow to inf, or are NaN, never make AD/BAD NaN.


def test_overflowing_exp_scores_are_excluded_and_counted_as_nonfinite():
    # Y = exp(100 mean(I)): image 1 (mean 1) overflows float32, image 2 (mean 0.5) gives
    # exp(50). AD: E2 = I2, drop 0; image 1 excluded. BAD (alpha 0.5, raster ties): B2
    # keeps 0.2 and 0.4, mean 0.15: drop 1 - exp(15 - 50) = 1 in float32.
    model = mean_pixel_model([100.0, 0.0], [0.0, 0.0], output="exp")
    images = np.array([[[1.0, 1.0], [1.0, 1.0]], [[0.2, 0.4], [0.6, 0.8]]], np.float32)[..., None]
    maps = np.array([[[1.0, 0.5], [0.0, 0.0]], [[1.0, 1.0], [1.0, 1.0]]], np.float32)
    scores = masked_scores(model, images, maps, np.array([0, 0]), 0.5, ties="raster")
    assert np.isinf(scores.original[0]) and np.isfinite(scores.original[1])
    ad = average_drop(scores, np.array([0, 0]))
    bad = black_average_drop(scores, np.array([0, 0]))
    assert ad.value == 0.0 and bad.value == pytest.approx(1.0)
    for summary in (ad, bad):
        assert (summary.num_images, summary.num_excluded, summary.num_nonfinite) == (2, 1, 1)


def test_nan_and_inf_scores_are_counted_apart_from_zero_scores():
    # Y = 1, NaN, 2, 0, 0; O = 0.5, 1, inf, 0.3, NaN: only image 1 is defined (drop 0.5).
    # Non-finite: images 2, 3 and 5; image 4 is the ReLU zero.
    summary = summarise_drop(
        [1.0, np.nan, 2.0, 0.0, 0.0], [0.5, 1.0, np.inf, 0.3, np.nan], [0] * 5, [0] * 5
    )
    assert summary.value == 0.5 and summary.mean_change == -0.5
    assert (summary.num_excluded, summary.num_nonfinite) == (4, 3)
    all_nan = summarise_drop([np.nan, np.nan], [1.0, 1.0], [0, 1], [0, 0])
    assert all_nan.value is None and all_nan.mean_change is None
    assert all_nan.incorrect == 0.5 and all_nan.num_nonfinite == 2
    row = drop_row(summary, all_nan, {0.5: all_nan})
    table = format_table({"M": row})
    assert "non-finite AD/BAD" in table and "3/2" in table
    assert "nan" not in table.lower().replace("non-finite", "")


def test_a_map_with_nan_or_inf_normalises_to_zero():
    for bad in (np.inf, np.nan, -np.inf):
        raw = jnp.array([[bad, 1.0], [2.0, 0.0]], jnp.float32)
        np.testing.assert_array_equal(normalise(raw), np.zeros((2, 2), np.float32))
    np.testing.assert_allclose(normalise(jnp.array([[-1.0, 1.0], [2.0, 0.0]])), [[0, 0.5], [1, 0]])


# ----------------------------------------------------------------------------
# Item 4: labels (targets) are shape-checked where they enter.


def test_metric_targets_must_be_one_label_per_image():
    model = mean_pixel_model([1.0, -1.0], [0.0, 0.25])
    images = np.ones((2, 2, 2, 1), np.float32)
    scores = masked_scores(model, images, np.ones((2, 2, 2), np.float32), np.array([0, 0]), 0.5)
    for target in (np.array([[0], [1]]), np.array([0, 1, 1])):
        for metric in (average_drop, black_average_drop):
            with pytest.raises(ValueError, match=r"target must have shape \(N,\)"):
                metric(scores, target)
    with pytest.raises(TypeError, match="target must hold integer classes"):
        average_drop(scores, np.array([0.0, 1.0]))


def test_evaluate_labels_must_be_one_label_per_image():
    model = toy_model()
    with pytest.raises(ValueError, match=r"labels must have shape \(N,\), got \(3, 1\)"):
        evaluate(model, (IMAGES, LABELS[:, None]), METHODS, alpha=0.5)
    with pytest.raises(ValueError, match=r"labels must have shape \(N,\)"):
        evaluate_methods(model, IMAGES, LABELS[:, None], METHODS, alpha=0.5)
    with pytest.raises(ValueError, match="'label' has 4"):
        evaluate(model, (IMAGES, np.array([0, 1, 2, 0])), METHODS, alpha=0.5)
    batches = [{"image": IMAGES, "label": LABELS[:, None]}]
    with pytest.raises(ValueError, match=r"labels must have shape \(3,\)"):
        evaluate(model, batches, METHODS, alpha=0.5, batch_size=3)
    with pytest.raises(TypeError, match="labels must be integers"):
        evaluate(model, (IMAGES, LABELS.astype(np.float32)), METHODS, alpha=0.5)


# ----------------------------------------------------------------------------
# Item 5: summaries over zero images are None, without warnings.


def test_summaries_over_no_images_are_none_without_warnings():
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        for summary in (
            summarise_drop([], [], [], []),
            summarise(take(zero_sums((1,)), 0, axis=0)),
        ):
            assert summary.num_images == summary.num_excluded == summary.num_nonfinite == 0
            for field in ("value", "incorrect", "increase_in_confidence", "mean_change"):
                assert getattr(summary, field) is None, field
            assert summary.median_ratio is None and not summary.mostly_increased
        table = format_table({"M": drop_row(summary, summary, {})})
        # An empty batch goes through masked_scores and the metrics the same way.
        model = mean_pixel_model([1.0, -1.0], [0.0, 0.25])
        empty = masked_scores(
            model,
            np.zeros((0, 2, 2, 1), np.float32),
            np.zeros((0, 2, 2), np.float32),
            np.zeros(0, np.int32),
            0.5,
        )
        assert average_drop(empty, np.zeros(0, np.int32)) == summary
    cells = [c.strip() for c in table.splitlines()[2].split("|")]
    assert cells[1:10] == ["n/a"] * 9 and cells[10:] == ["0", "0/0"]
    with pytest.raises(ValueError, match="at least one image"):
        choose_alpha({"a": np.zeros((0, 2, 2)), "b": np.zeros((0, 2, 2))})


# ----------------------------------------------------------------------------
# Items 6 and 7: maps outside [0, 1] and bad alpha searches.


def test_maps_outside_the_unit_interval_are_refused():
    model = mean_pixel_model([1.0, -1.0], [0.0, 0.25])
    images = np.ones((1, 2, 2, 1), np.float32)
    for maps in (np.full((1, 2, 2), -0.5, np.float32), np.full((1, 2, 2), 1.5, np.float32)):
        with pytest.raises(ValueError, match=r"maps must be normalised to \[0, 1\]"):
            masked_scores(model, images, maps, np.array([0]), 0.5)


def test_choose_alpha_refuses_nan_maps_empty_grids_and_mismatched_methods():
    maps = np.random.default_rng(1).uniform(size=(2, 3, 3)).astype(np.float32)
    with pytest.raises(ValueError, match="maps contain 1 NaN"):
        choose_alpha({"a": np.where(maps > maps.max() - 1e-6, np.nan, maps), "b": maps})
    with pytest.raises(ValueError, match="non-empty grid"):
        choose_alpha({"a": maps, "b": maps}, grid=())
    with pytest.raises(ValueError, match=r"alpha must lie in \(0, 1\)"):
        choose_alpha({"a": maps, "b": maps}, grid=(0.5, 1.0))
    with pytest.raises(ValueError, match=r"same shape.*'b': \(1, 3, 3\)"):
        choose_alpha({"a": maps, "b": maps[:1]})


# ----------------------------------------------------------------------------
# Item 8: a backbone's output must be a feature map batch (B, h, w, K).


class FlatBackbone(nn.Module):
    """Pools itself: (B, H, W, C) -> (B, C)."""

    def __call__(self, x, train=False):
        return jnp.mean(x, axis=(1, 2))


class TokenBackbone(nn.Module):
    """Tokens: (B, H, W, C) -> (B, H*W, C)."""

    def __call__(self, x, train=False):
        return x.reshape(x.shape[0], -1, x.shape[-1])


class BatchMeanBackbone(nn.Module):
    """Averages over the batch: (B, H, W, C) -> (1, H, W, C)."""

    def __call__(self, x, train=False):
        return jnp.mean(x, axis=0, keepdims=True)


@pytest.mark.parametrize(
    ("backbone", "shape"),
    [(FlatBackbone, r"\(2, 2\)"), (TokenBackbone, r"\(2, 16, 2\)"), (BatchMeanBackbone, "1, 4")],
)
def test_backbone_output_of_the_wrong_shape_is_refused(backbone, shape):
    module = CAMClassifier(backbone=backbone(), num_classes=2, in_channels=2)
    with pytest.raises(ValueError, match=f"backbone {backbone.__name__} .*B = 2.*{shape}"):
        module.init(jax.random.key(0), jnp.zeros((2, 4, 4, 2)))


# ----------------------------------------------------------------------------
# Item 9: registry, per-example methods, chunk_size, unbound modules.


def test_register_model_checks_its_arguments():
    with pytest.raises(TypeError, match="backbone of model 'x' must be callable.*pass its class"):
        register_model("x", FlatBackbone(), input_size=16)
    with pytest.raises(TypeError, match="backbone of model 'x' must be callable.*got int"):
        register_model("x", 3, input_size=16)
    with pytest.raises(TypeError, match="model name must be a string"):
        register_model(3, FlatBackbone, input_size=16)
    for size in (16.0, "16", True):
        with pytest.raises(TypeError, match="input_size of model 'x' must be an integer"):
            register_model("x", FlatBackbone, input_size=size)
    with pytest.raises(ValueError, match="input_size of model 'x' must be >= 1"):
        register_model("x", FlatBackbone, input_size=0)
    assert "x" not in jaxcam.model_names()


@pytest.mark.parametrize("method", [cam, grad_cam, grad_cam_plus_plus])
def test_per_example_methods_check_class_index_and_feature_map(method):
    model = head_model(channels=3, num_classes=4, output="softmax", size=3)
    a = random_feature_map((3, 3, 3))
    for c in (4, -1):
        with pytest.raises(ValueError, match=f"class_index {c} is out of range .* 4 classes"):
            method(model, a, c)
    for c in (1.0, True, jnp.array([1])):
        with pytest.raises(TypeError, match="class_index must be an integer"):
            method(model, a, c)
    with pytest.raises(ValueError, match=r"feature_map must be one map of shape \(h, w, K\)"):
        method(model, a[None], 0)
    with pytest.raises(ValueError, match="feature_map has 2 channels .* K = 3"):
        method(model, a[..., :2], 0)
    # A concrete index of any integer type is accepted.
    np.testing.assert_array_equal(method(model, a, np.int64(2)), method(model, a, 2))


@pytest.mark.parametrize("method", [cam, grad_cam, grad_cam_plus_plus])
def test_a_traced_class_index_out_of_range_gives_nan(method):
    # Under jit the index is unknown at trace time, so it cannot raise; JAX indexing would
    # clamp it into a plausible map. Out of range the map is NaN instead; in range it is
    # the eager map. saliency_maps checks the indices on the host, before tracing.
    model = head_model(channels=3, num_classes=4, output="softmax", size=3)
    a = random_feature_map((3, 3, 3))
    traced = jax.jit(lambda c: method(model, a, c))
    for c in (7, 4, -1):
        assert bool(jnp.all(jnp.isnan(traced(c))))
    np.testing.assert_allclose(traced(2), method(model, a, 2), rtol=1e-6, atol=1e-7)
    with pytest.raises(ValueError, match="class indices contain 7, which is out of range"):
        saliency_maps(model, a[None], np.array([7]), method.__name__)


def test_chunk_size_must_be_a_positive_integer():
    model = head_model(channels=3, num_classes=2, output="softmax", size=2)
    a = random_feature_map((2, 2, 3))
    for chunk in (2.5, "4", True):
        with pytest.raises(TypeError, match="chunk_size must be an integer"):
            grad_cam_plus_plus(model, a, 0, chunk_size=chunk)
        with pytest.raises(TypeError, match="chunk_size must be an integer"):
            pure_derivatives(lambda x: jnp.sum(x**3), a, chunk_size=chunk)
    with pytest.raises(ValueError, match="chunk_size must be >= 1"):
        grad_cam_plus_plus(model, a, 0, chunk_size=0)


def test_an_unbound_module_is_refused_with_the_way_to_bind_it():
    model = toy_model()
    module = model.module
    a = jnp.ones((4, 4, 6))
    message = r"unbound CAMClassifier.*use jaxcam.bind\(module, variables\)"
    for call in (
        lambda: cam(module, a, 0),
        lambda: grad_cam(module, a, 0),
        lambda: grad_cam_plus_plus(module, a, 0),
        lambda: saliency_maps(module, IMAGES),
        lambda: masked_scores(module, IMAGES, np.ones((3, 16, 16), np.float32), LABELS, 0.5),
        lambda: evaluate(module, (IMAGES, LABELS), METHODS, alpha=0.5),
    ):
        with pytest.raises(TypeError, match=message):
            call()
    with pytest.raises(ValueError, match=r"one image of shape \(H, W, C\)"):
        model.features(jnp.asarray(IMAGES))


def test_other_integer_arguments_are_checked():
    model = mean_pixel_model([1.0, -1.0], [0.0, 0.25])
    images, maps = np.ones((2, 2, 2, 1), np.float32), np.ones((2, 2, 2), np.float32)
    with pytest.raises(TypeError, match="tie_seed must be an integer"):
        masked_scores(model, images, maps, np.array([0, 0]), 0.5, tie_seed=1.5)
    with pytest.raises(ValueError, match=r"indices must be integers of shape \(2,\)"):
        masked_scores(model, images, maps, np.array([0, 0]), 0.5, indices=np.arange(3))
    with pytest.raises(TypeError, match="masked_batch_size must be an integer"):
        evaluate(toy_model(), (IMAGES, LABELS), METHODS, alpha=0.5, masked_batch_size=2.5)


# ----------------------------------------------------------------------------
# Item 10: the maps' own products run at the highest matmul precision.


@pytest.mark.parametrize(
    ("method", "options"),
    [
        (cam, {}),
        (grad_cam, {}),
        (grad_cam_plus_plus, {}),
        (grad_cam_plus_plus, {"derivatives": "closed_form"}),
        (grad_cam_plus_plus, {"path": "general"}),
    ],
)
def test_every_dot_of_a_map_is_at_highest_precision(method, options):
    model = head_model(channels=3, num_classes=2, output="softmax", size=2)
    a = random_feature_map((2, 2, 3))
    with jax.default_matmul_precision("bfloat16"):
        traced = jax.make_jaxpr(lambda x: method(model, x, 1, **options))(a)
    found = dot_precisions(traced)
    assert found and all(p == HIGHEST for p in found)


def drop_row(ad, bad, curve) -> MethodResult:
    """A table row of AD and BAD summaries (BAD's curve given, no curve mean)."""
    return MethodResult(
        metrics={"average_drop": ad, "black_average_drop": bad},
        curves={"black_average_drop": curve},
        curve_areas={"black_average_drop": None},
        tie_decided=None,
        empty_maps=0,
    )
