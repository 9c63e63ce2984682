"""Lesion reliance: how much a model's score rests on the lesions, from lesion-free twins.

An image x and its twin x' (the same image with the lesions left out, e.g.
``jaxcam.data.PhantomArrays.twins``) are scored for a class c::

    Y = Y^c(x),   Y_without = Y^c(x'),   r = (Y - Y_without) / Y

r = 1: the whole score comes from the lesions; r = 0: they do not matter; r < 0: they
lower the score.  As for the drop metrics (``jaxcam.metrics``), r is defined only where Y
is a positive finite number and Y_without is finite; elsewhere r is 0 and ``defined`` is
False, never NaN, and ``nonfinite`` tells a NaN or inf score from a ReLU zero.  The
prediction *flips* when the argmax of the scores differs between x and x'.

:func:`image_reliance` is the per-example pure function; :func:`lesion_reliance` maps it
over a data set (vmapped once, jitted, in fixed-size host batches);
:func:`reliance_summary` groups the results by class on the host.
"""

from __future__ import annotations

from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from jaxcam.batching import in_batches
from jaxcam.checks import (
    check_class_indices,
    check_finite_images,
    check_image_batch,
    check_integer,
)
from jaxcam.metrics.drops import drop_terms
from jaxcam.models.protocol import Explainable, check_bound_model

Array = jax.Array

#: r above this counts as strong reliance (:func:`reliance_summary`).
STRONG_RELIANCE = 0.5


class Reliance(NamedTuple):
    """Lesion reliance per image: each field is () for one image, (B,) for a batch."""

    score: Any  # Y: score of class c on the image (float)
    score_without: Any  # Y_without: score of class c on the twin (float)
    reliance: Any  # r = (Y - Y_without) / Y, 0 where undefined (float)
    defined: Any  # Y > 0 and finite, Y_without finite (bool)
    nonfinite: Any  # Y or Y_without is NaN or inf (bool; never defined)
    predicted: Any  # argmax of the scores on the image (int32)
    predicted_without: Any  # argmax of the scores on the twin (int32)
    flipped: Any  # predicted != predicted_without (bool)


def image_reliance(model: Explainable, image: Array, twin: Array, class_index: Array) -> Reliance:
    """Reliance of one image (H, W, C) on its lesions, from its twin (H, W, C), for the class
    ``class_index`` (an int32 scalar); every field of the result is a scalar."""
    scores = model.scores(image)  # (classes,)
    scores_without = model.scores(twin)
    score, score_without = scores[class_index], scores_without[class_index]
    # The drop metrics' rule for a defined ratio (Y > 0, both finite): r = -(O - Y) / Y.
    terms = drop_terms(score, score_without)
    predicted = jnp.argmax(scores).astype(jnp.int32)
    predicted_without = jnp.argmax(scores_without).astype(jnp.int32)
    return Reliance(
        score,
        score_without,
        -terms.change,
        terms.defined,
        terms.nonfinite,
        predicted,
        predicted_without,
        predicted != predicted_without,
    )


@jax.jit
def _reliance_step(
    model: Explainable, images: Array, twins: Array, class_indices: Array
) -> Reliance:
    """:func:`image_reliance` over a batch: images and twins (B, H, W, C), classes (B,)."""
    return jax.vmap(image_reliance, in_axes=(None, 0, 0, 0))(model, images, twins, class_indices)


def lesion_reliance(
    model: Explainable,
    images: Any,
    twins: Any,
    classes: Any,
    *,
    batch_size: int = 64,
) -> Reliance:
    """Reliance of each image on its lesions, as numpy arrays (N,) (see :class:`Reliance`).

    Args:
      model: bound split model (``jaxcam.bind``).
      images: raw images (N, H, W, C), finite.
      twins: the same images without their lesions (N, H, W, C), finite.
      classes: the class c whose score is compared, per image (N,), integers.
      batch_size: images per jitted step (the last batch is padded; one compilation).
    """
    check_bound_model(model)
    check_image_batch(images, model.module.in_channels, model.module.min_input_size)
    check_image_batch(twins, model.module.in_channels, model.module.min_input_size)
    if tuple(twins.shape) != tuple(images.shape):
        raise ValueError(
            f"twins must have the images' shape {tuple(images.shape)}, got {tuple(twins.shape)}"
        )
    check_finite_images(images)
    check_finite_images(twins, "twins")
    class_indices = check_class_indices(classes, model.num_classes, len(images), "classes")
    batch_size = check_integer(batch_size, "batch_size", minimum=1)

    def step(image_batch: np.ndarray, twin_batch: np.ndarray, class_batch: np.ndarray):
        return _reliance_step(
            model, jnp.asarray(image_batch), jnp.asarray(twin_batch), jnp.asarray(class_batch)
        )

    return in_batches(step, [images, twins, class_indices], batch_size)


def reliance_summary(
    reliance: Reliance, labels: Any, num_classes: int, *, threshold: float = STRONG_RELIANCE
) -> dict[int, dict[str, int | float | None]]:
    """Per-class summary of :func:`lesion_reliance`'s result, grouped by ``labels`` (N,).

    For each class k in 0..num_classes-1, over the images labelled k: ``images``;
    ``defined`` and ``nonfinite`` (counts); ``mean_reliance``, the mean r over the defined
    images; ``strongly_reliant``, the share of the defined images with r > ``threshold``;
    ``flip_share``, the share of the images whose predicted class flips from image to
    twin.  A share or mean over zero images is None.
    """
    num_classes = check_integer(num_classes, "num_classes", minimum=1)
    labels = check_class_indices(labels, num_classes, len(reliance.reliance), "labels")
    values = np.asarray(reliance.reliance, np.float64)
    defined = np.asarray(reliance.defined, bool)
    nonfinite = np.asarray(reliance.nonfinite, bool)
    flipped = np.asarray(reliance.flipped, bool)

    def mean_or_none(x: np.ndarray) -> float | None:
        return float(np.mean(x)) if x.size else None

    summary: dict[int, dict[str, int | float | None]] = {}
    for k in range(num_classes):
        in_class = labels == k
        counted = in_class & defined
        summary[k] = {
            "images": int(in_class.sum()),
            "defined": int(counted.sum()),
            "nonfinite": int((in_class & nonfinite).sum()),
            "mean_reliance": mean_or_none(values[counted]),
            "strongly_reliant": mean_or_none(values[counted] > threshold),
            "flip_share": mean_or_none(flipped[in_class]),
        }
    return summary


__all__ = [
    "STRONG_RELIANCE",
    "Reliance",
    "image_reliance",
    "lesion_reliance",
    "reliance_summary",
]
