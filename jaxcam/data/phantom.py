"""Synthetic phantom chest X-rays: the default, embedded data set of jaxcam.

Every image is a schematic posterior-anterior chest radiograph drawn with numpy,
in the X-ray convention (air and lungs dark, bone and soft tissue bright, black
is 0, values clipped to [0, 1]):

* a soft-tissue body outline (rounded torso with shoulders) on a dark air
  background, with a smooth, thicker-in-the-middle tissue density;
* two dark lung fields (rounded apex, domed diaphragm, a cardiac notch on the
  image-right lung) whose size and position vary per image, brighter hilar
  regions and a faint vascular texture;
* a bright mediastinum: heart (lower centre, shifted to the image right) and a
  spine with vertebral modulation;
* curved posterior ribs and fainter anterior ribs over the thorax, plus the two
  clavicles, all with random spacing, curvature, phase and brightness;
* a smooth low-frequency exposure variation and Gaussian pixel noise.

PNEUMONIA images (label 1) add 1 to 3 opacities: soft-edged, irregular
(elliptical with random angular harmonics) brighter blobs with a patchy
texture, placed inside a lung, with a peak of +0.15 to +0.35 over the local
lung intensity (+0.22 to +0.35 for small ones, below 4 % of the lung).  The
target area of each opacity is drawn log-uniformly as a fraction of its lung's
area: 1.5 % to 25 % for the first one, 1.2 % to 12 % for the others, so many are
small and some are large.  Pixel noise has a standard deviation of 0.02-0.035.
The ground-truth mask of an opacity is where its profile is at or above half its
maximum, clipped to the lungs; NORMAL images (label 0) have an empty mask.

Seed scheme: image ``i`` of ``generate_phantom(n, seed, ...)`` is drawn from its
own generator ``np.random.default_rng([seed, i])`` (its label first, then the
anatomy, then the opacities, then the noise), so images never depend on ``n``
and a larger set extends a smaller one.  Split ``s`` of ``phantom_split`` uses
the derived seed ``SPLIT_SEED_STRIDE * seed + SPLIT_SEED_OFFSETS[s]`` (train 1,
val 2, test 3), so the splits are disjoint random streams.

Geometry guarantee used by the tests: the patient's right lung (image left)
lies entirely in columns ``x < S / 2`` and the left lung in ``x >= S / 2``.
"""

from __future__ import annotations

import functools
import math
from typing import NamedTuple

import numpy as np

NORMAL = 0
PNEUMONIA = 1
CLASS_NAMES = ("NORMAL", "PNEUMONIA")
MIN_IMAGE_SIZE = 32

#: Default number of images of each split.
SPLITS: dict[str, int] = {"train": 1200, "val": 200, "test": 300}
#: Split seed = SPLIT_SEED_STRIDE * seed + SPLIT_SEED_OFFSETS[split].
SPLIT_SEED_OFFSETS: dict[str, int] = {"train": 1, "val": 2, "test": 3}
SPLIT_SEED_STRIDE = 1000

_F32 = np.float32
_LN2 = math.log(2.0)


class PhantomArrays(NamedTuple):
    """A phantom data set held in memory.

    images: float32 (N, S, S, 1), raw intensities in [0, 1] (black = 0).
    masks: bool (N, S, S), ground-truth lesion mask (all False for NORMAL).
    labels: int32 (N,), 0 = NORMAL, 1 = PNEUMONIA.
    """

    images: np.ndarray
    masks: np.ndarray
    labels: np.ndarray


# ----------------------------------------------------------------------------
# Validation and seeds.


def _check_args(num_images: int, seed: int, image_size: int, pneumonia_fraction: float) -> None:
    if int(num_images) != num_images or num_images < 1:
        raise ValueError(f"num_images must be an integer >= 1, got {num_images!r}")
    if int(seed) != seed or seed < 0:
        raise ValueError(f"seed must be a non-negative integer, got {seed!r}")
    if int(image_size) != image_size or image_size < MIN_IMAGE_SIZE:
        raise ValueError(f"image_size must be an integer >= {MIN_IMAGE_SIZE}, got {image_size!r}")
    if not 0.0 <= float(pneumonia_fraction) <= 1.0:
        raise ValueError(f"pneumonia_fraction must be in [0, 1], got {pneumonia_fraction!r}")


def split_seed(split: str, seed: int = 0) -> int:
    """The seed ``generate_phantom`` gets for ``split`` of the data set ``seed``."""
    if split not in SPLIT_SEED_OFFSETS:
        raise ValueError(f"unknown split {split!r}; known splits: {sorted(SPLITS)}")
    if int(seed) != seed or seed < 0:
        raise ValueError(f"seed must be a non-negative integer, got {seed!r}")
    return SPLIT_SEED_STRIDE * int(seed) + SPLIT_SEED_OFFSETS[split]


# ----------------------------------------------------------------------------
# Small numeric helpers (all float32, no per-pixel Python loops).


def _sigmoid(z):
    return _F32(0.5) * (_F32(1.0) + np.tanh(_F32(0.5) * z))


@functools.lru_cache(maxsize=8)
def _grid(size: int):
    """Normalised pixel-centre coordinates in [-1, 1]: X (1, S) and Y (S, 1)."""
    c = ((np.arange(size, dtype=np.float64) + 0.5) / size * 2.0 - 1.0).astype(_F32)
    x = c[None, :]
    y = c[:, None]
    x.flags.writeable = False
    y.flags.writeable = False
    return x, y


@functools.lru_cache(maxsize=32)
def _interp_plan(size: int, cells: int):
    """Indices and smoothstep weights to upsample a (cells+1)-point axis to ``size``."""
    pos = (np.arange(size, dtype=np.float64) + 0.5) / size * cells
    i0 = np.minimum(np.floor(pos).astype(np.intp), cells - 1)
    w = pos - i0
    w = (w * w * (3.0 - 2.0 * w)).astype(_F32)
    return i0, i0 + 1, w


def _smooth_field(rng: np.random.Generator, size: int, cells: int) -> np.ndarray:
    """A smooth random field (S, S) float32 with unit-variance grid values."""
    g = rng.standard_normal((cells + 1, cells + 1), dtype=_F32)
    i0, i1, w = _interp_plan(size, cells)
    rows = g[i0] * (1 - w)[:, None] + g[i1] * w[:, None]  # (S, cells+1)
    return rows[:, i0] * (1 - w)[None, :] + rows[:, i1] * w[None, :]


def _smooth_curve(rng: np.random.Generator, coord: np.ndarray, n: int, amp: float) -> np.ndarray:
    """Sum of ``n`` random low-frequency cosines evaluated at ``coord``."""
    freq = rng.uniform(0.4, 2.2, size=n)
    phase = rng.uniform(0.0, 2 * np.pi, size=n)
    weight = rng.uniform(-amp, amp, size=n)
    out = np.zeros_like(coord)
    for f, p, a in zip(freq, phase, weight, strict=True):
        out += _F32(a) * np.cos(_F32(f * np.pi) * coord + _F32(p))
    return out


# ----------------------------------------------------------------------------
# One image.


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
    t = (y - _F32(top)) / _F32(height)  # (S, 1)
    tc = np.clip(t, 0.0, 1.0)
    # Rounded apex, widest at the base.
    hw = _F32(half_w) * np.sqrt(_F32(1.0) - (_F32(1.0) - tc) ** _F32(fullness))
    centre = _F32(xc) + _F32(side * lateral) * (tc - _F32(0.5))
    dx = x - centre  # (S, S)
    u = np.clip(dx / _F32(half_w), -1.0, 1.0)
    m_side = (hw - np.abs(dx)) * _F32(px)
    t_max = _F32(1.0) - _F32(dome) * (_F32(1.0) - u * u)  # domed diaphragm
    m_bottom = (t_max - t) * _F32(height * px)
    m_top = (y - _F32(top)) * _F32(px)
    m_mid = (_F32(side) * x - _F32(med_half_width)) * _F32(px)  # stay on own side
    m = np.minimum(np.minimum(m_side, m_bottom), np.minimum(m_top, m_mid))
    return np.minimum(m, -heart_margin)


def _add_opacities(rng, size, margins, lung_soft, texture):
    """Draw 1-3 opacities; returns (added intensity (S, S), mask (S, S) bool)."""
    added = np.zeros((size, size), _F32)
    mask = np.zeros((size, size), bool)
    areas = [float(np.count_nonzero(m > 0)) for m in margins]
    n_les = int(rng.choice([1, 2, 3], p=[0.5, 0.3, 0.2]))
    for k in range(n_les):
        side = 0 if rng.random() < areas[0] / (areas[0] + areas[1]) else 1
        margin = margins[side]
        lo, hi = (0.015, 0.25) if k == 0 else (0.012, 0.12)
        frac = math.exp(rng.uniform(math.log(lo), math.log(hi)))
        radius = max(math.sqrt(frac * areas[side] / math.pi), 1.5)
        ecc = math.exp(rng.uniform(math.log(0.7), math.log(1.4)))
        theta = rng.uniform(0.0, math.pi)
        harm_amp = rng.uniform(0.0, 0.12, size=3)
        harm_phase = rng.uniform(0.0, 2 * math.pi, size=3)
        kappa = rng.uniform(2.5, 4.0)
        contrast = rng.uniform(0.22 if frac < 0.04 else 0.15, 0.35)
        tex_amp = rng.uniform(0.1, 0.3)
        # Centre: a lung pixel deep enough for small lesions to lie fully inside.
        need = radius * max(ecc, 1 / ecc) * (0.9 if frac < 0.06 else 0.45)
        need = min(need, 0.9 * float(margin.max()))
        cand = np.flatnonzero(margin.ravel() >= need)
        cy, cx = divmod(int(cand[rng.integers(cand.size)]), size)
        jy, jx = rng.uniform(-0.3, 0.3, size=2)
        # Work in a window around the centre.
        extent = radius * max(ecc, 1 / ecc) * (1.0 + harm_amp.sum())
        half = int(math.ceil(2.2 * extent)) + 2
        y0, y1 = max(cy - half, 0), min(cy + half + 1, size)
        x0, x1 = max(cx - half, 0), min(cx + half + 1, size)
        dy = (np.arange(y0, y1, dtype=_F32) - _F32(cy + jy))[:, None]
        dx = (np.arange(x0, x1, dtype=_F32) - _F32(cx + jx))[None, :]
        ct, st = _F32(math.cos(theta)), _F32(math.sin(theta))
        a = (dx * ct + dy * st) / _F32(radius * ecc)
        b = (-dx * st + dy * ct) / _F32(radius / ecc)
        phi = np.arctan2(b, a)
        edge = np.ones_like(phi)
        for order, amp, ph in zip((2, 3, 5), harm_amp, harm_phase, strict=True):
            edge += _F32(amp) * np.cos(_F32(order) * phi + _F32(ph))
        q = np.sqrt(a * a + b * b) / edge
        profile = np.exp(_F32(-_LN2) * q ** _F32(kappa))
        patch = texture[y0:y1, x0:x1]
        value = _F32(contrast) * profile * (_F32(1.0) + _F32(tex_amp) * np.tanh(patch))
        np.maximum(added[y0:y1, x0:x1], value, out=added[y0:y1, x0:x1])
        mask[y0:y1, x0:x1] |= q <= 1.0  # profile >= half max
    lungs = (margins[0] > 0) | (margins[1] > 0)
    return added * lung_soft, mask & lungs


def _render(rng: np.random.Generator, size: int, label: int):
    """Render one phantom: (image (S, S) float32, mask (S, S) bool, lungs (S, S) bool)."""
    x, y = _grid(size)
    px = size / 2.0  # pixels per normalised unit
    ax = np.abs(x)

    # Body outline and soft tissue.
    body_a = rng.uniform(0.84, 0.96)
    body_b = rng.uniform(1.18, 1.30)
    body_cy = rng.uniform(0.08, 0.18)
    r_body = np.sqrt(np.sqrt((x / _F32(body_a)) ** 4 + ((y - _F32(body_cy)) / _F32(body_b)) ** 4))
    body_soft = _sigmoid((_F32(1.0) - r_body) * _F32(min(body_a, body_b) * px / 1.5))
    background = rng.uniform(0.01, 0.05)
    tissue = rng.uniform(0.40, 0.50)
    thickness = np.clip(_F32(1.0) - r_body * r_body, 0.0, 1.0)
    tissue_map = _F32(tissue) * (_F32(0.78) + _F32(0.22) * np.sqrt(thickness))
    img = _F32(background) + (tissue_map - _F32(background)) * body_soft

    # Heart and mediastinum.
    hx, hy = rng.uniform(0.08, 0.16), rng.uniform(0.22, 0.32)
    ha, hb = rng.uniform(0.30, 0.38), rng.uniform(0.24, 0.31)
    r_heart = np.sqrt(((x - _F32(hx)) / _F32(ha)) ** 2 + ((y - _F32(hy)) / _F32(hb)) ** 2)
    heart_margin = (_F32(1.0) - r_heart) * _F32(min(ha, hb) * px)
    heart_soft = _sigmoid(heart_margin / _F32(1.5))
    med_half_width = rng.uniform(0.09, 0.13)

    # Lungs (patient right = image left first).
    margins = [
        _lung_margin(x, y, px, side, rng, heart_margin, med_half_width) for side in (-1.0, 1.0)
    ]
    lung_margin = np.maximum(margins[0], margins[1])
    lung_soft = _sigmoid(lung_margin / _F32(1.2))
    lungs = lung_margin > 0

    lung_level = rng.uniform(0.12, 0.22)
    hilum_amp = rng.uniform(0.05, 0.10)
    hil_x = np.exp(-(((ax - _F32(rng.uniform(0.15, 0.22))) / _F32(0.12)) ** 2))
    hil_y = np.exp(-(((y - _F32(rng.uniform(-0.10, 0.05))) / _F32(0.28)) ** 2))
    hilum = hil_x * hil_y  # (S, S), separable product
    vessels = _smooth_field(rng, size, max(4, size // 10))
    vessel_amp = rng.uniform(0.012, 0.025)
    lung_map = _F32(lung_level) + _F32(hilum_amp) * hilum
    lung_map = lung_map + _F32(vessel_amp) * (_F32(0.5) + hilum) * vessels
    img = img + (lung_map - img) * lung_soft

    # Dense structures: heart, mediastinum and abdomen below the diaphragm.
    dense = rng.uniform(0.12, 0.18)
    mediastinum = _sigmoid((_F32(med_half_width + 0.02) - ax) * _F32(px / 2.0))
    diaphragm = rng.uniform(0.15, 0.30)
    abdomen = _sigmoid((y - _F32(diaphragm)) * _F32(px / 4.0))
    solid = np.maximum(np.maximum(heart_soft, mediastinum), abdomen) * body_soft
    img = img + _F32(dense) * solid * (_F32(1.0) - lung_soft)
    spine_half = rng.uniform(0.06, 0.08)
    spine_add = rng.uniform(0.05, 0.10)
    spine_x = _sigmoid((_F32(spine_half) - ax) * _F32(px / 1.2))
    vert_period = rng.uniform(0.11, 0.14)
    vert = _F32(0.7) + _F32(0.3) * np.cos(
        _F32(2 * np.pi / vert_period) * y + _F32(rng.uniform(0, 6.3))
    )
    img = img + _F32(spine_add) * spine_x * vert * body_soft

    # Ribs: column-wise parameters, image left / right differ slightly.
    left = x < 0

    def per_side(lo: float, hi: float, jitter: float) -> np.ndarray:
        base = rng.uniform(lo, hi)
        d = rng.uniform(-jitter, jitter, size=2)
        return np.where(left, _F32(base + d[0]), _F32(base + d[1]))

    rise = per_side(0.22, 0.36, 0.03)
    bend = per_side(0.70, 0.95, 0.05)
    start = per_side(-0.98, -0.88, 0.03)
    span = rng.uniform(1.25, 1.45)
    n_ribs = rng.uniform(8.5, 10.0)
    gamma = rng.uniform(0.80, 0.92)
    sharp = rng.uniform(1.5, 3.0)
    rib_amp = rng.uniform(0.06, 0.10)
    v = y + (rise * ax - bend * ax * ax) - start  # constant along a posterior rib
    phase = _F32(n_ribs) * (np.maximum(v, 0.0) / _F32(span)) ** _F32(gamma)
    post = (_F32(0.5) + _F32(0.5) * np.cos(_F32(2 * np.pi) * phase)) ** _F32(sharp)
    post = post * (v > 0) * _sigmoid((_F32(n_ribs + 0.3) - phase) * _F32(4.0))
    slope = rng.uniform(0.35, 0.55)
    ant_spacing = rng.uniform(0.15, 0.20)
    ant_phase = (y + _F32(slope) * ax) / _F32(ant_spacing) + _F32(rng.uniform(0, 1))
    ant = np.square(np.square(_F32(0.5) + _F32(0.5) * np.cos(_F32(2 * np.pi) * ant_phase)))
    ant = ant * _sigmoid((ax - _F32(0.12)) * _F32(px / 3))
    cage = _sigmoid((lung_margin + _F32(0.06 * px)) / _F32(2.0)) * _sigmoid(
        (ax - _F32(0.07)) * _F32(px / 2)
    )
    img = img + _F32(rib_amp) * (post + _F32(0.35) * ant) * cage

    # Clavicles: bands from the sternum rising towards the shoulders.
    cl_med = per_side(0.05, 0.10, 0.01)
    cl_lat = per_side(0.55, 0.70, 0.03)
    cl_y = per_side(-0.76, -0.66, 0.02)
    cl_rise = per_side(0.10, 0.20, 0.02)
    cl_bow = rng.uniform(0.0, 0.05)
    cl_thick = rng.uniform(0.04, 0.055)
    s = np.clip((ax - cl_med) / (cl_lat - cl_med), 0.0, 1.0)
    centre_line = cl_y - cl_rise * s - _F32(cl_bow) * np.sin(_F32(np.pi) * s)
    in_span = _sigmoid((ax - cl_med) * _F32(px / 1.5)) * _sigmoid((cl_lat - ax) * _F32(px / 1.5))
    clav = np.exp(-(((y - centre_line) / _F32(cl_thick)) ** 2)) * in_span
    img = img + _F32(rng.uniform(0.08, 0.14)) * clav

    # Opacities.
    mask = np.zeros((size, size), bool)
    if label == PNEUMONIA:
        texture = _smooth_field(rng, size, max(4, size // 12))
        added, mask = _add_opacities(rng, size, margins, lung_soft, texture)
        img = img + added

    # Exposure: smooth low-frequency gain, global gain/offset, pixel noise.
    low = _smooth_curve(rng, y, 2, 0.03) + _smooth_curve(rng, x, 2, 0.03)
    gain = rng.uniform(0.92, 1.08)
    img = img * (_F32(gain) * (_F32(1.0) + low)) + _F32(rng.uniform(-0.02, 0.02))
    noise_std = rng.uniform(0.02, 0.035)
    img = img + _F32(noise_std) * rng.standard_normal((size, size), dtype=_F32)
    return np.clip(img, 0.0, 1.0).astype(_F32, copy=False), mask, lungs


# ----------------------------------------------------------------------------
# Public API.


def _generate(num_images, seed, image_size, pneumonia_fraction):
    _check_args(num_images, seed, image_size, pneumonia_fraction)
    n, s = int(num_images), int(image_size)
    images = np.empty((n, s, s, 1), _F32)
    masks = np.empty((n, s, s), bool)
    lungs = np.empty((n, s, s), bool)
    labels = np.empty((n,), np.int32)
    for i in range(n):
        rng = np.random.default_rng([int(seed), i])
        label = PNEUMONIA if rng.random() < pneumonia_fraction else NORMAL
        images[i, :, :, 0], masks[i], lungs[i] = _render(rng, s, label)
        labels[i] = label
    return PhantomArrays(images, masks, labels), lungs


def generate_phantom(
    num_images: int, seed: int, image_size: int = 128, pneumonia_fraction: float = 0.5
) -> PhantomArrays:
    """Generate ``num_images`` phantom chest X-rays of ``image_size`` x ``image_size``.

    Returns PhantomArrays: images float32 (N, S, S, 1) in [0, 1], masks bool
    (N, S, S), labels int32 (N,).  Each label is PNEUMONIA with probability
    ``pneumonia_fraction``.  Deterministic; image i depends only on
    (seed, i, image_size, pneumonia_fraction).  Raises ValueError for
    ``num_images < 1``, ``image_size < 32``, a negative seed or a fraction
    outside [0, 1].
    """
    return _generate(num_images, seed, image_size, pneumonia_fraction)[0]


def phantom_lung_masks(
    num_images: int, seed: int, image_size: int = 128, pneumonia_fraction: float = 0.5
) -> np.ndarray:
    """Lung-field masks, bool (N, S, S), of the images ``generate_phantom`` returns.

    Same arguments as ``generate_phantom``.  The image-left lung lies in columns
    ``< S / 2``, the image-right lung in columns ``>= S / 2``.
    """
    return _generate(num_images, seed, image_size, pneumonia_fraction)[1]


def phantom_split(
    split: str, seed: int = 0, image_size: int = 128, num_images: int | None = None
) -> PhantomArrays:
    """The ``split`` ("train", "val" or "test") of the phantom data set ``seed``.

    ``num_images`` defaults to ``SPLITS[split]``; a smaller value gives a prefix
    of the full split.  Generated with ``generate_phantom(num_images,
    split_seed(split, seed), image_size)``.  Unknown split -> ValueError.
    """
    derived = split_seed(split, seed)
    n = SPLITS[split] if num_images is None else num_images
    return generate_phantom(n, derived, image_size)
