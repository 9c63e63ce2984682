"""Tests of the class-per-folder loaders (array_record via tfds, no TensorFlow) and batching."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest
import tensorflow_datasets as tfds
from PIL import Image

from jaxcam.data import (
    ImageSplit,
    build_phantom,
    class_counts,
    folder_builders,
    load_chest_xray,
    load_image_folder,
    load_phantom,
    load_tfds,
    read_image,
    split_batches,
    split_names,
)
from jaxcam.data import folders as folders_lib

SIZE = 8
JPEG_TOL = 3 / 255

tfds.disable_progress_bar()


def save(path: Path, array: np.ndarray, palette: bool = False, **kwargs) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    image = Image.fromarray(array)
    if palette:  # an exact palette image ("P" mode)
        image = image.convert("P", palette=Image.Palette.ADAPTIVE, colors=4)
    image.save(path, **kwargs)


def gray(value: int, h: int, w: int, dtype=np.uint8) -> np.ndarray:
    return np.full((h, w), value, dtype)


# Expected gray level (0-255) of each file of the Kaggle-style tree, and whether it is a JPEG.
KAGGLE = {
    "train/NORMAL/black.png": 0,
    "train/NORMAL/gray.jpeg": 100,
    "train/NORMAL/gray16.png": 60,
    "train/PNEUMONIA/white.png": 255,
    "train/PNEUMONIA/rgb_gray.png": 77,
    "train/PNEUMONIA/rgb_gray.JPG": 150,
    "val/NORMAL/a.png": 10,
    "val/PNEUMONIA/b.jpg": 200,
    "test/NORMAL/a.jpeg": 30,
    "test/PNEUMONIA/b.png": 240,
}


def make_kaggle(root: Path) -> Path:
    """The Kaggle chest_xray layout with grayscale, 16-bit and RGB files of various sizes."""
    for i, (relative, level) in enumerate(KAGGLE.items()):
        h, w = 9 + i % 4, 14 - i % 3
        if "rgb" in relative:
            save(root / relative, np.full((h, w, 3), level, np.uint8))
        elif "16" in relative:
            save(root / relative, gray(257 * level, h, w, np.uint16))
        else:
            save(root / relative, gray(level, h, w))
    # Ignored: hidden files, other extensions, __MACOSX, the archive's nested duplicate.
    (root / "train/NORMAL/.DS_Store").write_bytes(b"junk")
    (root / "train/NORMAL/notes.txt").write_text("not an image")
    save(root / "__MACOSX/train/NORMAL/._black.png", gray(1, 4, 4))
    save(root / "chest_xray/train/NORMAL/x.png", gray(1, 4, 4))
    return root


@pytest.fixture(scope="module")
def kaggle(tmp_path_factory):
    """(source folder, data_dir) with the Kaggle-style tree already prepared at SIZE, 1 channel."""
    tmp = tmp_path_factory.mktemp("kaggle")
    source, data_dir = make_kaggle(tmp / "chest_xray"), tmp / "data"
    load_chest_xray(source, "train", data_dir, SIZE)
    return source, data_dir


def by_path(split: ImageSplit) -> dict[str, dict[str, np.ndarray]]:
    return {path: split[i] for i, path in enumerate(split.paths)}


# --- preparing and reading -----------------------------------------------------------


def test_chest_xray_splits_labels_shapes_and_pixels(kaggle):
    source, data_dir = kaggle
    seen = {}
    for name in ("train", "val", "test"):
        split = load_chest_xray(source, name, data_dir, SIZE)
        assert isinstance(split, ImageSplit)
        assert split.name == name and split.class_names == ("NORMAL", "PNEUMONIA")
        assert split.image_size == SIZE and split.channels == 1 and split.num_skipped == 0
        assert split.labels.dtype == np.int32 and split.labels.shape == (len(split),)
        expected = {p: v for p, v in KAGGLE.items() if p.startswith(name + "/")}
        assert sorted(split.paths) == sorted(expected)
        for i, (path, item) in enumerate(by_path(split).items()):
            assert set(item) == {"image", "label", "index"}
            assert item["image"].shape == (SIZE, SIZE, 1) and item["image"].dtype == np.float32
            assert item["label"].dtype == np.int32 and item["index"] == i
            assert item["label"] == (0 if "/NORMAL/" in path else 1) == split.labels[i]
            level, lossy = expected[path], path.lower().endswith((".jpeg", ".jpg"))
            np.testing.assert_allclose(item["image"], level / 255, atol=JPEG_TOL if lossy else 0)
            seen[path] = item["image"]
    assert (seen["train/NORMAL/black.png"] == 0.0).all()
    assert (seen["train/PNEUMONIA/white.png"] == 1.0).all()
    assert (seen["train/NORMAL/gray16.png"] == np.float32(60) / np.float32(255)).all()
    np.testing.assert_array_equal(class_counts(split), [1, 1])


def test_records_store_paths_in_metadata_order(kaggle):
    split = load_chest_xray(*kaggle[:1], "train", kaggle[1], SIZE)
    assert [r["path"].decode() for r in split.records] == list(split.paths)
    assert split.paths == tuple(sorted(split.paths, key=lambda p: ("PNEU" in p, p)))
    images = split.images([2, 0])
    assert images.shape == (2, SIZE, SIZE, 1) and images.dtype == np.float32
    np.testing.assert_array_equal(images[1], split[0]["image"])
    np.testing.assert_array_equal(split[-1]["image"], split[len(split) - 1]["image"])
    with pytest.raises(IndexError, match="out of range"):
        split[len(split)]


def test_labels_and_paths_without_decoding(kaggle, monkeypatch):
    def fail(*args, **kwargs):
        raise AssertionError("an image was decoded")

    monkeypatch.setattr(tfds.features.Image, "decode_example_np", fail)
    monkeypatch.setattr(folder_builders, "decode_image_file", fail)
    split = load_chest_xray(*kaggle[:1], "train", kaggle[1], SIZE)
    np.testing.assert_array_equal(split.labels, [0, 0, 0, 1, 1, 1])
    np.testing.assert_array_equal(class_counts(split), [3, 3])
    assert split.paths[0] == "train/NORMAL/black.png"


def test_second_load_does_not_rebuild(kaggle, monkeypatch):
    source, data_dir = kaggle
    path = Path(load_chest_xray(source, "val", data_dir, SIZE).data_path)
    mtimes = {p: p.stat().st_mtime_ns for p in path.iterdir()}

    def fail(*args, **kwargs):
        raise AssertionError("rebuilt")

    monkeypatch.setattr(folders_lib.JaxcamChestXray, "_split_generators", fail)
    split = load_chest_xray(source, "test", data_dir, SIZE)
    assert len(split) == 2 and {p: p.stat().st_mtime_ns for p in path.iterdir()} == mtimes


def test_configs_differ_by_size_channels_and_source(kaggle, tmp_path):
    source, data_dir = kaggle
    rgb = load_chest_xray(source, "val", data_dir, 5, channels=3)
    assert rgb[0]["image"].shape == (5, 5, 3)
    np.testing.assert_allclose(rgb[0]["image"], 10 / 255)  # gray replicated
    copy = shutil.copytree(source, tmp_path / "copy")
    other = load_chest_xray(copy, "val", data_dir, SIZE)
    paths = {
        rgb.data_path,
        other.data_path,
        load_chest_xray(source, "val", data_dir, SIZE).data_path,
    }
    assert len(paths) == 3
    assert "size5_ch3_" in rgb.data_path and "jaxcam_chest_xray" in rgb.data_path


def test_changed_source_is_not_served_stale(tmp_path):
    source = make_kaggle(tmp_path / "src")
    load_chest_xray(source, "val", tmp_path / "data", SIZE)
    save(source / "val/NORMAL/new.png", gray(5, 4, 4))
    with pytest.raises(ValueError, match="changed since it was prepared"):
        load_chest_xray(source, "val", tmp_path / "data", SIZE)


def make_flat(root: Path) -> Path:
    """ImageNet-style root/<class>/* with gray, RGB, RGBA and palette files."""
    save(root / "cat/a.png", np.full((9, 12, 3), (200, 100, 50), np.uint8))
    save(root / "cat/b.jpg", np.full((16, 10, 3), (0, 0, 0), np.uint8), quality=95)
    rgba = np.zeros((10, 10, 4), np.uint8)
    rgba[..., :3] = (10, 20, 30)
    save(root / "dog/rgba.png", rgba)  # fully transparent: the alpha is dropped
    save(root / "dog/palette.png", np.full((7, 11, 3), (40, 80, 120), np.uint8), palette=True)
    save(root / "bird/g.png", gray(90, 12, 12))
    return root


def test_image_folder_flat_layout_rgb(tmp_path):
    source = make_flat(tmp_path / "flat")
    assert split_names(source) == ("all",)
    split = load_image_folder(source, "all", tmp_path / "data", SIZE)
    assert split.class_names == ("bird", "cat", "dog") and split.channels == 3
    np.testing.assert_array_equal(split.labels, [0, 1, 1, 2, 2])
    items = by_path(split)
    expected = {
        "bird/g.png": (90, 90, 90),
        "cat/a.png": (200, 100, 50),
        "cat/b.jpg": (0, 0, 0),
        "dog/palette.png": (40, 80, 120),
        "dog/rgba.png": (10, 20, 30),
    }
    assert set(items) == set(expected)
    for path, rgb in expected.items():
        image = items[path]["image"]
        assert image.shape == (SIZE, SIZE, 3)
        np.testing.assert_allclose(
            image,
            np.broadcast_to(np.float32(rgb) / 255, image.shape),
            atol=JPEG_TOL if path.endswith("jpg") else 0,
        )
    assert (items["cat/b.jpg"]["image"] == 0.0).all()
    with pytest.raises(ValueError, match="unknown split 'train'"):
        load_image_folder(source, "train", tmp_path / "data", SIZE)


def test_split_names_and_image_folder_on_split_layout(tmp_path):
    source = make_kaggle(tmp_path / "k")
    shutil.rmtree(source / "chest_xray")
    assert split_names(source) == ("train", "val", "test")
    split = load_image_folder(source, "test", tmp_path / "data", SIZE, channels=1)
    assert split.class_names == ("NORMAL", "PNEUMONIA") and len(split) == 2


def test_read_image_matches_prepared(kaggle):
    source, data_dir = kaggle
    split = load_chest_xray(source, "train", data_dir, SIZE)
    for i, path in enumerate(split.paths):
        np.testing.assert_array_equal(read_image(source / path, SIZE, 1), split[i]["image"])
    rgb = read_image(source / "train/NORMAL/gray16.png", 3, 3)
    assert rgb.shape == (3, 3, 3) and rgb.dtype == np.float32
    with pytest.raises(FileNotFoundError, match="nope.png"):
        read_image(source / "nope.png", SIZE, 1)
    with pytest.raises(ValueError, match="channels"):
        read_image(source / "train/NORMAL/black.png", SIZE, 2)


# --- batching ------------------------------------------------------------------------


def test_split_batches(kaggle):
    split = load_chest_xray(*kaggle[:1], "train", kaggle[1], SIZE)  # 6 images
    ordered = list(split_batches(split, 4))
    assert [len(b["label"]) for b in ordered] == [4, 2]
    first = ordered[0]
    assert first["image"].shape == (4, SIZE, SIZE, 1) and first["image"].dtype == np.float32
    assert first["label"].dtype == np.int32 and first["index"].dtype == np.int32
    np.testing.assert_array_equal(np.concatenate([b["index"] for b in ordered]), np.arange(6))
    np.testing.assert_array_equal(np.concatenate([b["label"] for b in ordered]), split.labels)

    shuffled = list(split_batches(split, 2, seed=3, num_threads=2))
    again = list(split_batches(split, 2, seed=3, num_threads=0))
    for a, b in zip(shuffled, again, strict=True):
        for key in ("image", "label", "index"):
            np.testing.assert_array_equal(a[key], b[key])
    order = np.concatenate([b["index"] for b in shuffled])
    assert sorted(order) == list(range(6)) and list(order) != list(range(6))
    np.testing.assert_array_equal(shuffled[1]["image"], split.images(shuffled[1]["index"]))

    tail = list(split_batches(split, 2, seed=3, start_batch=1))
    assert len(tail) == 2
    for a, b in zip(tail, shuffled[1:], strict=True):
        np.testing.assert_array_equal(a["index"], b["index"])
    dropped = list(split_batches(split, 4, seed=3, drop_remainder=True))
    assert [len(b["index"]) for b in dropped] == [4]
    assert list(split_batches(split, 4, drop_remainder=True, start_batch=1)) == []
    with pytest.raises(ValueError, match="start_batch"):
        split_batches(split, 4, drop_remainder=True, start_batch=2)
    with pytest.raises(ValueError, match="batch_size"):
        split_batches(split, 0)


# --- errors ----------------------------------------------------------------------------


def test_missing_and_not_a_directory(tmp_path):
    with pytest.raises(FileNotFoundError, match="does not exist"):
        load_chest_xray(tmp_path / "missing", "train", tmp_path / "data", SIZE)
    (tmp_path / "file").write_text("x")
    with pytest.raises(NotADirectoryError, match="not a directory"):
        load_image_folder(tmp_path / "file", "all", tmp_path / "data", SIZE)
    with pytest.raises(FileNotFoundError):
        split_names(tmp_path / "missing")


def test_layout_errors(tmp_path):
    data = tmp_path / "data"
    empty = make_kaggle(tmp_path / "empty")
    for f in (empty / "val/PNEUMONIA").iterdir():
        f.unlink()
    with pytest.raises(ValueError, match=r"empty class folder .*val/PNEUMONIA"):
        load_chest_xray(empty, "train", data, SIZE)

    lacking = make_kaggle(tmp_path / "lacking")
    shutil.rmtree(lacking / "test/PNEUMONIA")
    with pytest.raises(ValueError, match=r"lacks class folder\(s\) \['PNEUMONIA'\]"):
        load_chest_xray(lacking, "train", data, SIZE)
    with pytest.raises(ValueError, match="lacks class folder"):
        load_image_folder(lacking, "train", data, SIZE)

    extra = make_kaggle(tmp_path / "extra")
    save(extra / "val/COVID/x.png", gray(3, 4, 4))
    with pytest.raises(ValueError, match=r"unexpected folder\(s\) \['COVID'\]"):
        load_chest_xray(extra, "val", data, SIZE)

    no_test = make_kaggle(tmp_path / "no_test")
    shutil.rmtree(no_test / "test")
    with pytest.raises(ValueError, match=r"lacks the split folder\(s\) \['test'\]"):
        load_chest_xray(no_test, "train", data, SIZE)

    mixed = make_flat(tmp_path / "mixed")
    save(mixed / "train/cat/x.png", gray(3, 4, 4))
    with pytest.raises(ValueError, match="mixes class folders"):
        split_names(mixed)

    flat_empty = make_flat(tmp_path / "flat_empty")
    (flat_empty / "fish").mkdir()
    with pytest.raises(ValueError, match="empty class folder.*fish"):
        load_image_folder(flat_empty, "all", data, SIZE)

    (tmp_path / "nothing/a/b").mkdir(parents=True)
    with pytest.raises(ValueError, match="no images found"):
        load_image_folder(tmp_path / "nothing/a", "all", data, SIZE)

    with pytest.raises(ValueError, match="unknown split 'training'"):
        load_chest_xray(empty, "training", data, SIZE)
    assert not data.exists() or not list(data.glob("**/dataset_info.json"))


def test_corrupt_image_raises_and_leaves_nothing_prepared(tmp_path):
    source, data = make_kaggle(tmp_path / "src"), tmp_path / "data"
    (source / "train/PNEUMONIA/broken.jpeg").write_bytes(b"\xff\xd8\xff\xe0 not really a jpeg")
    with pytest.raises(ValueError, match=r"broken\.jpeg.*skip_corrupt=True"):
        load_chest_xray(source, "val", data, SIZE)
    assert not list(data.glob("**/dataset_info.json"))
    assert not list(data.glob("**/*.array_record*"))
    (source / "train/PNEUMONIA/broken.jpeg").unlink()
    assert len(load_chest_xray(source, "train", data, SIZE)) == 6


def test_skip_corrupt_warns_and_counts(tmp_path):
    source, data = make_kaggle(tmp_path / "src"), tmp_path / "data"
    good = source / "train/NORMAL/black.png"
    (source / "train/NORMAL/truncated.png").write_bytes(good.read_bytes()[:40])
    (source / "test/NORMAL/empty.jpg").write_bytes(b"")
    with pytest.warns(UserWarning, match="skipping corrupt image") as record:
        split = load_chest_xray(source, "train", data, SIZE, skip_corrupt=True)
    messages = [str(w.message) for w in record]
    assert len(messages) == 2
    assert any("truncated.png" in m for m in messages) and any("empty.jpg" in m for m in messages)
    assert split.skipped == ("train/NORMAL/truncated.png",) and split.num_skipped == 1
    assert len(split) == 6 and "train/NORMAL/truncated.png" not in split.paths
    test = load_chest_xray(source, "test", data, SIZE, skip_corrupt=True)
    assert test.skipped == ("test/NORMAL/empty.jpg",) and len(test) == 2
    with pytest.raises(ValueError, match="corrupt.*skip_corrupt=True"):
        load_chest_xray(source, "train", data, SIZE)
    with pytest.raises(ValueError, match="truncated.png"):
        read_image(source / "train/NORMAL/truncated.png", SIZE, 1)


def test_bad_arguments(kaggle):
    source, data_dir = kaggle
    with pytest.raises(TypeError, match="image_size"):
        load_chest_xray(source, "train", data_dir, 8.0)
    with pytest.raises(ValueError, match="channels"):
        load_image_folder(source, "train", data_dir, SIZE, channels=4)


# --- load_tfds -------------------------------------------------------------------------


def test_load_tfds_resizes_and_converts(tmp_path, monkeypatch):
    sizes = {"train": 4, "val": 2, "test": 2}
    build_phantom(tmp_path, split_sizes=sizes, image_size=64)
    name = "phantom_chest_xray/seed0_size64_n4-2-2"
    original = load_phantom("train", tmp_path, image_size=64, split_sizes=sizes)
    test_labels = load_phantom("test", tmp_path, image_size=64, split_sizes=sizes).labels
    split = load_tfds(name, "train", tmp_path, 16, 3)
    assert split.class_names == ("NORMAL", "PNEUMONIA") and split.paths is None
    np.testing.assert_array_equal(split.labels, original.labels)
    item = split[1]
    assert item["image"].shape == (16, 16, 3) and item["image"].dtype == np.float32
    np.testing.assert_array_equal(item["image"][..., 0], item["image"][..., 2])
    expected = Image.fromarray(np.round(original.images[1, ..., 0] * 255).astype(np.uint8))
    expected = np.asarray(expected.resize((16, 16), Image.Resampling.BILINEAR)) / np.float32(255)
    np.testing.assert_array_equal(item["image"][..., 0], expected)
    same = load_tfds(name, "val", tmp_path, 64, 1)
    np.testing.assert_array_equal(
        same.images([0, 1]), load_phantom("val", tmp_path, image_size=64, split_sizes=sizes).images
    )
    assert len(load_tfds(name, "train[:3]", tmp_path, 16, 1)) == 3

    def fail(*args, **kwargs):
        raise AssertionError("an image was decoded")

    monkeypatch.setattr(tfds.features.Image, "decode_example_np", fail)
    np.testing.assert_array_equal(load_tfds(name, "test", tmp_path, 8, 1).labels, test_labels)


def test_load_tfds_errors(tmp_path):
    with pytest.raises(ValueError, match="unknown TFDS data set 'no_such_set'.*array_record"):
        load_tfds("no_such_set", "train", tmp_path, SIZE, 1)
    with pytest.raises(ValueError, match="not prepared"):
        load_tfds("phantom_chest_xray", "train", tmp_path, SIZE, 1)
    with pytest.raises(ValueError, match="cannot load TFDS data set .*seed0_size64"):
        load_tfds("phantom_chest_xray/seed0_size64", "train", tmp_path, SIZE, 1)
    build_phantom(tmp_path, split_sizes={"train": 2, "val": 2, "test": 2}, image_size=32)
    name = "phantom_chest_xray/seed0_size32_n2-2-2"
    with pytest.raises(ValueError, match="unknown split 'validation'"):
        load_tfds(name, "validation", tmp_path, SIZE, 1)
    with pytest.raises(ValueError, match="image_key 'img'"):
        load_tfds(name, "train", tmp_path, SIZE, 1, image_key="img")
