"""BAD-twin: BAD with the removed pixels taken from the image's lesion-free twin.

The round(alpha*H*W) top-ranked pixels keep their value (as in BAD, eq. 11); every
other pixel takes the value of the same pixel of ``fields["twin"]`` (H, W, C), the
image rendered without its lesion (the phantom data set's counterfactual; other data
have no twin). Removing a pixel then means replacing it by what it would be without
the finding, so the perturbed image stays on the data distribution: the in-distribution
imputation that removal-based metrics aim for (the out-of-distribution problem of black
or mean fills; Hooker et al., NeurIPS 2019; Rong et al., ICML 2022), exact where the
data generator can render the counterfactual.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import jax
import jax.numpy as jnp

from jaxcam.metrics.registry import register_metric, removal_metric

Array = jax.Array


def counterfactual_image(image: Array, twin: Array, ranks: Array, num_kept: Any) -> Array:
    """Pixels ranked below ``num_kept`` from ``image``, the others from ``twin``: (H, W, C).

    ``twin`` must have the image's shape (ValueError otherwise, at trace time).
    """
    if twin.shape != image.shape:
        raise ValueError(f"twin must have the image's shape {image.shape}, got {twin.shape}")
    return jnp.where((ranks < num_kept)[..., None], image, twin.astype(image.dtype))


def _twin(image: Array, kept: Array, fields: Mapping[str, Array], key: Array) -> Array:
    del kept, key
    twin = fields["twin"]
    if twin.shape != image.shape:
        raise ValueError(f"twin must have the image's shape {image.shape}, got {twin.shape}")
    return twin.astype(image.dtype)


COUNTERFACTUAL_AVERAGE_DROP = register_metric(
    removal_metric(
        "counterfactual_average_drop",
        "BAD-twin",
        _twin,
        needs=("twin",),
        description="BAD with removed pixels from the image's lesion-free twin (phantom only)",
    )
)
