"""Average Drop (AD, eq. 10): the map used as per-pixel opacity.

``O^c`` is the score on the explanation image ``E^c = L^c o I``; AD is the mean over
images of ``max(0, Y^c - O^c) / Y^c`` (:mod:`jaxcam.metrics.drops`).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import jax

from jaxcam.metrics.registry import Metric, register_metric

Array = jax.Array


def explanation_image(image: Array, saliency: Array) -> Array:
    """Eq. 10's explanation image ``E = L o I``: (H, W, C), map (H, W) in [0, 1]."""
    return saliency[..., None].astype(image.dtype) * image


def _perturb(
    image: Array,
    saliency: Array,
    ranks: Array,
    num_kept: Any,
    fields: Mapping[str, Array],
    key: Array,
) -> Array:
    del ranks, num_kept, fields, key  # the whole map is the opacity
    return explanation_image(image, saliency)


AVERAGE_DROP = register_metric(
    Metric(
        name="average_drop",
        label="AD",
        perturb=_perturb,
        description="Average Drop (eq. 10): the image seen through the map as opacity",
        needs_full_ranks=False,
    )
)
