"""The TFDS builders of class-per-folder image sets, and preparing them (under a lock).

Prepared data (array_record, read with ``tfds`` random access, no TensorFlow) lives
in ``<data_dir>/<builder>/<config>/1.0.0``, builder ``jaxcam_image_folder`` or
``jaxcam_chest_xray``, config ``size<S>_ch<C>_<hash>`` where ``<hash>`` is the
first 10 hex digits of the SHA-256 of the resolved source path.  Features:
``image`` uint8 (S, S, C) PNG (preprocessed as in :mod:`jaxcam.data.images`), ``label``
ClassLabel(class names), ``path`` Text
(the file's path relative to ``root``, with "/").  Records are in class order, then
file name order (source layouts: :mod:`jaxcam.data.folder_scan`).  The builder metadata
(``metadata.json`` next to the records)
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
import os
import warnings
from pathlib import Path
from typing import Any

import numpy as np
import tensorflow_datasets as tfds
from etils import epath

from jaxcam.data.folder_scan import (
    ALL_SPLIT,
    FolderLayout,
    check_source_dir,
    check_split,
    describe_left_out,
    scan_folder,
)
from jaxcam.data.images import decode_image_file, png_bytes, resolve_path
from jaxcam.data.phantom import CLASS_NAMES
from jaxcam.locks import acquire

_ALL_STORED = "images"  # tfds reserves "all" (the union of all splits)
CHEST_XRAY_SPLITS = ("train", "val", "test")
CHEST_XRAY_CLASSES = CLASS_NAMES


def stored_split_name(split: str) -> str:
    """The tfds name of a split: "all" (a flat layout's only split) is stored as "images"."""
    return _ALL_STORED if split == ALL_SPLIT else split


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
    digest = hashlib.sha256(os.fspath(resolve_path(source_dir)).encode()).hexdigest()[:10]
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
        layout = scan_folder(Path(cfg.source_dir), self.PINNED_CLASSES, self.PINNED_SPLITS)
        if layout.class_names != tuple(cfg.class_names):
            raise ValueError(
                f"class folders of {cfg.source_dir} changed while preparing: "
                f"{list(layout.class_names)} != {list(cfg.class_names)}"
            )
        self.info.metadata["fingerprint"] = layout.fingerprint()
        self.info.metadata["splits"] = {}
        return {
            stored_split_name(split): self._generate_examples(layout, split)
            for split in layout.splits
        }

    def _generate_examples(self, layout: FolderLayout, split: str):
        cfg = self.builder_config
        labels, paths, skipped = [], [], []
        for relative, label in layout.files[split]:
            try:
                image = decode_image_file(layout.root / relative, cfg.image_size, cfg.channels)
            except ValueError as err:
                if not self._skip_corrupt:
                    raise ValueError(f"{err} (pass skip_corrupt=True to skip it)") from err
                warnings.warn(f"skipping corrupt image {relative!r}: {err}", stacklevel=2)
                skipped.append(relative)
                continue
            labels.append(label)
            paths.append(relative)
            yield relative, {"image": png_bytes(image), "label": label, "path": relative}
        if not labels:
            raise ValueError(f"split {split!r} of {layout.root} has no readable images")
        ignored = layout.ignored.get(split, ())
        if ignored:
            print(
                f"left out {len(ignored)} entr{'y' if len(ignored) == 1 else 'ies'} of split "
                f"{split!r} that are not image files: {describe_left_out(ignored)} "
                "(ImageSplit.ignored)"
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


def prepare_folder(
    builder_cls: type[JaxcamImageFolder],
    source_dir: str | os.PathLike,
    split: str,
    data_dir: str | os.PathLike,
    image_size: int,
    channels: int,
    skip_corrupt: bool,
) -> JaxcamImageFolder:
    """The prepared builder for ``source_dir``, building it first if missing."""
    root = resolve_path(source_dir)
    name = folder_config_name(root, image_size, channels)
    common = {"data_dir": os.fspath(resolve_path(data_dir)), "file_format": "array_record"}
    config = FolderConfig(
        name=name, source_dir=os.fspath(root), image_size=image_size, channels=channels
    )
    builder = builder_cls(config=config, skip_corrupt=skip_corrupt, **common)
    if builder.is_prepared():
        return _checked_prepared(builder, root, split, skip_corrupt)
    layout = scan_folder(
        check_source_dir(source_dir), builder_cls.PINNED_CLASSES, builder_cls.PINNED_SPLITS
    )
    check_split(split, layout.splits)
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
        layout = scan_folder(root, builder_cls.PINNED_CLASSES, builder_cls.PINNED_SPLITS)
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
    check_split(split, tuple(meta["splits"]))
    return builder
