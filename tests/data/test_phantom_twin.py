"""The lesion-free twin of each phantom image, its lesion support and per-lesion masks."""

from __future__ import annotations

import socket

import numpy as np
import pytest

from jaxcam.data import (
    NORMAL,
    PNEUMONIA,
    build_phantom,
    generate_phantom,
    load_data_split,
    load_phantom,
    phantom_lesion_counts,
    phantom_split,
)
from jaxcam.data import phantom as phantom_lib
from jaxcam.data.phantom.opacities import _Canvas, _paint_opacity, _Shape

SIZE = 32
N = 16
#: (variant, confounder) pairs: v1, and v2 with the marker on most PNEUMONIA images.
VARIANTS = [("v1", 0.0), ("v2", 0.9)]


def uint8(pixels: np.ndarray) -> np.ndarray:
    """The stored form of an image: round(255 * pixel) as uint8."""
    return np.round(pixels * 255.0).astype(np.uint8)


@pytest.fixture(scope="module", params=VARIANTS, ids=[v for v, _ in VARIANTS])
def mixed_set(request):
    """N images of both classes (SIZE x SIZE), their variant and lesion counts."""
    variant, confounder = request.param
    arrays = generate_phantom(N, 4, SIZE, variant=variant, confounder=confounder)
    counts = phantom_lesion_counts(N, 4, SIZE, variant=variant)
    assert 0 < (arrays.labels == PNEUMONIA).sum() < N  # both classes present
    return variant, arrays, counts


def test_twin_shapes_and_dtypes(mixed_set):
    _, arrays, _ = mixed_set
    assert arrays.twins.shape == arrays.images.shape == (N, SIZE, SIZE, 1)
    assert arrays.twins.dtype == np.float32
    assert arrays.supports.shape == arrays.masks.shape and arrays.supports.dtype == np.bool_
    assert arrays.lesion_ids.shape == arrays.masks.shape and arrays.lesion_ids.dtype == np.uint8
    assert arrays.twins.min() >= 0.0 and arrays.twins.max() <= 1.0


def test_twin_equals_image_outside_the_support(mixed_set):
    _, arrays, _ = mixed_set
    outside = ~arrays.supports
    np.testing.assert_array_equal(arrays.images[..., 0][outside], arrays.twins[..., 0][outside])


def test_image_at_least_twin_and_brighter_on_the_lesions(mixed_set):
    # Every step after the opacities is monotone (gain > 0, offset, noise, clipping), so
    # the image is >= its twin; on the half-max mask the opacity adds >= 0.007, so the
    # image is strictly brighter there unless clipping flattens both.
    _, arrays, _ = mixed_set
    image, twin = arrays.images[..., 0], arrays.twins[..., 0]
    assert (image >= twin).all()
    unclipped = arrays.masks & (image > 0.0) & (image < 1.0)
    assert unclipped.sum() > 0.9 * arrays.masks.sum() > 0
    assert (image[unclipped] > twin[unclipped]).all()
    for i in np.flatnonzero(arrays.labels == PNEUMONIA):
        assert (image[i] != twin[i]).any()


def test_normal_images_are_their_own_twin(mixed_set):
    _, arrays, _ = mixed_set
    normal = arrays.labels == NORMAL
    np.testing.assert_array_equal(arrays.images[normal], arrays.twins[normal])
    assert not arrays.supports[normal].any() and not arrays.lesion_ids[normal].any()


def test_support_contains_mask_and_lesion_ids_split_it(mixed_set):
    _, arrays, counts = mixed_set
    assert (arrays.supports | ~arrays.masks).all()  # mask implies support
    assert arrays.supports.sum() > arrays.masks.sum()  # the profile tails
    np.testing.assert_array_equal(arrays.lesion_ids > 0, arrays.masks)
    assert (arrays.lesion_ids.max(axis=(1, 2)) <= counts).all()


def test_twins_of_the_all_normal_and_all_pneumonia_sets():
    normal = generate_phantom(3, 2, SIZE, pneumonia_fraction=0.0, variant="v2", confounder=0.5)
    np.testing.assert_array_equal(normal.images, normal.twins)
    sick = generate_phantom(3, 2, SIZE, pneumonia_fraction=1.0)
    assert all((sick.images[i] != sick.twins[i]).any() for i in range(3))


def _round_shape() -> _Shape:
    """A circular outline: eccentricity 1, no edge harmonics."""
    return _Shape(1.0, 0.0, np.zeros(3), np.zeros(3), 3.0)


def _canvas(size: int) -> _Canvas:
    z = np.zeros((size, size), np.float32)
    return _Canvas(z.copy(), np.zeros((size, size), bool), np.zeros((size, size), np.uint8), z)


def _paint(canvas: _Canvas, lesion: int, centre: tuple[int, int], contrast: float) -> None:
    texture = np.zeros(canvas.added.shape, np.float32)  # value = contrast * profile
    _paint_opacity(canvas, lesion, texture, centre, np.zeros(2), 3.0, _round_shape(), contrast, 0.2)


@pytest.mark.parametrize("contrasts", [(0.2, 0.3), (0.3, 0.2), (0.25, 0.25)])
def test_overlapping_half_max_regions_go_to_the_brighter_lesion(contrasts):
    # Two circles of radius 3 centred at columns 6 and 10 of row 8 overlap; pixel (8, 8)
    # lies at distance 2 from both (q = 2/3 <= 1): it belongs to the brighter lesion, to
    # lesion 1 on a tie.  Every pixel against each lesion painted alone.
    size = 17
    both = _canvas(size)
    alone = [_canvas(size), _canvas(size)]
    centres = [(8, 6), (8, 10)]
    for lesion, (centre, contrast) in enumerate(zip(centres, contrasts, strict=True), start=1):
        _paint(both, lesion, centre, contrast)
        _paint(alone[lesion - 1], lesion, centre, contrast)
    first, second = alone
    expected_owner = 1 if contrasts[0] >= contrasts[1] else 2
    assert both.lesion_ids[8, 8] == expected_owner
    assert both.lesion_ids[8, 5] == 1 and both.lesion_ids[8, 11] == 2
    assert both.lesion_ids[0, 0] == 0
    in_first, in_second = first.mask, second.mask
    expected = np.zeros((size, size), np.uint8)
    expected[in_first] = 1
    expected[in_second & ~in_first] = 2
    overlap = in_first & in_second
    assert overlap.sum() > 1
    expected[overlap & (second.added > first.added)] = 2
    np.testing.assert_array_equal(both.lesion_ids, expected)
    np.testing.assert_array_equal(both.mask, in_first | in_second)
    np.testing.assert_array_equal(both.added, np.maximum(first.added, second.added))


def _no_network(monkeypatch) -> None:
    def refuse(self, address):
        raise OSError(f"the test blocks network access ({address})")

    monkeypatch.setattr(socket.socket, "connect", refuse)


@pytest.mark.parametrize(("variant", "confounder"), VARIANTS, ids=[v for v, _ in VARIANTS])
def test_stored_twin_support_and_lesion_ids_round_trip(tmp_path, monkeypatch, variant, confounder):
    _no_network(monkeypatch)
    sizes = {"train": 4, "val": 1, "test": 3}
    kwargs = {"split_sizes": sizes, "variant": variant, "confounder": confounder}
    builder = build_phantom(tmp_path, seed=3, image_size=SIZE, **kwargs)
    assert str(builder.version) == "1.1.0"
    assert {"twin", "support", "lesion_ids"} <= set(builder.info.features)
    sick = 0
    for split, n in sizes.items():
        loaded = load_phantom(split, tmp_path, seed=3, image_size=SIZE, **kwargs)
        rendered = phantom_split(split, 3, SIZE, n, variant=variant, confounder=confounder)
        assert loaded.twins.shape == (n, SIZE, SIZE, 1) and loaded.twins.dtype == np.float32
        np.testing.assert_array_equal(uint8(loaded.twins), uint8(rendered.twins))
        np.testing.assert_array_equal(uint8(loaded.images), uint8(rendered.images))
        np.testing.assert_array_equal(loaded.supports, rendered.supports)
        np.testing.assert_array_equal(loaded.lesion_ids, rendered.lesion_ids)
        assert loaded.supports.dtype == np.bool_ and loaded.lesion_ids.dtype == np.uint8
        # Rounding is monotone: the stored pair keeps both relations.
        outside = ~loaded.supports
        np.testing.assert_array_equal(loaded.images[..., 0][outside], loaded.twins[..., 0][outside])
        assert (loaded.images >= loaded.twins).all()
        sick += int((loaded.images != loaded.twins).any(axis=(1, 2, 3)).sum())
    assert sick > 0


def test_phantom_data_source_items_carry_the_twin(tmp_path, monkeypatch):
    _no_network(monkeypatch)
    for split, n in {"train": 2, "val": 3, "test": 1}.items():
        monkeypatch.setitem(phantom_lib.SPLITS, split, n)
    split = load_data_split("phantom", "val", data_dir=tmp_path, image_size=SIZE, channels=3)
    rendered = phantom_split("val", 0, SIZE, 3)
    assert len(split) == 3
    for i in range(3):
        item = split[i]
        assert item["twin"].shape == (SIZE, SIZE, 3) and item["twin"].dtype == np.float32
        expected = np.repeat(uint8(rendered.twins[i]), 3, axis=-1)
        np.testing.assert_array_equal(uint8(item["twin"]), expected)
