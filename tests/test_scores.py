"""jaxcam.saliency.scores: the stable class scores and their custom JVP rules."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxcam.derivatives import derivatives_along
from jaxcam.saliency.scores import class_score, expectation, logsumexp


def plain_stable_softmax(logits, c, reference):
    """The stable score written with plain autodiff (no custom rules), float64."""
    log_y = jax.nn.log_softmax(logits)[c]
    others = jnp.delete(logits, c)
    log_not_y = jax.nn.logsumexp(others) - jax.nn.logsumexp(logits)
    ref_y = jax.nn.log_softmax(reference)[c]
    ref_not_y = jax.nn.logsumexp(jnp.delete(reference, c)) - jax.nn.logsumexp(reference)
    if ref_y > jnp.log(0.5):
        return -jnp.exp(log_not_y - ref_not_y)
    return jnp.exp(log_y - ref_y)


@pytest.mark.parametrize("c", [0, 2])
def test_custom_rules_give_the_same_nested_derivatives_as_plain_autodiff(c):
    with jax.enable_x64(True):
        rng = np.random.default_rng(0)
        logits = jnp.asarray(rng.normal(size=5)).at[2].set(3.0)  # class 2 wins, class 0 loses
        directions = jnp.asarray(rng.normal(size=(4, 5)))
        score = class_score("softmax", c, logits)
        got = derivatives_along(score, logits, directions, order=3)
        plain = lambda s: plain_stable_softmax(s, c, logits)
        hessian = jax.hessian(plain)(logits)
        third = jax.jacfwd(jax.hessian(plain))(logits)
        want = (
            directions @ jax.grad(plain)(logits),
            jnp.einsum("ki,ij,kj->k", directions, hessian, directions),
            jnp.einsum("ki,ijl,kj,kl->k", directions, third, directions, directions),
        )
        for g, w in zip(got, want, strict=True):
            np.testing.assert_allclose(g, w, rtol=1e-10, atol=1e-12)


def test_expectation_and_logsumexp_rules_by_hand():
    with jax.enable_x64(True):
        values = jnp.array([1.0, 2.0, 4.0])
        logits = jnp.log(jnp.array([0.5, 0.25, 0.25]))
        assert float(expectation(values, logits)) == pytest.approx(2.0)
        # d/dt E_p(s + t u)[v] = Cov_p(v, u); with u = v it is Var_p(v):
        # E[v^2] = 0.5 * 1 + 0.25 * 4 + 0.25 * 16 = 5.5, so Var = 5.5 - 2^2 = 1.5
        _, tangent = jax.jvp(lambda s: expectation(values, s), (logits,), (values,))
        assert float(tangent) == pytest.approx(1.5)
        _, d_lse = jax.jvp(logsumexp, (logits,), (values,))
        assert float(d_lse) == pytest.approx(2.0)
        assert float(logsumexp(logits)) == pytest.approx(0.0, abs=1e-12)


def test_stable_exp_score_is_one_at_the_reference():
    logits = jnp.array([1000.0, -3.0])
    for score in ("exp", "softmax"):
        value = class_score(score, 1, logits)(logits)
        assert bool(jnp.isfinite(value)) and abs(float(jnp.abs(value)) - 1.0) < 1e-6


def test_bad_score_names():
    with pytest.raises(ValueError, match="output activation"):
        class_score("sigmoid", 0, jnp.zeros(2))
    with pytest.raises(ValueError, match="score form"):
        class_score("softmax", 0, jnp.zeros(2), form="log")
