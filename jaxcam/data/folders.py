"""Real images from class-per-folder directories (and prepared TFDS sets), without TensorFlow.

Layouts.  ``root/<split>/<class>/*.<image>`` (e.g. the Kaggle "Chest X-ray
Images (Pneumonia)" set, ``chest_xray/{train,val,test}/{NORMAL,PNEUMONIA}/*.jpeg``)
or ``root/<class>/*`` (ImageNet style, one split called ``"all"``, which tfds, where
"all" is reserved, stores as "images").  The layout is
read off the folders under ``root``: a folder holding image files is a class
folder, one holding only sub-folders is a split folder; a mix is an error.  An image
file is one with an extension of a format PIL decodes by itself (``IMAGE_EXTENSIONS``:
.jpeg, .png, .bmp, .tif, .gif, .webp, ...).  Hidden entries (``.DS_Store``,
``._x.jpeg``) and ``__MACOSX`` are ignored without a word; whatever else a class folder
holds (files with other extensions, dangling symbolic links, sub-folders) is left out
and named, with the reason, in the preparation summary and in the metadata
(``ImageSplit.ignored``).  Class names are the sorted
class-folder names and must be the same in every split; :func:`load_chest_xray`
pins them to ("NORMAL", "PNEUMONIA") (NORMAL -> 0, PNEUMONIA -> 1) and needs the
splits train/val/test (other top-level folders, such as the nested duplicate
``chest_xray/chest_xray`` of the Kaggle archive, are ignored).

Preprocessing, done once when the data set is prepared (:func:`read_image` applies
the same to one file): decode with PIL, apply an EXIF orientation if any, drop an
alpha channel, map 16-bit grayscale ("I;16", "I") to 8 bits by round(v / 257),
convert to "L" (channels=1, ITU-R 601-2 luma for colour files) or "RGB"
(channels=3, gray replicated), then squash to ``image_size`` x ``image_size``
(aspect ratio ignored, so no pixel is cropped away) with PIL's BILINEAR filter,
which widens its support when shrinking (antialiased).  Stored as uint8 PNG; a
pixel reads as uint8 / 255, so black is exactly 0.0 and white exactly 1.0.

Prepared data (array_record, read with ``tfds`` random access, no TensorFlow) lives
in ``<data_dir>/<builder>/<config>/1.0.0``, builder ``jaxcam_image_folder`` or
``jaxcam_chest_xray``, config ``size<S>_ch<C>_<hash>`` where ``<hash>`` is the
first 10 hex digits of the SHA-256 of the resolved source path.  Features:
``image`` uint8 (S, S, C) PNG, ``label`` ClassLabel(class names), ``path`` Text
(the file's path relative to ``root``, with "/").  Records are in class order, then
file name order.  The builder metadata (``metadata.json`` next to the records)
holds per split the labels, paths, skipped and left-out files, so labels are known without
decoding images, and a fingerprint (relative paths and byte sizes) of the source:
a later load whose source folder still exists but has changed raises instead of
returning stale data.  tfds writes into a temporary folder and renames it when
done, so a failed build leaves nothing that looks prepared.  While a process prepares
a set it holds ``<data_dir>/<builder>/<config>/.prepare.lock`` (:mod:`jaxcam.locks`); a
second process preparing the same set at the same time gets an error naming the first.

Corrupt images (PIL cannot open or fully decode them, e.g. truncated files): by
default preparing raises ``ValueError`` naming the file.  With
``skip_corrupt=True`` such a file is left out with a ``warnings.warn`` naming it;
the skipped paths are saved in the metadata (``ImageSplit.skipped``,
``ImageSplit.num_skipped``).  Loading data prepared with skipped files without
``skip_corrupt=True`` raises, so the default never silently drops files.
"""

from __future__ import annotations

import dataclasses
import hashlib
import io
import operator
import os
import re
import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import tensorflow_datasets as tfds
from etils import epath
from PIL import Image, ImageOps

from jaxcam.data.phantom import CLASS_NAMES
from jaxcam.locks import acquire

# Formats PIL identifies but decodes only with outside programs or handlers.
_IDENTIFY_ONLY = frozenset({"BUFR", "EPS", "GRIB", "HDF5", "MPEG", "WMF"})


def _decodable_extensions() -> tuple[str, ...]:
    """File name extensions (lower case, with the dot) of the formats PIL decodes itself."""
    Image.init()
    formats = set(Image.OPEN) - _IDENTIFY_ONLY
    return tuple(
        sorted(ext for ext, fmt in Image.registered_extensions().items() if fmt in formats)
    )


IMAGE_EXTENSIONS = _decodable_extensions()
_IMAGE_FILES = "image files (.jpeg, .png, .bmp, .tif, ... any format PIL reads)"
ALL_SPLIT = "all"
_ALL_STORED = "images"  # tfds reserves "all" (the union of all splits)
CHEST_XRAY_SPLITS = ("train", "val", "test")
CHEST_XRAY_CLASSES = CLASS_NAMES
_IGNORED_DIRS = frozenset({"__MACOSX"})
_SPLIT_NAME = re.compile(r"[\w-]+")
_SPLIT_ORDER = ("train", "training", "val", "valid", "validation", "dev", "test", "all")
_WIDE_MODES = frozenset({"I", "I;16", "I;16L", "I;16B", "I;16N"})
_DECODE_ERRORS = (OSError, SyntaxError, ValueError, EOFError, Image.DecompressionBombError)
_LABEL_CHUNK = 1024


# --- argument checks ---------------------------------------------------------


def _check_int(name: str, value: Any, minimum: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int | np.integer):
        raise TypeError(f"{name} must be an integer, got {value!r}")
    if value < minimum:
        raise ValueError(f"{name} must be >= {minimum}, got {value!r}")
    return int(value)


def _check_channels(channels: Any) -> int:
    channels = _check_int("channels", channels, 1)
    if channels not in (1, 3):
        raise ValueError(f"channels must be 1 (grayscale) or 3 (RGB), got {channels}")
    return channels


def _check_dir(source_dir: str | os.PathLike) -> Path:
    root = _resolve(source_dir)
    if not root.exists():
        raise FileNotFoundError(f"source_dir {os.fspath(source_dir)!r} does not exist")
    if not root.is_dir():
        raise NotADirectoryError(f"source_dir {os.fspath(source_dir)!r} is not a directory")
    return root


def _resolve(path: str | os.PathLike) -> Path:
    if not isinstance(path, str | os.PathLike):
        raise TypeError(f"expected a path (str or os.PathLike), got {path!r}")
    return Path(path).expanduser().resolve()


# --- decoding and preprocessing ------------------------------------------------


def _to_channels(image: Image.Image, channels: int) -> Image.Image:
    """``image`` in mode "L" (channels 1) or "RGB" (channels 3); see the module docstring."""
    if image.mode in _WIDE_MODES:
        wide = np.asarray(image).astype(np.float64)
        image = Image.fromarray(np.clip(np.round(wide / 257.0), 0, 255).astype(np.uint8))
    elif image.mode == "F":
        raise ValueError("floating-point (mode 'F') images are not supported")
    elif image.mode in ("P", "PA"):  # palette (maybe with transparency): via RGBA
        image = image.convert("RGBA")
    target = "L" if channels == 1 else "RGB"
    return image if image.mode == target else image.convert(target)


def _preprocess(image: Image.Image, image_size: int, channels: int) -> np.ndarray:
    """uint8 (S, S, C): channels converted, then squashed to S x S (BILINEAR, antialiased)."""
    image = _to_channels(image, channels)
    if image.size != (image_size, image_size):
        image = image.resize((image_size, image_size), Image.Resampling.BILINEAR)
    array = np.asarray(image, dtype=np.uint8)
    return array.reshape(image_size, image_size, channels)


def _decode_file(path: Path, image_size: int, channels: int) -> np.ndarray:
    """uint8 (S, S, C) of one image file; ValueError naming the file if it is corrupt."""
    try:
        with Image.open(path) as image:
            image.load()
            try:
                ImageOps.exif_transpose(image, in_place=True)
            except Exception:  # a malformed EXIF block does not make the pixels unusable
                pass
            return _preprocess(image, image_size, channels)
    except FileNotFoundError:
        raise
    except _DECODE_ERRORS as err:
        raise ValueError(f"cannot decode image file {os.fspath(path)!r}: {err}") from err


def _decode_array(array: np.ndarray, image_size: int, channels: int) -> np.ndarray:
    """uint8 (S, S, C) from a decoded uint8/uint16 (H, W, C') image array."""
    if array.ndim == 2:
        array = array[..., None]
    if array.shape == (image_size, image_size, channels) and array.dtype == np.uint8:
        return array
    if array.ndim != 3 or array.shape[-1] not in (1, 2, 3, 4):
        raise ValueError(f"cannot convert an image of shape {array.shape} to {channels} channels")
    if array.dtype not in (np.uint8, np.uint16):
        raise TypeError(f"images must be uint8 or uint16, got {array.dtype}")
    if array.dtype == np.uint16:
        if array.shape[-1] != 1:
            raise ValueError("uint16 images must have one channel")
        array = np.clip(np.round(array.astype(np.float64) / 257.0), 0, 255).astype(np.uint8)
    plane = array[..., 0] if array.shape[-1] == 1 else array
    return _preprocess(Image.fromarray(np.ascontiguousarray(plane)), image_size, channels)


def read_image(path: str | os.PathLike, image_size: int, channels: int) -> np.ndarray:
    """One image file, preprocessed as when preparing a data set: float32 (S, S, C) in [0, 1].

    Raises FileNotFoundError if ``path`` is missing, ValueError if it cannot be decoded.
    """
    image_size = _check_int("image_size", image_size, 1)
    channels = _check_channels(channels)
    file = _resolve(path)
    if not file.is_file():
        raise FileNotFoundError(f"image file {os.fspath(path)!r} does not exist")
    return _decode_file(file, image_size, channels).astype(np.float32) / np.float32(255.0)


def _png(array: np.ndarray) -> bytes:
    """PNG bytes of a uint8 (S, S, 1) or (S, S, 3) array."""
    plane = array[..., 0] if array.shape[-1] == 1 else array
    buffer = io.BytesIO()
    Image.fromarray(np.ascontiguousarray(plane)).save(buffer, format="PNG", compress_level=1)
    return buffer.getvalue()


# --- folder layout -----------------------------------------------------------------


def _visible(entry: os.DirEntry) -> bool:
    return not entry.name.startswith(".") and entry.name not in _IGNORED_DIRS


def _subdirs(path: Path) -> list[str]:
    with os.scandir(path) as entries:
        return sorted(e.name for e in entries if _visible(e) and e.is_dir())


def _class_folder(path: Path) -> tuple[list[str], list[tuple[str, str]]]:
    """(image file names, [(name, why it is left out), ...]) of a class folder, sorted;
    hidden entries are in neither."""
    images, left_out = [], []
    with os.scandir(path) as entries:
        for entry in entries:
            if not _visible(entry):
                continue
            if entry.is_file() and entry.name.lower().endswith(IMAGE_EXTENSIONS):
                images.append(entry.name)
            elif entry.is_symlink() and not os.path.exists(entry.path):
                left_out.append((entry.name, "dangling symbolic link"))
            elif entry.is_dir():
                left_out.append((entry.name, "a folder (class folders are not searched further)"))
            elif entry.is_file():
                suffix = Path(entry.name).suffix
                left_out.append(
                    (entry.name, f"not an image file{f' ({suffix})' if suffix else ''}")
                )
            else:
                left_out.append((entry.name, "not a regular file"))
    return sorted(images), sorted(left_out)


def _image_files(path: Path) -> list[str]:
    return _class_folder(path)[0]


def _named(left_out: Sequence[Sequence[str]], limit: int = 3) -> str:
    """``'a.txt' (not an image file (.txt)), ...`` for the first ``limit`` entries."""
    shown = ", ".join(f"{path!r} ({why})" for path, why in left_out[:limit])
    more = len(left_out) - limit
    return shown + (f" and {more} more" if more > 0 else "")


@dataclasses.dataclass(frozen=True)
class _Layout:
    """What a source folder holds: split -> ((relative path, label), ...) in record order."""

    root: Path
    nested: bool
    class_names: tuple[str, ...]
    files: dict[str, tuple[tuple[str, int], ...]]
    ignored: dict[str, tuple[tuple[str, str], ...]] = dataclasses.field(default_factory=dict)

    @property
    def splits(self) -> tuple[str, ...]:
        return tuple(self.files)

    def fingerprint(self) -> str:
        digest = hashlib.sha256()
        for split, files in self.files.items():
            for relative, label in files:
                size = (self.root / relative).stat().st_size
                digest.update(f"{split}\t{relative}\t{label}\t{size}\n".encode())
        return digest.hexdigest()


def _split_key(name: str) -> tuple[int, str]:
    return (_SPLIT_ORDER.index(name) if name in _SPLIT_ORDER else len(_SPLIT_ORDER), name)


def _detect(root: Path) -> tuple[bool, list[str]]:
    """(nested, split folder names) of ``root``; flat layouts have no split folders."""
    classes, splits, empty = [], [], []
    for name in _subdirs(root):
        if _image_files(root / name):
            classes.append(name)
        elif _subdirs(root / name):
            splits.append(name)
        else:
            empty.append(name)
    if classes and splits:
        raise ValueError(
            f"{root} mixes class folders holding images {classes} with split folders "
            f"holding sub-folders {splits}; use root/<class>/* or root/<split>/<class>/*"
        )
    if not classes and not splits:
        where = f" (empty folders: {empty})" if empty else ""
        raise ValueError(
            f"no images found in {root}{where}: expected root/<class>/<image files> or "
            f"root/<split>/<class>/<image files>, {_IMAGE_FILES}"
        )
    if splits and empty:
        raise ValueError(f"split folder(s) {empty} in {root} hold no class folders")
    if classes and empty:
        raise ValueError(
            f"empty class folder(s) {[str(root / e) for e in empty]}: no {_IMAGE_FILES}"
        )
    return bool(splits), sorted(splits, key=_split_key)


def _scan(
    root: Path,
    classes: tuple[str, ...] | None = None,
    splits: tuple[str, ...] | None = None,
) -> _Layout:
    """The layout of ``root`` (an existing folder), optionally with pinned classes and splits."""
    if splits is not None:
        missing = [s for s in splits if not (root / s).is_dir()]
        if missing:
            raise ValueError(
                f"{root} lacks the split folder(s) {missing}; expected "
                f"{'/'.join(splits)}/<class>/ folders (found: {_subdirs(root)})"
            )
        nested, split_dirs = True, list(splits)
    else:
        nested, split_dirs = _detect(root)
    bad = [s for s in split_dirs if not _SPLIT_NAME.fullmatch(s) or s.lower() == ALL_SPLIT]
    if bad:
        raise ValueError(
            f"split folder names must be letters, digits, '_' or '-' and not 'all' "
            f"(reserved by tfds), got {bad} in {root}"
        )
    found = {s: _subdirs(root / s) for s in split_dirs} if nested else {ALL_SPLIT: _subdirs(root)}
    names = tuple(classes) if classes is not None else tuple(sorted(set().union(*found.values())))
    for split, folders in found.items():
        where = root / split if nested else root
        missing = [c for c in names if c not in folders]
        extra = [c for c in folders if c not in names]
        if missing or extra:
            detail = f"lacks class folder(s) {missing}" if missing else ""
            if extra:
                detail += (" and " if detail else "") + f"has unexpected folder(s) {extra}"
            raise ValueError(f"{where} {detail}; every split needs exactly {list(names)}")
    files: dict[str, tuple[tuple[str, int], ...]] = {}
    ignored: dict[str, tuple[tuple[str, str], ...]] = {}
    for split in found:
        prefix = f"{split}/" if nested else ""
        entries: list[tuple[str, int]] = []
        left_out: list[tuple[str, str]] = []
        for label, name in enumerate(names):
            folder = root / prefix / name
            images, others = _class_folder(folder)
            if not images:
                found_there = f" (left out: {_named(others)})" if others else ""
                raise ValueError(
                    f"empty class folder {str(folder)!r}: no {_IMAGE_FILES}{found_there}"
                )
            entries.extend((f"{prefix}{name}/{file}", label) for file in images)
            left_out.extend((f"{prefix}{name}/{file}", why) for file, why in others)
        files[split] = tuple(entries)
        ignored[split] = tuple(left_out)
    return _Layout(root, nested, names, files, ignored)


def split_names(source_dir: str | os.PathLike) -> tuple[str, ...]:
    """The splits in a source folder: its split folders (train, val, test first), or ("all",)."""
    nested, splits = _detect(_check_dir(source_dir))
    return tuple(splits) if nested else (ALL_SPLIT,)


# --- the TFDS builder ----------------------------------------------------------------


@dataclasses.dataclass(eq=False)
class FolderConfig(tfds.core.BuilderConfig):
    """Source folder (resolved), image size, channels and (when building) its class names."""

    source_dir: str = ""
    image_size: int = 224
    channels: int = 1
    class_names: tuple[str, ...] = ()


def folder_config_name(source_dir: str | os.PathLike, image_size: int, channels: int) -> str:
    """``size<S>_ch<C>_<hash>``: hash = 10 hex digits of SHA-256 of the resolved source path."""
    digest = hashlib.sha256(os.fspath(_resolve(source_dir)).encode()).hexdigest()[:10]
    return f"size{int(image_size)}_ch{int(channels)}_{digest}"


class JaxcamImageFolder(tfds.core.GeneratorBasedBuilder):
    """Class-per-folder images, preprocessed to S x S x C uint8 PNG (see the module docstring)."""

    VERSION = tfds.core.Version("1.0.0")
    RELEASE_NOTES = {"1.0.0": "Initial release."}
    # See tfds_phantom.PhantomChestXray: tfds 4.9.10 needs the code path given.
    code_path = epath.Path(__file__)
    PINNED_CLASSES: tuple[str, ...] | None = None
    PINNED_SPLITS: tuple[str, ...] | None = None

    def __init__(self, *, skip_corrupt: bool = False, **kwargs: Any):
        self._skip_corrupt = bool(skip_corrupt)
        super().__init__(**kwargs)

    def _log_download_bytes(self) -> None:
        # tfds' own line ("Downloading and preparing dataset Unknown size ...") is wrong
        # here: nothing is downloaded, the images are read from the source folder.
        cfg = self.builder_config
        print(
            f"preparing {cfg.source_dir} ({cfg.image_size}x{cfg.image_size}x{cfg.channels}) "
            f"into {self.data_dir} (first use only; later runs read it from there)"
        )

    def _log_download_done(self) -> None:
        print(f"prepared {self.builder_config.source_dir} into {self.data_dir}")

    def _info(self) -> tfds.core.DatasetInfo:
        cfg = self.builder_config
        size, channels = cfg.image_size, cfg.channels
        # Without class names (loading prepared data) tfds restores them from disk.
        label = tfds.features.ClassLabel(names=list(cfg.class_names) or None)
        return tfds.core.DatasetInfo(
            builder=self,
            description=f"Images of {cfg.source_dir}, {size}x{size}x{channels}.",
            features=tfds.features.FeaturesDict(
                {
                    "image": tfds.features.Image(shape=(size, size, channels), dtype=np.uint8),
                    "label": label,
                    "path": tfds.features.Text(),
                }
            ),
            supervised_keys=("image", "label"),
            disable_shuffling=True,
            metadata=tfds.core.MetadataDict(),
        )

    def _split_generators(self, dl_manager):
        del dl_manager  # Nothing to download.
        cfg = self.builder_config
        layout = _scan(Path(cfg.source_dir), self.PINNED_CLASSES, self.PINNED_SPLITS)
        if layout.class_names != tuple(cfg.class_names):
            raise ValueError(
                f"class folders of {cfg.source_dir} changed while preparing: "
                f"{list(layout.class_names)} != {list(cfg.class_names)}"
            )
        self.info.metadata["fingerprint"] = layout.fingerprint()
        self.info.metadata["splits"] = {}
        return {
            _tfds_split(split): self._generate_examples(layout, split) for split in layout.splits
        }

    def _generate_examples(self, layout: _Layout, split: str):
        cfg = self.builder_config
        labels, paths, skipped = [], [], []
        for relative, label in layout.files[split]:
            try:
                image = _decode_file(layout.root / relative, cfg.image_size, cfg.channels)
            except ValueError as err:
                if not self._skip_corrupt:
                    raise ValueError(f"{err} (pass skip_corrupt=True to skip it)") from err
                warnings.warn(f"skipping corrupt image {relative!r}: {err}", stacklevel=2)
                skipped.append(relative)
                continue
            labels.append(label)
            paths.append(relative)
            yield relative, {"image": _png(image), "label": label, "path": relative}
        if not labels:
            raise ValueError(f"split {split!r} of {layout.root} has no readable images")
        ignored = layout.ignored.get(split, ())
        if ignored:
            print(
                f"left out {len(ignored)} entr{'y' if len(ignored) == 1 else 'ies'} of split "
                f"{split!r} that are not image files: {_named(ignored)} (ImageSplit.ignored)"
            )
        self.info.metadata["splits"][split] = {
            "labels": labels,
            "paths": paths,
            "skipped": skipped,
            "ignored": [list(entry) for entry in ignored],
        }


class JaxcamChestXray(JaxcamImageFolder):
    """The Kaggle chest X-ray layout: train/val/test splits, classes NORMAL (0), PNEUMONIA (1)."""

    PINNED_CLASSES = CHEST_XRAY_CLASSES
    PINNED_SPLITS = CHEST_XRAY_SPLITS


def _prepare(
    builder_cls: type[JaxcamImageFolder],
    source_dir: str | os.PathLike,
    split: str,
    data_dir: str | os.PathLike,
    image_size: int,
    channels: int,
    skip_corrupt: bool,
) -> JaxcamImageFolder:
    """The prepared builder for ``source_dir``, building it first if missing."""
    root = _resolve(source_dir)
    name = folder_config_name(root, image_size, channels)
    common = {"data_dir": os.fspath(_resolve(data_dir)), "file_format": "array_record"}
    config = FolderConfig(
        name=name, source_dir=os.fspath(root), image_size=image_size, channels=channels
    )
    builder = builder_cls(config=config, skip_corrupt=skip_corrupt, **common)
    if builder.is_prepared():
        return _checked_prepared(builder, root, split, skip_corrupt)
    layout = _scan(_check_dir(source_dir), builder_cls.PINNED_CLASSES, builder_cls.PINNED_SPLITS)
    _check_split(split, layout.splits)
    data_path = builder.data_path
    busy = lambda holder: (
        f"{root} is being prepared into {data_path} by {holder}; wait for it to finish, "
        "then run again"
    )
    lock = Path(common["data_dir"], builder_cls.name, name, ".prepare.lock")
    with acquire(lock, busy):
        builder = builder_cls(config=config, skip_corrupt=skip_corrupt, **common)
        if builder.is_prepared():  # by another process since the check above
            return _checked_prepared(builder, root, split, skip_corrupt)
        config = dataclasses.replace(config, class_names=layout.class_names)
        builder = builder_cls(config=config, skip_corrupt=skip_corrupt, **common)
        builder.download_and_prepare(
            download_config=tfds.download.DownloadConfig(try_download_gcs=False)
        )
    return builder


def _checked_prepared(
    builder: JaxcamImageFolder, root: Path, split: str, skip_corrupt: bool
) -> JaxcamImageFolder:
    """``builder`` (prepared) once its source is unchanged, its skipped files allowed and
    ``split`` one of its splits."""
    builder_cls = type(builder)
    meta = builder.info.metadata
    if root.is_dir():
        layout = _scan(root, builder_cls.PINNED_CLASSES, builder_cls.PINNED_SPLITS)
        if layout.fingerprint() != meta["fingerprint"]:
            raise ValueError(
                f"{root} changed since it was prepared into {builder.data_path}; "
                "delete that folder to prepare it again"
            )
    skipped = [p for s in meta["splits"].values() for p in s["skipped"]]
    if skipped and not skip_corrupt:
        raise ValueError(
            f"{builder.data_path} was prepared leaving out {len(skipped)} corrupt "
            f"image(s) (first: {skipped[0]!r}); pass skip_corrupt=True to load it"
        )
    _check_split(split, tuple(meta["splits"]))
    return builder


def _tfds_split(split: str) -> str:
    """The tfds name of a split: "all" (a flat layout's only split) is stored as "images"."""
    return _ALL_STORED if split == ALL_SPLIT else split


def _check_split(split: str, known: Sequence[str]) -> None:
    if not isinstance(split, str):
        raise TypeError(f"split must be a string, got {split!r}")
    if split not in known:
        raise ValueError(f"unknown split {split!r}; known splits: {list(known)}")


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
            image = _decode_array(image, self.image_size, self.channels)
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
            _tfds_split(split), decoders={"path": tfds.decode.SkipDecoding()}
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
    Images float32 (S, S, channels), S = ``image_size``; see the module docstring.
    """
    image_size = _check_int("image_size", image_size, 1)
    channels = _check_channels(channels)
    builder = _prepare(
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
    image_size = _check_int("image_size", image_size, 1)
    channels = _check_channels(channels)
    _check_split(split, CHEST_XRAY_SPLITS)
    builder = _prepare(
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
    image_size = _check_int("image_size", image_size, 1)
    channels = _check_channels(channels)
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
    _check_split(base, tuple(info.splits))
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
