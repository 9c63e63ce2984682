"""One image file or array, decoded with PIL and preprocessed to uint8 (S, S, C).

An image file is one with an extension of a format PIL decodes by itself
(``IMAGE_EXTENSIONS``: .jpeg, .png, .bmp, .tif, .gif, .webp, ...).

Preprocessing, done once when a folder data set is prepared
(:mod:`jaxcam.data.folder_builders`; :func:`read_image` applies the same to one file):
decode with PIL, apply an EXIF orientation if any, drop an alpha channel, map 16-bit
grayscale ("I;16", "I") to 8 bits by round(v / 257), convert to "L" (channels=1, ITU-R
601-2 luma for colour files) or "RGB" (channels=3, gray replicated), then squash to
``image_size`` x ``image_size`` (aspect ratio ignored, so no pixel is cropped away) with
PIL's BILINEAR filter, which widens its support when shrinking (antialiased).  Stored as
uint8 PNG; a pixel reads as uint8 / 255, so black is exactly 0.0 and white exactly 1.0.

A file PIL cannot open or fully decode (e.g. truncated) raises ``ValueError`` naming it.
"""

from __future__ import annotations

import io
import os
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image, ImageOps

# Formats PIL identifies but decodes only with outside programs or handlers.
_IDENTIFY_ONLY = frozenset({"BUFR", "EPS", "GRIB", "HDF5", "MPEG", "WMF"})


def _decodable_extensions() -> tuple[str, ...]:
    """File name extensions (lower case, with the dot) of the formats PIL decodes itself."""
    Image.init()
    formats = set(Image.OPEN) - _IDENTIFY_ONLY
    return tuple(
        sorted(ext for ext, fmt in Image.registered_extensions().items() if fmt in formats)
    )


IMAGE_EXTENSIONS = _decodable_extensions()
_WIDE_MODES = frozenset({"I", "I;16", "I;16L", "I;16B", "I;16N"})
_DECODE_ERRORS = (OSError, SyntaxError, ValueError, EOFError, Image.DecompressionBombError)


# --- argument checks ---------------------------------------------------------


def check_int(name: str, value: Any, minimum: int) -> int:
    """``value`` as an int; TypeError if it is not an integer, ValueError if below ``minimum``."""
    if isinstance(value, bool) or not isinstance(value, int | np.integer):
        raise TypeError(f"{name} must be an integer, got {value!r}")
    if value < minimum:
        raise ValueError(f"{name} must be >= {minimum}, got {value!r}")
    return int(value)


def check_channels(channels: Any) -> int:
    """``channels`` as an int: 1 (grayscale) or 3 (RGB)."""
    channels = check_int("channels", channels, 1)
    if channels not in (1, 3):
        raise ValueError(f"channels must be 1 (grayscale) or 3 (RGB), got {channels}")
    return channels


def resolve_path(path: str | os.PathLike) -> Path:
    """``path`` with ``~`` expanded, absolute, symbolic links resolved."""
    if not isinstance(path, str | os.PathLike):
        raise TypeError(f"expected a path (str or os.PathLike), got {path!r}")
    return Path(path).expanduser().resolve()


# --- decoding and preprocessing ------------------------------------------------


def _to_channels(image: Image.Image, channels: int) -> Image.Image:
    """``image`` in mode "L" (channels 1) or "RGB" (channels 3); see the module docstring."""
    if image.mode in _WIDE_MODES:
        wide = np.asarray(image).astype(np.float64)
        image = Image.fromarray(np.clip(np.round(wide / 257.0), 0, 255).astype(np.uint8))
    elif image.mode == "F":
        raise ValueError("floating-point (mode 'F') images are not supported")
    elif image.mode in ("P", "PA"):  # palette (maybe with transparency): via RGBA
        image = image.convert("RGBA")
    target = "L" if channels == 1 else "RGB"
    return image if image.mode == target else image.convert(target)


def _preprocess(image: Image.Image, image_size: int, channels: int) -> np.ndarray:
    """uint8 (S, S, C): channels converted, then squashed to S x S (BILINEAR, antialiased)."""
    image = _to_channels(image, channels)
    if image.size != (image_size, image_size):
        image = image.resize((image_size, image_size), Image.Resampling.BILINEAR)
    array = np.asarray(image, dtype=np.uint8)
    return array.reshape(image_size, image_size, channels)


def decode_image_file(path: Path, image_size: int, channels: int) -> np.ndarray:
    """uint8 (S, S, C) of one image file; ValueError naming the file if it is corrupt."""
    try:
        with Image.open(path) as image:
            image.load()
            try:
                ImageOps.exif_transpose(image, in_place=True)
            except Exception:  # a malformed EXIF block does not make the pixels unusable
                pass
            return _preprocess(image, image_size, channels)
    except FileNotFoundError:
        raise
    except _DECODE_ERRORS as err:
        raise ValueError(f"cannot decode image file {os.fspath(path)!r}: {err}") from err


def decode_image_array(array: np.ndarray, image_size: int, channels: int) -> np.ndarray:
    """uint8 (S, S, C) from a decoded uint8/uint16 (H, W, C') image array."""
    if array.ndim == 2:
        array = array[..., None]
    if array.shape == (image_size, image_size, channels) and array.dtype == np.uint8:
        return array
    if array.ndim != 3 or array.shape[-1] not in (1, 2, 3, 4):
        raise ValueError(f"cannot convert an image of shape {array.shape} to {channels} channels")
    if array.dtype not in (np.uint8, np.uint16):
        raise TypeError(f"images must be uint8 or uint16, got {array.dtype}")
    if array.dtype == np.uint16:
        if array.shape[-1] != 1:
            raise ValueError("uint16 images must have one channel")
        array = np.clip(np.round(array.astype(np.float64) / 257.0), 0, 255).astype(np.uint8)
    plane = array[..., 0] if array.shape[-1] == 1 else array
    return _preprocess(Image.fromarray(np.ascontiguousarray(plane)), image_size, channels)


def read_image(path: str | os.PathLike, image_size: int, channels: int) -> np.ndarray:
    """One image file, preprocessed as when preparing a data set: float32 (S, S, C) in [0, 1].

    Raises FileNotFoundError if ``path`` is missing, ValueError if it cannot be decoded.
    """
    image_size = check_int("image_size", image_size, 1)
    channels = check_channels(channels)
    file = resolve_path(path)
    if not file.is_file():
        raise FileNotFoundError(f"image file {os.fspath(path)!r} does not exist")
    return decode_image_file(file, image_size, channels).astype(np.float32) / np.float32(255.0)


def png_bytes(array: np.ndarray) -> bytes:
    """PNG bytes of a uint8 (S, S, 1) or (S, S, 3) array."""
    plane = array[..., 0] if array.shape[-1] == 1 else array
    buffer = io.BytesIO()
    Image.fromarray(np.ascontiguousarray(plane)).save(buffer, format="PNG", compress_level=1)
    return buffer.getvalue()
