"""Figures drawn with matplotlib's object API.

Every figure is a :class:`matplotlib.figure.Figure` rendered on its own Agg canvas: nothing here
imports pyplot or calls ``matplotlib.use``, so importing jaxcam never changes a user's backend.
Each ``save_*`` function writes a PNG and returns the Figure (tests read its axes and ticks).
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from itertools import cycle
from typing import Any, cast

import numpy as np
from matplotlib import colormaps
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.cm import ScalarMappable
from matplotlib.colors import ListedColormap, Normalize
from matplotlib.figure import Figure
from matplotlib.ticker import MaxNLocator

#: Colour map of the saliency overlays and of Figure 1's colour bar.
SALIENCY_CMAP = "jet"
#: Heights of Figure 1's text, in inches: the caption above each row, the column names.
ROW_TITLE_INCHES = 0.35
HEADER_INCHES = 0.25
#: Share of a panel's width taken by Figure 1's colour bar column.
COLOUR_BAR_PANELS = 0.5

# tab10 is a ListedColormap whose colours are a tuple of RGB tuples (matplotlib types
# ``ListedColormap.colors`` as any colour data).
_TAB10 = cast(tuple[Any, ...], cast(ListedColormap, colormaps["tab10"]).colors)
#: Per-series styles of :func:`save_line_plot`: colour, marker and line style change together,
#: with co-prime cycle lengths (11, 12, 5) so no two series of a plot share all three.
LINE_COLOURS = (*_TAB10, "black")
MARKERS = ("o", "s", "^", "D", "v", "P", "X", "*", "<", ">", "h", "p")
LINE_STYLES = ("-", "--", "-.", ":", (0, (5, 1, 1, 1, 1, 1)))

#: Per-epoch metrics of :func:`save_training_curves`: history key -> legend name.
TRAINING_METRICS = {"val_accuracy": "val accuracy", "val_auc": "val AUC"}

#: Round tick steps (times a power of ten) for value axes.
ROUND_STEPS = (1, 2, 2.5, 5, 10)


def _write(figure: Figure, path: str | os.PathLike) -> Figure:
    """Render ``figure`` on an Agg canvas into a PNG at ``path`` (folders created)."""
    os.makedirs(os.path.dirname(os.fspath(path)) or ".", exist_ok=True)
    FigureCanvasAgg(figure)
    figure.savefig(path, format="png")
    return figure


def _pixels_figure(size: tuple[int, int], dpi: float) -> Figure:
    """A constrained-layout Figure of exactly ``size`` = (width, height) pixels."""
    width, height = size
    return Figure(figsize=(width / dpi, height / dpi), dpi=dpi, layout="constrained")


def _as_float(values: Sequence[float | None]) -> np.ndarray:
    """Values with ``None`` -> NaN (a gap in the line): (n,) float64."""
    return np.asarray([np.nan if v is None else float(v) for v in values], np.float64)


def _show_image(ax: Any, image: np.ndarray) -> None:
    """Draw a raw image (H, W, 1) or (H, W, 3) in [0, 1] on ``ax`` without axis ticks."""
    image = np.clip(np.asarray(image, np.float64), 0.0, 1.0)
    if image.ndim == 3 and image.shape[-1] == 1:
        ax.imshow(image[..., 0], cmap="gray", vmin=0.0, vmax=1.0, interpolation="nearest")
    else:
        ax.imshow(image, interpolation="nearest")
    ax.set_xticks([])
    ax.set_yticks([])


def save_figure(
    path: str | os.PathLike,
    images: np.ndarray,
    masks: np.ndarray | None,
    maps_by_method: Mapping[str, np.ndarray],
    row_titles: Sequence[str],
    scale: float = 1.0,
    *,
    panel_inches: float = 2.0,
    opacity: float = 0.45,
) -> Figure:
    """Figure 1: one row per image; columns input, mask outline, one overlay per method.

    The PNG is ``panel_inches * (columns + 0.5)`` inches wide (the half panel holds the
    colour bar of the saliency scale 0..1) and ``rows * (panel_inches + 0.35) + 0.25`` inches
    high, at ``100 * scale`` pixels per inch.

    Args:
      images: raw images (N, H, W, C) in [0, 1], C = 1 or 3.
      masks: ground-truth masks (N, H, W) bool, or None (real data: no mask column).
      maps_by_method: {method: maps (N, H, W) in [0, 1]}.
      row_titles: one caption per row (label, prediction...), shown above the row.
      scale: resolution multiplier (1: 100 pixels per inch).
      panel_inches: side of one image panel.
      opacity: weight of the heat map over the image in the overlays.
    """
    columns = ["input", *([] if masks is None else ["ground truth"]), *maps_by_method]
    num_rows = images.shape[0]
    if len(row_titles) != num_rows:
        raise ValueError(f"{len(row_titles)} row titles for {num_rows} images")
    width = panel_inches * (len(columns) + COLOUR_BAR_PANELS)
    height = num_rows * (panel_inches + ROW_TITLE_INCHES) + HEADER_INCHES
    figure = Figure(figsize=(width, height), dpi=100 * scale, layout="constrained")
    grid, bar = figure.subfigures(
        1, 2, squeeze=False, width_ratios=[len(columns), COLOUR_BAR_PANELS]
    )[0]
    row_heights = [panel_inches + ROW_TITLE_INCHES] * num_rows
    row_heights[0] += HEADER_INCHES
    rows = grid.subfigures(num_rows, 1, squeeze=False, height_ratios=row_heights)[:, 0]
    norm = Normalize(0.0, 1.0)
    for row, row_figure in enumerate(rows):
        row_figure.suptitle(row_titles[row], fontsize=9, wrap=True)
        axes = row_figure.subplots(1, len(columns), squeeze=False)[0]
        for ax in axes:
            _show_image(ax, images[row])
        mask = None if masks is None else np.asarray(masks[row], np.float64)
        if mask is not None and 0.0 < mask.mean() < 1.0:  # an empty mask has no outline
            axes[1].contour(mask, levels=[0.5], colors="lime", linewidths=1.2)
        for ax, maps in zip(
            axes[len(columns) - len(maps_by_method) :], maps_by_method.values(), strict=True
        ):
            ax.imshow(
                np.asarray(maps[row], np.float64),
                cmap=SALIENCY_CMAP,
                norm=norm,
                alpha=opacity,
                interpolation="nearest",
            )
        if row == 0:
            for ax, name in zip(axes, columns, strict=True):
                ax.set_title(name, fontsize=9)
    bar_axes = bar.add_axes((0.15, 0.1, 0.2, 0.8))
    colour_bar = bar.colorbar(ScalarMappable(norm, SALIENCY_CMAP), cax=bar_axes)
    colour_bar.set_label("saliency", fontsize=9)
    colour_bar.ax.tick_params(labelsize=8)
    return _write(figure, path)


def save_line_plot(
    path: str | os.PathLike,
    curves: Mapping[str, tuple[Sequence[float], Sequence[float | None]]],
    *,
    title: str,
    x_label: str,
    y_label: str,
    marked_x: float | None = None,
    marked_label: str = "chosen alpha",
    size: tuple[int, int] = (800, 480),
    dpi: float = 100.0,
) -> Figure:
    """Line plot: one line per name (own colour, marker, line style), legend right of the axes.

    Args:
      curves: name -> (x values, y values); ``None`` y values leave a gap.
      marked_x: x to mark with a dashed vertical line, in the legend as
        ``f"{marked_label} = {marked_x:g}"`` (e.g. "chosen alpha = 0.65").
      size: (width, height) of the PNG in pixels.
      dpi: pixels per inch (font sizes are in points: a higher dpi makes text smaller).
    """
    figure = _pixels_figure(size, dpi)
    ax = figure.add_subplot()
    styles = zip(cycle(LINE_COLOURS), cycle(MARKERS), cycle(LINE_STYLES), strict=False)
    all_x: list[float] = []
    for index, ((name, (x_values, y_values)), (colour, marker, style)) in enumerate(
        zip(curves.items(), styles, strict=False)
    ):
        x = _as_float(x_values)
        all_x += list(x)
        # Open markers, a slight transparency and later lines thinner than earlier ones: a line
        # lying on another (equal values) still shows around and between its dashes.
        ax.plot(
            x,
            _as_float(y_values),
            color=colour,
            marker=marker,
            linestyle=style,
            markerfacecolor="none",
            markersize=7,
            linewidth=max(1.0, 2.8 - 0.2 * index),
            alpha=0.85,
            label=name,
        )
    if marked_x is not None:
        ax.axvline(
            marked_x,
            color="0.25",
            linestyle=(0, (4, 3)),
            linewidth=1.2,
            label=f"{marked_label} = {marked_x:g}",
        )
    integer_x = bool(all_x) and all(float(v).is_integer() for v in all_x)
    ax.xaxis.set_major_locator(
        MaxNLocator(nbins=10, steps=[1, 2, 5, 10], integer=integer_x, min_n_ticks=1)
    )
    ax.yaxis.set_major_locator(MaxNLocator(nbins=8, steps=list(ROUND_STEPS)))
    ax.grid(alpha=0.3)
    ax.set_title(title, fontsize=10, wrap=True)
    ax.set_xlabel(x_label)
    ax.set_ylabel(y_label)
    if ax.get_legend_handles_labels()[0]:
        figure.legend(loc="outside right upper", fontsize=8)
    return _write(figure, path)


def save_training_curves(
    path: str | os.PathLike,
    history: Sequence[Mapping[str, Any]],
    *,
    title: str = "",
    metrics: Mapping[str, str] = TRAINING_METRICS,
    size: tuple[int, int] = (900, 380),
    dpi: float = 100.0,
) -> Figure:
    """Training curves: the loss on the left axes, the metrics (in [0, 1]) on the right.

    Both axes share the epoch axis, ticked at whole epochs. The right axes is left out when
    no epoch has any of ``metrics`` (training without a validation split).

    Args:
      history: one dict per finished epoch with ``epoch`` (int, from 1) and ``loss``, and
        optionally the keys of ``metrics`` (``None`` or absent: a gap), as ``jaxcam.train.fit``
        returns in ``FitResult.history``.
      metrics: history key -> legend name of the metrics to draw.
      size: (width, height) of the PNG in pixels.
    """
    epochs = _as_float([entry["epoch"] for entry in history])
    present = {
        key: name
        for key, name in metrics.items()
        if any(entry.get(key) is not None for entry in history)
    }
    figure = _pixels_figure(size, dpi)
    axes = figure.subplots(1, 2 if present else 1, squeeze=False, sharex=True)[0]
    loss_ax = axes[0]
    loss_ax.plot(epochs, _as_float([entry["loss"] for entry in history]), marker="o", color="C0")
    loss_ax.set_ylabel("train loss")
    loss_ax.yaxis.set_major_locator(MaxNLocator(nbins=6, steps=list(ROUND_STEPS)))
    if present:
        metric_ax = axes[1]
        styles = zip(MARKERS[1:], LINE_STYLES, strict=False)
        for (key, name), (marker, style) in zip(present.items(), styles, strict=False):
            values = _as_float([entry.get(key) for entry in history])
            metric_ax.plot(epochs, values, marker=marker, linestyle=style, label=name)
        metric_ax.set_ylim(-0.02, 1.02)
        metric_ax.yaxis.set_major_locator(MaxNLocator(nbins=6, steps=[1, 2, 5, 10]))
        metric_ax.set_ylabel("validation metric")
        metric_ax.legend(loc="lower right", fontsize=8)
    for ax in axes:
        ax.xaxis.set_major_locator(MaxNLocator(integer=True, min_n_ticks=1))
        ax.set_xlabel("epoch")
        ax.grid(alpha=0.3)
    if len(epochs):
        loss_ax.set_xlim(epochs.min() - 0.5, epochs.max() + 0.5)
    if title:
        figure.suptitle(title, fontsize=10)
    return _write(figure, path)
