"""BAD with other fills than black: blur, mean, ROAD's noisy linear imputation, the twin.

Every reference here is computed independently of the library: numpy for the means,
``scipy.ndimage.gaussian_filter`` for the blur, a sparse system assembled pixel by pixel
and ``scipy.sparse.linalg.spsolve`` for ROAD's linear imputation.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import scipy.ndimage
import scipy.sparse
import scipy.sparse.linalg
from conftest import toy_model

import jaxcam
from jaxcam.metrics import (
    DEFAULT_METRICS,
    NOISE_SCALE,
    blurred_fill_image,
    counterfactual_image,
    gaussian_blur,
    get_metric,
    linear_imputation,
    mean_fill_image,
    metric_names,
    metric_scores,
    noisy_linear_image,
    noisy_linear_perturbation,
    summarise_drop,
)

IMPUTERS = (
    "black_average_drop",
    "blurred_average_drop",
    "mean_average_drop",
    "noisy_linear_average_drop",
    "counterfactual_average_drop",
)
LABELS = {
    "black_average_drop": "BAD",
    "blurred_average_drop": "BAD-blur",
    "mean_average_drop": "BAD-mean",
    "noisy_linear_average_drop": "BAD-ROAD",
    "counterfactual_average_drop": "BAD-twin",
}


# One compile per image shape (the masks are traced).
solve = jax.jit(linear_imputation)
noisy_fill = jax.jit(noisy_linear_image)


def random_ranks(height: int, width: int, seed: int) -> np.ndarray:
    """A random pixel order as ranks (H, W): a permutation of 0..H*W-1."""
    return np.random.default_rng(seed).permutation(height * width).reshape(height, width)


def random_image(shape: tuple[int, ...], seed: int) -> np.ndarray:
    """Values in [0.5, 1]: never 0 (black), almost surely not a mean or a blur."""
    return np.random.default_rng(seed).uniform(0.5, 1.0, size=shape).astype(np.float32)


def test_the_imputers_are_registered_per_alpha_with_signed_columns():
    for name in IMPUTERS:
        metric = get_metric(name)
        assert name in metric_names()
        assert metric.label == LABELS[name]
        assert metric.per_alpha and metric.signed_columns
        assert metric.needs == (("twin",) if name == "counterfactual_average_drop" else ())
    assert DEFAULT_METRICS == ("average_drop", "black_average_drop")


@pytest.mark.parametrize("name", IMPUTERS)
@pytest.mark.parametrize("alpha", [0.1, 0.5, 0.9])
def test_exactly_the_top_ranked_pixels_stay_and_every_other_one_changes(name, alpha):
    height, width, channels = 6, 5, 2
    image = random_image((height, width, channels), seed=1)
    twin = image + 1.0  # differs from the image everywhere
    ranks = random_ranks(height, width, seed=2)
    num_kept = round(alpha * height * width)  # 3, 15 and 27 of 30
    perturb = jax.jit(get_metric(name).perturb)  # num_kept traced, as in the engine
    out = np.asarray(
        perturb(
            jnp.asarray(image),
            jnp.zeros((height, width)),
            jnp.asarray(ranks, jnp.int32),
            jnp.asarray(num_kept, jnp.int32),
            {"twin": jnp.asarray(twin)},
            jax.random.key(3),
        )
    )
    assert out.shape == image.shape and out.dtype == image.dtype
    kept = ranks < num_kept
    unchanged = np.all(out == image, axis=-1)
    assert np.array_equal(unchanged, kept)  # the kept ones, and only them
    assert unchanged.sum() == num_kept
    assert np.all(out[~kept] != image[~kept])  # every channel of every removed pixel


def test_mean_fill_is_the_whole_image_channel_mean():
    image = random_image((4, 5, 3), seed=4)
    image[0, 0] = [10.0, -10.0, 0.0]  # a removed outlier still counts in the mean
    ranks = random_ranks(4, 5, seed=5)
    ranks[ranks == 19], ranks[0, 0] = ranks[0, 0], 19  # the outlier ranked last: removed
    out = np.asarray(mean_fill_image(jnp.asarray(image), jnp.asarray(ranks), 8))
    means = image.astype(np.float64).sum(axis=(0, 1)) / 20
    kept = ranks < 8
    np.testing.assert_allclose(out[~kept], np.broadcast_to(means, (12, 3)), rtol=1e-6)
    np.testing.assert_array_equal(out[kept], image[kept])


@pytest.mark.parametrize(
    "shape, sigma",
    [
        ((16, 12, 2), None),  # sigma = max(H, W) / 16 = 1, radius 4
        ((11, 9, 1), 2.5),  # radius 10: wider than the image, repeated mirroring
        ((7, 8, 3), 0.6),
    ],
)
def test_blur_is_scipys_gaussian_filter_with_a_mirrored_border(shape, sigma):
    image = random_image(shape, seed=6)
    expected_sigma = max(shape[:2]) / 16 if sigma is None else sigma
    expected = scipy.ndimage.gaussian_filter(
        image.astype(np.float64), (expected_sigma, expected_sigma, 0), mode="reflect", truncate=4.0
    )
    blurred = np.asarray(gaussian_blur(jnp.asarray(image), sigma))
    np.testing.assert_allclose(blurred, expected, atol=2e-6)
    ranks = random_ranks(*shape[:2], seed=7)
    filled = np.asarray(blurred_fill_image(jnp.asarray(image), jnp.asarray(ranks), 20, sigma))
    kept = ranks < 20
    np.testing.assert_allclose(filled[~kept], expected[~kept], atol=2e-6)
    np.testing.assert_array_equal(filled[kept], image[kept])


# ROAD's weights, written out again: 1/6 direct, 1/12 diagonal neighbours.
ROAD_WEIGHTS = {(dy, dx): (1 / 6 if dy == 0 or dx == 0 else 1 / 12) for dy in (-1, 0, 1)
                for dx in (-1, 0, 1) if (dy, dx) != (0, 0)}  # fmt: skip


def direct_linear_imputation(image: np.ndarray, kept: np.ndarray) -> np.ndarray:
    """ROAD's system solved by spsolve: each removed pixel the renormalised weighted mean
    of its in-image neighbours, kept pixels fixed (float64)."""
    height, width, channels = image.shape
    removed = np.argwhere(~kept)
    unknown = -np.ones((height, width), int)
    unknown[~kept] = np.arange(len(removed))
    matrix = scipy.sparse.lil_matrix((len(removed), len(removed)))
    rhs = np.zeros((len(removed), channels))
    for row, (y, x) in enumerate(removed):
        for (dy, dx), weight in ROAD_WEIGHTS.items():
            ny, nx = y + dy, x + dx
            if not (0 <= ny < height and 0 <= nx < width):
                continue  # outside: dropped, the others renormalised
            matrix[row, row] += weight
            if kept[ny, nx]:
                rhs[row] += weight * image[ny, nx]
            else:
                matrix[row, unknown[ny, nx]] -= weight
    solution = scipy.sparse.linalg.spsolve(matrix.tocsc(), rhs).reshape(len(removed), channels)
    out = image.astype(np.float64)
    out[~kept] = solution
    return out


def road_masks(height: int, width: int) -> list[np.ndarray]:
    """Kept masks: scattered, one blob, a strip on the border, a single kept pixel."""
    rng = np.random.default_rng(8)
    rows, cols = np.mgrid[:height, :width]
    return [
        rng.random((height, width)) < 0.5,
        (rows - height / 3) ** 2 + (cols - width / 2) ** 2 < (min(height, width) / 3) ** 2,
        cols == width - 1,
        (rows == 2) & (cols == 3),
    ]


def test_linear_imputation_by_hand_inside_and_in_a_corner():
    image = np.arange(1.0, 10.0, dtype=np.float32).reshape(3, 3, 1)
    centre = np.ones((3, 3), bool)
    centre[1, 1] = False
    # (2 + 4 + 6 + 8) / 6 + (1 + 3 + 7 + 9) / 12 = 5.
    out = solve(jnp.asarray(image), jnp.asarray(centre)).image
    assert float(out[1, 1, 0]) == pytest.approx(5.0, abs=1e-6)
    corner = np.ones((3, 3), bool)
    corner[0, 0] = False
    # neighbours 2 and 4 (1/6 each), 5 (1/12), renormalised by 5/12: (4 + 8 + 5) / 5.
    out = solve(jnp.asarray(image), jnp.asarray(corner)).image
    assert float(out[0, 0, 0]) == pytest.approx(17 / 5, abs=1e-6)


@pytest.mark.parametrize("shape", [(8, 8, 1), (12, 10, 3)])
def test_noiseless_linear_imputation_matches_a_direct_sparse_solve(shape):
    image = np.random.default_rng(9).uniform(size=shape).astype(np.float32)
    perturb = jax.jit(noisy_linear_perturbation(noise_scale=0.0))
    for kept in road_masks(*shape[:2]):
        expected = direct_linear_imputation(image, kept)
        result = solve(jnp.asarray(image), jnp.asarray(kept))
        out = np.asarray(result.image)
        np.testing.assert_array_equal(out[kept], image[kept])
        # Stopping rule: every removed pixel within 1e-5 of its neighbours' mean; the
        # solution is then this close to the exact one on these images (1.8e-5 seen).
        np.testing.assert_allclose(out, expected, atol=3e-5)
        assert np.all(np.asarray(result.residual) <= 1e-5 * image.max())
        ranks = jnp.asarray(np.where(kept, 0, kept.size), jnp.int32)  # kept ones first
        perturbed = perturb(
            jnp.asarray(image), jnp.zeros(kept.shape), ranks, kept.sum(), {}, jax.random.key(0)
        )
        np.testing.assert_allclose(np.asarray(perturbed), out, atol=1e-6)  # another compile


def test_nothing_kept_imputes_black():
    image = random_image((5, 4, 2), seed=10)
    out = solve(jnp.asarray(image), jnp.zeros((5, 4), bool)).image
    np.testing.assert_array_equal(np.asarray(out), np.zeros_like(image))


def test_noise_on_the_imputed_pixels_has_the_stated_std():
    height, width = 12, 10  # as above: the noiseless solve is compiled already
    image = np.random.default_rng(11).uniform(size=(height, width, 3)).astype(np.float32)
    image[..., 1] *= 5.0  # a wider channel gets proportionally wider noise
    image[..., 2] = 0.25  # a constant channel gets none
    kept = road_masks(height, width)[1]
    noiseless = np.asarray(solve(jnp.asarray(image), jnp.asarray(kept)).image)
    std = NOISE_SCALE * image.std(axis=(0, 1))[:2]  # over the whole image
    samples = []
    for seed in range(10):
        noisy = np.asarray(noisy_fill(jnp.asarray(image), jnp.asarray(kept), jax.random.key(seed)))
        np.testing.assert_array_equal(noisy[kept], image[kept])
        np.testing.assert_array_equal(noisy[..., 2], noiseless[..., 2])
        samples.append((noisy[~kept, :2] - noiseless[~kept, :2]) / std)  # ~ N(0, 1)
    standardised = np.concatenate(samples)  # (10 * removed, 2)
    assert standardised.shape[0] > 600
    assert np.all(np.abs(standardised.mean(axis=0)) < 0.15)
    assert np.all(np.abs(standardised.std(axis=0) - 1) < 0.1)
    key = jax.random.key(3)
    first = noisy_fill(jnp.asarray(image), jnp.asarray(kept), key)
    again = noisy_fill(jnp.asarray(image), jnp.asarray(kept), key)
    np.testing.assert_array_equal(np.asarray(again), np.asarray(first))  # the key decides


def test_counterfactual_takes_the_twin_exactly():
    image = random_image((4, 6, 2), seed=14)
    twin = np.random.default_rng(15).normal(size=image.shape).astype(np.float32)
    ranks = random_ranks(4, 6, seed=16)
    out = np.asarray(counterfactual_image(jnp.asarray(image), jnp.asarray(twin), ranks, 10))
    kept = ranks < 10
    np.testing.assert_array_equal(out[~kept], twin[~kept])
    np.testing.assert_array_equal(out[kept], image[kept])
    with pytest.raises(ValueError, match="twin"):
        counterfactual_image(jnp.asarray(image), jnp.asarray(twin[..., :1]), ranks, 10)


@pytest.mark.slow  # ~10 s: every imputer through evaluate
def test_evaluate_scores_every_imputer_and_matches_the_per_batch_api():
    model = toy_model()
    rng = np.random.default_rng(17)
    images = rng.uniform(size=(6, 16, 16, 2)).astype(np.float32)
    twins = rng.uniform(size=(6, 16, 16, 2)).astype(np.float32)
    labels = np.array([0, 1, 2, 0, 1, 2], np.int32)
    evaluation = jaxcam.evaluate(
        model,
        {"image": images, "label": labels, "twin": twins},
        ["cam", "grad_cam"],
        metrics=list(IMPUTERS),
        alpha=0.5,
        curve=False,
        batch_size=4,
    )
    assert evaluation.metrics == IMPUTERS
    for row in evaluation.results.values():
        for name in IMPUTERS:
            summary = row.metrics[name]
            assert summary.num_images == 6
            assert summary.value is None or 0 <= summary.value <= 1
    maps, classes = jaxcam.saliency_maps(model, images, None, "grad_cam")
    # Keys (the noise) and the twin field must line up between the two paths.
    names = ("noisy_linear_average_drop", "counterfactual_average_drop")
    scores = metric_scores(
        model, images, np.asarray(maps), np.asarray(classes), 0.5, names, fields={"twin": twins}
    )
    for q, name in enumerate(names):
        expected = summarise_drop(scores.original, scores.masked[q], scores.masked_class[q], labels)
        engine = evaluation.results["Grad-CAM"].metrics[name]
        for field in ("value", "incorrect", "increase_in_confidence", "mean_change"):
            assert getattr(engine, field) == pytest.approx(getattr(expected, field), abs=1e-5)
        assert (engine.num_images, engine.num_excluded) == (6, expected.num_excluded)
