"""The data of an in-memory experiment: train/val/test arrays, class names, focus class."""

from __future__ import annotations

import dataclasses
from typing import Any, NamedTuple

import numpy as np

from jaxcam.data.phantom import CLASS_NAMES
from jaxcam.data.sources import load_data_split, parse_data_spec
from jaxcam.data.tfds_phantom import load_phantom_splits
from jaxcam.experiments.config import ExperimentConfig
from jaxcam.models.registry import default_input_size

#: The phantom's image size when the config gives none (its generator's native size).
PHANTOM_IMAGE_SIZE = 128


class SplitArrays(NamedTuple):
    """One split in memory: images (N, H, W, C), labels (N,), lesion masks (N, H, W) and
    lesion-free twins (N, H, W, C) where the source has them (the phantom), else None."""

    images: np.ndarray
    labels: np.ndarray
    masks: np.ndarray | None
    twins: np.ndarray | None = None


@dataclasses.dataclass(frozen=True)
class MemorySplits:
    train: SplitArrays
    val: SplitArrays
    test: SplitArrays
    class_names: tuple[str, ...]
    focus_index: int | None  # the focus class's index, if the config names one
    title: str  # e.g. "phantom v1"
    description: dict[str, Any]  # for results files

    @property
    def sizes(self) -> dict[str, int]:
        return {
            "train": len(self.train.labels),
            "val": len(self.val.labels),
            "test": len(self.test.labels),
        }


def open_memory_splits(config: ExperimentConfig) -> MemorySplits:
    """The train, val and test splits of ``config.data`` as arrays (built on first use)."""
    data = config.data
    spec = parse_data_spec(data.source)
    if spec.kind == "phantom":
        size = config.model.image_size or PHANTOM_IMAGE_SIZE
        splits = load_phantom_splits(
            data.data_dir,
            config.seed,
            size,
            split_sizes=data.split_sizes,
            variant=data.variant,
            confounder=data.confounder,
        )
        arrays = {s: SplitArrays(a.images, a.labels, a.masks, a.twins) for s, a in splits.items()}
        names: tuple[str, ...] = CLASS_NAMES
        title = f"phantom {data.variant}"
        description = {
            "name": "phantom_chest_xray",
            "variant": data.variant,
            "confounder": data.confounder,
            "seed": config.seed,
        }
        train, val, test = arrays["train"], arrays["val"], arrays["test"]
    else:
        if (data.variant, data.confounder, data.split_sizes) != ("v1", 0.0, None):
            raise ValueError(
                "data.variant, data.confounder and data.split_sizes are options of the "
                f"phantom source, not of {data.source!r}"
            )
        size = config.model.image_size or default_input_size(config.model.name)
        opened = {
            s: load_data_split(spec, s, data_dir=data.data_dir, image_size=size, channels=1)
            for s in (data.train_split, data.val_split, data.test_split)
        }
        arrays = {s: _materialise(split) for s, split in opened.items()}
        names = tuple(opened[data.test_split].class_names)
        title = str(spec)
        description = {"name": str(spec), "seed": config.seed}
        train, val, test = (arrays[s] for s in (data.train_split, data.val_split, data.test_split))
    focus = None
    if data.focus_class is not None:
        if data.focus_class not in names:
            raise ValueError(f"data.focus_class {data.focus_class!r} is not a class of {names}")
        focus = names.index(data.focus_class)
    return MemorySplits(train, val, test, names, focus, title, description)


def _materialise(split: Any) -> SplitArrays:
    items = [split[i] for i in range(len(split))]
    if not items:
        raise ValueError(f"split {getattr(split, 'name', '')!r} is empty")
    images = np.stack([np.asarray(item["image"], np.float32) for item in items])
    labels = np.asarray([item["label"] for item in items], np.int32)
    masks = np.stack([item["mask"] for item in items]) if "mask" in items[0] else None
    twins = np.stack([item["twin"] for item in items]) if "twin" in items[0] else None
    return SplitArrays(images, labels, masks, twins)
