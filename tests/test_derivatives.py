"""jaxcam.derivatives: exact pure derivatives against independent references."""

import jax
import jax.extend
import jax.numpy as jnp
import numpy as np
import pytest
from conftest import dot_precisions

from jaxcam.derivatives import (
    directional_derivatives,
    global_average_pool_weights,
    pure_derivatives,
    pure_derivatives_pooled,
)


def mlp_head(seed: int = 0, channels: int = 5, hidden: int = 6):
    """A nonlinear head g(p) and f(A) = g(GAP(A)), float64 weights."""
    rng = np.random.default_rng(seed)
    w1 = jnp.asarray(rng.normal(size=(channels, hidden)))
    w2 = jnp.asarray(rng.normal(size=(hidden,)))

    def g(p):
        return jnp.tanh(p @ w1) @ w2 + jnp.exp(0.3 * jnp.sum(p))

    return g, lambda a: g(jnp.mean(a, axis=(0, 1)))


def test_directional_derivatives_of_a_cubic_by_hand():
    # f(x) = x0^3 + 2 x0 x1 along v = (1, 0): f, 3x0^2 + 2x1, 6x0, 6, 0.
    f = lambda x: x[0] ** 3 + 2.0 * x[0] * x[1]
    x = jnp.array([2.0, 5.0])
    values = directional_derivatives(f, x, jnp.array([1.0, 0.0]), order=4)
    np.testing.assert_allclose([float(v) for v in values], [28.0, 22.0, 12.0, 6.0, 0.0])


@pytest.mark.parametrize("method", ["taylor", "nested_jvp"])
def test_general_path_equals_hessian_diagonal_and_third_order_reference(method):
    with jax.enable_x64(True):
        g, f = mlp_head()
        a = jnp.asarray(np.random.default_rng(1).normal(size=(2, 3, 5)))
        d1, d2, d3 = pure_derivatives(f, a, order=3, method=method, chunk_size=7)
        n = a.size
        hessian = jax.hessian(f)(a).reshape(n, n)
        third = jax.jacfwd(jax.hessian(f))(a).reshape(n, n, n)
        np.testing.assert_allclose(d1.ravel(), jax.grad(f)(a).ravel(), rtol=1e-12, atol=1e-14)
        np.testing.assert_allclose(d2.ravel(), jnp.diag(hessian), rtol=1e-12, atol=1e-14)
        np.testing.assert_allclose(d3.ravel(), jnp.einsum("iii->i", third), rtol=1e-12, atol=1e-14)
        assert d2.dtype == jnp.float64


@pytest.mark.parametrize("method", ["taylor", "nested_jvp"])
@pytest.mark.parametrize("chunk_size", [1, 4, None])
def test_chunking_does_not_change_the_result(chunk_size, method):
    _, f = mlp_head()
    a = jnp.asarray(np.random.default_rng(2).normal(size=(2, 2, 5)), jnp.float32)
    reference = pure_derivatives(f, a, method="nested_jvp", chunk_size=a.size)
    result = pure_derivatives(f, a, method=method, chunk_size=chunk_size)
    for got, want in zip(result, reference, strict=True):
        np.testing.assert_allclose(got, want, rtol=1e-6, atol=1e-6)


def test_pooled_path_equals_general_path_float64():
    with jax.enable_x64(True):
        g, f = mlp_head(seed=3)
        a = jnp.asarray(np.random.default_rng(4).normal(size=(3, 2, 5)))
        weights = global_average_pool_weights(3, 2, a.dtype)
        general = pure_derivatives(f, a)
        pooled = pure_derivatives_pooled(g, jnp.mean(a, axis=(0, 1)), weights)
        for got, want in zip(pooled, general, strict=True):
            np.testing.assert_allclose(got, want, rtol=1e-11, atol=1e-14)


def test_pooled_path_with_non_uniform_weights_matches_general_path():
    with jax.enable_x64(True):
        g, _ = mlp_head(seed=5)
        weights = jnp.asarray(np.random.default_rng(6).uniform(0.1, 1.0, size=(2, 3)))
        f = lambda a: g(jnp.einsum("hw,hwk->k", weights, a))
        a = jnp.asarray(np.random.default_rng(7).normal(size=(2, 3, 5)))
        pooled = pure_derivatives_pooled(g, jnp.einsum("hw,hwk->k", weights, a), weights)
        for got, want in zip(pooled, pure_derivatives(f, a), strict=True):
            np.testing.assert_allclose(got, want, rtol=1e-11, atol=1e-14)


@pytest.mark.parametrize("method", ["taylor", "nested_jvp"])
def test_derivatives_trace_at_highest_precision_whatever_the_default(method):
    w = jnp.ones((5, 3))
    v = jnp.ones((3, 2))
    f = lambda a: jnp.sum(jnp.tanh(jnp.mean(a, axis=(0, 1)) @ w) @ v)
    a = jnp.ones((2, 2, 5))
    with jax.default_matmul_precision("bfloat16"):
        jaxpr = jax.make_jaxpr(lambda x: pure_derivatives(f, x, method=method))(a)
        plain = jax.make_jaxpr(f)(a)

    highest = (jax.lax.Precision.HIGHEST, jax.lax.Precision.HIGHEST)
    assert dot_precisions(plain) and all(p != highest for p in dot_precisions(plain))
    found = dot_precisions(jaxpr)
    assert found and all(p == highest for p in found)


def test_bad_arguments():
    f = lambda a: jnp.sum(a**2)
    with pytest.raises(ValueError, match="order"):
        pure_derivatives(f, jnp.ones(3), order=0)
    with pytest.raises(ValueError, match="chunk_size"):
        pure_derivatives(f, jnp.ones(3), chunk_size=0)
    with pytest.raises(ValueError, match="projected features"):
        pure_derivatives_pooled(f, jnp.ones((2, 3)), jnp.ones((2, 2)))


def test_pooled_path_through_a_dense_projection_matches_general_path():
    # f(A) = h(GAP(A) M): the K directions are the rows of M, nothing is pushed through M.
    with jax.enable_x64(True):
        rng = np.random.default_rng(8)
        projection = jnp.asarray(rng.normal(size=(5, 4)))
        h = lambda s: jax.nn.log_softmax(s)[1] + jnp.sum(jnp.sin(s))
        f = lambda a: h(jnp.mean(a, axis=(0, 1)) @ projection)
        a = jnp.asarray(rng.normal(size=(2, 3, 5)))
        weights = global_average_pool_weights(2, 3, a.dtype)
        pooled = pure_derivatives_pooled(
            h, jnp.mean(a, axis=(0, 1)) @ projection, weights, projection
        )
        for got, want in zip(pooled, pure_derivatives(f, a), strict=True):
            np.testing.assert_allclose(got, want, rtol=1e-10, atol=1e-13)
    with pytest.raises(ValueError, match="projection must have shape"):
        pure_derivatives_pooled(h, jnp.ones(4), jnp.ones((2, 2)), jnp.ones((5, 3)))
