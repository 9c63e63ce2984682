"""jaxcam.ground_truth: localisation scores, the ladder of maps and Kendall's tau-b."""

import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxcam.ground_truth import (
    LADDER_QUALITY,
    blurred,
    centre_blob,
    dilate,
    energy_inside_mask,
    gaussian_blur,
    gaussian_kernel,
    ground_truth_map,
    inverted,
    kendall_tau_b,
    ladder,
    lesion_kept_share,
    noisy_mix,
    pointing_game,
    random_noise,
    rank_agreement,
    shifted,
    uniform_map,
)
from jaxcam.metrics import top_pixel_mask


def grid(rows) -> jax.Array:
    return jnp.asarray(rows, jnp.float32)


# A 4x4 lesion: the 2x2 block at rows 1-2, columns 1-2 (area 4 of 16 pixels).
MASK = jnp.zeros((4, 4), bool).at[1:3, 1:3].set(True)


def disc_mask(size: int, centre: tuple[int, int], radius: float) -> jax.Array:
    rows, cols = np.mgrid[:size, :size]
    return jnp.asarray((rows - centre[0]) ** 2 + (cols - centre[1]) ** 2 <= radius**2)


# Pointing game


@pytest.mark.parametrize(
    ("saliency", "hit"),
    [
        # unique maximum 0.9 at (1, 2), inside: hit
        ([[0, 0, 0, 0], [0, 0.5, 0.9, 0], [0, 0, 0, 0], [0, 0, 0, 0.2]], True),
        # unique maximum 0.9 at (3, 3), outside: miss
        ([[0, 0, 0, 0], [0, 0.5, 0.4, 0], [0, 0, 0, 0], [0, 0, 0, 0.9]], False),
        # two maxima, (1, 1) in and (0, 0) out: inside = 1/2 >= 1/2 and > area 4/16: hit
        ([[1, 0, 0, 0], [0, 1, 0, 0], [0, 0, 0, 0], [0, 0, 0, 0]], True),
        # three maxima, only (2, 2) in: inside = 1/3 < 1/2: miss
        ([[1, 0, 0, 1], [0, 0, 0, 0], [0, 0, 1, 0], [0, 0, 0, 0]], False),
        # flat map: every pixel maximal, inside = area = 1/4: miss
        ([[0.7] * 4] * 4, False),
        # all-zero map: flat as well: miss
        ([[0] * 4] * 4, False),
    ],
)
def test_pointing_game_on_hand_made_maps(saliency, hit):
    assert bool(pointing_game(grid(saliency), MASK)) is hit


def test_flat_map_misses_even_a_lesion_covering_most_of_the_image():
    # lesion = 12 of 16 pixels: a flat map has inside = 12/16 >= 1/2, but not > 12/16
    big = jnp.ones((4, 4), bool).at[0].set(False)
    assert not bool(pointing_game(jnp.ones((4, 4), jnp.float32), big))
    # a map peaking inside the big lesion still hits: inside = 1 > 12/16
    assert bool(pointing_game(jnp.zeros((4, 4), jnp.float32).at[3, 3].set(1.0), big))


def test_pointing_game_tolerance_uses_a_euclidean_disc():
    mask = jnp.zeros((7, 7), bool).at[3, 3].set(True)
    right = jnp.zeros((7, 7), jnp.float32).at[3, 4].set(1.0)  # distance 1
    diagonal = jnp.zeros((7, 7), jnp.float32).at[4, 4].set(1.0)  # distance sqrt(2)
    assert not bool(pointing_game(right, mask))
    assert bool(pointing_game(right, mask, tolerance=1))
    assert not bool(pointing_game(diagonal, mask, tolerance=1))
    assert bool(pointing_game(diagonal, mask, tolerance=2))


def test_dilate_grows_a_pixel_into_a_disc():
    mask = jnp.zeros((7, 7), bool).at[3, 3].set(True)
    # radius 1: the pixel and its 4 neighbours; radius 2: 13 pixels with dy^2 + dx^2 <= 4
    assert int(jnp.sum(dilate(mask, 1))) == 5
    assert int(jnp.sum(dilate(mask, 2))) == 13
    np.testing.assert_array_equal(dilate(mask, 0), mask)
    # at the corner the disc is cut by the border: (0,0), (0,1), (1,0)
    assert int(jnp.sum(dilate(jnp.zeros((5, 5), bool).at[0, 0].set(True), 1))) == 3


def test_pointing_game_jits_and_vmaps():
    maps = jnp.stack([grid([[0] * 4, [0, 1, 0, 0], [0] * 4, [0] * 4]), jnp.ones((4, 4))])
    hits = jax.jit(jax.vmap(pointing_game))(maps, jnp.stack([MASK, MASK]))
    assert hits.dtype == jnp.bool_
    np.testing.assert_array_equal(hits, [True, False])


# Energy and kept share


def test_energy_inside_mask_by_hand():
    # inside: 0.5 + 0.9 = 1.4; total: 1.4 + 0.2 + 0.4 = 2.0 -> 0.7
    saliency = grid([[0.2, 0, 0, 0], [0, 0.5, 0.9, 0], [0, 0, 0, 0], [0, 0, 0, 0.4]])
    assert float(energy_inside_mask(saliency, MASK)) == pytest.approx(0.7, rel=1e-6)
    # uniform map: the lesion's area share 4/16
    assert float(energy_inside_mask(jnp.ones((4, 4)), MASK)) == pytest.approx(0.25)
    assert float(energy_inside_mask(jnp.zeros((4, 4)), MASK)) == 0.0


def test_lesion_kept_share_by_hand():
    # keep the top row and (1, 1): of the 4 lesion pixels only (1, 1) is kept -> 1/4
    keep = jnp.zeros((4, 4), bool).at[0].set(True).at[1, 1].set(True)
    assert float(lesion_kept_share(keep, MASK)) == pytest.approx(0.25)
    assert float(lesion_kept_share(jnp.ones((4, 4), bool), MASK)) == 1.0
    assert float(lesion_kept_share(keep, jnp.zeros((4, 4), bool))) == 0.0


def test_lesion_kept_share_of_bad_black_image():
    # BAD keeps the 3 most salient pixels: (1, 2) 0.9, (1, 1) 0.5, (3, 3) 0.4 -> 2 of 4
    saliency = grid([[0.2, 0, 0, 0], [0, 0.5, 0.9, 0], [0, 0, 0, 0], [0, 0, 0, 0.4]])
    keep = top_pixel_mask(saliency, 3)
    assert float(lesion_kept_share(keep, MASK)) == pytest.approx(0.5)


# Blur, shift, noise, blob, inversion


def test_gaussian_kernel_is_normalised_symmetric_and_cut_at_four_sigma():
    kernel = np.asarray(gaussian_kernel(1.5))
    assert kernel.shape == (2 * math.ceil(6.0) + 1,)
    assert kernel.sum() == pytest.approx(1.0, rel=1e-6)
    np.testing.assert_allclose(kernel, kernel[::-1], rtol=0, atol=0)
    # neighbouring weights differ by exp(-(2k+1) / (2 sigma^2)): for k = 0, exp(-1/4.5)
    centre = kernel.size // 2
    assert kernel[centre + 1] / kernel[centre] == pytest.approx(math.exp(-1 / 4.5), rel=1e-6)
    np.testing.assert_array_equal(gaussian_kernel(0.0), [1.0])
    with pytest.raises(ValueError, match="sigma"):
        gaussian_kernel(-1.0)


def test_gaussian_blur_preserves_the_sum_away_from_borders_and_is_symmetric():
    impulse = jnp.zeros((21, 21), jnp.float32).at[10, 10].set(1.0)
    out = np.asarray(gaussian_blur(impulse, 1.5))  # radius 6 fits inside the image
    assert out.sum() == pytest.approx(1.0, rel=1e-5)
    np.testing.assert_allclose(out, out.T, atol=1e-7)
    np.testing.assert_allclose(out, out[::-1], atol=1e-7)
    np.testing.assert_allclose(out, out[:, ::-1], atol=1e-7)
    # separable: the blurred impulse is the outer product of the 1D kernel
    kernel = np.asarray(gaussian_kernel(1.5))
    np.testing.assert_allclose(out[4:17, 4:17], np.outer(kernel, kernel), atol=1e-7)
    # at a corner a quarter of the mass (and a bit more) falls outside and is lost
    corner = gaussian_blur(jnp.zeros((21, 21), jnp.float32).at[0, 0].set(1.0), 1.5)
    assert 0.25 < float(jnp.sum(corner)) < 0.5
    np.testing.assert_array_equal(gaussian_blur(impulse, 0.0), impulse)


def test_blurred_and_ground_truth_map_have_max_one_and_peak_on_the_lesion():
    mask = disc_mask(32, (12, 20), 4)
    truth = ground_truth_map(mask, 1.0)
    np.testing.assert_array_equal(truth, blurred(mask.astype(jnp.float32), 1.0))
    assert float(jnp.max(truth)) == pytest.approx(1.0) and float(jnp.min(truth)) >= 0.0
    assert (
        float(truth[12, 20]) == pytest.approx(1.0) and float(energy_inside_mask(truth, mask)) > 0.75
    )
    heavy = blurred(truth, 4.0)
    assert float(jnp.max(heavy)) == pytest.approx(1.0)
    assert tuple(np.unravel_index(int(jnp.argmax(heavy)), heavy.shape)) == (12, 20)


def test_shift_moves_an_impulse_exactly_and_fills_with_zeros():
    impulse = jnp.zeros((5, 6), jnp.float32).at[1, 2].set(1.0)
    np.testing.assert_array_equal(shifted(impulse, 2, -1), jnp.zeros((5, 6)).at[3, 1].set(1.0))
    ones = jnp.ones((4, 4), jnp.float32)
    expected = np.ones((4, 4), np.float32)
    expected[0, :] = 0  # moved down 1: the top row is new
    expected[:, 2:] = 0  # moved left 2: the right two columns are new
    np.testing.assert_array_equal(shifted(ones, 1, -2), expected)
    # nothing wraps: shifting an impulse out of the image leaves zeros
    np.testing.assert_array_equal(shifted(impulse, 0, 4), jnp.zeros((5, 6)))
    np.testing.assert_array_equal(shifted(impulse, -7, 0), jnp.zeros((5, 6)))
    # traced shifts under jit
    moved = jax.jit(shifted)(impulse, jnp.int32(-1), jnp.int32(3))
    np.testing.assert_array_equal(moved, jnp.zeros((5, 6)).at[0, 5].set(1.0))


def test_noisy_mix_at_weight_zero_is_the_identity_and_reproducible():
    saliency = jax.random.uniform(jax.random.key(3), (8, 8)).at[0, 0].set(1.0)
    key = jax.random.key(4)
    np.testing.assert_array_equal(noisy_mix(saliency, key, 0.0), saliency)
    mixed = noisy_mix(saliency, key, 0.5)
    np.testing.assert_array_equal(mixed, noisy_mix(saliency, key, 0.5))
    assert float(jnp.max(mixed)) == 1.0 and float(jnp.min(mixed)) >= 0.0
    assert not np.array_equal(mixed, noisy_mix(saliency, jax.random.key(5), 0.5))


def test_inverted_twice_is_the_identity():
    saliency = grid([[0, 0.25, 0.5, 1]])  # dyadic: 1 - x is exact
    np.testing.assert_array_equal(inverted(saliency), grid([[1, 0.75, 0.5, 0]]))
    np.testing.assert_array_equal(inverted(inverted(saliency)), saliency)
    noise = jax.random.uniform(jax.random.key(0), (8, 8))
    np.testing.assert_allclose(inverted(inverted(noise)), noise, atol=1e-7)


def test_centre_blob_uniform_and_random_noise():
    blob = np.asarray(centre_blob((9, 9), 2.0))
    assert blob[4, 4] == 1.0 and blob.argmax() == 4 * 9 + 4
    np.testing.assert_allclose(blob, blob.T, atol=1e-7)
    # one pixel from the centre: exp(-1 / (2 * 2^2))
    assert blob[4, 5] == pytest.approx(math.exp(-1 / 8), rel=1e-6)
    np.testing.assert_array_equal(uniform_map((3, 5)), np.ones((3, 5)))
    key = jax.random.key(7)
    raw, smooth = random_noise(key, (32, 32), 0.0), random_noise(key, (32, 32), 2.0)
    # the default transform is the normal CDF: inside (0, 1), not stretched to [0, 1]
    # (the old min-max scaling made a vignette; tests/test_reference_maps.py checks it)
    for noise in (raw, smooth):
        assert 0.0 < float(jnp.min(noise)) and float(jnp.max(noise)) < 1.0
    np.testing.assert_array_equal(smooth, random_noise(key, (32, 32), 2.0))
    # the rank transform takes each value k / (32 * 32 - 1), k = 0..1023, exactly once
    ranked = np.sort(np.asarray(random_noise(key, (32, 32), 2.0, transform="rank")).ravel())
    np.testing.assert_allclose(ranked, np.arange(1024) / 1023, atol=1e-7)
    with pytest.raises(ValueError, match="transform"):
        random_noise(key, (32, 32), 2.0, transform="minmax")

    def neighbour_correlation(x):
        x = np.asarray(x)
        return np.corrcoef(x[:, :-1].ravel(), x[:, 1:].ravel())[0, 1]

    # blurred noise is blob-like: neighbours are strongly correlated, raw noise's are not
    # (sigma = 2: the field's neighbour correlation is exp(-1 / 16) = 0.94)
    assert abs(neighbour_correlation(raw)) < 0.2 and neighbour_correlation(smooth) > 0.8


# The ladder

jit_ladder = jax.jit(ladder, static_argnames=("shift_fraction",))


def test_ladder_rungs_shapes_ranges_and_quality_levels():
    mask = disc_mask(32, (14, 10), 5)
    rungs = jit_ladder(mask, jax.random.key(0))
    assert set(rungs) == set(LADDER_QUALITY)
    for name, rung in rungs.items():
        assert rung.shape == (32, 32) and rung.dtype == jnp.float32, name
        assert float(jnp.min(rung)) >= 0.0 and float(jnp.max(rung)) == pytest.approx(1.0), name
    # the designed extremes behave as designed on the pointing game
    assert bool(pointing_game(rungs["ground_truth"], mask))
    assert not bool(pointing_game(rungs["inverted"], mask))
    assert not bool(pointing_game(rungs["uniform"], mask))
    # the lesion's centroid column 10 < 15.5: the shift goes right, by round(sqrt(area / pi))
    radius = round(math.sqrt(int(jnp.sum(mask)) / math.pi))
    np.testing.assert_array_equal(rungs["gt_shifted"], shifted(rungs["ground_truth"], 0, radius))
    fixed = jit_ladder(mask, jax.random.key(0), shift_fraction=0.25)  # 8 pixels
    np.testing.assert_array_equal(fixed["gt_shifted"], shifted(rungs["ground_truth"], 0, 8))


def test_ladder_is_reproducible_and_vmaps_over_masks_and_keys():
    masks = jnp.stack([disc_mask(32, (10, 8), 4), disc_mask(32, (20, 24), 3)])
    keys = jax.random.split(jax.random.key(1), 2)
    batch = jax.jit(jax.vmap(ladder))(masks, keys)
    assert set(batch) == set(LADDER_QUALITY)
    for i in range(2):
        one = jit_ladder(masks[i], keys[i])
        for name in LADDER_QUALITY:
            assert batch[name].shape == (2, 32, 32)
            np.testing.assert_allclose(batch[name][i], one[name], atol=1e-6, err_msg=name)
    first, again, other = (jit_ladder(masks[0], key) for key in (keys[0], keys[0], keys[1]))
    for name in LADDER_QUALITY:
        np.testing.assert_array_equal(again[name], first[name])
        # only the noisy rungs depend on the key
        assert np.array_equal(again[name], other[name]) is (name not in ("gt_noisy", "noise"))


def test_energy_inside_mask_agrees_with_the_designed_ladder():
    # a sanity check of the design, not a fixed number: a ground-truth score ranks the
    # ladder mostly as designed
    mask = disc_mask(32, (16, 9), 5)
    rungs = jit_ladder(mask, jax.random.key(2))  # same shape: compiled once
    energy = {name: float(energy_inside_mask(rung, mask)) for name, rung in rungs.items()}
    assert energy["ground_truth"] == max(energy.values())
    assert energy["inverted"] == min(energy.values())
    assert rank_agreement(energy, LADDER_QUALITY, higher_is_better=True) > 0.7


# Kendall's tau-b


def test_kendall_tau_b_by_hand():
    # 6 pairs, only (2, 3) discordant: (5 - 1) / 6
    assert kendall_tau_b([1, 2, 3, 4], [1, 3, 2, 4]) == pytest.approx(2 / 3)
    assert kendall_tau_b([1, 2, 3], [3, 2, 1]) == pytest.approx(-1.0)
    # x = [1, 1, 2, 3], y = [1, 2, 2, 3]: pair (1, 2) tied in x, pair (2, 3) tied in y,
    # the other 4 concordant: 4 / sqrt((6 - 1) (6 - 1)) = 0.8
    assert kendall_tau_b([1, 1, 2, 3], [1, 2, 2, 3]) == pytest.approx(0.8)
    # x = [1, 1, 2], y = [1, 1, 0]: pair (1, 2) tied in both, the other 2 discordant:
    # -2 / sqrt((3 - 1) (3 - 1)) = -1
    assert kendall_tau_b([1, 1, 2], [1, 1, 0]) == pytest.approx(-1.0)
    # x = [1, 2, 2, 3], y = [1, 1, 2, 2], pairs by position:
    # (1,2) y-tie, (1,3) C, (1,4) C, (2,3) x-tie, (2,4) C, (3,4) y-tie
    # -> C = 3, D = 0, n1 = 1, n2 = 2: 3 / sqrt((6 - 1) (6 - 2))
    assert kendall_tau_b([1, 2, 2, 3], [1, 1, 2, 2]) == pytest.approx(3 / math.sqrt(20))


def test_kendall_tau_b_undefined_and_bad_input():
    assert math.isnan(kendall_tau_b([1, 1, 1], [1, 2, 3]))
    with pytest.raises(ValueError, match="equal length"):
        kendall_tau_b([1, 2], [1, 2, 3])
    with pytest.raises(ValueError, match="at least 2"):
        kendall_tau_b([1], [1])
    with pytest.raises(ValueError, match="finite"):
        kendall_tau_b([1, float("nan")], [1, 2])


def test_kendall_tau_b_matches_scipy():
    stats = pytest.importorskip("scipy.stats")
    rng = np.random.default_rng(0)
    for n in (2, 5, 8, 30, 50):
        x = rng.integers(0, 4, n).astype(float)  # many ties in both
        y = rng.integers(0, 5, n).astype(float)
        if len(set(x)) == 1 or len(set(y)) == 1:
            continue
        expected = stats.kendalltau(x, y, variant="b").statistic
        assert kendall_tau_b(x, y) == pytest.approx(expected, rel=1e-12, abs=1e-12)
    x, y = rng.normal(size=40), rng.normal(size=40)
    assert kendall_tau_b(x, y) == pytest.approx(stats.kendalltau(x, y).statistic, rel=1e-12)


def test_rank_agreement_lower_is_better_and_missing_rungs():
    quality = {"a": 2, "b": 1, "c": 0}
    # AD-like values: lower is better and a < b < c, exactly the designed order
    assert rank_agreement({"a": 0.1, "b": 0.5, "c": 0.9}, quality, False) == pytest.approx(1.0)
    assert rank_agreement({"a": 0.1, "b": 0.5, "c": 0.9}, quality, True) == pytest.approx(-1.0)
    # with the ladder's ties: levels [4, 1, 1], metric [0.2, 0.3, 0.1] (lower better)
    # -> x = [-0.2, -0.3, -0.1]: pairs (gt, u) C, (gt, n) D, (u, n) y-tie:
    # (1 - 1) / sqrt(3 * 2) = 0
    values = {"ground_truth": 0.2, "uniform": 0.3, "noise": 0.1}
    assert rank_agreement(values, LADDER_QUALITY, False) == pytest.approx(0.0)
    with pytest.raises(ValueError, match="no designed quality for z"):
        rank_agreement({"a": 0.1, "z": 0.2}, quality, True)
    with pytest.raises(ValueError, match="None for b"):
        rank_agreement({"a": 0.1, "b": None}, quality, True)
