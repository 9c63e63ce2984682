"""The class score ``Y^c`` that Grad-CAM and Grad-CAM++ differentiate.

``score`` names the function of the logits S: the model output as trained
(``relu``, ``softmax``, ``linear``, ``exp``) or an explicit choice.

Grad-CAM++'s alpha (eq. 8) and every normalised map are unchanged when Y is
multiplied by a positive constant or shifted by a constant (derivatives of a
constant are 0). The ``stable`` form (default) uses that to avoid the softmax
failure of paper §5.3, where logits near -3056 / +3215 made Y exactly 0 or 1 and
every derivative 0. With ``A0`` the explained feature map:

* a class with ``Y(A0) <= 1/2`` is scored by ``Y(A) / Y(A0) = exp(log Y(A) - log Y(A0))``;
* a class with ``Y(A0) > 1/2`` by ``(Y(A) - Y(A0)) / (1 - Y(A0)) + const =
  -exp(log(1 - Y(A)) - log(1 - Y(A0)))``, with ``log(1 - Y) = logsumexp_{j != c} S_j -
  logsumexp S``. Near saturation every derivative of Y carries the factor
  ``1 - Y``, which underflows even in float64; dividing it out in log space keeps
  the derivatives exact.

Both are exactly O(1) at A0 and never under- or overflow. Their logsumexps carry
custom JVP rules (:func:`expectation`) under which nested ``jax.jvp`` along many
directions turns the sums over classes into matrix products. ``exp`` is scored by
``exp(S_c - S_c(A0))``. The ``naive`` form differentiates Y itself, to reproduce the
paper.
"""

from __future__ import annotations

from collections.abc import Callable

import jax
import jax.numpy as jnp
from jax.custom_derivatives import SymbolicZero

from jaxcam.models.outputs import check_output_activation
from jaxcam.taylor import logsumexp_taylor, taylor_rule

Array = jax.Array
SCORE_FORMS: tuple[str, ...] = ("stable", "naive")


def check_score_form(form: str) -> str:
    if form not in SCORE_FORMS:
        raise ValueError(f"score form must be one of {SCORE_FORMS}, got {form!r}")
    return form


def class_score(
    score: str, class_index: Array, reference_logits: Array, form: str = "stable"
) -> Callable[[Array], Array]:
    """Scalar score of class c as a function of the logits S (classes,).

    Args:
      score: ``relu`` | ``softmax`` | ``linear`` | ``exp``.
      class_index: c, an integer scalar.
      reference_logits: S(A0), the logits at the explained feature map (classes,);
        used by the ``stable`` form of ``softmax`` and ``exp``.
      form: ``stable`` (default) or ``naive``.

    Returns:
      ``S -> Y^c`` (a scalar). ``relu`` and ``linear`` are the same in both forms.
    """
    check_output_activation(score)
    check_score_form(form)
    reference_logits = jax.lax.stop_gradient(reference_logits)

    if score == "relu":
        return lambda logits: jax.nn.relu(logits[class_index])
    if score == "linear":
        return lambda logits: logits[class_index]
    if score == "exp":
        if form == "naive":
            return lambda logits: jnp.exp(logits[class_index])
        return lambda logits: jnp.exp(logits[class_index] - reference_logits[class_index])
    if form == "naive":
        return lambda logits: jax.nn.softmax(logits)[class_index]
    return _stable_softmax_score(class_index, reference_logits)


@jax.custom_jvp
def expectation(values: Array, logits: Array) -> Array:
    """``E_p[values] = sum_j values_j softmax(logits)_j`` over the last axis.

    Its JVP is written with ``expectation`` itself, so nested ``jax.jvp`` keeps
    differentiating through this rule::

        d E_p[v] = E_p[dv] + E_p[v * ds] - E_p[v] E_p[ds]

    Along a direction ``u`` of the logits, the products ``v * u`` (u, u^2, u^3 ...)
    do not depend on the example, and every sum over classes is a dot product with
    ``softmax(logits)``: under ``vmap`` over directions and examples these become
    matrix products, instead of (examples, directions, classes) elementwise work.
    """
    return values @ jax.nn.softmax(logits)


def _expectation_jvp(primals, tangents):
    values, logits = primals
    d_values, d_logits = tangents
    out = expectation(values, logits)
    tangent = jnp.zeros_like(out)
    if not isinstance(d_values, SymbolicZero):
        tangent = tangent + expectation(d_values, logits)
    if not isinstance(d_logits, SymbolicZero):
        tangent = tangent + (
            expectation(values * d_logits, logits) - out * expectation(d_logits, logits)
        )
    return out, tangent


expectation.defjvp(_expectation_jvp, symbolic_zeros=True)


@jax.custom_jvp
def _logsumexp(logits: Array) -> Array:
    return jax.nn.logsumexp(logits)


@_logsumexp.defjvp
def _logsumexp_jvp(primals, tangents):
    (logits,), (d_logits,) = primals, tangents
    return _logsumexp(logits), expectation(d_logits, logits)


logsumexp = taylor_rule(logsumexp_taylor)(_logsumexp)
"""``log sum_j exp(logits_j)``; its JVP is ``E_p[d logits]`` (:func:`expectation`), its
Taylor-mode rule :func:`jaxcam.derivatives.logsumexp_taylor` (moments ``E_p[q_k]``)."""


def _log_softmax_and_complement(logits: Array, class_index: Array) -> tuple[Array, Array]:
    """``(log Y_c, log(1 - Y_c))`` for ``Y = softmax(S)``, both without cancellation."""
    # Adding a constant mask (not selecting) keeps the tangents of `others` equal to
    # those of `logits`: they do not depend on the example's class, so directions
    # stay shared across a batch (the masked class has weight 0 in any case).
    mask = jnp.where(jnp.arange(logits.shape[-1]) == class_index, -jnp.inf, 0.0)
    others = logsumexp(logits + mask.astype(logits.dtype))
    own = logits[class_index]
    total = jnp.logaddexp(others, own)  # one sum over classes serves both terms
    return own - total, others - total


def _stable_softmax_score(class_index: Array, reference_logits: Array) -> Callable[[Array], Array]:
    log_y0, log_not_y0 = _log_softmax_and_complement(reference_logits, class_index)
    winning = (log_y0 > jnp.log(0.5)) & (reference_logits.shape[-1] > 1)

    def score(logits: Array) -> Array:
        log_y, log_not_y = _log_softmax_and_complement(logits, class_index)
        ratio = jnp.exp(log_y - log_y0)
        complement = -jnp.exp(jnp.where(winning, log_not_y - log_not_y0, 0.0))
        return jnp.where(winning, complement, ratio)

    return score
