"""Input checks at the library's boundary: clear errors, raised before any work."""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp
import numpy as np


def check_image_batch(x: Any, in_channels: int, min_size: int = 1) -> None:
    """Static checks of an image batch (B, H, W, C): rank, channels, size, dtype."""
    shape = getattr(x, "shape", None)
    if shape is None:
        raise TypeError(f"images must be an array, got {type(x).__name__}")
    if len(shape) != 4:
        raise ValueError(
            f"images must have rank 4 (batch, height, width, channels), got shape {tuple(shape)}"
        )
    if shape[-1] != in_channels:
        raise ValueError(
            f"images must have {in_channels} channel(s), got {shape[-1]} (shape {tuple(shape)})"
        )
    if min(shape[1], shape[2]) < min_size:
        raise ValueError(
            f"images of {shape[1]}x{shape[2]} are smaller than this architecture's minimum "
            f"input size {min_size}x{min_size}"
        )
    dtype = getattr(x, "dtype", None)
    if dtype is not None and not np.issubdtype(dtype, np.floating):
        raise TypeError(f"images must be floating-point raw pixels, got dtype {dtype}")


def check_finite_images(images: Any, name: str = "images") -> None:
    """Raise ValueError if any value is NaN or infinite (a host check, before a step)."""
    bad = ~np.isfinite(np.asarray(images))
    if bad.any():
        first = tuple(int(i) for i in np.argwhere(bad)[0])
        raise ValueError(
            f"{name} contain {int(bad.sum())} NaN/inf value(s); first at index {first}"
        )


def check_class_indices(
    class_indices: Any, num_classes: int, batch_size: int, name: str = "class indices"
) -> np.ndarray:
    """Class indices (B,) of an integer dtype, each in [0, num_classes); ``name`` for errors."""
    indices = np.asarray(class_indices)
    if not np.issubdtype(indices.dtype, np.integer):
        raise TypeError(f"{name} must be integers, got dtype {indices.dtype}")
    if indices.shape != (batch_size,):
        raise ValueError(
            f"{name} must have shape ({batch_size},) to match the images, got {indices.shape}"
        )
    out_of_range = (indices < 0) | (indices >= num_classes)
    if out_of_range.any():
        raise ValueError(
            f"{name} contain {int(indices[out_of_range][0])}, which is out of range for a model "
            f"with {num_classes} classes (valid: 0..{num_classes - 1})"
        )
    return indices.astype(np.int32)


def check_alpha(alpha: Any) -> float:
    """The BAD area fraction alpha: a real number strictly inside (0, 1)."""
    if isinstance(alpha, bool) or not isinstance(alpha, (int, float, np.floating)):
        raise TypeError(f"alpha must be a real number in (0, 1), got {alpha!r}")
    if not 0.0 < float(alpha) < 1.0:
        raise ValueError(f"alpha must lie in (0, 1), got {alpha}")
    return float(alpha)


def check_feature_map(feature_map: Any, channels: int | None = None) -> None:
    """One feature map A (h, w, K): rank 3, and K == ``channels`` when that is known.

    Shapes are static, so this also works on traced values (inside ``jax.jit``).
    """
    shape = getattr(feature_map, "shape", None)
    if shape is None:
        raise TypeError(f"feature_map must be an array, got {type(feature_map).__name__}")
    if len(shape) != 3:
        raise ValueError(
            "feature_map must be one map of shape (h, w, K) (the per-example methods take "
            f"one image's A; vmap them or use saliency_maps for a batch), got shape {tuple(shape)}"
        )
    if channels is not None and shape[-1] != channels:
        raise ValueError(
            f"feature_map has {shape[-1]} channels but the model's head takes K = {channels} "
            f"(shape {tuple(shape)})"
        )


def check_class_index(class_index: Any, num_classes: int) -> None:
    """One class index c: an integer scalar in [0, num_classes).

    A traced index (under ``jax.jit`` or ``jax.vmap``) is checked for shape and dtype
    only; its value is unknown at trace time. The saliency methods then return NaN for
    an out-of-range value (:func:`nan_if_out_of_range`), and the batched entry points
    (``saliency_maps``, ``masked_scores``, ``evaluate``) check indices on the host first.
    """
    if isinstance(class_index, (bool, np.bool_)):
        raise TypeError(f"class_index must be an integer, got {class_index!r}")
    shape = np.shape(class_index)
    dtype = getattr(class_index, "dtype", None)
    if dtype is None:
        dtype = np.asarray(class_index).dtype
    if shape != () or not np.issubdtype(dtype, np.integer):
        raise TypeError(
            f"class_index must be an integer scalar, got shape {shape} and dtype {dtype}"
        )
    if isinstance(class_index, jax.core.Tracer):
        return
    value = int(np.asarray(class_index))
    if not 0 <= value < num_classes:
        raise ValueError(
            f"class_index {value} is out of range for a model with {num_classes} classes "
            f"(valid: 0..{num_classes - 1})"
        )


def check_backbone_output(feature_map: Any, batch_size: int, backbone: str) -> None:
    """The backbone's output: a feature map batch (B, h, w, K) with the images' B."""
    shape = tuple(getattr(feature_map, "shape", ()))
    if len(shape) != 4 or shape[0] != batch_size:
        raise ValueError(
            f"backbone {backbone} must return a feature map of shape (B, h, w, K) with "
            f"B = {batch_size} (the images' batch), got shape {shape}"
        )


def check_integer(value: Any, name: str, minimum: int | None = None) -> int:
    """A Python or numpy integer (not a bool), at least ``minimum``; returned as ``int``."""
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, (int, np.integer)):
        raise TypeError(f"{name} must be an integer, got {value!r}")
    if minimum is not None and value < minimum:
        raise ValueError(f"{name} must be >= {minimum}, got {value}")
    return int(value)


def nan_if_out_of_range(values: Any, class_index: Any, num_classes: int) -> Any:
    """``values`` (any shape), or NaN everywhere if a traced ``class_index`` is out of range.

    A traced index cannot be checked when the function is traced, and JAX indexing
    would clamp (or wrap) it, mixing classes into a plausible but meaningless map;
    NaN makes such a call visible. A concrete index is returned untouched (it is
    checked by :func:`check_class_index`).
    """
    if not isinstance(class_index, jax.core.Tracer):
        return values
    valid = (class_index >= 0) & (class_index < num_classes)
    return jnp.where(valid, values, jnp.full_like(values, jnp.nan))
