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
    masks: np.ndarray | None,
    maps_by_method: Mapping[str, np.ndarray],
    row_titles: Sequence[str],
    scale: int = 2,
) -> None:
    """Write a grid: one row per image; columns input, mask, one overlay per method.

    Args:
      images: raw images (N, H, W, C) in [0, 1].
      masks: ground-truth masks (N, H, W) bool, or None (real data: no mask column).
      maps_by_method: {method: maps (N, H, W) in [0, 1]}.
      row_titles: one caption per row (label, prediction...).
      scale: integer upscaling of each panel.
    """
    columns = ["input", *([] if masks is None else ["ground truth"]), *maps_by_method]
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
        panels = [grey_rgb(images[row])]
        if masks is not None:
            panels.append(mask_outline(images[row], masks[row]))
        panels += [overlay(images[row], maps[row]) for maps in maps_by_method.values()]
        top = header + row * (panel_h + caption)
        draw.text((4, top), row_titles[row], fill="black", font=font)
        for col, panel in enumerate(panels):
            tile = Image.fromarray(np.uint8(np.round(255 * panel))).resize((panel_w, panel_h))
            canvas.paste(tile, (col * panel_w, top + caption))
    os.makedirs(os.path.dirname(os.fspath(path)) or ".", exist_ok=True)
    canvas.save(path)


#: Line colours of :func:`save_line_plot`, in order.
PALETTE = (
    (31, 119, 180),
    (255, 127, 14),
    (44, 160, 44),
    (214, 39, 40),
    (148, 103, 189),
    (140, 86, 75),
    (227, 119, 194),
    (127, 127, 127),
    (188, 189, 34),
    (23, 190, 207),
    (0, 0, 0),
    (120, 120, 0),
)


def save_line_plot(
    path: str | os.PathLike,
    curves: Mapping[str, tuple[Sequence[float], Sequence[float | None]]],
    *,
    title: str,
    x_label: str,
    y_label: str,
    marked_x: float | None = None,
    size: tuple[int, int] = (640, 420),
) -> None:
    """A line plot drawn with Pillow: one line per name, a legend, an optional marked x.

    Args:
      curves: name -> (x values, y values); ``None`` y values leave a gap.
      marked_x: x to mark with a dashed vertical line (e.g. the chosen alpha).
    """
    width, height = size
    left, right, top, bottom = 56, 170, 28, 40
    canvas = Image.new("RGB", size, "white")
    draw = ImageDraw.Draw(canvas)
    font = ImageFont.load_default()
    xs = [x for x_values, _ in curves.values() for x in x_values]
    ys = [y for _, y_values in curves.values() for y in y_values if y is not None]
    x_lo, x_hi = (min(xs), max(xs)) if xs else (0.0, 1.0)
    y_lo, y_hi = (min(0.0, *ys), max(ys)) if ys else (0.0, 1.0)
    if y_hi <= y_lo:
        y_hi = y_lo + 1.0
    if x_hi <= x_lo:
        x_hi = x_lo + 1.0

    def point(x: float, y: float) -> tuple[float, float]:
        px = left + (x - x_lo) / (x_hi - x_lo) * (width - left - right)
        py = height - bottom - (y - y_lo) / (y_hi - y_lo) * (height - top - bottom)
        return px, py

    draw.rectangle([left, top, width - right, height - bottom], outline="black")
    for i in range(5):
        y = y_lo + (y_hi - y_lo) * i / 4
        _, py = point(x_lo, y)
        draw.line([left - 4, py, left, py], fill="black")
        draw.text((4, py - 6), f"{y:.3g}", fill="black", font=font)
        x = x_lo + (x_hi - x_lo) * i / 4
        px, _ = point(x, y_lo)
        draw.line([px, height - bottom, px, height - bottom + 4], fill="black")
        draw.text((px - 10, height - bottom + 6), f"{x:.2f}", fill="black", font=font)
    draw.text((left, 8), title, fill="black", font=font)
    draw.text(((width - right) // 2, height - 16), x_label, fill="black", font=font)
    draw.text((4, top - 14), y_label, fill="black", font=font)
    if marked_x is not None:
        px, _ = point(marked_x, y_lo)
        for y0 in range(top, height - bottom, 8):
            draw.line([px, y0, px, min(y0 + 4, height - bottom)], fill=(90, 90, 90))
    for i, (name, (x_values, y_values)) in enumerate(curves.items()):
        colour = PALETTE[i % len(PALETTE)]
        segment: list[tuple[float, float]] = []
        for x, y in zip(x_values, y_values, strict=True):
            if y is None:
                segment = []
                continue
            segment.append(point(x, y))
            if len(segment) > 1:
                draw.line(segment[-2:], fill=colour, width=2)
            draw.ellipse(
                [segment[-1][0] - 2, segment[-1][1] - 2, segment[-1][0] + 2, segment[-1][1] + 2],
                fill=colour,
            )
        ly = top + 14 * i
        draw.line([width - right + 10, ly + 6, width - right + 28, ly + 6], fill=colour, width=3)
        draw.text((width - right + 32, ly), name, fill="black", font=font)
    os.makedirs(os.path.dirname(os.fspath(path)) or ".", exist_ok=True)
    canvas.save(path)
