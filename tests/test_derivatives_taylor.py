"""Taylor mode (``method="taylor"``) against nested jvp and float64 autodiff references."""

import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from conftest import dot_precisions, head_model, random_feature_map
from test_saliency import asymptotic_map, saturated_softmax_model

from jaxcam.derivatives import directional_derivatives, pure_derivatives
from jaxcam.models import bind
from jaxcam.saliency import grad_cam_plus_plus, grad_cam_plus_plus_derivatives
from jaxcam.saliency.scores import class_score
from jaxcam.taylor import logsumexp_taylor, taylor_derivatives

HIGHEST = (jax.lax.Precision.HIGHEST, jax.lax.Precision.HIGHEST)


def reference(f, a):
    """``(d1, d2, d3)`` from jax.grad, the Hessian diagonal and the third-derivative diagonal."""

    @jax.jit
    def diagonals(a):
        n = a.size
        hessian = jax.hessian(f)(a).reshape(n, n)
        third = jax.jacfwd(jax.hessian(f))(a).reshape(n, n, n)
        return (
            jax.grad(f)(a),
            jnp.diag(hessian).reshape(a.shape),
            jnp.einsum("iii->i", third).reshape(a.shape),
        )

    return diagonals(a)


def assert_all_close(got, want, rtol, atol):
    for g, w in zip(got, want, strict=True):
        np.testing.assert_allclose(g, w, rtol=rtol, atol=atol)


def weights(seed, *shape):
    return jnp.asarray(np.random.default_rng(seed).normal(size=shape))


def mlp_head(approximate):
    w1, w2 = weights(0, 4, 6), weights(1, 6, 3)
    return lambda a: jax.nn.log_softmax(
        jax.nn.gelu(jnp.mean(a, axis=(0, 1)) @ w1, approximate=approximate) @ w2
    )[1]


def max_pool_head(a):
    # Max pooling over 2x1 windows of A (2, 3, 4), then dense and a smooth nonlinearity.
    pooled = jnp.max(a.reshape(1, 2, 3, 4), axis=1)
    return jnp.sum(jnp.tanh(pooled.reshape(-1) @ weights(2, 12, 3)) ** 2)


def global_max_head(a):
    return jnp.sum(jax.nn.sigmoid(jnp.max(a, axis=(0, 1)) @ weights(3, 4, 5)))


def attention_head(a):
    # Attention pooling: softmax over positions of a learned query, then dense -> exp.
    keys = a.reshape(-1, a.shape[-1])
    attention = jax.nn.softmax(keys @ weights(4, 4))
    return jnp.exp(0.3 * jnp.tanh(attention @ keys) @ weights(5, 4))


def nonlinear_on_a(a):
    # Nonlinear in A before any pooling: every direction becomes dense at once.
    return jnp.log(jnp.sum(jnp.sqrt(a**2 + 1.0))) + jnp.sum(jax.nn.relu(a - 0.2) ** 3)


HEADS = {  # builders: weights are made in the caller's dtype context
    "mlp_gelu_tanh": lambda: mlp_head(True),
    "mlp_gelu_erf": lambda: mlp_head(False),
    "max_pool": lambda: max_pool_head,
    "global_max": lambda: global_max_head,
    "attention": lambda: attention_head,
    "nonlinear_on_a": lambda: nonlinear_on_a,
}


@pytest.mark.parametrize("head", sorted(HEADS))
def test_taylor_equals_nested_jvp_and_float64_references(head):
    with jax.enable_x64(True):
        f = HEADS[head]()
        a = jnp.asarray(np.random.default_rng(7).uniform(0.0, 1.0, size=(2, 3, 4)))
        taylor = pure_derivatives(f, a, method="taylor", chunk_size=5)
        nested = pure_derivatives(f, a, method="nested_jvp", chunk_size=5)
        want = reference(f, a)
        assert_all_close(taylor, want, rtol=1e-10, atol=1e-12)
        assert_all_close(taylor, nested, rtol=1e-11, atol=1e-13)
        assert all(d.dtype == jnp.float64 for d in taylor)


def test_taylor_derivatives_match_nested_jvp_to_order_five():
    with jax.enable_x64(True):
        f = lambda x: (
            jnp.sum(jnp.tanh(x) * jnp.exp(-(x**2)) / (1.0 + x**2))
            + jnp.log1p(jnp.sum(x**2))
            + jax.scipy.special.erf(x[0] * x[1])
            + jnp.expm1(x[2]) ** 3
            + jnp.max(x) * jnp.min(x)
        )
        x = weights(8, 5)
        v = weights(9, 5)
        got = taylor_derivatives(f, x, v, order=5)
        want = directional_derivatives(f, x, v, order=5)
        np.testing.assert_allclose(jnp.stack(got), jnp.stack(want), rtol=1e-11, atol=1e-12)


def test_logsumexp_rule_along_a_curve():
    # All coefficients non-zero: s(t) = s0 + s1 t + s2 t^2 + s3 t^3.
    with jax.enable_x64(True):
        s0, s1, s2, s3 = (weights(10 + i, 6) for i in range(4))
        s0 = s0.at[2].set(-jnp.inf)  # a masked class has weight 0
        total, terms = logsumexp_taylor([s0], [[s1, s2, s3]], 3)
        curve = lambda t: jax.nn.logsumexp(s0 + s1 * t + s2 * t**2 + s3 * t**3)
        want = directional_derivatives(curve, jnp.zeros(()), jnp.ones(()), 3)
        got = [total, *(term * math.factorial(k) for k, term in enumerate(terms, 1))]
        np.testing.assert_allclose(jnp.stack(got), jnp.stack(want), rtol=1e-12)


@pytest.mark.parametrize("chunk_size", [1, 4, None])
def test_taylor_chunking_does_not_change_the_result(chunk_size):
    f = HEADS["mlp_gelu_tanh"]()
    a = random_feature_map((2, 2, 4))
    want = pure_derivatives(f, a, chunk_size=a.size)
    got = pure_derivatives(f, a, chunk_size=chunk_size)
    assert_all_close(got, want, rtol=1e-6, atol=1e-7)


def test_basis_directions_stay_symbolic_through_gap_and_dense():
    # GAP -> dense: no (directions x N) one-hot array and no matmul with it is traced.
    model = head_model(channels=16, num_classes=3, output="softmax", size=4)
    a = random_feature_map((4, 4, 16))
    f = lambda x: class_score("softmax", 1, model.logits(a))(model.logits(x))
    chunk = 32
    jaxpr = jax.make_jaxpr(lambda x: pure_derivatives(f, x, chunk_size=chunk))(a)
    largest = []

    def walk(inner):
        for eqn in inner.eqns:
            largest.extend(int(np.prod(v.aval.shape)) for v in eqn.outvars)
            for sub in jax.extend.core.jaxprs_in_params(eqn.params):
                walk(sub)

    walk(jaxpr.jaxpr)
    assert max(largest) < chunk * a.size
    nested = jax.make_jaxpr(
        lambda x: pure_derivatives(f, x, method="nested_jvp", chunk_size=chunk)
    )(a)
    assert any(
        int(np.prod(v.aval.shape)) >= chunk * a.size
        for eqn in nested.jaxpr.eqns
        for sub in jax.extend.core.jaxprs_in_params(eqn.params)
        for inner in sub.eqns
        for v in inner.outvars
    )


@pytest.mark.parametrize("score", ["softmax", "exp", "relu", "linear"])
@pytest.mark.parametrize("hidden", [(), (5,)])
def test_grad_cam_plus_plus_general_taylor_equals_nested_and_pooled(score, hidden):
    model = head_model(channels=4, num_classes=3, output=score, hidden=hidden, size=3)
    a = random_feature_map((3, 3, 4))
    c = int(jnp.argmax(model.logits(a)))
    taylor = grad_cam_plus_plus_derivatives(model, a, c, path="general", chunk_size=7)
    nested = grad_cam_plus_plus_derivatives(
        model, a, c, path="general", derivative_method="nested_jvp"
    )
    pooled = grad_cam_plus_plus_derivatives(model, a, c, path="pooled")
    assert_all_close(taylor, nested, rtol=2e-5, atol=1e-7)
    assert_all_close(taylor, pooled, rtol=2e-5, atol=1e-7)
    if score in ("relu", "linear") and not hidden:  # a linear head: d2 = d3 = 0 exactly
        np.testing.assert_array_equal(taylor[1], 0.0)
        np.testing.assert_array_equal(taylor[2], 0.0)


@pytest.mark.parametrize("c", [0, 1])
def test_taylor_keeps_the_stable_softmax_at_saturated_logits(c):
    model = saturated_softmax_model([-3000.0, 3000.0])
    a = random_feature_map((4, 4, 4))
    want = asymptotic_map(model, a, c)
    for path, method in [
        ("general", "taylor"),
        ("general", "nested_jvp"),
        ("pooled", "nested_jvp"),
    ]:
        got = grad_cam_plus_plus(model, a, c, path=path, derivative_method=method)
        assert bool(jnp.all(jnp.isfinite(got))) and float(jnp.max(got)) > 0
        np.testing.assert_allclose(got / jnp.max(got), want / jnp.max(want), atol=1e-5)


def score_function(model, a, c):
    with jax.default_matmul_precision("highest"):
        score = class_score("softmax", c, model.logits(a))
    return lambda x: score(model.logits(x))


def assert_float64_paths_match(model, a, c, want):
    """Both paths and both methods give float64 derivatives equal to ``want`` to 1e-10."""
    for path in ("pooled", "general"):
        for method in ("taylor", "nested_jvp"):
            got = grad_cam_plus_plus_derivatives(model, a, c, path=path, derivative_method=method)
            assert all(d.dtype == jnp.float64 for d in got)
            assert_all_close(got, want, rtol=1e-10, atol=1e-13)


@pytest.mark.parametrize(("hidden", "winner"), [((), False), ((5,), True)])
def test_float64_exact_grad_cam_plus_plus_equals_hessian_reference(hidden, winner):
    with jax.enable_x64(True):
        with jax.numpy_dtype_promotion("standard"):  # flax initialises float32 parameters
            model = head_model(3, 4, "softmax", hidden, size=2, dtype=jnp.float64)
        a = random_feature_map((2, 2, 3), dtype=jnp.float64)
        logits = model.logits(a)
        c = int(jnp.argmax(logits) if winner else jnp.argmin(logits))
        want = reference(score_function(model, a, c), a)
        assert_float64_paths_match(model, a, c, want)


def test_float64_feature_map_with_float32_model():
    # Issue 10, item 1: float32 kernel rows were used as tangents of float64 primals.
    with jax.enable_x64(True), jax.numpy_dtype_promotion("standard"):
        model = head_model(3, 4, "softmax", (5,), size=2)
        a = random_feature_map((2, 2, 3), dtype=jnp.float64)
        as64 = bind(model.module, jax.tree.map(lambda v: v.astype(jnp.float64), model.variables))
        c = 2
        want = reference(score_function(as64, a, c), a)
        assert_float64_paths_match(model, a, c, want)


@pytest.mark.parametrize("path", ["pooled", "general"])
@pytest.mark.parametrize("method", ["taylor", "nested_jvp"])
def test_every_dot_is_at_highest_precision(path, method):
    model = head_model(channels=3, num_classes=4, output="softmax", hidden=(5,), size=2)
    a = random_feature_map((2, 2, 3))
    with jax.default_matmul_precision("bfloat16"):
        traced = jax.make_jaxpr(
            lambda x: grad_cam_plus_plus_derivatives(
                model, x, 1, path=path, derivative_method=method
            )
        )(a)
    found = dot_precisions(traced)
    assert found and all(p == HIGHEST for p in found)


def test_bad_method():
    with pytest.raises(ValueError, match="method"):
        pure_derivatives(lambda a: jnp.sum(a**3), jnp.ones(3), method="jet")
    with pytest.raises(ValueError, match="scalar"):
        pure_derivatives(lambda a: a**3, jnp.ones(3))
