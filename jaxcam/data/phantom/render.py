"""One phantom image: body, lungs, mediastinum, ribs and clavicles, opacities, marker, exposure.

Each image comes with its lesion-free *twin*: the same anatomy, marker, exposure and noise
draw without the opacities.  The opacities are the last anatomy step, so the steps after
them (marker, exposure, noise, clipping) run once on the pair (image, twin) stacked, with
one noise array for both: the image is bit-identical to rendering it alone, and the twin
equals it wherever the added opacity intensity is 0 (outside the lesion *support*).
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np

from jaxcam.data.phantom.fields import F32, pixel_grid, sigmoid, smooth_curve, smooth_field
from jaxcam.data.phantom.marker import MARKER_LEVEL_RANGE, marker_mask
from jaxcam.data.phantom.opacities import add_opacities
from jaxcam.data.phantom.schema import PNEUMONIA


def _lung_margin(x, y, px, side, rng, heart_margin, med_half_width):
    """Approximate signed distance (pixels, > 0 inside) to one lung's border."""
    xc = side * rng.uniform(0.36, 0.45)
    top = rng.uniform(-0.80, -0.66)
    bottom = rng.uniform(0.30, 0.46) + (0.04 if side > 0 else 0.0)
    half_w = rng.uniform(0.27, 0.34)
    dome = rng.uniform(0.10, 0.22)
    lateral = rng.uniform(0.03, 0.10)
    fullness = rng.uniform(1.8, 2.6)
    height = bottom - top
    t = (y - F32(top)) / F32(height)  # (S, 1)
    tc = np.clip(t, 0.0, 1.0)
    # Rounded apex, widest at the base.
    hw = F32(half_w) * np.sqrt(F32(1.0) - (F32(1.0) - tc) ** F32(fullness))
    centre = F32(xc) + F32(side * lateral) * (tc - F32(0.5))
    dx = x - centre  # (S, S)
    u = np.clip(dx / F32(half_w), -1.0, 1.0)
    m_side = (hw - np.abs(dx)) * F32(px)
    t_max = F32(1.0) - F32(dome) * (F32(1.0) - u * u)  # domed diaphragm
    m_bottom = (t_max - t) * F32(height * px)
    m_top = (y - F32(top)) * F32(px)
    m_mid = (F32(side) * x - F32(med_half_width)) * F32(px)  # stay on own side
    m = np.minimum(np.minimum(m_side, m_bottom), np.minimum(m_top, m_mid))
    return np.minimum(m, -heart_margin)


class Rendered(NamedTuple):
    """One rendered phantom; every array is (S, S).

    image: float32 in [0, 1].
    twin: float32 in [0, 1], the image without its opacities (equal to it for NORMAL).
    mask: bool, the half-max lesion mask (the ground truth).
    support: bool, where the opacities add a non-zero intensity (contains ``mask``).
    lesion_ids: uint8, 0 off ``mask``, else the 1-based opacity that owns the pixel.
    lungs: bool, the lung fields.
    num_opacities: the number of opacities (0 for NORMAL).
    marker: bool, the confounder marker pixels.
    """

    image: np.ndarray
    twin: np.ndarray
    mask: np.ndarray
    support: np.ndarray
    lesion_ids: np.ndarray
    lungs: np.ndarray
    num_opacities: int
    marker: np.ndarray


def render_phantom(
    rng: np.random.Generator,
    size: int,
    label: int,
    variant: str = "v1",
    marker_rng: np.random.Generator | None = None,
) -> Rendered:
    """Render one phantom of ``variant`` and its twin, with a marker drawn from ``marker_rng``
    if given (see :class:`Rendered`)."""
    x, y = pixel_grid(size)
    px = size / 2.0  # pixels per normalised unit
    ax = np.abs(x)

    # Body outline and soft tissue.
    body_a = rng.uniform(0.84, 0.96)
    body_b = rng.uniform(1.18, 1.30)
    body_cy = rng.uniform(0.08, 0.18)
    r_body = np.sqrt(np.sqrt((x / F32(body_a)) ** 4 + ((y - F32(body_cy)) / F32(body_b)) ** 4))
    body_soft = sigmoid((F32(1.0) - r_body) * F32(min(body_a, body_b) * px / 1.5))
    background = rng.uniform(0.01, 0.05)
    tissue = rng.uniform(0.40, 0.50)
    thickness = np.clip(F32(1.0) - r_body * r_body, 0.0, 1.0)
    tissue_map = F32(tissue) * (F32(0.78) + F32(0.22) * np.sqrt(thickness))
    img = F32(background) + (tissue_map - F32(background)) * body_soft

    # Heart and mediastinum.
    hx, hy = rng.uniform(0.08, 0.16), rng.uniform(0.22, 0.32)
    ha, hb = rng.uniform(0.30, 0.38), rng.uniform(0.24, 0.31)
    r_heart = np.sqrt(((x - F32(hx)) / F32(ha)) ** 2 + ((y - F32(hy)) / F32(hb)) ** 2)
    heart_margin = (F32(1.0) - r_heart) * F32(min(ha, hb) * px)
    heart_soft = sigmoid(heart_margin / F32(1.5))
    med_half_width = rng.uniform(0.09, 0.13)

    # Lungs (patient right = image left first).
    margins = [
        _lung_margin(x, y, px, side, rng, heart_margin, med_half_width) for side in (-1.0, 1.0)
    ]
    lung_margin = np.maximum(margins[0], margins[1])
    lung_soft = sigmoid(lung_margin / F32(1.2))
    lungs = lung_margin > 0

    lung_level = rng.uniform(0.12, 0.22)
    hilum_amp = rng.uniform(0.05, 0.10)
    hil_x = np.exp(-(((ax - F32(rng.uniform(0.15, 0.22))) / F32(0.12)) ** 2))
    hil_y = np.exp(-(((y - F32(rng.uniform(-0.10, 0.05))) / F32(0.28)) ** 2))
    hilum = hil_x * hil_y  # (S, S), separable product
    vessels = smooth_field(rng, size, max(4, size // 10))
    vessel_amp = rng.uniform(0.012, 0.025)
    lung_map = F32(lung_level) + F32(hilum_amp) * hilum
    lung_map = lung_map + F32(vessel_amp) * (F32(0.5) + hilum) * vessels
    img = img + (lung_map - img) * lung_soft

    # Dense structures: heart, mediastinum and abdomen below the diaphragm.
    dense = rng.uniform(0.12, 0.18)
    mediastinum = sigmoid((F32(med_half_width + 0.02) - ax) * F32(px / 2.0))
    diaphragm = rng.uniform(0.15, 0.30)
    abdomen = sigmoid((y - F32(diaphragm)) * F32(px / 4.0))
    solid = np.maximum(np.maximum(heart_soft, mediastinum), abdomen) * body_soft
    img = img + F32(dense) * solid * (F32(1.0) - lung_soft)
    spine_half = rng.uniform(0.06, 0.08)
    spine_add = rng.uniform(0.05, 0.10)
    spine_x = sigmoid((F32(spine_half) - ax) * F32(px / 1.2))
    vert_period = rng.uniform(0.11, 0.14)
    vert = F32(0.7) + F32(0.3) * np.cos(F32(2 * np.pi / vert_period) * y + F32(rng.uniform(0, 6.3)))
    img = img + F32(spine_add) * spine_x * vert * body_soft

    # Ribs: column-wise parameters, image left / right differ slightly.
    left = x < 0

    def per_side(lo: float, hi: float, jitter: float) -> np.ndarray:
        base = rng.uniform(lo, hi)
        d = rng.uniform(-jitter, jitter, size=2)
        return np.where(left, F32(base + d[0]), F32(base + d[1]))

    rise = per_side(0.22, 0.36, 0.03)
    bend = per_side(0.70, 0.95, 0.05)
    start = per_side(-0.98, -0.88, 0.03)
    span = rng.uniform(1.25, 1.45)
    n_ribs = rng.uniform(8.5, 10.0)
    gamma = rng.uniform(0.80, 0.92)
    sharp = rng.uniform(1.5, 3.0)
    rib_amp = rng.uniform(0.06, 0.10)
    v = y + (rise * ax - bend * ax * ax) - start  # constant along a posterior rib
    phase = F32(n_ribs) * (np.maximum(v, 0.0) / F32(span)) ** F32(gamma)
    post = (F32(0.5) + F32(0.5) * np.cos(F32(2 * np.pi) * phase)) ** F32(sharp)
    post = post * (v > 0) * sigmoid((F32(n_ribs + 0.3) - phase) * F32(4.0))
    slope = rng.uniform(0.35, 0.55)
    ant_spacing = rng.uniform(0.15, 0.20)
    ant_phase = (y + F32(slope) * ax) / F32(ant_spacing) + F32(rng.uniform(0, 1))
    ant = np.square(np.square(F32(0.5) + F32(0.5) * np.cos(F32(2 * np.pi) * ant_phase)))
    ant = ant * sigmoid((ax - F32(0.12)) * F32(px / 3))
    cage = sigmoid((lung_margin + F32(0.06 * px)) / F32(2.0)) * sigmoid(
        (ax - F32(0.07)) * F32(px / 2)
    )
    img = img + F32(rib_amp) * (post + F32(0.35) * ant) * cage

    # Clavicles: bands from the sternum rising towards the shoulders.
    cl_med = per_side(0.05, 0.10, 0.01)
    cl_lat = per_side(0.55, 0.70, 0.03)
    cl_y = per_side(-0.76, -0.66, 0.02)
    cl_rise = per_side(0.10, 0.20, 0.02)
    cl_bow = rng.uniform(0.0, 0.05)
    cl_thick = rng.uniform(0.04, 0.055)
    s = np.clip((ax - cl_med) / (cl_lat - cl_med), 0.0, 1.0)
    centre_line = cl_y - cl_rise * s - F32(cl_bow) * np.sin(F32(np.pi) * s)
    in_span = sigmoid((ax - cl_med) * F32(px / 1.5)) * sigmoid((cl_lat - ax) * F32(px / 1.5))
    clav = np.exp(-(((y - centre_line) / F32(cl_thick)) ** 2)) * in_span
    img = img + F32(rng.uniform(0.08, 0.14)) * clav

    # Opacities; ``pair`` holds the image and, for PNEUMONIA, its twin without them.
    mask = np.zeros((size, size), bool)
    support = np.zeros((size, size), bool)
    lesion_ids = np.zeros((size, size), np.uint8)
    count = 0
    pair = img[None]
    if label == PNEUMONIA:
        texture = smooth_field(rng, size, max(4, size // 12))
        opacities = add_opacities(rng, size, margins, lung_soft, texture, variant)
        mask, lesion_ids, count = opacities.mask, opacities.lesion_ids, opacities.num_opacities
        support = opacities.added != 0
        pair = np.stack([img + opacities.added, img])

    # Confounder marker (own generator: the main stream's draws do not depend on it).
    marker = np.zeros((size, size), bool)
    if marker_rng is not None:
        marker = marker_mask(marker_rng, lungs)
        level = F32(marker_rng.uniform(*MARKER_LEVEL_RANGE))
        pair = np.where(marker, np.maximum(pair, level), pair)

    # Exposure: smooth low-frequency gain, global gain/offset, pixel noise (one draw for both).
    low = smooth_curve(rng, y, 2, 0.03) + smooth_curve(rng, x, 2, 0.03)
    gain = rng.uniform(0.92, 1.08)
    pair = pair * (F32(gain) * (F32(1.0) + low)) + F32(rng.uniform(-0.02, 0.02))
    noise_std = rng.uniform(0.02, 0.035)
    pair = pair + F32(noise_std) * rng.standard_normal((size, size), dtype=F32)
    pair = np.clip(pair, 0.0, 1.0).astype(F32, copy=False)
    image, twin = pair[0], pair[-1]  # the same array for NORMAL
    return Rendered(image, twin, mask, support, lesion_ids, lungs, count, marker)
