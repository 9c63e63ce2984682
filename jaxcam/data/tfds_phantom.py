"""TFDS builder for the phantom chest X-rays, and loading / batching helpers.

``PhantomChestXray`` ("phantom_chest_xray", version 1.1.0) stores the splits of
``phantom.phantom_split`` as array_record files, so they can be read back with
``tfds.data_source`` without TensorFlow.  Its ``PhantomConfig`` carries the seed,
the image size, optional split sizes, the phantom variant and the confounder; the
config name keys the cache directory
``<data_dir>/phantom_chest_xray/<config name>/1.1.0``: ``seed0_size128`` for v1
(unchanged since v1 was the only variant), ``seed0_size128_v2`` and
``seed0_size128_v2_conf0.90`` for v2, with ``_n<train>-<val>-<test>`` appended for
non-default split sizes.

Features: ``image`` uint8 (S, S, 1) = round(255 * pixel), PNG-encoded with PIL;
``mask`` uint8 (S, S, 1) with values 0/1, PNG-encoded; ``label``
ClassLabel(NORMAL, PNEUMONIA); ``twin`` uint8 (S, S, 1), the lesion-free twin quantised
like ``image``; ``support`` uint8 (S, S, 1), 0/1, the lesion support; ``lesion_ids``
uint8 (S, S, 1), the per-lesion label map (0 = none, i = lesion i); v2 configs add
``marker`` uint8 (S, S, 1), 0/1, PNG-encoded (the confounder marker pixels).  All are
PNG-encoded.  Examples are stored unshuffled, in generation order, so record i of a
split is image i of ``phantom_split``.

The twins are stored rather than rendered again on loading: a grain or TFDS reader gets
them with the images, record by record, and re-rendering a twin costs as much as
rendering the whole image.  Version 1.1.0 added ``twin``, ``support`` and ``lesion_ids``
(the images are unchanged); sets prepared as 1.0.0 live in their own folder and are not
read.

Building is local and offline: nothing is downloaded, GCS look-ups are off
(``try_gcs=False`` and ``DownloadConfig(try_download_gcs=False)``), and images
are encoded with PIL, not ``tf.image``.  tfds shows progress bars while building;
call ``tfds.disable_progress_bar()`` to silence them.
"""

from __future__ import annotations

import dataclasses
import io
import os
from collections.abc import Iterator, Mapping

import grain
import numpy as np
import tensorflow_datasets as tfds
from etils import epath
from PIL import Image

from jaxcam.data.phantom import (
    CLASS_NAMES,
    MIN_IMAGE_SIZE,
    SPLITS,
    VARIANTS,
    PhantomArrays,
    phantom_split,
)

DATASET_NAME = "phantom_chest_xray"


@dataclasses.dataclass(eq=False)
class PhantomConfig(tfds.core.BuilderConfig):
    """Builder config: data set seed, image size, split sizes, variant and confounder.

    ``split_sizes`` is a tuple of (split, num_images) pairs; empty means the
    default ``SPLITS`` sizes.  Make configs with ``phantom_config``.
    """

    seed: int = 0
    image_size: int = 128
    split_sizes: tuple[tuple[str, int], ...] = ()
    variant: str = "v1"
    confounder: float = 0.0

    def sizes(self) -> dict[str, int]:
        """Number of images per split for this config."""
        return dict(self.split_sizes) if self.split_sizes else dict(SPLITS)


def _confounder_tag(confounder: float) -> str:
    """Shortest exact decimal of ``confounder`` with at least two decimals: 0.9 -> "0.90"."""
    text = np.format_float_positional(confounder, unique=True, trim=".")
    whole, _, decimals = text.partition(".")
    return f"{whole}.{decimals.ljust(2, '0')}"


def phantom_config(
    seed: int = 0,
    image_size: int = 128,
    split_sizes: Mapping[str, int] | None = None,
    *,
    variant: str = "v1",
    confounder: float = 0.0,
) -> PhantomConfig:
    """A validated ``PhantomConfig``; its name encodes all the arguments.

    ``split_sizes`` (e.g. ``{"train": 8, "val": 4, "test": 4}``, for tests) must
    name each of the splits "train", "val", "test" with a size >= 1.  ``variant``
    and ``confounder`` are those of ``phantom_split`` (a confounder needs "v2").
    """
    if int(seed) != seed or seed < 0:
        raise ValueError(f"seed must be a non-negative integer, got {seed!r}")
    if int(image_size) != image_size or image_size < MIN_IMAGE_SIZE:
        raise ValueError(f"image_size must be an integer >= {MIN_IMAGE_SIZE}, got {image_size!r}")
    if variant not in VARIANTS:
        raise ValueError(f"unknown variant {variant!r}; known variants: {list(VARIANTS)}")
    confounder = float(confounder)
    if not 0.0 <= confounder <= 1.0:
        raise ValueError(f"confounder must be in [0, 1], got {confounder!r}")
    if variant == "v1" and confounder != 0.0:
        raise ValueError("the confounder marker exists only in variant 'v2'")
    name = f"seed{int(seed)}_size{int(image_size)}"
    description = f"Phantom chest X-rays, seed {seed}, {image_size}x{image_size} pixels."
    if variant != "v1":
        name += f"_{variant}"
        description += f" Variant {variant}"
        if confounder > 0.0:
            name += f"_conf{_confounder_tag(confounder)}"
            description += f", confounder marker p = {confounder}"
        description += "."
    pairs: tuple[tuple[str, int], ...] = ()
    if split_sizes is not None:
        if set(split_sizes) != set(SPLITS):
            raise ValueError(
                f"split_sizes must give a size for each of {sorted(SPLITS)}, "
                f"got {dict(split_sizes)}"
            )
        for split, n in split_sizes.items():
            if int(n) != n or n < 1:
                raise ValueError(f"split size of {split!r} must be an integer >= 1, got {n!r}")
        pairs = tuple((s, int(split_sizes[s])) for s in SPLITS)
        if dict(pairs) != SPLITS:
            name += "_n" + "-".join(str(n) for _, n in pairs)
        else:
            pairs = ()
    return PhantomConfig(
        name=name,
        description=description,
        seed=int(seed),
        image_size=int(image_size),
        split_sizes=pairs,
        variant=variant,
        confounder=confounder,
    )


def _quantise(pixels: np.ndarray) -> np.ndarray:
    """How images and twins are stored: uint8 round(255 * pixel) of pixels in [0, 1]."""
    return np.round(np.asarray(pixels) * 255.0).astype(np.uint8)


def _png(array_2d: np.ndarray) -> bytes:
    """PNG bytes of a uint8 (S, S) array (PIL, so that TensorFlow is not needed)."""
    buffer = io.BytesIO()
    Image.fromarray(np.ascontiguousarray(array_2d, np.uint8)).save(
        buffer, format="PNG", compress_level=1
    )
    return buffer.getvalue()


class PhantomChestXray(tfds.core.GeneratorBasedBuilder):
    """Synthetic phantom chest X-rays (NORMAL / PNEUMONIA) with lesion masks."""

    VERSION = tfds.core.Version("1.1.0")
    RELEASE_NOTES = {
        "1.1.0": "Adds twin (the image without its lesions), support and lesion_ids.",
        "1.0.0": "Initial release.",
    }
    BUILDER_CONFIGS = [phantom_config()]

    def _log_download_bytes(self) -> None:
        # tfds' own line ("Downloading and preparing dataset Unknown size ...") is wrong
        # here: nothing is downloaded, the images are generated.
        print(f"generating the phantom data set into {self.data_dir} (first use only)")

    def _log_download_done(self) -> None:
        print(f"generated the phantom data set into {self.data_dir}")

    # tfds 4.9.10 derives ``code_path`` through the ``importlib_resources``
    # package, which it does not declare as a dependency (tensorflow/datasets
    # issue 11212); give the path directly.  tfds looks for optional metadata
    # (checksums.tsv, README.md, ...) next to it; there is none.
    code_path = epath.Path(__file__)

    def _info(self) -> tfds.core.DatasetInfo:
        cfg = self.builder_config
        size = cfg.image_size
        features = {
            "image": tfds.features.Image(shape=(size, size, 1), dtype=np.uint8),
            "mask": tfds.features.Image(shape=(size, size, 1), dtype=np.uint8),
            "label": tfds.features.ClassLabel(names=list(CLASS_NAMES)),
            "twin": tfds.features.Image(shape=(size, size, 1), dtype=np.uint8),
            "support": tfds.features.Image(shape=(size, size, 1), dtype=np.uint8),
            "lesion_ids": tfds.features.Image(shape=(size, size, 1), dtype=np.uint8),
        }
        description = (
            "Synthetic, deterministic phantom chest X-rays (see jaxcam.data.phantom): "
            "lungs, heart, ribs, clavicles and noise; PNEUMONIA images add 1-3 opacities "
            "inside the lungs, whose half-maximum region is the ground-truth mask. Each "
            "image has a lesion-free twin (same anatomy, exposure and noise)."
        )
        if cfg.variant != "v1":
            features["marker"] = tfds.features.Image(shape=(size, size, 1), dtype=np.uint8)
            description = (
                "Synthetic, deterministic phantom chest X-rays, variant v2 (see "
                "jaxcam.data.phantom): PNEUMONIA images add 1-5 faint to bright opacities of "
                "0.05-15 % of the lung field anywhere in the lungs (ground truth: their "
                "half-maximum region); an optional letter marker outside the lungs is a "
                "shortcut that goes with the label in train/val and not in test. Each image "
                "has a lesion-free twin (same anatomy, marker, exposure and noise)."
            )
        return tfds.core.DatasetInfo(
            builder=self,
            description=description,
            features=tfds.features.FeaturesDict(features),
            supervised_keys=("image", "label"),
            disable_shuffling=True,
        )

    def _split_generators(self, dl_manager):
        del dl_manager  # Nothing to download.
        return {
            split: self._generate_examples(split, n)
            for split, n in self.builder_config.sizes().items()
        }

    def _generate_examples(self, split: str, num_images: int):
        cfg = self.builder_config
        arrays = phantom_split(
            split,
            seed=cfg.seed,
            image_size=cfg.image_size,
            num_images=num_images,
            variant=cfg.variant,
            confounder=cfg.confounder,
        )
        # phantom_split fills every field.
        assert arrays.markers is not None and arrays.twins is not None
        assert arrays.supports is not None and arrays.lesion_ids is not None
        images = _quantise(arrays.images[..., 0])
        twins = _quantise(arrays.twins[..., 0])
        masks = arrays.masks.astype(np.uint8)
        supports = arrays.supports.astype(np.uint8)
        markers = arrays.markers.astype(np.uint8)
        for i in range(num_images):
            example = {
                "image": _png(images[i]),
                "mask": _png(masks[i]),
                "label": int(arrays.labels[i]),
                "twin": _png(twins[i]),
                "support": _png(supports[i]),
                "lesion_ids": _png(arrays.lesion_ids[i]),
            }
            if cfg.variant != "v1":
                example["marker"] = _png(markers[i])
            yield i, example


def _builder_config(
    seed: int,
    image_size: int,
    split_sizes: Mapping[str, int] | None,
    variant: str = "v1",
    confounder: float = 0.0,
) -> PhantomConfig:
    """The config to pass to tfds: the registered object when one has the same name."""
    config = phantom_config(seed, image_size, split_sizes, variant=variant, confounder=confounder)
    for registered in PhantomChestXray.BUILDER_CONFIGS:
        if registered.name == config.name:
            return registered
    return config


def _check_split(split: str) -> None:
    if split not in SPLITS:
        raise ValueError(f"unknown split {split!r}; known splits: {sorted(SPLITS)}")


def build_phantom(
    data_dir: str | os.PathLike,
    seed: int = 0,
    image_size: int = 128,
    *,
    split_sizes: Mapping[str, int] | None = None,
    variant: str = "v1",
    confounder: float = 0.0,
) -> PhantomChestXray:
    """Build (if missing) the array_record TFDS data set into ``data_dir``; returns the builder."""
    builder = PhantomChestXray(
        data_dir=os.fspath(data_dir),
        config=_builder_config(seed, image_size, split_sizes, variant, confounder),
        file_format="array_record",
    )
    builder.download_and_prepare(
        download_config=tfds.download.DownloadConfig(try_download_gcs=False)
    )
    return builder


def load_phantom(
    split: str,
    data_dir: str | os.PathLike,
    seed: int = 0,
    image_size: int = 128,
    *,
    split_sizes: Mapping[str, int] | None = None,
    variant: str = "v1",
    confounder: float = 0.0,
) -> PhantomArrays:
    """Read ``split`` of the TFDS phantom data set into memory, building it first if missing.

    Returns PhantomArrays: images float32 (N, S, S, 1) = uint8 / 255, masks bool
    (N, S, S), labels int32 (N,), markers bool (N, S, S) (all False for v1), twins
    float32 (N, S, S, 1) = uint8 / 255, supports bool (N, S, S), lesion_ids uint8
    (N, S, S), in generation order.  Read through ``tfds.data_source`` (array_record, no
    TensorFlow).
    """
    _check_split(split)
    config = _builder_config(seed, image_size, split_sizes, variant, confounder)
    build_phantom(
        data_dir, seed, image_size, split_sizes=split_sizes, variant=variant, confounder=confounder
    )
    source = tfds.data_source(
        DATASET_NAME,
        split=split,
        data_dir=os.fspath(data_dir),
        download=False,
        builder_kwargs={"config": config},
        try_gcs=False,
    )
    n = len(source)
    records = source.__getitems__(list(range(n)))
    images = np.stack([r["image"] for r in records]).astype(np.float32) / np.float32(255.0)
    twins = np.stack([r["twin"] for r in records]).astype(np.float32) / np.float32(255.0)
    masks = np.stack([r["mask"][..., 0] for r in records]).astype(bool)
    supports = np.stack([r["support"][..., 0] for r in records]).astype(bool)
    lesion_ids = np.stack([r["lesion_ids"][..., 0] for r in records]).astype(np.uint8)
    labels = np.asarray([r["label"] for r in records], dtype=np.int32)
    if config.variant == "v1":
        markers = np.zeros_like(masks)
    else:
        markers = np.stack([r["marker"][..., 0] for r in records]).astype(bool)
    return PhantomArrays(images, masks, labels, markers, twins, supports, lesion_ids)


class _ArraySource:
    """Random-access view of PhantomArrays as per-example dicts (a grain source)."""

    def __init__(self, arrays: PhantomArrays, with_markers: bool = False):
        self._arrays = arrays
        self._with_markers = with_markers

    def __len__(self) -> int:
        return len(self._arrays.labels)

    def __getitem__(self, index: int) -> dict[str, np.ndarray]:
        a = self._arrays
        out = {"image": a.images[index], "mask": a.masks[index], "label": a.labels[index]}
        if self._with_markers:
            assert a.markers is not None  # checked by the loader that sets with_markers
            out["marker"] = a.markers[index]
        return out


def batches(
    arrays: PhantomArrays,
    batch_size: int,
    *,
    seed: int,
    shuffle: bool = True,
    drop_remainder: bool = True,
    num_epochs: int = 1,
    with_markers: bool = False,
) -> Iterator[dict[str, np.ndarray]]:
    """Iterate over numpy batches {"image", "mask", "label"} built with grain.

    Batch shapes: image float32 (B, S, S, 1), mask bool (B, S, S), label int32 (B,);
    ``with_markers`` adds "marker" bool (B, S, S) (needs ``arrays.markers``).
    Each epoch is a (seeded, per-epoch different) permutation when ``shuffle``,
    batched on its own: with ``drop_remainder=False`` every example appears
    exactly once per epoch (the last batch may be smaller); with True the last
    partial batch of each epoch is dropped.  ``seed`` must be in [0, 2**32).
    """
    if int(batch_size) != batch_size or batch_size < 1:
        raise ValueError(f"batch_size must be an integer >= 1, got {batch_size!r}")
    if int(num_epochs) != num_epochs or num_epochs < 1:
        raise ValueError(f"num_epochs must be an integer >= 1, got {num_epochs!r}")
    if not 0 <= seed < 2**32:
        raise ValueError(f"seed must be in [0, 2**32), got {seed!r}")
    n = len(arrays.labels)
    if not len(arrays.images) == len(arrays.masks) == n:
        raise ValueError("images, masks and labels must have the same length")
    if with_markers and (arrays.markers is None or len(arrays.markers) != n):
        raise ValueError("with_markers needs arrays.markers with one mask per image")
    dataset = grain.MapDataset.source(_ArraySource(arrays, with_markers))
    if shuffle:
        dataset = dataset.shuffle(seed=int(seed))
    # Shuffle reseeds per epoch (index // n); slice epochs so batches never straddle them.
    dataset = dataset.repeat(int(num_epochs))

    def generate() -> Iterator[dict[str, np.ndarray]]:
        for epoch in range(int(num_epochs)):
            epoch_ds = dataset[epoch * n : (epoch + 1) * n]
            epoch_ds = epoch_ds.batch(int(batch_size), drop_remainder=drop_remainder)
            for i in range(len(epoch_ds)):
                yield epoch_ds[i]

    return generate()


def load_phantom_splits(
    data_dir: str | os.PathLike,
    seed: int = 0,
    image_size: int = 128,
    *,
    split_sizes: str | Mapping[str, int] | None = None,
    variant: str = "v1",
    confounder: float = 0.0,
) -> dict[str, PhantomArrays]:
    """Every split of a phantom data set: ``{"train", "val", "test"} -> PhantomArrays``.

    ``split_sizes`` may also be the command-line form "train,val,test" (e.g. "64,16,24").
    """
    if isinstance(split_sizes, str):
        counts = split_sizes.split(",")
        if len(counts) != len(SPLITS):
            raise ValueError(f"split sizes must be 'train,val,test', got {split_sizes!r}")
        split_sizes = dict(zip(SPLITS, map(int, counts), strict=True))
    return {
        split: load_phantom(
            split,
            data_dir,
            seed,
            image_size,
            split_sizes=split_sizes,
            variant=variant,
            confounder=confounder,
        )
        for split in SPLITS
    }
