"""Class folders with other image formats, dangling links and non-images; two processes
preparing the same source at once."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest
import tensorflow_datasets as tfds
from conftest import lock_held_by_another_process
from PIL import Image

from jaxcam.data import load_chest_xray, load_image_folder
from jaxcam.data.folders import IMAGE_EXTENSIONS, folder_config_name
from jaxcam.locks import InUseError

SIZE = 4

tfds.disable_progress_bar()


def save(path: Path, array: np.ndarray, **kwargs) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(array).save(path, **kwargs)


def test_every_format_pil_decodes_is_an_image_extension():
    for extension in (".bmp", ".tif", ".tiff", ".gif", ".webp", ".jpeg", ".png", ".pgm"):
        assert extension in IMAGE_EXTENSIONS
    for extension in (".txt", ".pdf", ".h5", ".eps"):  # not decodable by PIL alone
        assert extension not in IMAGE_EXTENSIONS


def test_bmp_and_tiff_files_are_read(tmp_path):
    source = tmp_path / "flat"
    save(source / "cat/a.bmp", np.full((5, 7), 40, np.uint8))
    save(source / "cat/b.tif", np.full((6, 6), 257 * 90, np.uint16))  # 16 bit -> 90
    save(source / "dog/c.png", np.full((4, 4), 200, np.uint8))
    save(source / "dog/d.TIFF", np.full((3, 9, 3), 120, np.uint8))  # gray RGB -> 120
    split = load_image_folder(source, "all", tmp_path / "data", SIZE, channels=1)
    assert split.paths == ("cat/a.bmp", "cat/b.tif", "dog/c.png", "dog/d.TIFF")
    np.testing.assert_array_equal(split.labels, [0, 0, 1, 1])
    for index, level in enumerate([40, 90, 200, 120]):
        np.testing.assert_array_equal(
            split[index]["image"], np.full((SIZE, SIZE, 1), np.float32(level) / np.float32(255))
        )
    assert split.ignored == () and split.num_ignored == 0


def test_dangling_links_and_other_entries_are_named_not_dropped(tmp_path, capsys):
    source = tmp_path / "flat"
    save(source / "cat/a.png", np.full((4, 4), 10, np.uint8))
    save(source / "dog/b.png", np.full((4, 4), 30, np.uint8))
    os.symlink(source / "cat/missing.png", source / "cat/gone.png")  # dangling
    os.symlink(source / "dog/b.png", source / "cat/linked.png")  # a link to an image: read
    (source / "cat/notes.txt").write_text("not an image")
    (source / "cat/extra").mkdir()
    (source / "dog/.DS_Store").write_bytes(b"hidden: ignored without a word")
    expected = (
        ("cat/extra", "a folder (class folders are not searched further)"),
        ("cat/gone.png", "dangling symbolic link"),
        ("cat/notes.txt", "not an image file (.txt)"),
    )
    split = load_image_folder(source, "all", tmp_path / "data", SIZE, channels=1)
    printed = capsys.readouterr().out
    assert (
        "left out 3 entries of split 'all' that are not image files: 'cat/extra' (a folder "
        "(class folders are not searched further)), 'cat/gone.png' (dangling symbolic link), "
        "'cat/notes.txt' (not an image file (.txt)) (ImageSplit.ignored)" in printed
    )
    assert split.paths == ("cat/a.png", "cat/linked.png", "dog/b.png")
    np.testing.assert_array_equal(split[1]["image"], split[2]["image"])
    assert split.ignored == expected and split.num_ignored == 3
    again = load_image_folder(source, "all", tmp_path / "data", SIZE, channels=1)  # metadata
    assert again.ignored == expected and "left out" not in capsys.readouterr().out


def test_a_class_folder_of_left_out_entries_only_names_them(tmp_path):
    source = tmp_path / "chest_xray"
    for split in ("train", "val", "test"):
        for name in ("NORMAL", "PNEUMONIA"):
            save(source / split / name / "x.png", np.zeros((4, 4), np.uint8))
    (source / "val/PNEUMONIA/x.png").unlink()
    os.symlink(source / "val/PNEUMONIA/x.png", source / "val/PNEUMONIA/y.jpeg")
    with pytest.raises(ValueError, match=r"'y\.jpeg' \(dangling symbolic link\)"):
        load_chest_xray(source, "train", tmp_path / "data", SIZE)


def test_a_second_preparation_of_the_same_source_is_refused_while_the_first_runs(tmp_path):
    source, data_dir = tmp_path / "flat", tmp_path / "data"
    save(source / "cat/a.png", np.full((4, 4), 10, np.uint8))
    save(source / "dog/b.png", np.full((4, 4), 30, np.uint8))
    config = folder_config_name(source, SIZE, 1)
    lock = data_dir / "jaxcam_image_folder" / config / ".prepare.lock"
    with lock_held_by_another_process(lock) as child:
        with pytest.raises(InUseError) as caught:
            load_image_folder(source, "all", data_dir, SIZE, channels=1)
    assert str(caught.value) == (
        f"{source} is being prepared into {data_dir / 'jaxcam_image_folder' / config / '1.0.0'} "
        f"by process {child.pid}; wait for it to finish, then run again"
    )
    assert not list(data_dir.glob("**/dataset_info.json"))
    # The holder was killed (-9): its lock file, with its pid, does not block.
    assert lock.read_text() == str(child.pid)
    split = load_image_folder(source, "all", data_dir, SIZE, channels=1)
    assert split.paths == ("cat/a.png", "dog/b.png") and lock.read_text() == ""
