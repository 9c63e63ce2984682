"""Data set names, in-memory splits, subsets and the random-class sample."""

import numpy as np
import pytest

from jaxcam.data import (
    ArraySplit,
    DataSpec,
    Subset,
    load_data_split,
    one_image_per_random_class,
    parse_data_spec,
)


def test_parse_data_spec(tmp_path):
    assert parse_data_spec("phantom") == DataSpec("phantom")
    assert parse_data_spec(f"chest_xray:{tmp_path}") == DataSpec("chest_xray", str(tmp_path))
    assert parse_data_spec("tfds:imagenet2012") == DataSpec("tfds", "imagenet2012")
    assert str(parse_data_spec("tfds:mnist")) == "tfds:mnist"
    with pytest.raises(ValueError, match="unknown data set 'imagenet'"):
        parse_data_spec("imagenet")
    with pytest.raises(ValueError, match="needs a location"):
        parse_data_spec("folder:")
    with pytest.raises(ValueError, match="no location"):
        parse_data_spec("phantom:x")


def test_array_split_items_and_checks():
    images = np.arange(2 * 3 * 3 * 1, dtype=np.float32).reshape(2, 3, 3, 1)
    split = ArraySplit(images, np.array([1, 0]), ("a", "b"), mask=np.ones((2, 3, 3), bool))
    item = split[1]
    assert item["label"] == 0 and item["index"] == 1 and item["mask"].shape == (3, 3)
    np.testing.assert_array_equal(item["image"], images[1])
    assert (len(split), split.image_size, split.channels) == (2, 3, 1)
    with pytest.raises(ValueError, match=r"labels must have shape \(2,\)"):
        ArraySplit(images, np.array([[1], [0]]))
    with pytest.raises(ValueError, match="'mask' has 1 rows"):
        ArraySplit(images, np.array([1, 0]), mask=np.ones((1, 3, 3)))


def test_one_image_per_random_class_is_one_per_distinct_class_and_seeded():
    labels = np.repeat(np.arange(10), 5)
    picked = one_image_per_random_class(labels, 4, seed=3)
    assert len(picked) == 4 and len(set(labels[picked])) == 4
    assert list(labels[picked]) == sorted(labels[picked])
    np.testing.assert_array_equal(picked, one_image_per_random_class(labels, 4, seed=3))
    assert sorted(labels[one_image_per_random_class(labels, 10, seed=0)]) == list(range(10))
    with pytest.raises(ValueError, match="asked for 11 random classes but the data has 10"):
        one_image_per_random_class(labels, 11, seed=0)


def test_subset_keeps_full_split_indices():
    split = ArraySplit(np.zeros((5, 2, 2, 1), np.float32), np.array([0, 1, 0, 1, 1]))
    subset = Subset(split, np.array([4, 1]))
    assert len(subset) == 2 and list(subset.labels) == [1, 1]
    assert subset[0]["index"] == 4
    with pytest.raises(ValueError, match=r"indices must lie in \[0, 5\)"):
        Subset(split, np.array([5]))


def test_phantom_split_with_three_channels_repeats_the_gray_image(tmp_path):
    gray = load_data_split("phantom", "val", data_dir=tmp_path, image_size=64, channels=1)
    rgb = load_data_split("phantom", "val", data_dir=tmp_path, image_size=64, channels=3)
    assert gray.images.shape[1:] == (64, 64, 1) and rgb.images.shape[1:] == (64, 64, 3)
    np.testing.assert_array_equal(rgb.images, np.repeat(gray.images, 3, axis=-1))
    assert gray.class_names == ("NORMAL", "PNEUMONIA") and "mask" in gray[0]
    with pytest.raises(ValueError, match="channels must be 1"):
        load_data_split("phantom", "val", data_dir=tmp_path, image_size=64, channels=2)
