"""Class-per-folder source layouts: which folders are splits and classes, which files are images.

Layouts.  ``root/<split>/<class>/*.<image>`` (e.g. the Kaggle "Chest X-ray
Images (Pneumonia)" set, ``chest_xray/{train,val,test}/{NORMAL,PNEUMONIA}/*.jpeg``)
or ``root/<class>/*`` (ImageNet style, one split called ``"all"``, which tfds, where
"all" is reserved, stores as "images").  The layout is
read off the folders under ``root``: a folder holding image files is a class
folder, one holding only sub-folders is a split folder; a mix is an error.  An image
file is one with an extension of a format PIL decodes by itself
(:data:`jaxcam.data.images.IMAGE_EXTENSIONS`: .jpeg, .png, .bmp, .tif, .gif, .webp, ...).
Hidden entries (``.DS_Store``,
``._x.jpeg``) and ``__MACOSX`` are ignored without a word; whatever else a class folder
holds (files with other extensions, dangling symbolic links, sub-folders) is left out
and named, with the reason, in the preparation summary and in the metadata
(``ImageSplit.ignored``).  Class names are the sorted
class-folder names and must be the same in every split; the chest X-ray loader
(:func:`jaxcam.data.prepared.load_chest_xray`) pins them to ("NORMAL", "PNEUMONIA")
(NORMAL -> 0, PNEUMONIA -> 1) and needs the
splits train/val/test (other top-level folders, such as the nested duplicate
``chest_xray/chest_xray`` of the Kaggle archive, are ignored).

A :class:`FolderLayout` lists per split the image files (relative path, label) in record
order (class order, then file name order) and the left-out entries; its fingerprint
(relative paths and byte sizes) tells whether a prepared copy is stale.
"""

from __future__ import annotations

import dataclasses
import hashlib
import os
import re
from collections.abc import Sequence
from pathlib import Path

from jaxcam.data.images import IMAGE_EXTENSIONS, resolve_path

_IMAGE_FILES = "image files (.jpeg, .png, .bmp, .tif, ... any format PIL reads)"
ALL_SPLIT = "all"
_IGNORED_DIRS = frozenset({"__MACOSX"})
_SPLIT_NAME = re.compile(r"[\w-]+")
_SPLIT_ORDER = ("train", "training", "val", "valid", "validation", "dev", "test", "all")


def check_source_dir(source_dir: str | os.PathLike) -> Path:
    """``source_dir`` resolved; FileNotFoundError / NotADirectoryError if it is no folder."""
    root = resolve_path(source_dir)
    if not root.exists():
        raise FileNotFoundError(f"source_dir {os.fspath(source_dir)!r} does not exist")
    if not root.is_dir():
        raise NotADirectoryError(f"source_dir {os.fspath(source_dir)!r} is not a directory")
    return root


def check_split(split: str, known: Sequence[str]) -> None:
    """TypeError if ``split`` is not a string, ValueError if it is not one of ``known``."""
    if not isinstance(split, str):
        raise TypeError(f"split must be a string, got {split!r}")
    if split not in known:
        raise ValueError(f"unknown split {split!r}; known splits: {list(known)}")


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


def describe_left_out(left_out: Sequence[Sequence[str]], limit: int = 3) -> str:
    """``'a.txt' (not an image file (.txt)), ...`` for the first ``limit`` entries."""
    shown = ", ".join(f"{path!r} ({why})" for path, why in left_out[:limit])
    more = len(left_out) - limit
    return shown + (f" and {more} more" if more > 0 else "")


@dataclasses.dataclass(frozen=True)
class FolderLayout:
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
        """SHA-256 hex digest of (split, relative path, label, byte size) of every file."""
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


def scan_folder(
    root: Path,
    classes: tuple[str, ...] | None = None,
    splits: tuple[str, ...] | None = None,
) -> FolderLayout:
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
                found_there = f" (left out: {describe_left_out(others)})" if others else ""
                raise ValueError(
                    f"empty class folder {str(folder)!r}: no {_IMAGE_FILES}{found_there}"
                )
            entries.extend((f"{prefix}{name}/{file}", label) for file in images)
            left_out.extend((f"{prefix}{name}/{file}", why) for file, why in others)
        files[split] = tuple(entries)
        ignored[split] = tuple(left_out)
    return FolderLayout(root, nested, names, files, ignored)


def split_names(source_dir: str | os.PathLike) -> tuple[str, ...]:
    """The splits in a source folder: its split folders (train, val, test first), or ("all",)."""
    nested, splits = _detect(check_source_dir(source_dir))
    return tuple(splits) if nested else (ALL_SPLIT,)
