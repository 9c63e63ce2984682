"""Integer and boolean points: both derivative methods convert them to the default float."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxcam.derivatives import derivatives_along, pure_derivatives, pure_derivatives_pooled


def cubic(x):
    """f(x) = sum_i x_i^3 + 2 x_0 x_1 over the flattened x."""
    flat = x.reshape(-1)
    return jnp.sum(flat**3) + 2.0 * flat[0] * flat[1]


@pytest.mark.parametrize("method", ["taylor", "nested_jvp"])
def test_integer_x_gives_float_derivatives_by_hand(method):
    x = jnp.array([[1, 2], [3, -1]], jnp.int32)
    d1, d2, d3 = pure_derivatives(cubic, x, order=3, method=method)
    # d/dx_i: 3 x_i^2, plus 2 x_1 for i = 0 and 2 x_0 for i = 1 -> 3 + 4, 12 + 2, 27, 3.
    np.testing.assert_array_equal(d1, [[7.0, 14.0], [27.0, 3.0]])
    np.testing.assert_array_equal(d2, [[6.0, 12.0], [18.0, -6.0]])  # 6 x_i
    np.testing.assert_array_equal(d3, np.full((2, 2), 6.0))
    assert {d.dtype for d in (d1, d2, d3)} == {jnp.dtype(jnp.float32)}
    (only_first,) = pure_derivatives(cubic, x, order=1, method=method)
    np.testing.assert_array_equal(only_first, d1)


@pytest.mark.parametrize("method", ["taylor", "nested_jvp"])
def test_boolean_x_and_directions_along_an_integer_point(method):
    d1, d2 = pure_derivatives(cubic, jnp.array([True, False, True]), order=2, method=method)
    np.testing.assert_array_equal(d1, [3.0, 2.0, 3.0])  # x = (1, 0, 1)
    np.testing.assert_array_equal(d2, [6.0, 0.0, 6.0])
    # Along u = (1, 1, 0) at x = (1, 2, 0): D f[u] = 3 + 12 + 2 (2 + 1) = 21, and
    # f(x + t u) = (1 + t)^3 + (2 + t)^3 + 2 (1 + t)(2 + t) -> f'' = 6 + 12 + 4 = 22.
    first, second = derivatives_along(
        cubic, jnp.array([1, 2, 0]), jnp.array([[1, 1, 0]]), order=2, method=method
    )
    np.testing.assert_array_equal(first, [21.0])
    np.testing.assert_array_equal(second, [22.0])
    assert first.dtype == second.dtype == jnp.float32


@pytest.mark.parametrize("method", ["taylor", "nested_jvp"])
def test_integer_projected_features_in_the_pooled_path(method):
    # h(s) = sum s^3 at s = (1, 2): D^m along e_k, scaled by w^m with w = 1/4 (GAP over 2x2).
    weights = jnp.full((2, 2), 0.25, jnp.float32)
    h = lambda s: jnp.sum(s**3)
    d1, d2 = pure_derivatives_pooled(h, jnp.array([1, 2]), weights, order=2, method=method)
    np.testing.assert_array_equal(d1[0, 0], [0.25 * 3.0, 0.25 * 12.0])
    np.testing.assert_array_equal(d2[1, 1], [0.0625 * 6.0, 0.0625 * 12.0])


def test_integer_x_becomes_float64_with_x64():
    with jax.enable_x64(True):
        for method in ("taylor", "nested_jvp"):
            (d1,) = pure_derivatives(cubic, jnp.array([2, 1], jnp.int64), order=1, method=method)
            assert d1.dtype == jnp.float64
            np.testing.assert_array_equal(d1, [14.0, 7.0])  # 12 + 2, 3 + 4
