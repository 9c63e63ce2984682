"""Grad-CAM++ (Chattopadhyay et al. 2018; paper eq. 7-8), exact or closed form.

``derivatives="exact"`` (default) takes the pure second and third derivatives of
the class score exactly (:mod:`jaxcam.derivatives`: Taylor mode by default, nested
``jax.jvp`` as the reference), for any head; through the pooled features when the
head starts with global average pooling (O(N*K) instead of O(N^2)), with the K
directions taken past the first dense layer analytically (rows of its kernel); through
the Jacobian of the logits when the rest of the network is piecewise linear in A (a
ReLU network's inner layer: min(C, N) backward or forward passes, then N directions in
the C-dimensional logit space, where alone the second and third derivatives arise).
``derivatives="closed_form"`` is what public CAM libraries compute: ``d2 = g^2``,
``d3 = g^3`` with ``g = dS^c/dA`` the gradient of the class *logit*, exact only for
``Y = exp(S)`` with S linear in A.

Zero-denominator convention: where ``2 d2 + sum_ab A_ab d3 == 0`` (or is not
finite) alpha := 0, as the closed-form libraries do where g == 0. With exact
derivatives this matters: a ``linear`` or ``relu`` score over a head linear in A
has d2 = d3 = 0 everywhere, so every alpha is 0 and the map is all zero. The
paper's "ReLU output" Grad-CAM++ results come from the closed form.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

from jaxcam.checks import nan_if_out_of_range
from jaxcam.derivatives import (
    check_chunk_size,
    global_average_pool_weights,
    is_piecewise_linear_at,
    pure_derivatives,
    pure_derivatives_pooled,
    pure_derivatives_transposed,
)
from jaxcam.models.protocol import Explainable, check_explained
from jaxcam.saliency.scores import class_score

Array = jax.Array
DERIVATIVES: tuple[str, ...] = ("exact", "closed_form")
PATHS: tuple[str, ...] = ("auto", "pooled", "transposed", "general")


def grad_cam_plus_plus_derivatives(
    model: Explainable,
    feature_map: Array,
    class_index: Array,
    *,
    derivatives: str = "exact",
    score: str | None = None,
    form: str = "stable",
    path: str = "auto",
    chunk_size: int | None = None,
    derivative_method: str = "taylor",
) -> tuple[Array, Array, Array]:
    """``(d1, d2, d3)``, each (h, w, K), as used by eq. 7-8.

    Args:
      model: bound split model.
      feature_map: A, (h, w, K).
      class_index: c, integer scalar in [0, classes): checked (ValueError) when
        concrete; a traced c cannot be checked and gives NaN everywhere when out of
        range (:func:`jaxcam.checks.nan_if_out_of_range`).
      derivatives: ``exact`` or ``closed_form`` (d1 = g, d2 = g^2, d3 = g^3 with g the
        gradient of the class logit).
      score: differentiated score (default: the model's output activation).
      form: ``stable`` (log-space ``Y/Y(A0)``) or ``naive``.
      path: ``auto`` (the first of these that applies), ``pooled`` (a head that
        starts with GAP then the first dense layer, ``model.has_linear_pooling``: K
        directions), ``transposed`` (logits piecewise linear in A, read from the traced
        program, e.g. a ReLU network's inner layer: the Jacobian of the C logits by
        min(C, h*w*K) passes, then the derivatives in logit space) or ``general`` (any
        head: one Taylor pass through the head along each of the h*w*K basis
        directions). Naming ``pooled`` or ``transposed`` where it does not apply is an
        error.
      chunk_size: basis directions vmapped at once, an integer >= 1 or ``None``
        (see :func:`pure_derivatives`).
      derivative_method: ``taylor`` (one Taylor-mode pass per direction) or
        ``nested_jvp`` (the reference), see :mod:`jaxcam.derivatives`.
    """
    check_explained(model, feature_map, class_index)
    check_chunk_size(chunk_size)
    if derivatives not in DERIVATIVES:
        raise ValueError(f"derivatives must be one of {DERIVATIVES}, got {derivatives!r}")
    if path not in PATHS:
        raise ValueError(f"path must be one of {PATHS}, got {path!r}")
    if path == "pooled" and not model.has_linear_pooling:
        raise ValueError(
            "path='pooled' needs a head that starts with GAP then the first dense "
            f"layer; {type(model.module).__name__} does not declare "
            "it (has_linear_pooling is False): use path='general' or 'auto'"
        )
    with jax.default_matmul_precision("highest"):  # also for S(A0) and the projection
        found = _derivatives(
            model,
            feature_map,
            class_index,
            derivatives,
            score,
            form,
            path,
            chunk_size,
            derivative_method,
        )
    return tuple(nan_if_out_of_range(d, class_index, model.num_classes) for d in found)


def _derivatives(
    model: Explainable,
    feature_map: Array,
    class_index: Array,
    derivatives: str,
    score: str | None,
    form: str,
    path: str,
    chunk_size: int | None,
    derivative_method: str,
) -> tuple[Array, ...]:
    """The body of :func:`grad_cam_plus_plus_derivatives`, after its checks."""
    if derivatives == "closed_form":
        g = jax.grad(lambda a: model.logits(a)[class_index])(feature_map)
        return g, g * g, g * g * g
    score_of_logits = class_score(
        score or model.output, class_index, model.logits(feature_map), form
    )
    if path == "pooled" or (path == "auto" and model.has_linear_pooling):
        height, width, _ = feature_map.shape
        kernel, bias = model.first_layer()
        return pure_derivatives_pooled(
            lambda s: score_of_logits(model.logits_after_first_layer(s + bias)),
            jnp.mean(feature_map, axis=(0, 1)) @ kernel,
            global_average_pool_weights(height, width, feature_map.dtype),
            kernel,
            method=derivative_method,
            chunk_size=chunk_size,
        )
    if path in ("auto", "transposed"):
        if is_piecewise_linear_at(model.logits, feature_map):
            return pure_derivatives_transposed(
                score_of_logits,
                model.logits,
                feature_map,
                method=derivative_method,
                chunk_size=chunk_size,
            )
        if path == "transposed":
            raise ValueError(
                "path='transposed' needs logits piecewise linear in A (conv, dense, ReLU, "
                "pooling, additions, inference-mode BatchNorm); this head is not: use "
                "path='general' or 'auto'"
            )
    return pure_derivatives(
        lambda a: score_of_logits(model.logits(a)),
        feature_map,
        method=derivative_method,
        chunk_size=chunk_size,
    )


def grad_cam_plus_plus_alpha(feature_map: Array, d2: Array, d3: Array) -> Array:
    """Eq. 8: ``alpha = d2 / (2 d2 + sum_ab A_ab d3)``, 0 where the denominator is 0.

    Args:
      feature_map: A, (h, w, K).
      d2, d3: pure second and third derivatives, (h, w, K).

    Returns:
      alpha, (h, w, K); finite everywhere.
    """
    channel_sums = jnp.sum(feature_map, axis=(0, 1), keepdims=True)
    denominator = 2.0 * d2 + channel_sums * d3
    usable = (denominator != 0) & jnp.isfinite(denominator)
    alpha = d2 / jnp.where(usable, denominator, 1.0)
    return jnp.where(usable & jnp.isfinite(alpha), alpha, 0.0)


def grad_cam_plus_plus(
    model: Explainable,
    feature_map: Array,
    class_index: Array,
    *,
    derivatives: str = "exact",
    score: str | None = None,
    form: str = "stable",
    path: str = "auto",
    chunk_size: int | None = None,
    derivative_method: str = "taylor",
) -> Array:
    """Grad-CAM++ map ``relu(sum_k w^c_k A^k)``, ``w^c_k = sum_xy alpha relu(d1)`` (eq. 7).

    Args: see :func:`grad_cam_plus_plus_derivatives`.

    The final weighted sum, like the derivatives, runs at ``highest`` matmul
    precision whatever the caller's.

    Returns:
      L^c, (h, w); finite (non-finite weights, e.g. from the naive form's
      overflow, are zeroed).
    """
    d1, d2, d3 = grad_cam_plus_plus_derivatives(
        model,
        feature_map,
        class_index,
        derivatives=derivatives,
        score=score,
        form=form,
        path=path,
        chunk_size=chunk_size,
        derivative_method=derivative_method,
    )
    alpha = grad_cam_plus_plus_alpha(feature_map, d2, d3)
    weights = jnp.sum(alpha * jax.nn.relu(d1), axis=(0, 1))
    weights = jnp.where(jnp.isfinite(weights), weights, 0.0)
    with jax.default_matmul_precision("highest"):
        saliency = jax.nn.relu(jnp.einsum("hwk,k->hw", feature_map, weights))
    return nan_if_out_of_range(saliency, class_index, model.num_classes)
