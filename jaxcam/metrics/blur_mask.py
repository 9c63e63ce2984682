"""BAD-blur: BAD with the removed pixels taken from a Gaussian-blurred copy of the image.

The round(alpha*H*W) top-ranked pixels keep their value (as in BAD, eq. 11); every
other pixel takes the value of the image blurred by an isotropic Gaussian of standard
deviation ``sigma = max(H, W) / 16`` pixels (:data:`BLUR_SIGMA_FRACTION`), each channel
on its own. Blurring as the "removal" of information is the blur perturbation of Fong
and Vedaldi, "Interpretable Explanations of Black Boxes by Meaningful Perturbation",
ICCV 2017 (Section 3.1; there the blur's sigma follows a soft mask, here removal is
all-or-nothing and sigma fixed).

The blur is exactly ``scipy.ndimage.gaussian_filter(image, (sigma, sigma, 0),
mode="reflect", truncate=4.0)``: a separable kernel ``exp(-k^2 / (2 sigma^2))`` for
``|k| <= int(4 sigma + 0.5)``, normalised to sum 1; beyond the border the image is
mirrored about the edge, the edge pixel repeated (``d c b a | a b c d | d c b a``, i.e.
``numpy.pad(mode="symmetric")``; repeated mirroring where the kernel is wider than the
image). It is computed as two matrix products (rows, then columns) at ``highest``
matmul precision, in at least float32.
"""

from __future__ import annotations

import functools
from collections.abc import Mapping
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from jaxcam.metrics.registry import register_metric, removal_metric

Array = jax.Array

#: sigma of the blur as a fraction of the longer image side: 1/16 (8 pixels at 128).
BLUR_SIGMA_FRACTION = 1 / 16
#: Kernel radius in sigmas (scipy's ``truncate``).
BLUR_TRUNCATE = 4.0


def blur_sigma(height: int, width: int) -> float:
    """The blur's sigma in pixels for an (H, W) image: max(H, W) / 16."""
    return BLUR_SIGMA_FRACTION * max(height, width)


@functools.lru_cache(maxsize=64)
def gaussian_blur_matrix(size: int, sigma: float, truncate: float = BLUR_TRUNCATE) -> np.ndarray:
    """(size, size) matrix ``G`` with ``G @ line`` the 1-D Gaussian blur of a line.

    Kernel ``exp(-k^2 / (2 sigma^2))``, ``|k| <= int(truncate * sigma + 0.5)``, normalised;
    mirrored border (``d c b a | a b c d``), repeated for kernels wider than the line.
    """
    radius = int(truncate * sigma + 0.5)
    offsets = np.arange(-radius, radius + 1)
    kernel = np.exp(-0.5 * (offsets / sigma) ** 2) if sigma > 0 else (offsets == 0) * 1.0
    kernel = kernel / kernel.sum()
    matrix = np.zeros((size, size))
    for row in range(size):
        source = np.mod(row + offsets, 2 * size)  # the mirror has period 2 * size
        source = np.where(source >= size, 2 * size - 1 - source, source)
        np.add.at(matrix[row], source, kernel)
    return matrix


def gaussian_blur(image: Array, sigma: float | None = None) -> Array:
    """The image blurred channel by channel: (H, W, C), same dtype.

    ``sigma`` in pixels (default :func:`blur_sigma`); border and kernel as in the module
    docstring.
    """
    height, width, _ = image.shape
    if sigma is None:
        sigma = blur_sigma(height, width)
    dtype = jnp.promote_types(image.dtype, jnp.float32)
    rows = jnp.asarray(gaussian_blur_matrix(height, float(sigma)), dtype)
    cols = jnp.asarray(gaussian_blur_matrix(width, float(sigma)), dtype)
    highest = jax.lax.Precision.HIGHEST
    blurred = jnp.einsum("ij,jwc->iwc", rows, image.astype(dtype), precision=highest)
    blurred = jnp.einsum("vw,iwc->ivc", cols, blurred, precision=highest)
    return blurred.astype(image.dtype)


def blurred_fill_image(
    image: Array, ranks: Array, num_kept: Any, sigma: float | None = None
) -> Array:
    """Pixels ranked below ``num_kept`` unchanged, the others from the blurred image:
    (H, W, C)."""
    return jnp.where((ranks < num_kept)[..., None], image, gaussian_blur(image, sigma))


def _blurred(image: Array, kept: Array, fields: Mapping[str, Array], key: Array) -> Array:
    del kept, fields, key
    return gaussian_blur(image)


BLURRED_AVERAGE_DROP = register_metric(
    removal_metric(
        "blurred_average_drop",
        "BAD-blur",
        _blurred,
        description=(
            "BAD with removed pixels from a Gaussian-blurred copy (sigma = max(H, W) / 16, "
            "mirrored border)"
        ),
    )
)
