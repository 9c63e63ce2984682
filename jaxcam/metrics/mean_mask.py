"""BAD-mean: BAD with the removed pixels set to the image's per-channel mean.

The round(alpha*H*W) top-ranked pixels keep their value (as in BAD, eq. 11); every
other pixel of channel ``c`` becomes ``mean_c``, the mean of channel ``c`` over the
**whole** image (all H*W pixels, kept and removed alike), accumulated in at least
float32. Replacing removed pixels by a per-channel mean as an "uninformative" value
follows ROAR (Hooker, Erhan, Kindermans and Kim, "A Benchmark for Interpretability
Methods in Deep Neural Networks", NeurIPS 2019), which uses the data set's channel mean;
here it is the image's own, so the fill needs nothing beyond the image.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import jax
import jax.numpy as jnp

from jaxcam.metrics.registry import register_metric, removal_metric

Array = jax.Array


def channel_means(image: Array) -> Array:
    """Mean of each channel over all H*W pixels of ``image`` (H, W, C): (C,), its dtype."""
    dtype = jnp.promote_types(image.dtype, jnp.float32)
    return jnp.mean(image.astype(dtype), axis=(0, 1)).astype(image.dtype)


def mean_fill_image(image: Array, ranks: Array, num_kept: Any) -> Array:
    """Pixels ranked below ``num_kept`` unchanged, the others the image's channel means:
    (H, W, C)."""
    fill = jnp.broadcast_to(channel_means(image), image.shape)
    return jnp.where((ranks < num_kept)[..., None], image, fill)


def _mean(image: Array, kept: Array, fields: Mapping[str, Array], key: Array) -> Array:
    del kept, fields, key
    return jnp.broadcast_to(channel_means(image), image.shape)


MEAN_AVERAGE_DROP = register_metric(
    removal_metric(
        "mean_average_drop",
        "BAD-mean",
        _mean,
        description="BAD with removed pixels set to the whole image's per-channel mean",
    )
)
