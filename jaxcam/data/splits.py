"""Random-access splits in memory and their batches (no TensorFlow Datasets here).

A *split* is anything with ``len(split)`` and ``split[i] -> {"image": (H, W, C),
"label": int, "index": int, ...}``: :class:`ArraySplit` over numpy arrays, or a
prepared folder or TFDS split (:class:`jaxcam.data.ImageSplit`).
:func:`split_batches` turns one into numpy batches with grain. Training imports this
module, so importing :mod:`jaxcam.train` does not load ``tensorflow_datasets``.
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from typing import Any, Protocol

import grain
import numpy as np

from jaxcam.checks import check_integer


class RandomAccessSplit(Protocol):
    """What :func:`split_batches` reads: ``len(split)`` and ``split[i] -> dict of arrays``."""

    def __len__(self) -> int: ...

    def __getitem__(self, index: int) -> dict[str, Any]: ...


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


def check_split_labels(split: Any, num_classes: int, name: str = "split") -> None:
    """Raise ValueError unless every label of ``split`` (``split.labels``, (N,)) is a
    class of a model with ``num_classes`` classes: 0..num_classes-1."""
    labels = np.asarray(split.labels)
    if len(labels) and not 0 <= labels.min() <= labels.max() < num_classes:
        raise ValueError(
            f"the {name} labels run from {labels.min()} to {labels.max()}; "
            f"a model with {num_classes} classes needs 0..{num_classes - 1}"
        )


def split_batches(
    split: RandomAccessSplit,
    batch_size: int,
    *,
    seed: int | None = None,
    drop_remainder: bool = False,
    start_batch: int = 0,
    num_threads: int = 8,
) -> Iterator[dict[str, np.ndarray]]:
    """Numpy batches of a split, built with grain: {"image" float32 (B, S, S, C),
    "label" int32 (B,), "index" int32 (B,)} (plus any other keys the split gives).

    ``seed`` None keeps data order, else a seeded permutation (batch k is the same for
    the same seed and split; use a new seed per epoch).  ``start_batch`` skips the
    first batches without decoding them (to resume mid-epoch).  ``num_threads``
    examples are decoded in parallel (0: in the calling thread).
    """
    batch_size = check_integer(batch_size, "batch_size", minimum=1)
    start_batch = check_integer(start_batch, "start_batch", minimum=0)
    num_threads = check_integer(num_threads, "num_threads", minimum=0)
    if seed is not None:
        seed = check_integer(seed, "seed", minimum=0)
        if seed >= 2**32:
            raise ValueError(f"seed must be in [0, 2**32), got {seed}")
    n = len(split)
    num_batches = n // batch_size if drop_remainder else math.ceil(n / batch_size)
    if start_batch > num_batches:
        raise ValueError(
            f"start_batch {start_batch} is past the {num_batches} batches of the split"
        )
    dataset = grain.MapDataset.source(split)
    if seed is not None:
        dataset = dataset.shuffle(seed=seed)
    dataset = dataset[start_batch * batch_size : min(num_batches * batch_size, n)]
    options = grain.ReadOptions(
        num_threads=num_threads, prefetch_buffer_size=max(2 * batch_size, num_threads)
    )
    batched = dataset.to_iter_dataset(options).batch(batch_size, drop_remainder=drop_remainder)
    return iter(batched)
