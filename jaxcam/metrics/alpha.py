"""Choosing BAD's alpha from the maps alone: where the methods' black images differ most.

The difference of two methods at alpha is the fraction of pixels that one map
surely keeps and the other surely drops (:func:`jaxcam.metrics.threshold_split`:
pixels a tie-break chose are not a difference), averaged over images and over all
pairs of methods. The evaluation engine streams the same per-image quantity
(:func:`mean_pair_difference`); :func:`choose_alpha` computes it for maps in memory.
"""

from __future__ import annotations

import functools
import itertools
from collections.abc import Mapping, Sequence
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from jaxcam.checks import check_alpha, check_finite_images
from jaxcam.metrics.ranking import (
    ALPHA_GRID,
    ThresholdSplit,
    kept_pixel_count,
    surely_different,
    threshold_split,
)

Array = jax.Array


def method_pairs(num_methods: int) -> list[tuple[int, int]]:
    return list(itertools.combinations(range(num_methods), 2))


def mean_pair_difference(splits: ThresholdSplit) -> Array:
    """Mean over method pairs of :func:`surely_different`, one image (scalar).

    ``splits``: one :class:`ThresholdSplit` per method, stacked on a leading axis
    (masks (M, H, W), M >= 2).
    """
    return jnp.mean(
        jnp.stack(
            [
                surely_different(
                    jax.tree.map(lambda x, a=a: x[a], splits),
                    jax.tree.map(lambda x, b=b: x[b], splits),
                )
                for a, b in method_pairs(splits.surely_kept.shape[0])
            ]
        )
    )


def mean_surely_different(maps: Array, sorted_values: Array, kept_counts: Sequence[int]) -> Array:
    """Per alpha, :func:`mean_pair_difference` of the methods' maps, one image.

    Args:
      maps: (M, H, W) maps of the methods, M >= 2.
      sorted_values: (M, H*W) each map's values in descending order.
      kept_counts: k per alpha (static).

    Returns:
      (len(kept_counts),) mean fraction of pixels that differ for sure.
    """
    split = jax.vmap(threshold_split, in_axes=(0, 0, None))
    return jnp.stack([mean_pair_difference(split(maps, sorted_values, k)) for k in kept_counts])


@functools.partial(jax.jit, static_argnames=("kept_counts",))
def _mask_differences(maps: Array, kept_counts: tuple[int, ...]) -> Array:
    def one(image_maps: Array) -> Array:
        flat = image_maps.reshape(image_maps.shape[0], -1)
        sorted_values = -jnp.sort(jnp.where(flat == 0, jnp.zeros_like(flat), -flat), axis=-1)
        return mean_surely_different(image_maps, sorted_values, kept_counts)

    return jnp.mean(jax.vmap(one, in_axes=1)(maps), axis=0)


def choose_alpha(
    maps_by_method: Mapping[str, Any], grid: Sequence[float] = ALPHA_GRID
) -> tuple[float, dict[float, float]]:
    """Pick BAD's alpha where the black images of the methods differ the most.

    The difference of two methods at alpha is the fraction of pixels that one map
    surely keeps and the other surely drops (:func:`threshold_split`: pixels a
    tie-break chose are not a difference), averaged over images and over all pairs
    of methods. Ties go to the smallest alpha.

    Args:
      maps_by_method: at least two methods, each maps (N, H, W) of the same images,
        finite, N >= 1 (else ValueError: there would be nothing to compare).
      grid: candidate alphas in (0, 1), at least one.

    Returns:
      ``(best alpha, {alpha: mean difference})``.
    """
    if len(maps_by_method) < 2:
        raise ValueError(
            f"choose_alpha needs maps of at least 2 methods, got {len(maps_by_method)}"
        )
    shapes = {name: np.shape(m) for name, m in maps_by_method.items()}
    if len(set(shapes.values())) != 1:
        raise ValueError(f"every method's maps must have the same shape (N, H, W), got {shapes}")
    stacked = np.stack([np.asarray(m) for m in maps_by_method.values()])
    if stacked.ndim != 4:
        raise ValueError(f"maps must have shape (N, H, W) per method, got {stacked.shape[1:]}")
    if stacked[0].size == 0:
        raise ValueError(
            f"choose_alpha needs maps of at least one image and pixel, got {stacked.shape[1:]}"
        )
    check_finite_images(stacked, name="maps")
    if len(grid) == 0:
        raise ValueError("choose_alpha needs a non-empty grid of alphas")
    height, width = stacked.shape[-2:]
    alphas = [check_alpha(a) for a in grid]
    counts = tuple(kept_pixel_count(a, height, width) for a in alphas)
    differences = np.asarray(_mask_differences(jnp.asarray(stacked, jnp.float32), counts))
    return best_alpha(alphas, differences)


def best_alpha(alphas: Sequence[float], differences: Any) -> tuple[float, dict[float, float]]:
    """The alpha of the largest difference (the smallest such alpha) and the search table."""
    differences = np.asarray(differences, np.float64)
    table = {float(a): float(d) for a, d in zip(alphas, differences, strict=True)}
    return float(alphas[int(np.argmax(differences))]), table
