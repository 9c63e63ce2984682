"""Generating phantom data sets: argument checks, per-image seed streams, the public generators."""

from __future__ import annotations

from typing import NamedTuple

import numpy as np

from jaxcam.data.phantom.fields import F32
from jaxcam.data.phantom.marker import marker_probability
from jaxcam.data.phantom.render import render_phantom
from jaxcam.data.phantom.schema import NORMAL, PNEUMONIA, PhantomArrays

MIN_IMAGE_SIZE = 32
#: Phantom variants: "v1" (the original, easy set) and "v2" (harder lesions, optional marker).
VARIANTS = ("v1", "v2")
_VARIANT_STREAMS: dict[str, tuple[int, ...]] = {"v1": (), "v2": (2,)}
_MARKER_STREAM = 7


def _check_args(num_images: int, seed: int, image_size: int, pneumonia_fraction: float) -> None:
    if int(num_images) != num_images or num_images < 1:
        raise ValueError(f"num_images must be an integer >= 1, got {num_images!r}")
    if int(seed) != seed or seed < 0:
        raise ValueError(f"seed must be a non-negative integer, got {seed!r}")
    if int(image_size) != image_size or image_size < MIN_IMAGE_SIZE:
        raise ValueError(f"image_size must be an integer >= {MIN_IMAGE_SIZE}, got {image_size!r}")
    if not 0.0 <= float(pneumonia_fraction) <= 1.0:
        raise ValueError(f"pneumonia_fraction must be in [0, 1], got {pneumonia_fraction!r}")


def _check_variant(variant: str, confounder: float) -> None:
    if variant not in VARIANTS:
        raise ValueError(f"unknown variant {variant!r}; known variants: {list(VARIANTS)}")
    if not 0.0 <= float(confounder) <= 1.0:
        raise ValueError(f"confounder must be in [0, 1], got {confounder!r}")
    if variant == "v1" and confounder != 0.0:
        raise ValueError("the confounder marker exists only in variant 'v2'")


class _Generated(NamedTuple):
    arrays: PhantomArrays
    lungs: np.ndarray  # bool (N, S, S)
    counts: np.ndarray  # int32 (N,)


def _generate(
    num_images: int,
    seed: int,
    image_size: int,
    pneumonia_fraction: float,
    variant: str = "v1",
    confounder: float = 0.0,
    marker_correlated: bool = True,
) -> _Generated:
    _check_args(num_images, seed, image_size, pneumonia_fraction)
    _check_variant(variant, confounder)
    n, s = int(num_images), int(image_size)
    confounder = float(confounder)
    images = np.empty((n, s, s, 1), F32)
    twins = np.empty((n, s, s, 1), F32)
    masks = np.empty((n, s, s), bool)
    supports = np.empty((n, s, s), bool)
    lesion_ids = np.empty((n, s, s), np.uint8)
    markers = np.zeros((n, s, s), bool)
    lungs = np.empty((n, s, s), bool)
    labels = np.empty((n,), np.int32)
    counts = np.empty((n,), np.int32)
    stream = _VARIANT_STREAMS[variant]
    for i in range(n):
        rng = np.random.default_rng([int(seed), i, *stream])
        label = PNEUMONIA if rng.random() < pneumonia_fraction else NORMAL
        marker_rng = None
        p_marker = marker_probability(label, confounder, marker_correlated)
        if p_marker > 0.0:
            marker_rng = np.random.default_rng([int(seed), i, *stream, _MARKER_STREAM])
            if not marker_rng.random() < p_marker:
                marker_rng = None
        rendered = render_phantom(rng, s, label, variant, marker_rng)
        images[i, :, :, 0], twins[i, :, :, 0] = rendered.image, rendered.twin
        masks[i], supports[i], lesion_ids[i] = rendered.mask, rendered.support, rendered.lesion_ids
        lungs[i], counts[i], markers[i] = rendered.lungs, rendered.num_opacities, rendered.marker
        labels[i] = label
    arrays = PhantomArrays(images, masks, labels, markers, twins, supports, lesion_ids)
    return _Generated(arrays, lungs, counts)


def generate_phantom(
    num_images: int,
    seed: int,
    image_size: int = 128,
    pneumonia_fraction: float = 0.5,
    *,
    variant: str = "v1",
    confounder: float = 0.0,
    marker_correlated: bool = True,
) -> PhantomArrays:
    """Generate ``num_images`` phantom chest X-rays of ``image_size`` x ``image_size``.

    Returns PhantomArrays: images float32 (N, S, S, 1) in [0, 1], masks bool
    (N, S, S), labels int32 (N,), markers bool (N, S, S), and the lesion-free twins
    float32 (N, S, S, 1), lesion supports bool (N, S, S) and per-lesion label maps
    lesion_ids uint8 (N, S, S) (see :class:`PhantomArrays`).  Each label is PNEUMONIA
    with probability ``pneumonia_fraction``.  ``variant`` is "v1" or "v2";
    ``confounder`` (v2 only) is the marker probability p, with
    P(marker | PNEUMONIA) = p and P(marker | NORMAL) = 1 - p when
    ``marker_correlated``, else 0.5 for every image; 0 draws no marker.
    Deterministic; image i depends only on (seed, i, image_size,
    pneumonia_fraction, variant, confounder, marker_correlated).  Raises ValueError
    for ``num_images < 1``, ``image_size < 32``, a negative seed, a fraction or
    confounder outside [0, 1], an unknown variant or a confounder with v1.
    """
    return _generate(
        num_images, seed, image_size, pneumonia_fraction, variant, confounder, marker_correlated
    ).arrays


def phantom_lung_masks(
    num_images: int,
    seed: int,
    image_size: int = 128,
    pneumonia_fraction: float = 0.5,
    *,
    variant: str = "v1",
) -> np.ndarray:
    """Lung-field masks, bool (N, S, S), of the images ``generate_phantom`` returns.

    Same arguments as ``generate_phantom`` (the lungs do not depend on the
    confounder).  The image-left lung lies in columns ``< S / 2``, the image-right
    lung in columns ``>= S / 2``.
    """
    return _generate(num_images, seed, image_size, pneumonia_fraction, variant).lungs


def phantom_lesion_counts(
    num_images: int,
    seed: int,
    image_size: int = 128,
    pneumonia_fraction: float = 0.5,
    *,
    variant: str = "v1",
) -> np.ndarray:
    """Number of opacities drawn in each image, int32 (N,) (0 for NORMAL).

    Same arguments as ``phantom_lung_masks``.  Opacities may overlap, so the
    mask can have fewer connected components than this count.
    """
    return _generate(num_images, seed, image_size, pneumonia_fraction, variant).counts


def lesion_area_fractions(arrays: PhantomArrays) -> np.ndarray:
    """Lesion-mask area / image area, float64 (N,) (0 for NORMAL images)."""
    return np.asarray(arrays.masks, bool).mean(axis=(1, 2), dtype=np.float64)
