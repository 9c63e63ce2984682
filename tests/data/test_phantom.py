"""Tests of the phantom chest X-ray generator, its TFDS builder and the loaders."""

from __future__ import annotations

import os
import socket

import numpy as np
import pytest
from scipy import ndimage

from jaxcam.data import (
    DATASET_NAME,
    NORMAL,
    PNEUMONIA,
    SPLITS,
    PhantomArrays,
    batches,
    build_phantom,
    generate_phantom,
    load_phantom,
    phantom_config,
    phantom_lung_masks,
    phantom_split,
    split_seed,
)
from jaxcam.data import phantom as phantom_lib

SIZE = 64  # small images keep the tests fast; the geometry is size independent


def assert_arrays_equal(a: PhantomArrays, b: PhantomArrays) -> None:
    np.testing.assert_array_equal(a.images, b.images)
    np.testing.assert_array_equal(a.masks, b.masks)
    np.testing.assert_array_equal(a.labels, b.labels)


@pytest.fixture(scope="module")
def pneumonia_set():
    """60 PNEUMONIA images at the default size and their lung masks."""
    arrays = generate_phantom(60, 11, 128, pneumonia_fraction=1.0)
    lungs = phantom_lung_masks(60, 11, 128, pneumonia_fraction=1.0)
    return arrays, lungs


# --- generator ---------------------------------------------------------------


@pytest.mark.parametrize("size", [32, SIZE, 128])
def test_shapes_dtypes_and_range(size):
    arrays = generate_phantom(5, 0, size)
    assert isinstance(arrays, PhantomArrays)
    assert arrays.images.shape == (5, size, size, 1) and arrays.images.dtype == np.float32
    assert arrays.masks.shape == (5, size, size) and arrays.masks.dtype == np.bool_
    assert arrays.labels.shape == (5,) and arrays.labels.dtype == np.int32
    assert arrays.images.min() >= 0.0 and arrays.images.max() <= 1.0
    assert set(np.unique(arrays.labels)) <= {NORMAL, PNEUMONIA}
    assert np.isfinite(arrays.images).all()


def test_deterministic_and_seed_dependent():
    a = generate_phantom(4, 5, SIZE)
    assert_arrays_equal(a, generate_phantom(4, 5, SIZE))
    b = generate_phantom(4, 6, SIZE)
    for i in range(4):
        assert not np.array_equal(a.images[i], b.images[i])


def test_prefix_property():
    big = generate_phantom(9, 3, SIZE)
    small = generate_phantom(4, 3, SIZE)
    assert_arrays_equal(PhantomArrays(*(x[:4] for x in big)), small)


def test_pneumonia_fraction_extremes_and_balance():
    assert (generate_phantom(6, 1, 32, pneumonia_fraction=0.0).labels == NORMAL).all()
    assert (generate_phantom(6, 1, 32, pneumonia_fraction=1.0).labels == PNEUMONIA).all()
    labels = generate_phantom(80, 2, 32).labels
    assert 0.3 < labels.mean() < 0.7


def test_anatomy_plausible():
    arrays = generate_phantom(6, 4, 128, pneumonia_fraction=0.0)
    lungs = phantom_lung_masks(6, 4, 128, pneumonia_fraction=0.0)
    half = 64
    for img, lung in zip(arrays.images[..., 0], lungs, strict=True):
        # One lung on each side of the midline, each a sizeable region.
        assert 800 < lung[:, :half].sum() < 3500 and 800 < lung[:, half:].sum() < 3500
        lung_mean = img[lung].mean()
        assert lung_mean < 0.35  # lungs dark
        assert img[100:, 56:72].mean() > lung_mean + 0.2  # heart / abdomen bright
        assert img[:6, :6].mean() < 0.15  # air above the shoulders is dark


def test_masks_empty_for_normal_nonempty_inside_lungs_for_pneumonia():
    arrays = generate_phantom(24, 8, SIZE)
    lungs = phantom_lung_masks(24, 8, SIZE)
    assert 0 < arrays.labels.sum() < 24
    for mask, label, lung in zip(arrays.masks, arrays.labels, lungs, strict=True):
        if label == NORMAL:
            assert not mask.any()
        else:
            assert mask.any()
            assert not (mask & ~lung).any()


def test_lesions_brighter_than_surrounding_lung(pneumonia_set):
    arrays, lungs = pneumonia_set
    for img, mask, lung in zip(arrays.images[..., 0], arrays.masks, lungs, strict=True):
        ring = ndimage.binary_dilation(mask, iterations=4) & lung & ~mask
        assert img[mask].mean() > img[ring].mean() + 0.05


def test_lesion_size_spread(pneumonia_set):
    arrays, lungs = pneumonia_set
    half = arrays.images.shape[1] // 2
    fractions = []
    for mask, lung in zip(arrays.masks, lungs, strict=True):
        components, n = ndimage.label(mask)
        for k in range(1, n + 1):
            comp = components == k
            side = lung[:, :half] if comp[:, :half].any() else lung[:, half:]
            fractions.append(comp.sum() / side.sum())
    fractions = np.asarray(fractions)
    assert (fractions < 0.05).sum() >= 10  # several small opacities
    assert (fractions > 0.10).sum() >= 5  # and some large ones
    assert fractions.max() < 0.35


# --- splits -------------------------------------------------------------------


def test_split_seeds_and_sizes(monkeypatch):
    assert set(SPLITS) == {"train", "val", "test"}
    assert SPLITS == {"train": 1200, "val": 200, "test": 300}
    seeds = {split_seed(s, seed) for s in SPLITS for seed in (0, 1, 2)}
    assert len(seeds) == 9
    assert_arrays_equal(
        phantom_split("val", seed=2, image_size=32, num_images=3),
        generate_phantom(3, split_seed("val", 2), 32),
    )
    monkeypatch.setitem(phantom_lib.SPLITS, "val", 3)
    assert len(phantom_split("val", image_size=32).labels) == 3


def test_splits_share_no_image():
    train = phantom_split("train", image_size=32, num_images=12).images
    test = phantom_split("test", image_size=32, num_images=12).images
    val = phantom_split("val", image_size=32, num_images=12).images
    for a, b in [(train, test), (train, val), (val, test)]:
        same = (a[:, None] == b[None, :]).all(axis=(2, 3, 4))
        assert not same.any()


def test_unknown_split_names_known_ones():
    with pytest.raises(ValueError, match="train"):
        phantom_split("validation")
    with pytest.raises(ValueError, match="known splits"):
        split_seed("dev")


@pytest.mark.parametrize(
    "kwargs",
    [
        {"num_images": 0},
        {"num_images": -3},
        {"image_size": 31},
        {"pneumonia_fraction": -0.1},
        {"pneumonia_fraction": 1.5},
        {"seed": -1},
    ],
)
def test_bad_inputs_raise(kwargs):
    args = {"num_images": 2, "seed": 0, "image_size": 32, "pneumonia_fraction": 0.5} | kwargs
    with pytest.raises(ValueError):
        generate_phantom(**args)


def test_bad_config_and_batch_args_raise():
    arrays = generate_phantom(3, 0, 32)
    with pytest.raises(ValueError):
        phantom_config(image_size=16)
    with pytest.raises(ValueError):
        phantom_config(split_sizes={"train": 2, "val": 1})
    with pytest.raises(ValueError):
        phantom_config(split_sizes={"train": 2, "val": 0, "test": 1})
    with pytest.raises(ValueError):
        batches(arrays, 0, seed=0)
    with pytest.raises(ValueError):
        batches(arrays, 2, seed=0, num_epochs=0)
    with pytest.raises(ValueError):
        batches(arrays, 2, seed=-1)


# --- TFDS ----------------------------------------------------------------------


def test_tfds_round_trip(tmp_path, monkeypatch):
    def no_network(self, address):
        raise OSError(f"the test blocks network access ({address})")

    monkeypatch.setattr(socket.socket, "connect", no_network)
    sizes = {"train": 4, "val": 2, "test": 3}
    builder = build_phantom(tmp_path, seed=1, image_size=SIZE, split_sizes=sizes)
    assert builder.name == DATASET_NAME
    assert str(builder.version) == "1.1.0"
    assert builder.builder_config.name == "seed1_size64_n4-2-3"
    assert builder.info.file_format.value == "array_record"
    assert builder.info.features["label"].names == ["NORMAL", "PNEUMONIA"]
    assert builder.info.features["image"].shape == (SIZE, SIZE, 1)
    files = sorted(p.name for p in builder.data_path.iterdir())
    assert any("test.array_record" in f for f in files)

    for split, n in sizes.items():
        loaded = load_phantom(split, tmp_path, seed=1, image_size=SIZE, split_sizes=sizes)
        expected = phantom_split(split, seed=1, image_size=SIZE, num_images=n)
        assert loaded.images.shape == (n, SIZE, SIZE, 1) and loaded.images.dtype == np.float32
        assert loaded.masks.dtype == np.bool_ and loaded.labels.dtype == np.int32
        np.testing.assert_allclose(loaded.images, expected.images, rtol=0, atol=0.5 / 255 + 1e-6)
        np.testing.assert_array_equal(loaded.masks, expected.masks)
        np.testing.assert_array_equal(loaded.labels, expected.labels)

    # A second load reuses the prepared files.
    record = next(p for p in builder.data_path.iterdir() if "train.array_record" in p.name)
    stamp = os.stat(os.fspath(record)).st_mtime_ns
    load_phantom("train", tmp_path, seed=1, image_size=SIZE, split_sizes=sizes)
    assert os.stat(os.fspath(record)).st_mtime_ns == stamp
    with pytest.raises(ValueError, match="known splits"):
        load_phantom("dev", tmp_path)


# --- batches ---------------------------------------------------------------------


def test_batches_shapes_and_drop_remainder():
    arrays = generate_phantom(10, 0, 32)
    out = list(batches(arrays, 4, seed=0))
    assert len(out) == 2
    for b in out:
        assert set(b) == {"image", "mask", "label"}
        assert b["image"].shape == (4, 32, 32, 1) and b["image"].dtype == np.float32
        assert b["mask"].shape == (4, 32, 32) and b["mask"].dtype == np.bool_
        assert b["label"].shape == (4,) and b["label"].dtype == np.int32


def _indices(arrays, batch):
    """Row of ``arrays`` each example of ``batch`` came from (images are distinct)."""
    flat = arrays.images.reshape(len(arrays.images), -1)
    return [int(np.flatnonzero((flat == x.ravel()).all(1))[0]) for x in batch["image"]]


def test_batches_cover_each_example_once_per_epoch():
    arrays = generate_phantom(10, 0, 32)
    out = list(batches(arrays, 4, seed=3, drop_remainder=False, num_epochs=2))
    assert [len(b["label"]) for b in out] == [4, 4, 2, 4, 4, 2]
    first = sum((_indices(arrays, b) for b in out[:3]), [])
    second = sum((_indices(arrays, b) for b in out[3:]), [])
    assert sorted(first) == list(range(10)) and sorted(second) == list(range(10))
    assert first != list(range(10)) and first != second  # shuffled, differently per epoch
    for b in out:
        idx = _indices(arrays, b)
        np.testing.assert_array_equal(b["label"], arrays.labels[idx])
        np.testing.assert_array_equal(b["mask"], arrays.masks[idx])
    again = list(batches(arrays, 4, seed=3, drop_remainder=False, num_epochs=2))
    assert all(np.array_equal(a["image"], b["image"]) for a, b in zip(out, again, strict=True))
    ordered = list(batches(arrays, 4, seed=0, shuffle=False, drop_remainder=False))
    assert sum((_indices(arrays, b) for b in ordered), []) == list(range(10))
