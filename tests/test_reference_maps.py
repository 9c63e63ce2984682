"""The random reference map (the ladder's ``noise`` rung) is position-neutral.

Every tolerance below is a number of standard errors: for a random map whose pixels are
each Uniform(0, 1), the per-pixel std is 1/sqrt(12) = 0.2887 exactly, so a mean over K
independent keys has std 0.2887 / sqrt(K) (an average over a region of correlated
pixels has at most that std); where the exact std is not known (a difference of region
means, a correlation) the standard error is estimated from the K keys themselves.
"""

import functools
import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxcam.ground_truth import (
    ladder,
    lesion_kept_share,
    periodic_gaussian_field,
    periodic_gaussian_kernel,
    random_noise,
)
from jaxcam.metrics import smooth_random_field, top_pixel_mask

KEYS = 200
SIZE = 32
SIGMA = 0.04 * SIZE  # the ladder's default noise width at 32 x 32: 1.28 px
PIXEL_STD = 1 / math.sqrt(12)  # std of Uniform(0, 1)
SE = PIXEL_STD / math.sqrt(KEYS)  # std of one pixel's mean over the keys: 0.0204


@functools.cache
def noise_maps(transform: str) -> np.ndarray:
    """KEYS maps (KEYS, SIZE, SIZE) of the ladder's width (read-only: shared by tests)."""
    keys = jax.random.split(jax.random.key(0), KEYS)
    draw = jax.jit(jax.vmap(lambda k: random_noise(k, (SIZE, SIZE), SIGMA, transform=transform)))
    maps = np.asarray(draw(keys))
    maps.flags.writeable = False
    return maps


def correlations(first: np.ndarray, second: np.ndarray) -> np.ndarray:
    """Pearson correlation of each pair of maps, over pixels: (K, ...) x2 -> (K,)."""
    first = first.reshape(len(first), -1) - first.reshape(len(first), -1).mean(1, keepdims=True)
    second = second.reshape(len(second), -1)
    second = second - second.mean(1, keepdims=True)
    return (first * second).sum(1) / np.sqrt((first**2).sum(1) * (second**2).sum(1))


def border_ring(width: int = 2) -> np.ndarray:
    ring = np.ones((SIZE, SIZE), bool)
    ring[width:-width, width:-width] = False
    return ring


def within_standard_errors(samples: np.ndarray, expected: float, count: float = 4.0) -> bool:
    """Whether the mean of per-key samples is within ``count`` standard errors of ``expected``."""
    standard_error = samples.std(ddof=1) / math.sqrt(len(samples))
    return abs(samples.mean() - expected) <= count * standard_error


def test_periodic_kernel_wraps_the_gaussian_onto_the_circle():
    # sigma = 1 on 4 pixels: offsets -4..4 land on 0..3; each entry sums its offsets
    weights = np.exp(-0.5 * np.arange(-4, 5) ** 2)
    weights /= weights.sum()
    expected = [weights[[0, 4, 8]].sum(), weights[[1, 5]].sum(), weights[[2, 6]].sum()]
    expected.append(weights[[3, 7]].sum())
    np.testing.assert_allclose(periodic_gaussian_kernel(4, 1.0), expected, rtol=1e-6)
    # a wide circle keeps the kernel as it is: offset d at index d mod 32
    wide = np.asarray(periodic_gaussian_kernel(32, 1.0))
    np.testing.assert_allclose(wide[[0, 1, 2, 31, 30]], weights[[4, 5, 6, 3, 2]], rtol=1e-6)
    assert wide[5:28].max() == 0.0


def test_periodic_field_is_circular_convolution_of_white_noise():
    # the same blur written as an explicit sum over the torus (numpy, float64)
    key = jax.random.key(3)
    sigma, height, width = 1.5, 6, 5
    noise = np.asarray(jax.random.normal(key, (height, width), jnp.float32), np.float64)
    rows = np.asarray(periodic_gaussian_kernel(height, sigma), np.float64)
    cols = np.asarray(periodic_gaussian_kernel(width, sigma), np.float64)
    blurred = np.zeros((height, width))
    for i in range(height):
        for j in range(width):
            for p in range(height):
                for q in range(width):
                    weight = rows[(i - p) % height] * cols[(j - q) % width]
                    blurred[i, j] += weight * noise[p, q]
    scale = math.sqrt((rows**2).sum() * (cols**2).sum())
    field = periodic_gaussian_field(key, (height, width), sigma)
    np.testing.assert_allclose(field, blurred / scale, atol=1e-5)


@pytest.mark.parametrize("transform", ["cdf", "rank"])
def test_mean_map_over_keys_is_flat_and_each_pixel_varies(transform):
    maps = noise_maps(transform)
    mean, spread = maps.mean(axis=0), maps.std(axis=0)
    ring = border_ring()
    # The old min-max map: border 0.39 vs interior 0.89, per-pixel std 0.037.
    # every pixel's mean is 1/2 within 5 standard errors (0.10)
    assert np.abs(mean - 0.5).max() <= 5 * SE
    # border and interior means within 4 standard errors of 1/2 (0.082) ...
    assert abs(mean[ring].mean() - 0.5) <= 4 * SE and abs(mean[~ring].mean() - 0.5) <= 4 * SE
    # ... and of each other, by the keys' own spread of border - interior
    assert within_standard_errors(maps[:, ring].mean(1) - maps[:, ~ring].mean(1), 0.0)
    # each pixel ranges over [0, 1] across keys: std 1/sqrt(12) everywhere; the sample
    # std of 200 uniforms has std sqrt((1/80 - 1/144) / 200) / (2 * 0.2887) = 0.0091,
    # so 5 of those is 0.046
    assert np.abs(spread - PIXEL_STD).max() <= 0.046


def pooled_correlation(maps: np.ndarray, lag: int) -> np.ndarray:
    """Per key: mean of 12 (x_p - 1/2)(x_{p+lag} - 1/2) over horizontal pairs (K,)."""
    centred = maps - 0.5
    return 12 * np.mean(centred[:, :, :-lag] * centred[:, :, lag:], axis=(1, 2))


@pytest.mark.parametrize("lag", [1, 2, 4])
def test_autocorrelation_is_the_blurred_gaussians(lag):
    # field correlation at offset d: exp(-d^2 / (4 sigma^2)); after the normal CDF two
    # N(0, 1) pixels with correlation r have correlation (6 / pi) arcsin(r / 2)
    field = math.exp(-(lag**2) / (4 * SIGMA**2))
    expected = 6 / math.pi * math.asin(field / 2)
    assert within_standard_errors(pooled_correlation(noise_maps("cdf"), lag), expected)


def test_differs_from_the_tie_order_and_occlusion_family():
    keys = jax.random.split(jax.random.key(0), KEYS)
    ours = noise_maps("cdf")
    theirs = np.asarray(jax.jit(jax.vmap(lambda k: smooth_random_field(k, (SIZE, SIZE))))(keys))
    # same key, different fields: their correlation averages 0
    assert within_standard_errors(correlations(ours, theirs), 0.0)

    def lag_correlation(maps, lag):
        return correlations(maps[:, :, :-lag], maps[:, :, lag:]).mean()

    # different blob sizes: 4 px apart ours are nearly independent (field correlation
    # exp(-16 / 6.55) = 0.09), the upsampled 4 x 4 grid's are not
    assert lag_correlation(ours, 4) < 0.15
    assert lag_correlation(theirs, 4) > lag_correlation(ours, 4) + 0.3


def test_ladder_noise_rung_keeps_alpha_of_a_central_lesion():
    # a disc lesion at the centre, where the old vignette kept ~95 % of it at alpha 0.7
    rows, cols = np.mgrid[:SIZE, :SIZE]
    mask = jnp.asarray((rows - 15.5) ** 2 + (cols - 15.5) ** 2 <= 5.5**2)
    keys = jax.random.split(jax.random.key(1), KEYS)
    kept = round(0.7 * SIZE * SIZE)

    def share(key):
        noise = ladder(mask, key)["noise"]
        return noise, lesion_kept_share(top_pixel_mask(noise, kept), mask)

    noise, shares = jax.jit(jax.vmap(share))(keys)
    assert within_standard_errors(np.asarray(shares), kept / (SIZE * SIZE))
    # the rung is divided by its maximum only: still the same mean at border and centre
    noise = np.asarray(noise)
    ring = border_ring()
    assert within_standard_errors(noise[:, ring].mean(1) - noise[:, ~ring].mean(1), 0.0)
