"""Input checks at the library's boundary: clear errors, raised before any work."""

from __future__ import annotations

from typing import Any

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


def check_class_indices(class_indices: Any, num_classes: int, batch_size: int) -> np.ndarray:
    """Class indices (B,) of an integer dtype, each in [0, num_classes)."""
    indices = np.asarray(class_indices)
    if not np.issubdtype(indices.dtype, np.integer):
        raise TypeError(f"class indices must be integers, got dtype {indices.dtype}")
    if indices.shape != (batch_size,):
        raise ValueError(
            f"class indices must have shape ({batch_size},) to match the images, "
            f"got {indices.shape}"
        )
    out_of_range = (indices < 0) | (indices >= num_classes)
    if out_of_range.any():
        raise ValueError(
            f"class index {int(indices[out_of_range][0])} is out of range for a model "
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
