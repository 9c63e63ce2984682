"""The batched, jitted map step: features, a registered method, upsampling, normalisation.

A method is a per-example function ``(model, A (h, w, K), c) -> L (h, w)`` registered
in :mod:`jaxcam.saliency.registry`. :func:`saliency_map` adds the features, the
Lanczos upsampling and the normalisation for one image, and :func:`saliency_maps`
vmaps that over a batch, once, inside one ``jax.jit``. A method registered with
``needs_image=True`` (Score-CAM) also gets the raw image as ``image=``
(:func:`jaxcam.saliency.example_method`); the model is bound to each image first
(:func:`for_image`: the identity, except for a :class:`jaxcam.models.LayerModel`).
"""

from __future__ import annotations

import functools
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from jaxcam.batching import in_batches
from jaxcam.checks import (
    check_class_indices,
    check_finite_images,
    check_image_batch,
)
from jaxcam.models.outputs import apply_output
from jaxcam.models.protocol import Explainable, check_bound_model
from jaxcam.saliency.registry import SaliencyMethod, example_method, method_info

Array = jax.Array


def for_image(model: Explainable, image: Array) -> Explainable:
    """``model.for_image(image)``: a layer split bound to the image (H, W, C); a split at
    the backbone's output (a :class:`jaxcam.models.SplitModel`) is ``model`` itself."""
    return model.for_image(image)


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


def predicted_class(model: Explainable, feature_map: Array) -> Array:
    """argmax_c Y^c for one feature map (h, w, K)."""
    return jnp.argmax(apply_output(model.logits(feature_map), model.output)).astype(jnp.int32)


def saliency_map(
    model: Explainable,
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
    size = (image.shape[0], image.shape[1])
    return explain_feature_map(model, feature_map, class_index, method, size), class_index


def explain_feature_map(
    model: Explainable,
    feature_map: Array,
    class_index: Array,
    method: SaliencyMethod,
    size: tuple[int, int],
) -> Array:
    """A (h, w, K), class c -> the method's map, upsampled to ``size`` (H, W), normalised."""
    return normalise(upsample(method(model, feature_map, class_index), size))


@functools.partial(jax.jit, static_argnames=("method", "options", "use_predicted"))
def saliency_step(
    model: Explainable,
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
    model: Explainable,
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
      method: a registered method name (:func:`jaxcam.saliency.method_names`; e.g.
        ``grad_cam_plus_plus`` is the paper's closed form, ``grad_cam_plus_plus_exact``
        the exact derivatives).
      **options: keyword options of the method; they override the options its name
        stands for (e.g. ``derivatives="exact"``).

    Returns:
      ``(maps, classes)``: maps (B, H, W) in [0, 1] and the explained classes (B,).
    """
    check_bound_model(model)
    method_info(method)
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


def compute_maps(
    model: Explainable,
    images: np.ndarray,
    class_indices: np.ndarray | None,
    method: str,
    batch_size: int = 64,
    **options: Any,
) -> tuple[np.ndarray, np.ndarray]:
    """Normalised maps (N, H, W) and explained classes (N,) of in-memory images, on the host."""
    if class_indices is None:
        return in_batches(
            lambda x: saliency_maps(model, x, None, method, **options), [images], batch_size
        )
    return in_batches(
        lambda x, c: saliency_maps(model, x, c, method, **options),
        [images, class_indices],
        batch_size,
    )
