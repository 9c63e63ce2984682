"""Black Average Drop (BAD, eq. 11): keep the most salient pixels, black out the rest.

``O^c`` is the score on the black image ``B^c``: the round(alpha*H*W) pixels with
the highest ``L^c`` keep their raw value, every other pixel is 0 (black in the raw
image), so every method keeps exactly the same area and no kept pixel changes.
Ties at the threshold follow the evaluation's tie order (:mod:`jaxcam.metrics.ranking`).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import jax
import jax.numpy as jnp

from jaxcam.metrics.ranking import pixel_ranks
from jaxcam.metrics.registry import register_metric, removal_metric

Array = jax.Array


def keep_top_pixels(image: Array, ranks: Array, num_kept: Any) -> Array:
    """The pixels ranked below ``num_kept`` keep their value, the others become 0: (H, W, C)."""
    return jnp.where((ranks < num_kept)[..., None], image, jnp.zeros_like(image))


def black_image(
    image: Array, saliency: Array, num_kept: int, priority: Array | None = None
) -> Array:
    """Eq. 11's ``B``: the ``num_kept`` top pixels keep their raw value, the rest are 0.

    ``priority`` (H*W,) breaks ties (:func:`jaxcam.metrics.tie_priority`); ``None``:
    raster order.
    """
    return keep_top_pixels(image, pixel_ranks(saliency, priority), num_kept)


def _black(image: Array, kept: Array, fields: Mapping[str, Array], key: Array) -> Array:
    del kept, fields, key
    return jnp.zeros_like(image)


BLACK_AVERAGE_DROP = register_metric(
    removal_metric(
        "black_average_drop",
        "BAD",
        _black,
        description="Black Average Drop (eq. 11): the top alpha of the map kept, the rest black",
    )
)
