"""The train, val and test splits of a phantom data set: their sizes and derived seeds."""

from __future__ import annotations

from jaxcam.data.phantom.generator import generate_phantom
from jaxcam.data.phantom.schema import PhantomArrays

#: Default number of images of each split.
SPLITS: dict[str, int] = {"train": 1200, "val": 200, "test": 300}
#: Split seed = SPLIT_SEED_STRIDE * seed + SPLIT_SEED_OFFSETS[split].
SPLIT_SEED_OFFSETS: dict[str, int] = {"train": 1, "val": 2, "test": 3}
SPLIT_SEED_STRIDE = 1000
_CORRELATED_SPLITS = ("train", "val")


def split_seed(split: str, seed: int = 0) -> int:
    """The seed ``generate_phantom`` gets for ``split`` of the data set ``seed``."""
    if split not in SPLIT_SEED_OFFSETS:
        raise ValueError(f"unknown split {split!r}; known splits: {sorted(SPLITS)}")
    if int(seed) != seed or seed < 0:
        raise ValueError(f"seed must be a non-negative integer, got {seed!r}")
    return SPLIT_SEED_STRIDE * int(seed) + SPLIT_SEED_OFFSETS[split]


def phantom_split(
    split: str,
    seed: int = 0,
    image_size: int = 128,
    num_images: int | None = None,
    *,
    variant: str = "v1",
    confounder: float = 0.0,
) -> PhantomArrays:
    """The ``split`` ("train", "val" or "test") of the phantom data set ``seed``.

    ``num_images`` defaults to ``SPLITS[split]``; a smaller value gives a prefix
    of the full split.  Generated with ``generate_phantom(num_images,
    split_seed(split, seed), image_size, variant=variant, confounder=confounder,
    marker_correlated=split in ("train", "val"))``: the marker goes with the label in
    "train" and "val" and is independent of it in "test".  Unknown split ->
    ValueError.
    """
    derived = split_seed(split, seed)
    n = SPLITS[split] if num_images is None else num_images
    return generate_phantom(
        n,
        derived,
        image_size,
        variant=variant,
        confounder=confounder,
        marker_correlated=split in _CORRELATED_SPLITS,
    )
