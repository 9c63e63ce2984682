"""Figure 1: input, ground-truth lesion mask and saliency overlays, drawn with Pillow."""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence

import numpy as np
from PIL import Image, ImageDraw, ImageFont


def heat_colours(values: np.ndarray) -> np.ndarray:
    """A blue -> cyan -> yellow -> red colour map: values (H, W) in [0, 1] -> RGB (H, W, 3)."""
    v = np.clip(values, 0.0, 1.0)[..., None]
    red = np.clip(1.5 - np.abs(4.0 * v - 3.0), 0.0, 1.0)
    green = np.clip(1.5 - np.abs(4.0 * v - 2.0), 0.0, 1.0)
    blue = np.clip(1.5 - np.abs(4.0 * v - 1.0), 0.0, 1.0)
    return np.concatenate([red, green, blue], axis=-1)


def grey_rgb(image: np.ndarray) -> np.ndarray:
    """Raw image (H, W, 1) or (H, W, 3) in [0, 1] -> RGB (H, W, 3)."""
    image = np.clip(np.asarray(image, np.float64), 0.0, 1.0)
    return np.repeat(image, 3, axis=-1) if image.shape[-1] == 1 else image


def overlay(image: np.ndarray, saliency: np.ndarray, opacity: float = 0.45) -> np.ndarray:
    """Heat map over the image: RGB (H, W, 3) in [0, 1]."""
    return (1.0 - opacity) * grey_rgb(image) + opacity * heat_colours(saliency)


def mask_outline(image: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """The image with the boundary of a boolean mask (H, W) drawn in green."""
    rgb = grey_rgb(image).copy()
    inner = mask.copy()
    inner[1:-1, 1:-1] = (
        mask[1:-1, 1:-1] & mask[:-2, 1:-1] & mask[2:, 1:-1] & mask[1:-1, :-2] & mask[1:-1, 2:]
    )
    rgb[mask & ~inner] = (0.1, 1.0, 0.2)
    return rgb


def save_figure(
    path: str | os.PathLike,
    images: np.ndarray,
    masks: np.ndarray,
    maps_by_method: Mapping[str, np.ndarray],
    row_titles: Sequence[str],
    scale: int = 2,
) -> None:
    """Write a grid: one row per image; columns input, mask, one overlay per method.

    Args:
      images: raw images (N, H, W, C) in [0, 1].
      masks: ground-truth masks (N, H, W) bool.
      maps_by_method: {method: maps (N, H, W) in [0, 1]}.
      row_titles: one caption per row (label, prediction...).
      scale: integer upscaling of each panel.
    """
    columns = ["input", "ground truth", *maps_by_method]
    num_rows, height, width = images.shape[0], images.shape[1], images.shape[2]
    panel_h, panel_w, header, caption = height * scale, width * scale, 18, 14
    canvas = Image.new(
        "RGB", (len(columns) * panel_w, header + num_rows * (panel_h + caption)), "white"
    )
    draw = ImageDraw.Draw(canvas)
    font = ImageFont.load_default()
    for col, title in enumerate(columns):
        draw.text((col * panel_w + 4, 3), title, fill="black", font=font)
    for row in range(num_rows):
        panels = [grey_rgb(images[row]), mask_outline(images[row], masks[row])]
        panels += [overlay(images[row], maps[row]) for maps in maps_by_method.values()]
        top = header + row * (panel_h + caption)
        draw.text((4, top), row_titles[row], fill="black", font=font)
        for col, panel in enumerate(panels):
            tile = Image.fromarray(np.uint8(np.round(255 * panel))).resize((panel_w, panel_h))
            canvas.paste(tile, (col * panel_w, top + caption))
    os.makedirs(os.path.dirname(os.fspath(path)) or ".", exist_ok=True)
    canvas.save(path)
