"""Grad-CAM (Selvaraju et al. 2017; paper eq. 5-6)."""

from __future__ import annotations

from collections.abc import Callable

import jax
import jax.numpy as jnp

from jaxcam.checks import nan_if_out_of_range
from jaxcam.models.protocol import Explainable, check_explained
from jaxcam.saliency.scores import class_score

Array = jax.Array


def class_score_gradient(
    model: Explainable,
    feature_map: Array,
    class_index: Array,
    score: str | None = None,
    form: str = "stable",
) -> Array:
    """``dY^c/dA`` (h, w, K) for A (h, w, K): the gradient every gradient CAM starts from.

    ``score`` names Y (default the model's output activation, see
    :mod:`jaxcam.saliency.scores`), ``form`` its ``stable`` or ``naive`` form. Callers
    trace it under ``jax.default_matmul_precision("highest")``.
    """
    score_of_logits = class_score(
        score or model.output, class_index, model.logits(feature_map), form
    )
    return jax.grad(lambda a: score_of_logits(model.logits(a)))(feature_map)


def gradient_cam(
    model: Explainable,
    feature_map: Array,
    class_index: Array,
    combine: Callable[[Array, Array], Array],
    score: str | None = None,
    form: str = "stable",
) -> Array:
    """The frame every gradient CAM shares: ``relu(combine(dY^c/dA, A))``, (h, w).

    Checks the model, A (h, w, K) and c; takes the gradient and ``combine(gradient, A)
    -> (h, w)`` (the method's own step) at ``highest`` matmul precision; NaN everywhere
    for a traced out-of-range c (:func:`jaxcam.checks.nan_if_out_of_range`).
    """
    check_explained(model, feature_map, class_index)
    with jax.default_matmul_precision("highest"):
        gradient = class_score_gradient(model, feature_map, class_index, score, form)
        saliency = jax.nn.relu(combine(gradient, feature_map))
    return nan_if_out_of_range(saliency, class_index, model.num_classes)


def grad_cam(
    model: Explainable,
    feature_map: Array,
    class_index: Array,
    *,
    score: str | None = None,
    form: str = "stable",
) -> Array:
    """Grad-CAM map ``relu(sum_k w^c_k A^k)``, ``w^c_k = (1/z) sum_xy dY^c/dA^k_xy``.

    The gradient and the weighted sum run at ``highest`` matmul precision whatever
    the caller's, like the derivatives of Grad-CAM++.

    Args:
      model: any bound split model (no constraint on the head).
      feature_map: A, (h, w, K).
      class_index: c, integer scalar in [0, classes): checked (ValueError) when
        concrete; a traced c cannot be checked and gives NaN everywhere when out of
        range (:func:`jaxcam.checks.nan_if_out_of_range`).
      score: the differentiated score (see :mod:`jaxcam.saliency.scores`); default
        the model's output activation.
      form: ``stable`` or ``naive`` score form.

    Returns:
      L^c, (h, w).
    """

    def combine(gradient: Array, a: Array) -> Array:
        return jnp.einsum("hwk,k->hw", a, jnp.mean(gradient, axis=(0, 1)))

    return gradient_cam(model, feature_map, class_index, combine, score, form)
