"""Figures of jaxcam.viz: PNG sizes, colour bar, round ticks, labelled marks, training axes."""

from __future__ import annotations

import math
import subprocess
import sys
import warnings

import numpy as np
from matplotlib.text import Text
from PIL import Image

from jaxcam import viz
from jaxcam.viz import save_figure, save_line_plot, save_training_curves


def png_size(path) -> tuple[int, int]:
    with Image.open(path) as image:
        return image.size


def shown_ticks(ticks: np.ndarray, limits: tuple[float, float]) -> np.ndarray:
    """The tick positions inside the axis limits (the locator also returns ones beyond)."""
    low, high = sorted(limits)
    ticks = np.asarray(ticks, np.float64)
    return ticks[(ticks >= low - 1e-9) & (ticks <= high + 1e-9)]


def is_round_step(step: float) -> bool:
    """True for 1, 2, 2.5 or 5 times a power of ten."""
    mantissa = step / 10 ** math.floor(math.log10(step))
    return any(math.isclose(mantissa, m) for m in (1.0, 2.0, 2.5, 5.0))


def all_texts(figure) -> list[str]:
    return [t.get_text() for t in figure.findobj(Text)]


def test_figure1_grid_colour_bar_titles_and_size(tmp_path):
    images = np.linspace(0.0, 1.0, 2 * 6 * 6).reshape(2, 6, 6, 1)
    masks = np.zeros((2, 6, 6), bool)
    masks[0, 2:4, 2:4] = True  # row 1: an empty mask (a NORMAL image), no outline
    maps = {"CAM": np.full((2, 6, 6), 0.5), "Grad-CAM": np.eye(6)[None].repeat(2, 0)}
    titles = ["label PNEUMONIA, pred PNEUMONIA (Y=0.93)", "label NORMAL, pred NORMAL"]
    path = tmp_path / "sub" / "figure1.png"
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        figure = save_figure(path, images, masks, maps, titles, scale=1.0, panel_inches=1.0)
    # 4 columns (input, ground truth, 2 methods) + half a panel for the bar: 4.5 in x 100 dpi;
    # 2 rows of (1 in + 0.35 in caption) + 0.25 in of column names: 2.95 in x 100 dpi.
    assert png_size(path) == (450, 295)
    # 2 x 4 image panels and one colour-bar axes.
    assert len(figure.axes) == 9
    bar_axes = [ax for ax in figure.axes if ax.get_ylabel() == "saliency"]
    assert len(bar_axes) == 1
    np.testing.assert_allclose(bar_axes[0].get_ylim(), (0.0, 1.0))
    texts = all_texts(figure)
    for title in [*titles, "input", "ground truth", "CAM", "Grad-CAM"]:
        assert title in texts
    panels = [ax for ax in figure.axes if ax is not bar_axes[0]]
    # Ground-truth column (second panel of each row): an outline drawn as a contour.
    assert len(panels[1].collections) == 1 and len(panels[5].collections) == 0
    # Overlays: the image and the heat map on the colour bar's 0..1 scale.
    for ax in (panels[2], panels[3], panels[6], panels[7]):
        heat = ax.get_images()[1]
        assert heat.get_clim() == (0.0, 1.0)


def test_figure1_without_masks_rgb(tmp_path):
    images = np.zeros((1, 5, 5, 3))
    path = tmp_path / "figure1.png"
    figure = save_figure(
        path, images, None, {"CAM": np.zeros((1, 5, 5)), "LayerCAM": np.ones((1, 5, 5))}, ["x"]
    )
    # 3 columns + 0.5 at 2 in per panel: 7 in; 2.35 + 0.25 = 2.6 in; 100 dpi.
    assert png_size(path) == (700, 260)
    assert len(figure.axes) == 3 + 1
    assert "ground truth" not in all_texts(figure)


def test_line_plot_round_ticks_labelled_mark_and_outside_legend(tmp_path):
    alphas = [0.05, 0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.65, 0.7, 0.8, 0.9, 0.95]
    # Values spanning 0 .. 0.943 as in the review (the old plot ticked y at 0.236, 0.471...).
    curves = {
        "CAM": (alphas, [0.943 * a for a in alphas]),
        "Grad-CAM": (alphas, [0.943 * a for a in alphas]),  # lies exactly on CAM
        "Grad-CAM++": (alphas, [0.5 * a if a != 0.3 else None for a in alphas]),
    }
    path = tmp_path / "bad_curve.png"
    figure = save_line_plot(
        path,
        curves,
        title="BAD vs alpha",
        x_label="alpha",
        y_label="BAD",
        marked_x=0.65,
        size=(600, 400),
    )
    assert png_size(path) == (600, 400)
    ax = figure.axes[0]
    x_ticks = shown_ticks(ax.get_xticks(), ax.get_xlim())
    assert len(x_ticks) >= 4
    np.testing.assert_allclose(x_ticks * 10, np.round(x_ticks * 10), atol=1e-9)
    y_ticks = shown_ticks(ax.get_yticks(), ax.get_ylim())
    steps = np.diff(y_ticks)
    assert len(y_ticks) >= 4 and np.allclose(steps, steps[0]) and is_round_step(steps[0])
    np.testing.assert_allclose(y_ticks / steps[0], np.round(y_ticks / steps[0]), atol=1e-9)
    # The chosen alpha: a vertical line at 0.65, named in the legend.
    legend = figure.legends[0]
    names = [t.get_text() for t in legend.get_texts()]
    assert names == ["CAM", "Grad-CAM", "Grad-CAM++", "chosen alpha = 0.65"]
    mark = [line for line in ax.get_lines() if line.get_label().startswith("chosen alpha")]
    assert list(mark[0].get_xdata()) == [0.65, 0.65]
    # Equal curves still differ in colour, marker and line style.
    cam, grad_cam, plus = ax.get_lines()[:3]
    assert cam.get_marker() != grad_cam.get_marker()
    assert cam.get_linestyle() != grad_cam.get_linestyle()
    assert cam.get_color() != grad_cam.get_color()
    # None leaves a gap (NaN) at alpha = 0.3, the 4th point.
    assert np.isnan(plus.get_ydata()[3]) and not np.isnan(plus.get_ydata()[2])
    # The legend sits right of the axes: it hides no data.
    renderer = figure.canvas.get_renderer()
    assert legend.get_window_extent(renderer).x0 >= ax.get_window_extent(renderer).x1


def test_line_plot_many_series_styles_differ_and_integer_x(tmp_path):
    curves = {f"s{i}": ([0, 1, 2, 3, 4, 5, 6], [float(i)] * 7) for i in range(12)}
    figure = save_line_plot(tmp_path / "tau.png", curves, title="t", x_label="x", y_label="y")
    ax = figure.axes[0]
    styles = {(str(line.get_color()), line.get_marker(), line.get_linestyle()) for line in ax.lines}
    assert len(styles) == 12
    x_ticks = shown_ticks(ax.get_xticks(), ax.get_xlim())
    np.testing.assert_array_equal(x_ticks, np.round(x_ticks))


def history(epochs: int, validation: bool) -> list[dict]:
    rows = []
    for epoch in range(1, epochs + 1):
        row = {"epoch": epoch, "step": 4 * epoch, "loss": 1.0 / epoch}
        if validation:
            row |= {"val_accuracy": 0.5 + 0.1 * epoch, "val_auc": None if epoch == 1 else 0.9}
        rows.append(row)
    return rows


def test_training_curves_two_axes_integer_epochs(tmp_path):
    path = tmp_path / "train.png"
    figure = save_training_curves(path, history(3, True), title="small_cnn", size=(500, 250))
    assert png_size(path) == (500, 250)
    loss_ax, metric_ax = figure.axes
    np.testing.assert_allclose(loss_ax.get_lines()[0].get_ydata(), [1.0, 0.5, 1.0 / 3.0])
    for ax in (loss_ax, metric_ax):
        assert ax.get_xlabel() == "epoch"
        np.testing.assert_array_equal(shown_ticks(ax.get_xticks(), ax.get_xlim()), [1, 2, 3])
    assert [t.get_text() for t in metric_ax.get_legend().get_texts()] == [
        "val accuracy",
        "val AUC",
    ]
    low, high = metric_ax.get_ylim()
    assert low <= 0.0 and high >= 1.0
    auc = metric_ax.get_lines()[1].get_ydata()
    assert np.isnan(auc[0]) and auc[1] == 0.9


def test_training_curves_without_validation_one_epoch(tmp_path):
    figure = save_training_curves(tmp_path / "train.png", history(1, False))
    assert len(figure.axes) == 1
    ax = figure.axes[0]
    np.testing.assert_array_equal(shown_ticks(ax.get_xticks(), ax.get_xlim()), [1])


def test_import_leaves_the_backend_alone():
    # viz.py loaded by path (not through jaxcam/__init__, which imports JAX: slow).
    code = (
        "import importlib.util, sys; "
        f"spec = importlib.util.spec_from_file_location('viz', {str(viz.__file__)!r}); "
        "spec.loader.exec_module(importlib.util.module_from_spec(spec)); "
        "assert 'matplotlib.pyplot' not in sys.modules; "
        "assert not any(m.startswith('matplotlib.backends.backend_') and 'agg' not in m "
        "for m in sys.modules)"
    )
    subprocess.run([sys.executable, "-c", code], check=True)
