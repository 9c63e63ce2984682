"""Ground truth for checking label-free metrics: localisation scores, a ladder, Kendall's tau.

AD and BAD choose a saliency method without pixel labels. To check that they rank
maps the way lesion masks do, this module provides

* localisation scores against a lesion mask: the pointing game, the energy inside
  the mask (Score-CAM's energy-based pointing game) and the share of the lesion that
  BAD's black image keeps;
* a *ladder* of maps of known quality built from the mask (the mask itself, blurred,
  shifted, noisy, uninformative, inverted) with designed quality levels
  (:data:`LADDER_QUALITY`);
* Kendall's tau-b between a metric's ranking of the ladder and the designed levels.

Maps are (H, W) floats in [0, 1]; masks are (H, W) bool. Every jnp function acts on
one image and is jit- and vmap-able (callers batch with ``jax.vmap``); Gaussian widths,
radii and shapes are static Python numbers. Blurs of maps built from the mask zero-pad
and run at ``Precision.HIGHEST`` so a GPU does not round them to TF32; the random
reference map (:func:`random_noise`) instead blurs on a torus (FFT), so that it has no
border and its distribution is the same at every pixel. The rank statistics are
host-side numpy.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from jax.scipy.stats import norm

from jaxcam.evaluation import ReferenceMap
from jaxcam.saliency.maps import normalise

Array = jax.Array


def _correlate(image: Array, kernel: Array) -> Array:
    """Zero-padded 'same' correlation of (H, W) with an odd-sized kernel (kh, kw): (H, W)."""
    pad_rows, pad_cols = (kernel.shape[0] - 1) // 2, (kernel.shape[1] - 1) // 2
    return jax.lax.conv_general_dilated(
        image[None, None],
        kernel[None, None],
        window_strides=(1, 1),
        padding=((pad_rows, pad_rows), (pad_cols, pad_cols)),
        precision=jax.lax.Precision.HIGHEST,
    )[0, 0]


# Localisation scores


def dilate(mask: Array, radius: int) -> Array:
    """Mask (H, W) bool grown by a disc of ``radius`` pixels (Euclidean): (H, W) bool.

    A pixel is in the result iff some mask pixel lies within ``radius`` of it;
    ``radius=0`` returns the mask.
    """
    if radius < 0:
        raise ValueError(f"radius must be >= 0, got {radius}")
    if radius == 0:
        return mask
    offsets = jnp.arange(-radius, radius + 1)
    disc = (offsets[:, None] ** 2 + offsets[None, :] ** 2 <= radius**2).astype(jnp.float32)
    return _correlate(mask.astype(jnp.float32), disc) > 0.5


def pointing_game(saliency: Array, mask: Array, tolerance: int = 0) -> Array:
    """Whether the map (H, W) points into the lesion mask (H, W) bool: bool scalar.

    The classic game (Zhang et al., 2016) scores a hit when the map's maximum lies in
    the mask, grown by ``tolerance`` pixels (they used 15). With ties at the maximum,
    let ``inside`` be the share of maximal pixels that lie in the (grown) mask and
    ``area`` the share of all pixels that do. A hit needs both

    * ``inside >= 1/2``: a majority of the maxima are in the lesion (for a unique
      maximum this is the classic rule), and
    * ``inside > area``: the maxima hit the lesion more often than a random pixel.

    The second condition makes a constant map (every pixel maximal, ``inside == area``)
    a miss whatever the lesion's size, the all-zero map included; it also means that a
    mask covering the whole image gives no hits.
    """
    region = dilate(mask, tolerance)
    is_max = saliency == jnp.max(saliency)
    num_max = jnp.sum(is_max)
    num_max_inside = jnp.sum(is_max & region)
    inside = num_max_inside.astype(jnp.float32) / num_max.astype(jnp.float32)
    area = jnp.mean(region.astype(jnp.float32))
    return (2 * num_max_inside >= num_max) & (inside > area)


def energy_inside_mask(saliency: Array, mask: Array) -> Array:
    """sum(L * mask) / sum(L) for a map (H, W) >= 0 and a mask (H, W) bool: scalar.

    The energy-based pointing game (Wang et al., Score-CAM, 2020). An all-zero map
    has no energy anywhere and scores 0.
    """
    total = jnp.sum(saliency)
    inside = jnp.sum(jnp.where(mask, saliency, 0.0))
    return jnp.where(total > 0, inside / jnp.where(total > 0, total, 1.0), 0.0)


def lesion_kept_share(keep_mask: Array, lesion_mask: Array) -> Array:
    """Share of lesion pixels that a black image keeps: float32 scalar in [0, 1].

    ``keep_mask`` (H, W) bool marks the pixels BAD keeps
    (:func:`jaxcam.metrics.top_pixel_mask`), ``lesion_mask`` (H, W) bool the lesion.
    An empty lesion has nothing to keep and scores 0.
    """
    lesion = jnp.sum(lesion_mask).astype(jnp.float32)
    kept = jnp.sum(keep_mask & lesion_mask).astype(jnp.float32)
    return jnp.where(lesion > 0, kept / jnp.maximum(lesion, 1.0), 0.0)


# Building blocks of the ladder


def gaussian_kernel(sigma: float, dtype: jnp.dtype = jnp.float32) -> Array:
    """1D Gaussian of std ``sigma`` pixels, cut at ceil(4 sigma), summing to 1: (2r+1,).

    ``sigma=0`` gives the identity kernel ``[1]``.
    """
    if sigma < 0:
        raise ValueError(f"sigma must be >= 0, got {sigma}")
    if sigma == 0:
        return jnp.ones((1,), dtype)
    radius = math.ceil(4.0 * sigma)
    offsets = jnp.arange(-radius, radius + 1, dtype=dtype)
    weights = jnp.exp(-0.5 * (offsets / sigma) ** 2)
    return weights / jnp.sum(weights)


def gaussian_blur(image: Array, sigma: float) -> Array:
    """Separable Gaussian blur of an (H, W) array with std ``sigma`` pixels: (H, W).

    Zero padding: away from the borders the sum is preserved, mass that would fall
    outside the image is lost. Not renormalised (see :func:`blurred`).
    """
    kernel = gaussian_kernel(sigma, image.dtype)
    down_columns = _correlate(image, kernel[:, None])
    return _correlate(down_columns, kernel[None, :])


def ground_truth_map(mask: Array, sigma: float) -> Array:
    """The lesion mask (H, W) bool lightly blurred (std ``sigma`` px), max 1: (H, W)."""
    return normalise(gaussian_blur(mask.astype(jnp.float32), sigma))


def blurred(saliency: Array, sigma: float) -> Array:
    """A map (H, W) blurred with a Gaussian of std ``sigma`` pixels, max 1: (H, W)."""
    return normalise(gaussian_blur(saliency, sigma))


def shifted(saliency: Array, dy: int | Array, dx: int | Array) -> Array:
    """A map (H, W) moved down by ``dy`` and right by ``dx`` pixels, 0 filled: (H, W).

    Negative shifts move up / left; nothing wraps around. The shifts may be traced
    integers.
    """
    height, width = saliency.shape
    rows = jnp.arange(height)[:, None] - dy  # source row of each output pixel
    cols = jnp.arange(width)[None, :] - dx
    valid = (rows >= 0) & (rows < height) & (cols >= 0) & (cols < width)
    # jax annotates the shift as ArrayLike | Sequence[int]; roll also takes a tuple of
    # traced integers (it falls back to a dynamic roll), as here.
    rolled = jnp.roll(saliency, (dy, dx), axis=(0, 1))  # type: ignore[arg-type]
    return jnp.where(valid, rolled, 0.0)


def noisy_mix(saliency: Array, key: Array, weight: float | Array) -> Array:
    """``(1 - weight) * L + weight * U(0, 1)`` noise, renormalised to max 1: (H, W).

    ``weight=0`` returns a max-1 map unchanged; ``weight=1`` is pure pixel noise.
    """
    noise = jax.random.uniform(key, saliency.shape, saliency.dtype)
    return normalise((1 - weight) * saliency + weight * noise)


def centre_blob(shape: tuple[int, int], sigma: float, dtype: jnp.dtype = jnp.float32) -> Array:
    """An isotropic Gaussian (std ``sigma`` px) at the image centre, max 1: ``shape``.

    Deliberately position-dependent: it stands for a map that ignores the image and
    always points at the centre (where lesions often are), a prior, not a random map.
    """
    height, width = shape
    rows = jnp.arange(height, dtype=dtype)[:, None] - (height - 1) / 2
    cols = jnp.arange(width, dtype=dtype)[None, :] - (width - 1) / 2
    return normalise(jnp.exp(-0.5 * (rows**2 + cols**2) / sigma**2))


def uniform_map(shape: tuple[int, int], dtype: jnp.dtype = jnp.float32) -> Array:
    """The map that is 1 everywhere: ``shape``.

    Deliberately not random: every pixel ties, so under BAD the evaluation's tie order
    decides which pixels are kept (for ``ties="smooth"`` that is
    :func:`jaxcam.metrics.smooth_random_field`, the family the demo trains its occlusion
    on); AD sees the whole image.
    """
    return jnp.ones(shape, dtype)


NOISE_TRANSFORMS: tuple[str, ...] = ("cdf", "rank")


def periodic_gaussian_kernel(size: int, sigma: float, dtype: jnp.dtype = jnp.float32) -> Array:
    """:func:`gaussian_kernel` wrapped onto a circle of ``size`` pixels: (size,), sums to 1.

    Entry ``i`` is the weight of every offset ``d`` with ``d = i (mod size)`` (the
    kernel is cut at ceil(4 sigma) first; offsets longer than the circle add up).
    """
    kernel = gaussian_kernel(sigma, dtype)
    radius = (kernel.shape[0] - 1) // 2
    offsets = jnp.arange(-radius, radius + 1) % size
    return jnp.zeros((size,), dtype).at[offsets].add(kernel)


def periodic_gaussian_field(key: Array, shape: tuple[int, int], sigma: float) -> Array:
    """White Gaussian noise blurred on a torus, scaled to unit variance: (H, W) float32.

    ``z = (k * n) / sqrt(sum k^2)`` with ``n`` i.i.d. N(0, 1) pixels, ``k`` the separable
    Gaussian of std ``sigma`` px wrapped onto the image's torus
    (:func:`periodic_gaussian_kernel`) and ``*`` circular convolution (FFT). Every pixel
    is exactly N(0, 1); the field is stationary (its law is the same under any cyclic
    shift), with correlation ``sum_q k(q) k(q + d) / sum k^2`` at offset ``d``:
    ``exp(-|d|^2 / (4 sigma^2))`` while ``4 sigma`` is well below the image side.
    """
    height, width = shape
    noise = jax.random.normal(key, shape, jnp.float32)
    rows = periodic_gaussian_kernel(height, sigma)
    cols = periodic_gaussian_kernel(width, sigma)
    transfer = jnp.fft.fft(rows)[:, None] * jnp.fft.fft(cols)[None, :]
    field = jnp.real(jnp.fft.ifft2(jnp.fft.fft2(noise) * transfer))
    scale = jnp.sqrt(jnp.sum(rows**2) * jnp.sum(cols**2))  # std of k * n
    return field / scale


def random_noise(
    key: Array,
    shape: tuple[int, int],
    sigma: float,
    dtype: jnp.dtype = jnp.float32,
    *,
    transform: str = "cdf",
) -> Array:
    """A smooth random map with the same distribution at every pixel, in [0, 1]: ``shape``.

    The field is :func:`periodic_gaussian_field` (white Gaussian noise blurred with std
    ``sigma`` px under periodic boundary conditions: blobs, like real maps, but no
    border), mapped to [0, 1] by

    * ``transform="cdf"`` (default): the standard normal CDF of the unit-variance field,
      a fixed function of each pixel, so every pixel is exactly Uniform(0, 1) (mean 1/2,
      std 1/sqrt(12)) and the map's range varies from map to map;
    * ``transform="rank"``: the pixel's rank (0 for the smallest) over ``H*W - 1``: min 0,
      max 1, every pixel uniform on those ``H*W`` values.

    Never min-max normalised: on a zero-padded blur that scaling made the border dim and
    the centre bright (a vignette). Each pixel's law is the same (stationary), so on
    average the map keeps a share alpha of any lesion at alpha, wherever it lies.
    ``sigma=0`` gives i.i.d. pixels. The construction is independent of BAD's ``smooth``
    tie order and the occlusion augmentation (:func:`jaxcam.metrics.smooth_random_field`:
    bilinearly upsampled uniform grids, whose blobs are about a quarter of the image).
    """
    if transform not in NOISE_TRANSFORMS:
        raise ValueError(f"transform must be one of {NOISE_TRANSFORMS}, got {transform!r}")
    field = periodic_gaussian_field(key, shape, sigma)
    if transform == "cdf":
        mapped = norm.cdf(field)
    else:
        ranks = jnp.argsort(jnp.argsort(field.reshape(-1))).astype(jnp.float32)
        mapped = (ranks / max(ranks.shape[0] - 1, 1)).reshape(shape)
    return mapped.astype(dtype)


def inverted(saliency: Array) -> Array:
    """``1 - L`` for a map (H, W) in [0, 1]: hot where the map was cold."""
    return 1 - saliency


# The ladder

LADDER_QUALITY: dict[str, int] = {
    "ground_truth": 4,
    "gt_blurred": 3,
    "gt_shifted": 2,
    "gt_noisy": 2,
    "centre_blob": 1,
    "uniform": 1,
    "noise": 1,
    "inverted": 0,
}
"""Designed quality of each rung of :func:`ladder`; higher is better, ties are equal.

* 4 ``ground_truth``: the lesion itself, only lightly blurred.
* 3 ``gt_blurred``: the right place, too wide: the peak stays on the lesion and pixels
  keep their order by distance to it, but much of the mass spills out.
* 2 ``gt_shifted``: the right shape, partly in the wrong place: moved by one lesion
  radius, so about 40 % of a disc lesion still overlaps and the peak sits on the
  lesion's edge.
* 2 ``gt_noisy``: the right place under heavy clutter: lesion pixels still outrank the
  background, but most of the energy lies outside. Neither flaw of the two rungs at 2
  is clearly worse, so they tie.
* 1 ``centre_blob``, ``uniform``, ``noise``: uninformative: they ignore the lesion.
  ``noise`` is position-neutral (:func:`random_noise`: every pixel has the same law);
  ``centre_blob`` (always the centre) and ``uniform`` (all tied) are deliberately not.
* 0 ``inverted``: misleading: hot everywhere except on the lesion, worse than chance.
"""


def ladder(
    mask: Array,
    key: Array,
    *,
    light_sigma: float = 0.015,
    heavy_sigma: float = 0.08,
    shift_fraction: float | None = None,
    noise_weight: float = 0.5,
    noise_sigma: float = 0.04,
    noise_transform: str = "cdf",
    centre_sigma: float = 0.15,
) -> dict[str, Array]:
    """The standard ladder of maps for one lesion mask (H, W) bool: name -> (H, W) in [0, 1].

    Widths are fractions of the shorter image side ``s = min(H, W)`` (so the ladder
    looks the same at any resolution):

    * ``ground_truth``: the mask blurred with std ``light_sigma * s`` (1.5 %);
    * ``gt_blurred``: ``ground_truth`` blurred again with std ``heavy_sigma * s`` (8 %);
    * ``gt_shifted``: ``ground_truth`` moved sideways toward the image's vertical
      midline (so it stays in the image) by the lesion's equivalent-disc radius
      ``sqrt(area / pi)`` rounded, at least 1 pixel, or by ``shift_fraction * s`` if
      given;
    * ``gt_noisy``: ``noisy_mix`` of ``ground_truth`` with weight ``noise_weight`` (0.5);
    * ``centre_blob``: a Gaussian of std ``centre_sigma * s`` (15 %) at the centre;
    * ``uniform``: all ones;
    * ``noise``: :func:`random_noise` with std ``noise_sigma * s`` (4 %) and
      ``noise_transform`` (``cdf``): a stationary random map, blurred on a torus;
    * ``inverted``: ``1 - ground_truth``.

    Every rung is renormalised to max 1, as :func:`jaxcam.saliency_maps` does (for
    ``noise`` a division of the whole map by one number, which keeps every pixel's law
    the same). ``key`` drives ``gt_noisy`` and ``noise``; the other rungs do not depend
    on it. Only the random parts are position-neutral (``noise``, and ``gt_noisy``'s
    i.i.d. clutter); the other rungs sit where the lesion (or, for ``centre_blob``, the
    centre) is, by design. The keys of the result are those of :data:`LADDER_QUALITY`.
    vmap over ``(mask, key)`` to batch.
    """
    height, width = mask.shape
    side = min(height, width)
    truth = ground_truth_map(mask, light_sigma * side)

    area = jnp.sum(mask).astype(jnp.float32)
    if shift_fraction is None:
        distance = jnp.maximum(jnp.round(jnp.sqrt(area / math.pi)), 1.0).astype(jnp.int32)
    else:
        distance = jnp.asarray(round(shift_fraction * side), jnp.int32)
    cols = jnp.arange(width, dtype=jnp.float32)[None, :]
    centroid = jnp.sum(jnp.where(mask, cols, 0.0)) / jnp.maximum(area, 1.0)
    dx = jnp.where(centroid <= (width - 1) / 2, distance, -distance)

    mix_key, noise_key = jax.random.split(key)
    rungs = {
        "ground_truth": truth,
        "gt_blurred": blurred(truth, heavy_sigma * side),
        "gt_shifted": shifted(truth, 0, dx),
        "gt_noisy": noisy_mix(truth, mix_key, noise_weight),
        "centre_blob": centre_blob((height, width), centre_sigma * side),
        "uniform": uniform_map((height, width)),
        "noise": random_noise(
            noise_key, (height, width), noise_sigma * side, transform=noise_transform
        ),
        "inverted": inverted(truth),
    }
    return {name: normalise(rungs[name]) for name in LADDER_QUALITY}


def ladder_references(**options: Any) -> dict[str, ReferenceMap]:
    """The ladder's rungs as reference rows for :func:`jaxcam.evaluate` (batches need ``mask``).

    ``options`` are :func:`ladder`'s keyword arguments. Each image gets its own key.
    """

    def rung(name: str) -> ReferenceMap:
        return ReferenceMap(lambda example, key: ladder(example["mask"], key, **options)[name])

    return {name: rung(name) for name in LADDER_QUALITY}


def marker_reference(light_sigma: float = 0.015) -> ReferenceMap:
    """A map of the shortcut marker (batches need ``marker``): the mask blurred like the truth."""
    return ReferenceMap(
        lambda example, key: ground_truth_map(
            example["marker"], light_sigma * min(example["marker"].shape)
        ),
        needs=("marker",),
    )


# Rank agreement (host side)


def kendall_tau_b(x: Sequence[float] | np.ndarray, y: Sequence[float] | np.ndarray) -> float:
    """Kendall's tau-b between two sequences of equal length n >= 2 (numpy, O(n^2)).

    ``(C - D) / sqrt((n0 - n1) (n0 - n2))`` with C / D the concordant / discordant
    pairs, n0 = n(n-1)/2 and n1 / n2 the pairs tied in x / in y (a pair tied in both
    counts in both). NaN if every pair is tied in x or in y (the rank correlation is
    undefined), as in ``scipy.stats.kendalltau``.
    """
    x = np.asarray(x, np.float64)
    y = np.asarray(y, np.float64)
    if x.ndim != 1 or x.shape != y.shape:
        raise ValueError(f"x and y must be 1-D of equal length, got {x.shape} and {y.shape}")
    if x.size < 2:
        raise ValueError(f"Kendall's tau needs at least 2 values, got {x.size}")
    if not (np.all(np.isfinite(x)) and np.all(np.isfinite(y))):
        raise ValueError("x and y must be finite")
    upper = np.triu_indices(x.size, k=1)  # each pair (i < j) once
    sign_x = np.sign(x[:, None] - x[None, :])[upper]
    sign_y = np.sign(y[:, None] - y[None, :])[upper]
    untied = np.count_nonzero(sign_x) * np.count_nonzero(sign_y)
    if untied == 0:
        return float("nan")
    return float(np.sum(sign_x * sign_y) / math.sqrt(untied))


def rank_agreement(
    metric_values: Mapping[str, float],
    quality: Mapping[str, int],
    higher_is_better: bool,
) -> float:
    """Kendall's tau-b between a metric's ranking of maps and their designed quality.

    ``metric_values`` maps rung names to the metric (e.g. AD or BAD of each rung over
    a data set); ``quality`` maps names to levels (:data:`LADDER_QUALITY`). Only the
    rungs in ``metric_values`` enter. For AD and BAD lower is better: pass
    ``higher_is_better=False``. 1 = the metric orders the rungs as designed, -1 =
    reversed.
    """
    names = list(metric_values)
    missing = [name for name in names if name not in quality]
    if missing:
        raise ValueError(f"no designed quality for {', '.join(missing)}")
    undefined = [name for name in names if metric_values[name] is None]
    if undefined:
        raise ValueError(f"metric value is None for {', '.join(undefined)}")
    values = np.array([metric_values[name] for name in names], np.float64)
    levels = np.array([quality[name] for name in names], np.float64)
    return kendall_tau_b(values if higher_is_better else -values, levels)
