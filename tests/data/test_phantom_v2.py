"""Tests of phantom variant v2 (harder opacities), the confounder marker, and v1 pinning."""

from __future__ import annotations

import hashlib
import socket

import numpy as np
import pytest
from scipy import ndimage

from jaxcam.data import (
    MARKER_SIZE_RANGE,
    NORMAL,
    PNEUMONIA,
    V2_LESION_COUNT_PROBS,
    PhantomArrays,
    batches,
    build_phantom,
    generate_phantom,
    lesion_area_fractions,
    load_phantom,
    phantom_config,
    phantom_lesion_counts,
    phantom_lung_masks,
    phantom_split,
    split_seed,
)

SIZE = 64
N_STATS = 200  # PNEUMONIA images for the distribution tests


def _sha256(array: np.ndarray) -> str:
    return hashlib.sha256(np.ascontiguousarray(array).tobytes()).hexdigest()


# --- v1 is frozen ---------------------------------------------------------------
# Values computed before variant v2 existed.  Masks and labels are pinned exactly;
# images to 1e-6, since float32 exp/tanh may differ by an ulp between CPUs.


def test_v1_generate_pinned():
    a = generate_phantom(8, 7, SIZE)
    assert a.labels.tolist() == [0, 0, 1, 0, 1, 1, 1, 1]
    assert _sha256(a.masks) == "11d5337662b423c2db3c0253dc6385770b454b8d229ba5281ac0ae9f04b47daf"
    assert a.masks.sum(axis=(1, 2)).tolist() == [0, 0, 10, 0, 104, 67, 35, 29]
    img = a.images[..., 0].astype(np.float64)
    rows = np.arange(SIZE, dtype=np.float64)
    sums = [1709.824188299477, 1519.5937667060643, 1365.7484397664666, 1681.4711847063154]
    sums += [1566.753204042092, 1766.1389972865582, 1534.6288554780185, 1499.515929888934]
    np.testing.assert_allclose(img.sum(axis=(1, 2)), sums, rtol=1e-6)
    row_sums = [58674.776086747646, 52788.36612223461, 47483.19910744205, 59461.68777107634]
    row_sums += [54729.67905254755, 61134.895680971444, 53529.96586153284, 52056.78569614701]
    np.testing.assert_allclose((img * rows[:, None]).sum(axis=(1, 2)), row_sums, rtol=1e-6)
    col_sums = [54291.52271614596, 48244.915209878236, 43215.918406546116, 52793.00407177955]
    col_sums += [49668.57053928729, 56085.82078682259, 48548.56766927615, 47669.21275201999]
    np.testing.assert_allclose((img * rows[None, :]).sum(axis=(1, 2)), col_sums, rtol=1e-6)
    pixels = [a.images[i, 10 + 5 * i, 20 + 3 * i, 0] for i in range(8)]
    expected = [0.21714022755622864, 0.21718092262744904, 0.2623210847377777, 0.4457763433456421]
    expected += [0.5968288779258728, 0.6626303195953369, 0.5817484855651855, 0.5967090725898743]
    np.testing.assert_allclose(pixels, expected, rtol=0, atol=1e-6)
    assert a.markers.shape == a.masks.shape and not a.markers.any()


def test_v1_split_pinned():
    a = phantom_split("test", 0, 32, 6)
    assert a.labels.tolist() == [1, 1, 1, 1, 0, 1]
    assert _sha256(a.masks) == "4d5210470e28d0463530589d878b9d62257c26b52bda6d848f777c3cc1247279"
    sums = [361.19681, 368.714904, 380.531657, 366.609628, 362.48226, 349.1541]
    np.testing.assert_allclose(a.images[..., 0].sum(axis=(1, 2), dtype=np.float64), sums, rtol=1e-6)
    col8 = [0.21903127431869507, 0.17551389336585999, 0.2879360020160675]
    col8 += [0.20519550144672394, 0.19573602080345154, 0.4506228566169739]
    np.testing.assert_allclose(a.images[:, 16, 8, 0], col8, rtol=0, atol=1e-6)
    assert_same(phantom_split("test", 0, 32, 6, variant="v1", confounder=0.0), a)


def assert_same(a: PhantomArrays, b: PhantomArrays) -> None:
    for x, y in zip(a, b, strict=True):
        np.testing.assert_array_equal(x, y)


# --- v2 opacities ---------------------------------------------------------------


@pytest.fixture(scope="module")
def v2_set():
    """N_STATS v2 PNEUMONIA images (SIZE x SIZE), their lungs and lesion counts."""
    args = (N_STATS, 5, SIZE, 1.0)
    arrays = generate_phantom(*args, variant="v2")
    lungs = phantom_lung_masks(*args, variant="v2")
    counts = phantom_lesion_counts(*args, variant="v2")
    return arrays, lungs, counts


def test_v2_shapes_and_differs_from_v1(v2_set):
    arrays, _, _ = v2_set
    assert arrays.images.shape == (N_STATS, SIZE, SIZE, 1) and arrays.images.dtype == np.float32
    assert arrays.masks.dtype == arrays.markers.dtype == np.bool_
    assert arrays.labels.dtype == np.int32 and (arrays.labels == PNEUMONIA).all()
    assert 0.0 <= arrays.images.min() and arrays.images.max() <= 1.0
    assert not arrays.markers.any()
    v1 = generate_phantom(4, 5, SIZE, 1.0)
    assert not np.array_equal(v1.images, arrays.images[:4])


def test_v2_lesion_counts(v2_set):
    _, _, counts = v2_set
    assert counts.dtype == np.int32 and counts.min() >= 1 and counts.max() <= 5
    freq = np.bincount(counts, minlength=6)[1:] / N_STATS
    probs = np.asarray(V2_LESION_COUNT_PROBS)
    # Each frequency within 4 binomial standard deviations of its probability.
    np.testing.assert_array_less(np.abs(freq - probs), 4 * np.sqrt(probs * (1 - probs) / N_STATS))
    normal = phantom_lesion_counts(6, 5, 32, 0.0, variant="v2")
    assert (normal == 0).all()
    assert set(phantom_lesion_counts(40, 5, 32, 1.0).tolist()) <= {1, 2, 3}  # v1: 1-3


def test_v2_masks_inside_lungs_and_area_range(v2_set):
    arrays, lungs, _ = v2_set
    area = arrays.masks.sum(axis=(1, 2))
    assert (area > 0).all()
    assert not (arrays.masks & ~lungs).any()
    of_image = lesion_area_fractions(arrays)
    assert of_image.shape == (N_STATS,) and of_image.dtype == np.float64
    np.testing.assert_allclose(of_image, area / SIZE**2)
    of_lungs = area / lungs.sum(axis=(1, 2))
    # Targets are 0.05-15 % of the lung field per opacity (radius >= 1 px: >= ~0.3 % at 64 px,
    # less when clipped); up to five add up.  Tolerance: the range of 200 images must reach
    # below 0.5 % and above 10 %, with a median of 1-8 % and nothing over half the lungs.
    assert of_lungs.min() < 0.005 and of_lungs.max() > 0.10
    assert 0.01 < np.median(of_lungs) < 0.08 and of_lungs.max() < 0.5
    assert (of_lungs < 0.01).sum() >= 20 and (of_lungs > 0.08).sum() >= 20


def test_v2_lesions_everywhere_in_the_lungs(v2_set):
    arrays, lungs, _ = v2_set
    half = SIZE // 2
    in_left = arrays.masks[:, :, :half].any(axis=(1, 2))
    in_right = arrays.masks[:, :, half:].any(axis=(1, 2))
    lower = np.zeros(N_STATS, bool)
    border = np.zeros(N_STATS, bool)
    for i, (mask, lung) in enumerate(zip(arrays.masks, lungs, strict=True)):
        rows = np.flatnonzero(lung.any(axis=1))
        lower[i] = mask[(rows[0] + rows[-1] + 1) // 2 :].any()
        border[i] = (mask & ~ndimage.binary_erosion(lung)).any()  # touches the lung edge
    # Expected about 73 %, 73 %, 80 % and > 50 % of the images; tolerance 25 % of the set.
    assert in_left.sum() >= 50 and in_right.sum() >= 50
    assert lower.sum() >= 50 and border.sum() >= 50


def test_v2_faint_and_bright_lesions(v2_set):
    arrays, lungs, _ = v2_set
    excess = []
    for img, mask, lung in zip(arrays.images[..., 0], arrays.masks, lungs, strict=True):
        components, n = ndimage.label(mask)
        for k in range(1, n + 1):
            comp = components == k
            ring = ndimage.binary_dilation(comp, iterations=3) & lung & ~mask
            if comp.sum() >= 20 and ring.sum() >= 5:
                excess.append(img[comp].mean() - img[ring].mean())
    excess = np.asarray(excess)
    # Peaks are log-uniform in [0.04, 0.35]: about 15 % of the larger opacities stand out by
    # less than 0.03 (v1: none, its weakest by about 0.05) and about 30 % by more than 0.1.
    assert len(excess) >= 60
    assert (excess < 0.03).mean() > 0.05 and (excess > 0.1).mean() > 0.15


# --- confounder marker ----------------------------------------------------------


def test_marker_rule_train_follows_label():
    a = phantom_split("train", 0, 32, 60, variant="v2", confounder=1.0)
    has = a.markers.any(axis=(1, 2))
    assert 0 < a.labels.sum() < 60
    np.testing.assert_array_equal(has, a.labels == PNEUMONIA)
    v = phantom_split("val", 0, 32, 30, variant="v2", confounder=0.0001)
    np.testing.assert_array_equal(v.markers.any(axis=(1, 2)), v.labels == NORMAL)


def test_marker_rule_partial_correlation():
    n, p = 300, 0.8
    a = generate_phantom(n, 3, 32, variant="v2", confounder=p, marker_correlated=True)
    has = a.markers.any(axis=(1, 2))
    pneu = a.labels == PNEUMONIA
    for group, expected in ((pneu, p), (~pneu, 1 - p)):
        std = np.sqrt(expected * (1 - expected) / group.sum())
        assert abs(has[group].mean() - expected) < 4 * std


def test_marker_rule_test_split_independent_of_label():
    n = 300
    a = phantom_split("test", 0, 32, n, variant="v2", confounder=1.0)
    has = a.markers.any(axis=(1, 2))
    pneu = a.labels == PNEUMONIA
    # P(marker) = 0.5 in every group; tolerance 4 binomial standard deviations.
    for group in (np.ones(n, bool), pneu, ~pneu):
        assert abs(has[group].mean() - 0.5) < 4 * np.sqrt(0.25 / group.sum())


def test_marker_off_and_only_changes_marker_pixels():
    base = generate_phantom(12, 2, SIZE, 0.5, variant="v2")
    off = generate_phantom(12, 2, SIZE, 0.5, variant="v2", confounder=0.0)
    assert_same(base, off)
    assert not base.markers.any()
    marked = generate_phantom(12, 2, SIZE, 0.5, variant="v2", confounder=0.7)
    assert marked.markers.any()
    np.testing.assert_array_equal(marked.masks, base.masks)
    np.testing.assert_array_equal(marked.labels, base.labels)
    outside = ~marked.markers[..., None]
    np.testing.assert_array_equal(marked.images[outside], base.images[outside])
    # Prefix property holds with a marker too.
    prefix = PhantomArrays(*(x[:5] for x in marked))
    assert_same(generate_phantom(5, 2, SIZE, 0.5, variant="v2", confounder=0.7), prefix)


def test_markers_outside_lungs_bright_and_sized():
    n, size = 10, 128
    a = generate_phantom(n, 4, size, 1.0, variant="v2", confounder=1.0)
    lungs = phantom_lung_masks(n, 4, size, 1.0, variant="v2")
    assert a.markers.any(axis=(1, 2)).all()
    grown = ndimage.binary_dilation(lungs, iterations=2, structure=np.ones((1, 3, 3), bool))
    assert not (a.markers & grown).any()
    assert not (a.markers & a.masks).any()
    band = round(0.22 * size)
    lo, hi = (round(f * size) for f in MARKER_SIZE_RANGE)
    for img, marker in zip(a.images[..., 0], a.markers, strict=True):
        rows, cols = np.flatnonzero(marker.any(axis=1)), np.flatnonzero(marker.any(axis=0))
        assert lo <= rows[-1] - rows[0] + 1 <= hi
        assert rows[-1] < band or cols[-1] < band or cols[0] >= size - band
        assert img[marker].mean() > 0.6


def test_split_marker_rule_matches_generate():
    for split, correlated in (("train", True), ("val", True), ("test", False)):
        assert_same(
            phantom_split(split, 1, 32, 5, variant="v2", confounder=0.9),
            generate_phantom(
                5,
                split_seed(split, 1),
                32,
                variant="v2",
                confounder=0.9,
                marker_correlated=correlated,
            ),
        )


@pytest.mark.parametrize(
    "kwargs",
    [
        {"variant": "v3"},
        {"variant": "v1", "confounder": 0.5},
        {"variant": "v2", "confounder": -0.1},
        {"variant": "v2", "confounder": 1.5},
    ],
)
def test_bad_variant_args_raise(kwargs):
    with pytest.raises(ValueError):
        generate_phantom(2, 0, 32, **kwargs)
    with pytest.raises(ValueError):
        phantom_config(**kwargs)


# --- TFDS -------------------------------------------------------------------------


def test_config_names():
    assert phantom_config().name == "seed0_size128"
    assert phantom_config(1, 64, {"train": 4, "val": 2, "test": 3}).name == "seed1_size64_n4-2-3"
    assert phantom_config(variant="v1", confounder=0.0).name == "seed0_size128"
    assert phantom_config(variant="v2").name == "seed0_size128_v2"
    assert phantom_config(variant="v2", confounder=0.0).name == "seed0_size128_v2"
    assert phantom_config(variant="v2", confounder=0.9).name == "seed0_size128_v2_conf0.90"
    assert phantom_config(variant="v2", confounder=1).name == "seed0_size128_v2_conf1.00"
    assert phantom_config(variant="v2", confounder=0.905).name == "seed0_size128_v2_conf0.905"
    sizes = {"train": 6, "val": 2, "test": 4}
    name = phantom_config(2, 32, sizes, variant="v2", confounder=0.5).name
    assert name == "seed2_size32_v2_conf0.50_n6-2-4"


def test_tfds_v2_round_trip_with_markers(tmp_path, monkeypatch):
    def no_network(self, address):
        raise OSError(f"the test blocks network access ({address})")

    monkeypatch.setattr(socket.socket, "connect", no_network)
    sizes = {"train": 6, "val": 2, "test": 4}
    kwargs = {"split_sizes": sizes, "variant": "v2", "confounder": 0.9}
    builder = build_phantom(tmp_path, seed=1, image_size=32, **kwargs)
    assert builder.builder_config.name == "seed1_size32_v2_conf0.90_n6-2-4"
    twin_features = {"twin", "support", "lesion_ids"}
    assert set(builder.info.features) == {"image", "mask", "label", "marker"} | twin_features
    any_marker = False
    for split, n in sizes.items():
        loaded = load_phantom(split, tmp_path, seed=1, image_size=32, **kwargs)
        expected = phantom_split(split, 1, 32, n, variant="v2", confounder=0.9)
        np.testing.assert_allclose(loaded.images, expected.images, rtol=0, atol=0.5 / 255 + 1e-6)
        np.testing.assert_array_equal(loaded.masks, expected.masks)
        np.testing.assert_array_equal(loaded.labels, expected.labels)
        assert loaded.markers.dtype == np.bool_
        np.testing.assert_array_equal(loaded.markers, expected.markers)
        any_marker |= bool(loaded.markers.any())
    assert any_marker

    v1_sizes = {"train": 2, "val": 1, "test": 1}
    v1 = build_phantom(tmp_path, seed=1, image_size=32, split_sizes=v1_sizes)
    assert set(v1.info.features) == {"image", "mask", "label"} | twin_features
    loaded = load_phantom("train", tmp_path, seed=1, image_size=32, split_sizes=v1_sizes)
    assert loaded.markers.shape == loaded.masks.shape and not loaded.markers.any()


def test_batches_with_markers():
    arrays = generate_phantom(6, 0, 32, variant="v2", confounder=0.9)
    out = list(batches(arrays, 3, seed=0, shuffle=False, with_markers=True))
    assert [set(b) for b in out] == [{"image", "mask", "label", "marker"}] * 2
    np.testing.assert_array_equal(np.concatenate([b["marker"] for b in out]), arrays.markers)
    assert set(next(batches(arrays, 3, seed=0))) == {"image", "mask", "label"}
    with pytest.raises(ValueError):
        three = PhantomArrays(arrays.images, arrays.masks, arrays.labels)
        batches(three, 3, seed=0, with_markers=True)
