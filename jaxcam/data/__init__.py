"""Data: the synthetic phantom chest X-ray set, its TFDS builder and loaders; real image folders.

Importing this package does not import ``tensorflow_datasets``: the phantom generator
(:mod:`jaxcam.data.phantom`) and the in-memory splits and batching
(:mod:`jaxcam.data.splits`) are imported at once; the names of the TFDS-backed modules
(:mod:`~jaxcam.data.prepared`, :mod:`~jaxcam.data.sources`,
:mod:`~jaxcam.data.tfds_phantom`) and of the PIL-backed image folder modules
(:mod:`~jaxcam.data.images`, :mod:`~jaxcam.data.folder_scan`) are imported on first
access (module ``__getattr__``).  :mod:`jaxcam.data.folders` re-exports the image folder
names of all four folder modules.
"""

from __future__ import annotations

from typing import Any

from jaxcam.data.phantom import (
    CLASS_NAMES,
    MARKER_SIZE_RANGE,
    MIN_IMAGE_SIZE,
    NORMAL,
    PNEUMONIA,
    SPLIT_SEED_OFFSETS,
    SPLIT_SEED_STRIDE,
    SPLITS,
    V2_CONTRAST_RANGE,
    V2_LESION_AREA_RANGE,
    V2_LESION_COUNT_PROBS,
    VARIANTS,
    PhantomArrays,
    generate_phantom,
    lesion_area_fractions,
    phantom_lesion_counts,
    phantom_lung_masks,
    phantom_split,
    split_seed,
)
from jaxcam.data.splits import ArraySplit, RandomAccessSplit, check_split_labels, split_batches

#: The names imported on first access, by the submodule that defines them: those of
#: ``images`` and ``folder_scan`` need PIL, the others ``tensorflow_datasets``.
_IMAGES_NAMES = frozenset({"read_image"})
_FOLDER_SCAN_NAMES = frozenset({"split_names"})
_PREPARED_NAMES = frozenset(
    {
        "ImageSplit",
        "class_counts",
        "load_chest_xray",
        "load_image_folder",
        "load_tfds",
    }
)
_SOURCES_NAMES = frozenset(
    {
        "DataSource",
        "DataSpec",
        "Subset",
        "data_source_names",
        "data_source_usage",
        "load_data_split",
        "one_image_per_random_class",
        "parse_data_spec",
        "register_data_source",
    }
)
_TFDS_PHANTOM_NAMES = frozenset(
    {
        "DATASET_NAME",
        "PhantomChestXray",
        "PhantomConfig",
        "batches",
        "build_phantom",
        "load_phantom",
        "load_phantom_splits",
        "phantom_config",
    }
)


def __getattr__(name: str) -> Any:
    """Import a TFDS- or PIL-backed name on first access and keep it here.

    The imports are plain import statements (not ``importlib``) so that the import-graph
    test (tests/test_imports.py) sees these edges too.
    """
    if name in _IMAGES_NAMES:
        import jaxcam.data.images as images

        value = getattr(images, name)
    elif name in _FOLDER_SCAN_NAMES:
        import jaxcam.data.folder_scan as folder_scan

        value = getattr(folder_scan, name)
    elif name in _PREPARED_NAMES:
        import jaxcam.data.prepared as prepared

        value = getattr(prepared, name)
    elif name in _SOURCES_NAMES:
        import jaxcam.data.sources as sources

        value = getattr(sources, name)
    elif name in _TFDS_PHANTOM_NAMES:
        import jaxcam.data.tfds_phantom as tfds_phantom

        value = getattr(tfds_phantom, name)
    else:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    lazy = _IMAGES_NAMES | _FOLDER_SCAN_NAMES | _PREPARED_NAMES
    return sorted(set(globals()) | lazy | _SOURCES_NAMES | _TFDS_PHANTOM_NAMES)


__all__ = [
    "DataSource",
    "ArraySplit",
    "DataSpec",
    "RandomAccessSplit",
    "Subset",
    "check_split_labels",
    "load_data_split",
    "one_image_per_random_class",
    "parse_data_spec",
    "register_data_source",
    "data_source_usage",
    "data_source_names",
    "ImageSplit",
    "class_counts",
    "load_chest_xray",
    "load_image_folder",
    "load_tfds",
    "read_image",
    "split_batches",
    "split_names",
    "CLASS_NAMES",
    "DATASET_NAME",
    "MARKER_SIZE_RANGE",
    "MIN_IMAGE_SIZE",
    "NORMAL",
    "PNEUMONIA",
    "SPLITS",
    "SPLIT_SEED_OFFSETS",
    "SPLIT_SEED_STRIDE",
    "V2_CONTRAST_RANGE",
    "V2_LESION_AREA_RANGE",
    "V2_LESION_COUNT_PROBS",
    "VARIANTS",
    "PhantomArrays",
    "PhantomChestXray",
    "PhantomConfig",
    "batches",
    "build_phantom",
    "generate_phantom",
    "lesion_area_fractions",
    "load_phantom",
    "load_phantom_splits",
    "phantom_config",
    "phantom_lesion_counts",
    "phantom_lung_masks",
    "phantom_split",
    "split_seed",
]
