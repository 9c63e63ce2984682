"""Saliency methods registry and the batched, jitted map step.

A method is a per-example function ``(model, A (h, w, K), c) -> L (h, w)``;
:func:`saliency_map` adds the features, the Lanczos upsampling and the
normalisation for one image, and :func:`saliency_maps` vmaps that over a batch,
once, inside one ``jax.jit``. A method registered with ``needs_image=True`` (Score-CAM)
also gets the raw image as ``image=`` (:func:`example_method`); a model with a
``for_image`` method (a :class:`jaxcam.models.LayerModel`) is bound to each image
first (:func:`for_image`).
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from jaxcam.checks import (
    check_bound_model,
    check_class_indices,
    check_finite_images,
    check_image_batch,
)
from jaxcam.models.base import SplitModel, apply_output
from jaxcam.saliency.ablation_cam import ablation_cam
from jaxcam.saliency.cam import cam
from jaxcam.saliency.eigen_cam import eigen_cam
from jaxcam.saliency.grad_cam import grad_cam
from jaxcam.saliency.grad_cam_plus_plus import grad_cam_plus_plus
from jaxcam.saliency.hires_cam import hires_cam
from jaxcam.saliency.layer_cam import layer_cam
from jaxcam.saliency.score_cam import score_cam
from jaxcam.saliency.xgrad_cam import xgrad_cam

Array = jax.Array
SaliencyMethod = Callable[..., Array]

SALIENCY_METHODS: dict[str, SaliencyMethod] = {
    "cam": cam,
    "grad_cam": grad_cam,
    "grad_cam_plus_plus": grad_cam_plus_plus,
    "hires_cam": hires_cam,
    "xgrad_cam": xgrad_cam,
    "layer_cam": layer_cam,
    "score_cam": score_cam,
    "ablation_cam": ablation_cam,
    "eigen_cam": eigen_cam,
}
#: Registered methods that take the raw image (H, W, C) as the keyword ``image``.
IMAGE_METHODS: set[str] = {"score_cam"}


def register_saliency_method(
    name: str, method: SaliencyMethod, *, needs_image: bool = False
) -> None:
    """Register ``method(model, feature_map, class_index, **options) -> (h, w)``.

    With ``needs_image`` the method is also called with ``image=`` the raw image
    (H, W, C) that A comes from.
    """
    if name in SALIENCY_METHODS:
        raise ValueError(f"saliency method {name!r} is already registered")
    SALIENCY_METHODS[name] = method
    if needs_image:
        IMAGE_METHODS.add(name)


def get_saliency_method(name: str) -> SaliencyMethod:
    if name not in SALIENCY_METHODS:
        raise ValueError(
            f"unknown saliency method {name!r}; known: {', '.join(sorted(SALIENCY_METHODS))}"
        )
    return SALIENCY_METHODS[name]


def example_method(name: str, options: Any, image: Array) -> SaliencyMethod:
    """The registered method ``name`` with its options (a mapping or (key, value) pairs)
    as ``(model, A, c) -> L``, given the image (H, W, C) when it needs it."""
    method = get_saliency_method(name)
    extra = {"image": image} if name in IMAGE_METHODS else {}
    return functools.partial(method, **dict(options), **extra)


def for_image(model: SplitModel, image: Array) -> SplitModel:
    """``model.for_image(image)`` when the model has it (a layer split), else ``model``."""
    bind_image = getattr(model, "for_image", None)
    return model if bind_image is None else bind_image(image)


def upsample(saliency: Array, size: tuple[int, int]) -> Array:
    """Lanczos-3 upsampling of a map (h, w) to the image size (H, W)."""
    return jax.image.resize(saliency, size, method="lanczos3")


def normalise(saliency: Array) -> Array:
    """Map (H, W) -> [0, 1]: clip Lanczos ringing below 0, divide by the maximum.

    A map that is 0 everywhere (no positive evidence) stays 0. A map with any NaN or
    inf value has no defined scale: it becomes 0 everywhere too (an empty map, counted
    by the evaluation's ``empty_maps``), never NaN.
    """
    clipped = jax.nn.relu(saliency)
    peak = jnp.max(clipped)
    usable = (peak > 0) & jnp.all(jnp.isfinite(saliency))
    scaled = clipped / jnp.where(usable, peak, jnp.ones_like(peak))
    return jnp.where(usable, scaled, jnp.zeros_like(scaled))


def predicted_class(model: SplitModel, feature_map: Array) -> Array:
    """argmax_c Y^c for one feature map (h, w, K)."""
    return jnp.argmax(apply_output(model.logits(feature_map), model.output)).astype(jnp.int32)


def saliency_map(
    model: SplitModel,
    image: Array,
    class_index: Array | None,
    method: SaliencyMethod,
) -> tuple[Array, Array]:
    """One image (H, W, C) -> (normalised map L^c (H, W) in [0, 1], class c used).

    ``class_index=None`` explains the predicted class. The model is bound to the image
    first (:func:`for_image`).
    """
    model = for_image(model, image)
    feature_map = model.features(image)
    if class_index is None:
        class_index = predicted_class(model, feature_map)
    size = image.shape[:2]
    return explain_feature_map(model, feature_map, class_index, method, size), class_index


def explain_feature_map(
    model: SplitModel,
    feature_map: Array,
    class_index: Array,
    method: SaliencyMethod,
    size: tuple[int, int],
) -> Array:
    """A (h, w, K), class c -> the method's map, upsampled to ``size`` (H, W), normalised."""
    return normalise(upsample(method(model, feature_map, class_index), size))


@functools.partial(jax.jit, static_argnames=("method", "options", "use_predicted"))
def saliency_step(
    model: SplitModel,
    images: Array,
    class_indices: Array,
    method: str,
    options: tuple[tuple[str, Any], ...] = (),
    use_predicted: bool = False,
) -> tuple[Array, Array]:
    """The jitted batch step behind :func:`saliency_maps`, without its host-side checks.

    ``options`` is a sorted tuple of (name, value) pairs (static); with
    ``use_predicted`` the predicted classes replace ``class_indices``.
    """

    def one(image: Array, class_index: Array) -> tuple[Array, Array]:
        per_example = example_method(method, options, image)
        return saliency_map(model, image, None if use_predicted else class_index, per_example)

    return jax.vmap(one)(images, class_indices)


def saliency_maps(
    model: SplitModel,
    images: Any,
    class_indices: Any = None,
    method: str = "grad_cam",
    **options: Any,
) -> tuple[Array, Array]:
    """Normalised saliency maps for a batch.

    Args:
      model: a bound split model (:func:`jaxcam.models.bind`); a bare module raises
        TypeError.
      images: raw images (B, H, W, C), finite.
      class_indices: classes to explain (B,), integers in [0, classes), checked here
        (inside the step they are traced and could not be), or ``None`` for the
        predicted ones.
      method: a registered method name (``cam``, ``grad_cam``, ``grad_cam_plus_plus``,
        ``hires_cam``, ``xgrad_cam``, ``layer_cam``, ``score_cam``, ``ablation_cam``,
        ``eigen_cam``, or one registered later).
      **options: keyword options of the method (e.g. ``derivatives="closed_form"``).

    Returns:
      ``(maps, classes)``: maps (B, H, W) in [0, 1] and the explained classes (B,).
    """
    check_bound_model(model)
    get_saliency_method(method)
    check_image_batch(images, model.module.in_channels, model.module.min_input_size)
    check_finite_images(images)
    use_predicted = class_indices is None
    if use_predicted:
        class_indices = np.zeros(images.shape[0], np.int32)
    class_indices = check_class_indices(class_indices, model.num_classes, images.shape[0])
    return saliency_step(
        model,
        jnp.asarray(images),
        jnp.asarray(class_indices),
        method,
        tuple(sorted(options.items())),
        use_predicted,
    )
