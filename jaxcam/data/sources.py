"""One way to name a data set: ``phantom``, ``chest_xray:DIR``, ``folder:DIR`` or ``tfds:NAME``.

The command line and the experiments take a data set as one string:

``phantom``
    the embedded synthetic chest X-rays (``jaxcam.data.phantom``; built on first use).
``chest_xray:DIR``
    the Kaggle "Chest X-ray Images (Pneumonia)" layout
    ``DIR/{train,val,test}/{NORMAL,PNEUMONIA}/*.jpeg`` (NORMAL = 0, PNEUMONIA = 1).
``folder:DIR``
    any class-per-folder directory, ``DIR/<split>/<class>/*`` or ``DIR/<class>/*``
    (one split, ``all``); classes in sorted order.
``tfds:NAME``
    a TFDS data set already prepared as array_record under the data folder.

:func:`load_data_split` returns a random-access split (``len``, ``split[i] ->
{"image", "label", "index"}``, ``labels``, ``class_names``) with images resized to
the model's input size and converted to its channels.
"""

from __future__ import annotations

import dataclasses
import os
from typing import Any

import numpy as np

from jaxcam.data.folders import load_chest_xray, load_image_folder, load_tfds
from jaxcam.data.phantom import CLASS_NAMES, SPLITS
from jaxcam.data.tfds_phantom import load_phantom

DATA_KINDS = ("phantom", "chest_xray", "folder", "tfds")


@dataclasses.dataclass(frozen=True)
class DataSpec:
    """A parsed data set name: ``kind`` (one of ``DATA_KINDS``) and its ``location``."""

    kind: str
    location: str | None = None

    def __str__(self) -> str:
        return self.kind if self.location is None else f"{self.kind}:{self.location}"


def parse_data_spec(text: str) -> DataSpec:
    """``"phantom"``, ``"chest_xray:DIR"``, ``"folder:DIR"`` or ``"tfds:NAME"`` -> DataSpec."""
    kind, sep, location = str(text).partition(":")
    if kind not in DATA_KINDS:
        raise ValueError(
            f"unknown data set {text!r}: use phantom, chest_xray:DIR, folder:DIR or tfds:NAME"
        )
    if kind == "phantom":
        if sep:
            raise ValueError(f"'phantom' takes no location, got {text!r}")
        return DataSpec("phantom")
    if not location:
        raise ValueError(
            f"data set {text!r} needs a location: {kind}:{'NAME' if kind == 'tfds' else 'DIR'}"
        )
    if kind != "tfds":
        location = os.path.abspath(os.path.expanduser(location))
    return DataSpec(kind, location)


class ArraySplit:
    """In-memory arrays as a random-access split, like :class:`jaxcam.data.ImageSplit`:
    ``split[i] -> {"image", "label", "index"}`` plus any extra per-image arrays
    (e.g. ``mask``) given as keywords."""

    def __init__(
        self,
        images: np.ndarray,
        labels: np.ndarray,
        class_names: tuple[str, ...] = (),
        name: str = "",
        **extra: np.ndarray | None,
    ):
        self.images = np.asarray(images)
        self.labels = np.asarray(labels, np.int32)
        if self.images.ndim != 4:
            raise ValueError(f"images must be (N, H, W, C), got shape {self.images.shape}")
        if self.labels.shape != (len(self.images),):
            raise ValueError(
                f"labels must have shape ({len(self.images)},) to match the images, "
                f"got {self.labels.shape}"
            )
        self.class_names = tuple(class_names)
        self.name = name
        self.image_size = int(self.images.shape[1])
        self.channels = int(self.images.shape[-1])
        self.extra = {k: np.asarray(v) for k, v in extra.items() if v is not None}
        for key, value in self.extra.items():
            if len(value) != len(self.labels):
                raise ValueError(f"{key!r} has {len(value)} rows, the images {len(self.labels)}")

    def __len__(self) -> int:
        return len(self.labels)

    def __getitem__(self, index: int) -> dict[str, Any]:
        item = {"image": self.images[index], "label": self.labels[index], "index": np.int32(index)}
        return item | {k: v[index] for k, v in self.extra.items()}


def load_data_split(
    spec: DataSpec | str,
    split: str,
    *,
    data_dir: str | os.PathLike,
    image_size: int,
    channels: int,
    skip_corrupt: bool = False,
) -> Any:
    """A random-access split of ``spec`` at ``image_size`` x ``image_size`` x ``channels``.

    Folder data sets are prepared (decoded, resized, written as array_record under
    ``data_dir``) on first use; later calls read the prepared files. The phantom is
    generated at ``image_size`` (it is grayscale; 3 channels repeat it).
    """
    if isinstance(spec, str):
        spec = parse_data_spec(spec)
    if channels not in (1, 3):
        raise ValueError(f"channels must be 1 (grayscale) or 3 (RGB), got {channels!r}")
    if spec.kind == "phantom":
        if split not in SPLITS:
            raise ValueError(f"unknown split {split!r} of phantom; known splits: {list(SPLITS)}")
        arrays = load_phantom(split, data_dir, image_size=image_size)
        images = arrays.images if channels == 1 else np.repeat(arrays.images, 3, axis=-1)
        return ArraySplit(
            images, arrays.labels, CLASS_NAMES, name=f"phantom/{split}", mask=arrays.masks
        )
    if spec.kind == "chest_xray":
        return load_chest_xray(
            spec.location, split, data_dir, image_size, channels, skip_corrupt=skip_corrupt
        )
    if spec.kind == "folder":
        return load_image_folder(
            spec.location, split, data_dir, image_size, channels, skip_corrupt=skip_corrupt
        )
    return load_tfds(spec.location, split, data_dir, image_size, channels)


class Subset:
    """The examples ``indices`` of a random-access split, as a split (each example keeps
    its ``index`` in the full split, so tie orders do not depend on the selection)."""

    def __init__(self, split: Any, indices: np.ndarray):
        self.split = split
        self.indices = np.asarray(indices, np.int64)
        if self.indices.ndim != 1:
            raise ValueError(f"indices must be 1-D, got shape {self.indices.shape}")
        if len(self.indices) and not 0 <= self.indices.min() <= self.indices.max() < len(split):
            raise ValueError(f"indices must lie in [0, {len(split)}), got {self.indices}")
        self.labels = np.asarray(split.labels)[self.indices]
        self.class_names = getattr(split, "class_names", ())

    def __len__(self) -> int:
        return len(self.indices)

    def __getitem__(self, index: int) -> dict[str, Any]:
        return self.split[int(self.indices[index])]


def one_image_per_random_class(labels: np.ndarray, classes: int, seed: int) -> np.ndarray:
    """Indices of one random image from each of ``classes`` random classes present in
    ``labels`` (N,), in increasing class order (the paper's ImageNet protocol: 100 images
    of 100 random classes)."""
    rng = np.random.default_rng(seed)
    present = np.unique(np.asarray(labels))
    if int(classes) != classes or classes < 1:
        raise ValueError(f"classes must be an integer >= 1, got {classes!r}")
    if classes > len(present):
        raise ValueError(f"asked for {classes} random classes but the data has {len(present)}")
    chosen = np.sort(rng.choice(present, size=int(classes), replace=False))
    return np.array([rng.choice(np.flatnonzero(labels == c)) for c in chosen], np.int64)
