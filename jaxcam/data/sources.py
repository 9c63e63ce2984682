"""Data sources by name: ``phantom``, ``chest_xray:DIR``, ``folder:DIR``, ``tfds:NAME``, ...

The command line and the experiments take a data set as one string ``PREFIX[:LOCATION]``;
the prefix names a registered source (:func:`register_data_source`):

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
the model's input size and converted to its channels. A new source is one loader
function and one :func:`register_data_source` call.
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Callable
from typing import Any

import numpy as np

from jaxcam.data.folders import load_chest_xray, load_image_folder, load_tfds
from jaxcam.data.phantom import CLASS_NAMES, SPLITS
from jaxcam.data.splits import ArraySplit
from jaxcam.data.tfds_phantom import load_phantom

#: ``loader(location, split, *, data_dir, image_size, channels, skip_corrupt) -> split``.
DataLoader = Callable[..., Any]


@dataclasses.dataclass(frozen=True)
class DataSource:
    """A registered data source.

    Attributes:
      prefix: the name before the colon (``folder``).
      loader: ``loader(location, split, *, data_dir, image_size, channels, skip_corrupt)``
        returning a random-access split.
      location: what follows the colon, for help texts (``DIR``, ``NAME``), or ``None``
        for a source that takes no location.
      is_path: the location is a path (made absolute when parsed).
      description: one line for help texts.
    """

    prefix: str
    loader: DataLoader
    location: str | None = "DIR"
    is_path: bool = True
    description: str = ""

    def usage(self) -> str:
        return self.prefix if self.location is None else f"{self.prefix}:{self.location}"


_SOURCES: dict[str, DataSource] = {}


def register_data_source(
    prefix: str,
    loader: DataLoader,
    *,
    location: str | None = "DIR",
    is_path: bool = True,
    description: str = "",
) -> DataSource:
    """Register ``loader`` for data sets named ``PREFIX:LOCATION`` (or ``PREFIX`` alone
    when ``location`` is None). ValueError for a taken or malformed prefix."""
    if not isinstance(prefix, str) or not prefix.isidentifier():
        raise ValueError(f"a data source prefix must be an identifier, got {prefix!r}")
    if prefix in _SOURCES:
        raise ValueError(f"data source {prefix!r} is already registered")
    if not callable(loader):
        raise TypeError(f"the loader of data source {prefix!r} must be callable")
    source = DataSource(prefix, loader, location, is_path and location is not None, description)
    _SOURCES[prefix] = source
    return source


def data_source_names() -> tuple[str, ...]:
    return tuple(_SOURCES)


def data_source_usage() -> str:
    """``phantom | chest_xray:DIR | folder:DIR | tfds:NAME | ...`` (help texts)."""
    return " | ".join(source.usage() for source in _SOURCES.values())


@dataclasses.dataclass(frozen=True)
class DataSpec:
    """A parsed data set name: ``kind`` (a registered prefix) and its ``location``."""

    kind: str
    location: str | None = None

    def __str__(self) -> str:
        return self.kind if self.location is None else f"{self.kind}:{self.location}"


def parse_data_spec(text: str) -> DataSpec:
    """``"phantom"``, ``"chest_xray:DIR"``, ``"folder:DIR"``, ``"tfds:NAME"`` -> DataSpec."""
    kind, sep, location = str(text).partition(":")
    if kind not in _SOURCES:
        raise ValueError(f"unknown data set {text!r}: use {data_source_usage()}")
    source = _SOURCES[kind]
    if source.location is None:
        if sep:
            raise ValueError(f"{kind!r} takes no location, got {text!r}")
        return DataSpec(kind)
    if not location:
        raise ValueError(f"data set {text!r} needs a location: {source.usage()}")
    if source.is_path:
        location = os.path.abspath(os.path.expanduser(location))
    return DataSpec(kind, location)


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
    return _SOURCES[spec.kind].loader(
        spec.location,
        split,
        data_dir=data_dir,
        image_size=image_size,
        channels=channels,
        skip_corrupt=skip_corrupt,
    )


def _load_phantom(
    location: None, split: str, *, data_dir: Any, image_size: int, channels: int, **_: Any
) -> ArraySplit:
    if split not in SPLITS:
        raise ValueError(f"unknown split {split!r} of phantom; known splits: {list(SPLITS)}")
    arrays = load_phantom(split, data_dir, image_size=image_size)
    images, twins = arrays.images, arrays.twins
    assert twins is not None  # load_phantom always fills them
    if channels == 3:
        images, twins = np.repeat(images, 3, axis=-1), np.repeat(twins, 3, axis=-1)
    # Items carry "mask" and "twin" (the image without its lesions, jaxcam.reliance).
    return ArraySplit(
        images,
        arrays.labels,
        CLASS_NAMES,
        name=f"phantom/{split}",
        mask=arrays.masks,
        twin=twins,
    )


def _load_folder(kind_loader: Callable[..., Any]) -> DataLoader:
    def load(
        location: str, split: str, *, data_dir: Any, image_size: int, channels: int,
        skip_corrupt: bool = False,
    ) -> Any:  # fmt: skip
        return kind_loader(
            location, split, data_dir, image_size, channels, skip_corrupt=skip_corrupt
        )

    return load


def _load_tfds(
    location: str, split: str, *, data_dir: Any, image_size: int, channels: int, **_: Any
) -> Any:
    return load_tfds(location, split, data_dir, image_size, channels)


register_data_source(
    "phantom", _load_phantom, location=None, description="the embedded phantom chest X-rays"
)
register_data_source(
    "chest_xray",
    _load_folder(load_chest_xray),
    description="Kaggle layout DIR/{train,val,test}/{NORMAL,PNEUMONIA}/*",
)
register_data_source(
    "folder",
    _load_folder(load_image_folder),
    description="class-per-folder DIR/<split>/<class>/* or DIR/<class>/*",
)
register_data_source(
    "tfds",
    _load_tfds,
    location="NAME",
    is_path=False,
    description="a TFDS set prepared as array_record under the data folder",
)


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
