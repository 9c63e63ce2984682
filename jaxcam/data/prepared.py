"""Prepared (array_record) data sets as random-access splits: ``ImageSplit`` and its loaders.

:func:`load_image_folder` and :func:`load_chest_xray` read a class-per-folder image set
(:mod:`jaxcam.data.folder_scan`), preparing it on first use
(:mod:`jaxcam.data.folder_builders`); :func:`load_tfds` reads any TFDS set already
prepared in array_record format, resizing and channel-converting on read
(:mod:`jaxcam.data.images`).  Reading needs ``tfds`` random access, no TensorFlow.
"""

from __future__ import annotations

import dataclasses
import operator
import os
from collections.abc import Sequence
from typing import Any

import numpy as np
import tensorflow_datasets as tfds

from jaxcam.data.folder_builders import (
    CHEST_XRAY_SPLITS,
    JaxcamChestXray,
    JaxcamImageFolder,
    prepare_folder,
    stored_split_name,
)
from jaxcam.data.folder_scan import check_split
from jaxcam.data.images import check_channels, check_int, decode_image_array

_LABEL_CHUNK = 1024


# --- splits ------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True, eq=False)
class ImageSplit:
    """A random-access split (a grain source): ``split[i] -> {"image", "label", "index"}``.

    ``image`` float32 (S, S, C) in [0, 1], ``label`` and ``index`` np.int32 scalars.
    ``labels`` int32 (N,) and ``paths`` (relative to the source folder; None for
    :func:`load_tfds`) are known without decoding images; ``skipped`` lists corrupt
    files left out when preparing, ``ignored`` the other entries of the class folders
    left out (``(path, reason)``: not an image file, a dangling link, a sub-folder).
    ``data_path`` is the prepared data folder.
    """

    name: str
    class_names: tuple[str, ...]
    image_size: int
    channels: int
    labels: np.ndarray
    paths: tuple[str, ...] | None
    skipped: tuple[str, ...]
    data_path: str
    records: Any = dataclasses.field(repr=False)
    image_key: str = "image"
    label_key: str = "label"
    convert: bool = dataclasses.field(default=False, repr=False)
    ignored: tuple[tuple[str, str], ...] = ()

    def __len__(self) -> int:
        return len(self.labels)

    @property
    def num_ignored(self) -> int:
        """Number of entries of the class folders left out as not image files."""
        return len(self.ignored)

    @property
    def num_skipped(self) -> int:
        """Number of corrupt files left out when this split was prepared."""
        return len(self.skipped)

    def _index(self, index: Any) -> int:
        try:
            i = operator.index(index)
        except TypeError:
            raise TypeError(f"index must be an integer, got {index!r}") from None
        n = len(self)
        if not -n <= i < n:
            raise IndexError(f"index {i} out of range for split {self.name!r} of {n} images")
        return i % n

    def _image(self, record: dict[str, Any]) -> np.ndarray:
        image = np.asarray(record[self.image_key])
        if self.convert:
            image = decode_image_array(image, self.image_size, self.channels)
        return image.astype(np.float32) / np.float32(255.0)

    def __getitem__(self, index: int) -> dict[str, np.ndarray | np.int32]:
        i = self._index(index)
        record = self.records[i]
        return {
            "image": self._image(record),
            "label": np.int32(self.labels[i]),
            "index": np.int32(i),
        }

    def images(self, indices: Sequence[int] | np.ndarray) -> np.ndarray:
        """The images at ``indices``: float32 (n, S, S, C)."""
        positions = [self._index(i) for i in np.asarray(indices).reshape(-1).tolist()]
        out = np.empty(
            (len(positions), self.image_size, self.image_size, self.channels), np.float32
        )
        for k, record in enumerate(self.records.__getitems__(positions) if positions else []):
            out[k] = self._image(record)
        return out


def class_counts(split: ImageSplit) -> np.ndarray:
    """Images per class: int64 (num_classes,), from the labels (no decoding)."""
    return np.bincount(np.asarray(split.labels), minlength=len(split.class_names))


def _folder_split(builder: JaxcamImageFolder, split: str) -> ImageSplit:
    cfg = builder.builder_config
    meta = builder.info.metadata["splits"][split]
    return ImageSplit(
        name=split,
        class_names=tuple(builder.info.features["label"].names),
        image_size=cfg.image_size,
        channels=cfg.channels,
        labels=np.asarray(meta["labels"], dtype=np.int32),
        paths=tuple(meta["paths"]),
        skipped=tuple(meta["skipped"]),
        ignored=tuple((path, why) for path, why in meta.get("ignored", [])),
        data_path=os.fspath(builder.data_path),
        records=builder.as_data_source(
            stored_split_name(split), decoders={"path": tfds.decode.SkipDecoding()}
        ),
    )


def load_image_folder(
    source_dir: str | os.PathLike,
    split: str,
    data_dir: str | os.PathLike,
    image_size: int,
    channels: int = 3,
    *,
    skip_corrupt: bool = False,
) -> ImageSplit:
    """``split`` of a class-per-folder image set, preparing it into ``data_dir`` if missing.

    ``split`` is a split folder name, or "all" for the ``root/<class>/*`` layout.
    Images float32 (S, S, channels), S = ``image_size``; layouts as in
    :mod:`jaxcam.data.folder_scan`, preprocessing as in :mod:`jaxcam.data.images`.
    """
    image_size = check_int("image_size", image_size, 1)
    channels = check_channels(channels)
    builder = prepare_folder(
        JaxcamImageFolder, source_dir, split, data_dir, image_size, channels, skip_corrupt
    )
    return _folder_split(builder, split)


def load_chest_xray(
    source_dir: str | os.PathLike,
    split: str,
    data_dir: str | os.PathLike,
    image_size: int,
    channels: int = 1,
    *,
    skip_corrupt: bool = False,
) -> ImageSplit:
    """``split`` (train/val/test) of the Kaggle chest X-ray folder, preparing it if missing.

    ``source_dir`` holds ``{train,val,test}/{NORMAL,PNEUMONIA}/*.jpeg``; labels
    NORMAL -> 0, PNEUMONIA -> 1; images float32 (S, S, channels), S = ``image_size``.
    """
    image_size = check_int("image_size", image_size, 1)
    channels = check_channels(channels)
    check_split(split, CHEST_XRAY_SPLITS)
    builder = prepare_folder(
        JaxcamChestXray, source_dir, split, data_dir, image_size, channels, skip_corrupt
    )
    return _folder_split(builder, split)


def load_tfds(
    name: str,
    split: str,
    data_dir: str | os.PathLike,
    image_size: int,
    channels: int,
    *,
    image_key: str = "image",
    label_key: str = "label",
) -> ImageSplit:
    """``split`` of an already prepared (array_record) TFDS data set, e.g. "mnist" or
    "phantom_chest_xray/seed0_size64": nothing is downloaded or built.

    Images are resized / channel-converted on read like :func:`read_image` (from
    the decoded uint8 or 16-bit array): float32 (S, S, channels).  The labels (a
    ClassLabel feature) are read once without decoding images.  ``split`` may use
    the tfds slicing syntax ("train[:10%]").
    """
    if not isinstance(name, str) or not name:
        raise TypeError(f"name must be a non-empty string, got {name!r}")
    image_size = check_int("image_size", image_size, 1)
    channels = check_channels(channels)
    how = (
        f"prepare it first in array_record format, e.g. `tfds build {name.split('/')[0]} "
        f"--data_dir={os.fspath(data_dir)} --file_format=array_record` or "
        "builder.download_and_prepare(file_format='array_record')"
    )
    try:
        builder = tfds.builder(name, data_dir=os.fspath(data_dir), try_gcs=False)
    except tfds.core.registered.DatasetNotFoundError:
        raise ValueError(
            f"unknown TFDS data set {name!r} in {os.fspath(data_dir)}; {how}"
        ) from None
    except ValueError as err:  # e.g. an unknown config
        raise ValueError(f"cannot load TFDS data set {name!r}: {str(err)[:300]}; {how}") from err
    if not builder.is_prepared():
        raise ValueError(f"TFDS data set {name!r} is not prepared in {os.fspath(data_dir)}; {how}")
    info = builder.info
    formats = [info.file_format, *info.alternative_file_formats]
    if tfds.core.FileFormat.ARRAY_RECORD not in formats:
        raise ValueError(
            f"TFDS data set {name!r} is stored as {info.file_format.value}, not array_record, "
            "which random access needs: convert it with `tfds convert_format` or prepare it "
            "with file_format='array_record'"
        )
    features = info.features
    for key, what in ((image_key, "image_key"), (label_key, "label_key")):
        if key not in features:
            raise ValueError(f"{what} {key!r} is not a feature of {name!r}: {list(features)}")
    if not isinstance(features[image_key], tfds.features.Image):
        raise TypeError(f"feature {image_key!r} of {name!r} is not a tfds.features.Image")
    if not isinstance(features[label_key], tfds.features.ClassLabel):
        raise TypeError(f"feature {label_key!r} of {name!r} is not a tfds.features.ClassLabel")
    base = split.split("[")[0] if isinstance(split, str) else split
    check_split(base, tuple(info.splits))
    skip = {
        k: tfds.decode.SkipDecoding()
        for k, f in features.items()
        if isinstance(f, tfds.features.Image | tfds.features.Video) and k != image_key
    }
    records = builder.as_data_source(split, decoders=skip or None)
    label_view = builder.as_data_source(
        split, decoders=skip | {image_key: tfds.decode.SkipDecoding()}
    )
    labels = np.empty(len(label_view), np.int32)
    for start in range(0, len(labels), _LABEL_CHUNK):
        chunk = range(start, min(start + _LABEL_CHUNK, len(labels)))
        labels[start : chunk.stop] = [r[label_key] for r in label_view.__getitems__(list(chunk))]
    return ImageSplit(
        name=split,
        class_names=tuple(features[label_key].names),
        image_size=image_size,
        channels=channels,
        labels=labels,
        paths=None,
        skipped=(),
        data_path=os.fspath(builder.data_path),
        records=records,
        image_key=image_key,
        label_key=label_key,
        convert=True,
    )
