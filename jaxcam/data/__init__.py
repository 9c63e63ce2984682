"""Data: the synthetic phantom chest X-ray set, its TFDS builder and loaders."""

from jaxcam.data.phantom import (
    CLASS_NAMES,
    MIN_IMAGE_SIZE,
    NORMAL,
    PNEUMONIA,
    SPLIT_SEED_OFFSETS,
    SPLIT_SEED_STRIDE,
    SPLITS,
    PhantomArrays,
    generate_phantom,
    phantom_lung_masks,
    phantom_split,
    split_seed,
)
from jaxcam.data.tfds_phantom import (
    DATASET_NAME,
    PhantomChestXray,
    PhantomConfig,
    batches,
    build_phantom,
    load_phantom,
    phantom_config,
)

__all__ = [
    "CLASS_NAMES",
    "DATASET_NAME",
    "MIN_IMAGE_SIZE",
    "NORMAL",
    "PNEUMONIA",
    "SPLITS",
    "SPLIT_SEED_OFFSETS",
    "SPLIT_SEED_STRIDE",
    "PhantomArrays",
    "PhantomChestXray",
    "PhantomConfig",
    "batches",
    "build_phantom",
    "generate_phantom",
    "load_phantom",
    "phantom_config",
    "phantom_lung_masks",
    "phantom_split",
    "split_seed",
]
