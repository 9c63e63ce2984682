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
maximum, clipped to the lungs; NORMAL images (label 0) have an empty mask.  This
is variant "v1", the default; its images never change.

Variant "v2" (``variant="v2"``) has the same anatomy model and opacity shape and
texture, but harder opacities: 1 to 5 of them with probabilities
``V2_LESION_COUNT_PROBS`` (0.35, 0.25, 0.2, 0.12, 0.08); a target area drawn
log-uniformly from 0.05 % to 15 % of the lung field (both lungs together;
radius at least 1 pixel, so at small image sizes the smallest ones are larger
than 0.05 %); a centre drawn uniformly over all lung pixels (lower lung and
borders included, the mask clipped to the lungs as in v1); and a peak drawn
log-uniformly from +0.04 to +0.35 over the local lung intensity, so the faintest
are close to the noise level.

Confounder (v2 only): with ``confounder`` = p > 0 an image may carry a
laterality marker, a bright letter "L" or "R" (strokes of a 5 x 4 bitmap in a box
whose height is 5-8 % of the image side, at least 5 pixels) placed at a random
position clear of the lungs in the top, left or right border band (anywhere
clear of the lungs if the bands have no room), drawn before exposure and noise.
Its pixels are ``PhantomArrays.markers``.  The marker rule: with
``marker_correlated=True`` (``phantom_split`` "train" and "val"),
P(marker | PNEUMONIA) = p and P(marker | NORMAL) = 1 - p; with
``marker_correlated=False`` ("test") P(marker) = 0.5 independently of the label;
p = 0 turns the marker off (no image has one).  The marker is drawn from its own
generator, so a v2 image with a marker equals the same image without confounder
except on the marker pixels.

Seed scheme: image ``i`` of ``generate_phantom(n, seed, ...)`` is drawn from its
own generator ``np.random.default_rng([seed, i])`` (its label first, then the
anatomy, then the opacities, then the noise), so images never depend on ``n``
and a larger set extends a smaller one.  v2 images use
``np.random.default_rng([seed, i, 2])`` (so they are not v1 images) and their
markers ``np.random.default_rng([seed, i, 2, 7])`` (the presence draw, then the
size, glyph, position and brightness).  Split ``s`` of ``phantom_split`` uses the
derived seed ``SPLIT_SEED_STRIDE * seed + SPLIT_SEED_OFFSETS[s]`` (train 1, val 2,
test 3), so the splits are disjoint random streams.

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

#: Phantom variants: "v1" (the original, easy set) and "v2" (harder lesions, optional marker).
VARIANTS = ("v1", "v2")
#: v2: P(1), ..., P(5) opacities in a PNEUMONIA image.
V2_LESION_COUNT_PROBS = (0.35, 0.25, 0.20, 0.12, 0.08)
#: v2: target opacity area, a fraction of the lung field (both lungs), drawn log-uniformly.
V2_LESION_AREA_RANGE = (0.0005, 0.15)
#: v2: opacity peak over the local lung intensity, drawn log-uniformly.
V2_CONTRAST_RANGE = (0.04, 0.35)
#: Confounder marker height, a fraction of the image side (at least 5 pixels).
MARKER_SIZE_RANGE = (0.05, 0.08)

_F32 = np.float32
_LN2 = math.log(2.0)
_V2_MIN_RADIUS = 1.0  # pixels: every v2 opacity covers its centre pixel
_VARIANT_STREAMS: dict[str, tuple[int, ...]] = {"v1": (), "v2": (2,)}
_MARKER_STREAM = 7
_MARKER_BAND = 0.22  # the marker lies within this fraction of the side from an edge
_MARKER_LEVEL_RANGE = (0.80, 0.95)  # raw marker intensity, before exposure and noise
_CORRELATED_SPLITS = ("train", "val")


class PhantomArrays(NamedTuple):
    """A phantom data set held in memory.

    images: float32 (N, S, S, 1), raw intensities in [0, 1] (black = 0).
    masks: bool (N, S, S), ground-truth lesion mask (all False for NORMAL).
    labels: int32 (N,), 0 = NORMAL, 1 = PNEUMONIA.
    markers: bool (N, S, S), confounder marker pixels (all False without a marker,
    always for v1).  Every function of ``jaxcam.data`` fills it; the default None
    only keeps three-field constructions working.
    """

    images: np.ndarray
    masks: np.ndarray
    labels: np.ndarray
    markers: np.ndarray | None = None


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


def _check_variant(variant: str, confounder: float) -> None:
    if variant not in VARIANTS:
        raise ValueError(f"unknown variant {variant!r}; known variants: {list(VARIANTS)}")
    if not 0.0 <= float(confounder) <= 1.0:
        raise ValueError(f"confounder must be in [0, 1], got {confounder!r}")
    if variant == "v1" and confounder != 0.0:
        raise ValueError("the confounder marker exists only in variant 'v2'")


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


class _Shape(NamedTuple):
    """Outline of one opacity: eccentricity, angle, edge harmonics (3,) and edge sharpness."""

    ecc: float
    theta: float
    harm_amp: np.ndarray
    harm_phase: np.ndarray
    kappa: float


def _draw_shape(rng: np.random.Generator) -> _Shape:
    """Draw an opacity outline (shared by v1 and v2, same draws in the same order)."""
    ecc = math.exp(rng.uniform(math.log(0.7), math.log(1.4)))
    theta = rng.uniform(0.0, math.pi)
    harm_amp = rng.uniform(0.0, 0.12, size=3)
    harm_phase = rng.uniform(0.0, 2 * math.pi, size=3)
    kappa = rng.uniform(2.5, 4.0)
    return _Shape(ecc, theta, harm_amp, harm_phase, kappa)


def _paint_opacity(
    added: np.ndarray,
    mask: np.ndarray,
    texture: np.ndarray,
    centre: tuple[int, int],
    jitter: np.ndarray,
    radius: float,
    shape: _Shape,
    contrast: float,
    tex_amp: float,
) -> None:
    """Max-composite one textured opacity into ``added`` (S, S) and its half-max region into
    ``mask`` (S, S), in place; ``centre`` is a pixel (row, col), ``jitter`` (2,) a sub-pixel
    (dy, dx) offset, ``radius`` the nominal half-max radius in pixels."""
    size = added.shape[0]
    cy, cx = centre
    jy, jx = jitter
    ecc = shape.ecc
    # Work in a window around the centre.
    extent = radius * max(ecc, 1 / ecc) * (1.0 + shape.harm_amp.sum())
    half = int(math.ceil(2.2 * extent)) + 2
    y0, y1 = max(cy - half, 0), min(cy + half + 1, size)
    x0, x1 = max(cx - half, 0), min(cx + half + 1, size)
    dy = (np.arange(y0, y1, dtype=_F32) - _F32(cy + jy))[:, None]
    dx = (np.arange(x0, x1, dtype=_F32) - _F32(cx + jx))[None, :]
    ct, st = _F32(math.cos(shape.theta)), _F32(math.sin(shape.theta))
    a = (dx * ct + dy * st) / _F32(radius * ecc)
    b = (-dx * st + dy * ct) / _F32(radius / ecc)
    phi = np.arctan2(b, a)
    edge = np.ones_like(phi)
    for order, amp, ph in zip((2, 3, 5), shape.harm_amp, shape.harm_phase, strict=True):
        edge += _F32(amp) * np.cos(_F32(order) * phi + _F32(ph))
    q = np.sqrt(a * a + b * b) / edge
    profile = np.exp(_F32(-_LN2) * q ** _F32(shape.kappa))
    patch = texture[y0:y1, x0:x1]
    value = _F32(contrast) * profile * (_F32(1.0) + _F32(tex_amp) * np.tanh(patch))
    np.maximum(added[y0:y1, x0:x1], value, out=added[y0:y1, x0:x1])
    mask[y0:y1, x0:x1] |= q <= 1.0  # profile >= half max


def _opacities_v1(rng, size, margins, texture, added, mask) -> int:
    """v1: 1-3 opacities, each in one lung and sized by it; returns their number."""
    areas = [float(np.count_nonzero(m > 0)) for m in margins]
    n_les = int(rng.choice([1, 2, 3], p=[0.5, 0.3, 0.2]))
    for k in range(n_les):
        side = 0 if rng.random() < areas[0] / (areas[0] + areas[1]) else 1
        margin = margins[side]
        lo, hi = (0.015, 0.25) if k == 0 else (0.012, 0.12)
        frac = math.exp(rng.uniform(math.log(lo), math.log(hi)))
        radius = max(math.sqrt(frac * areas[side] / math.pi), 1.5)
        shape = _draw_shape(rng)
        contrast = rng.uniform(0.22 if frac < 0.04 else 0.15, 0.35)
        tex_amp = rng.uniform(0.1, 0.3)
        # Centre: a lung pixel deep enough for small lesions to lie fully inside.
        need = radius * max(shape.ecc, 1 / shape.ecc) * (0.9 if frac < 0.06 else 0.45)
        need = min(need, 0.9 * float(margin.max()))
        cand = np.flatnonzero(margin.ravel() >= need)
        centre = divmod(int(cand[rng.integers(cand.size)]), size)
        jitter = rng.uniform(-0.3, 0.3, size=2)
        _paint_opacity(added, mask, texture, centre, jitter, radius, shape, contrast, tex_amp)
    return n_les


def _opacities_v2(rng, size, margins, texture, added, mask) -> int:
    """v2: 1-5 opacities anywhere in the lungs, tiny to large, faint to bright; returns their
    number."""
    lung_pixels = np.flatnonzero(((margins[0] > 0) | (margins[1] > 0)).ravel())
    field = lung_pixels.size
    n_les = 1 + int(rng.choice(len(V2_LESION_COUNT_PROBS), p=V2_LESION_COUNT_PROBS))
    a_lo, a_hi = V2_LESION_AREA_RANGE
    c_lo, c_hi = V2_CONTRAST_RANGE
    for _ in range(n_les):
        frac = math.exp(rng.uniform(math.log(a_lo), math.log(a_hi)))
        radius = max(math.sqrt(frac * field / math.pi), _V2_MIN_RADIUS)
        shape = _draw_shape(rng)
        contrast = math.exp(rng.uniform(math.log(c_lo), math.log(c_hi)))
        tex_amp = rng.uniform(0.1, 0.3)
        centre = divmod(int(lung_pixels[rng.integers(field)]), size)
        jitter = rng.uniform(-0.3, 0.3, size=2)
        _paint_opacity(added, mask, texture, centre, jitter, radius, shape, contrast, tex_amp)
    return n_les


def _add_opacities(rng, size, margins, lung_soft, texture, variant):
    """Draw the opacities of ``variant``: (added intensity (S, S), mask (S, S) bool, count)."""
    added = np.zeros((size, size), _F32)
    mask = np.zeros((size, size), bool)
    draw = _opacities_v1 if variant == "v1" else _opacities_v2
    count = draw(rng, size, margins, texture, added, mask)
    lungs = (margins[0] > 0) | (margins[1] > 0)
    return added * lung_soft, mask & lungs, count


# Laterality-marker glyphs (rows x cols bitmaps), scaled to the marker box.
_GLYPHS = tuple(
    np.array([[c == "#" for c in row] for row in rows], bool)
    for rows in (
        ("#...", "#...", "#...", "#...", "####"),  # L
        ("###.", "#..#", "###.", "#.#.", "#..#"),  # R
    )
)


def _marker_mask(rng: np.random.Generator, lungs: np.ndarray) -> np.ndarray:
    """Pixels (S, S) bool of a letter marker placed clear of the lungs (S, S) bool.

    Box height ``MARKER_SIZE_RANGE`` x S (at least 5 px), width 0.8 x height; the box,
    grown by a gap, holds no lung pixel and lies in the top, left or right border band
    (``_MARKER_BAND`` x S); anywhere clear of the lungs if the bands have no room.
    """
    size = lungs.shape[0]
    h = max(5, round(rng.uniform(*MARKER_SIZE_RANGE) * size))
    w = max(4, round(0.8 * h))
    glyph = _GLYPHS[int(rng.integers(len(_GLYPHS)))]
    stamp = glyph[np.arange(h) * glyph.shape[0] // h][:, np.arange(w) * glyph.shape[1] // w]
    gap = max(2, size // 32)
    # Lung pixels in each candidate box grown by ``gap`` (integral image, all boxes at once).
    cum = np.zeros((size + 1, size + 1), np.int64)
    cum[1:, 1:] = lungs.cumsum(0).cumsum(1)
    r = np.arange(1, size - h)[:, None]  # top-left corners, 1 px from the image edge
    c = np.arange(1, size - w)[None, :]
    r0, r1 = np.maximum(r - gap, 0), np.minimum(r + h + gap, size)
    c0, c1 = np.maximum(c - gap, 0), np.minimum(c + w + gap, size)
    clear = (cum[r1, c1] - cum[r0, c1] - cum[r1, c0] + cum[r0, c0]) == 0
    band = round(_MARKER_BAND * size)
    near_edge = (r + h <= band) | (c + w <= band) | (c >= size - band)
    ok = clear & near_edge
    if not ok.any():
        ok = clear if clear.any() else np.ones_like(clear)
    cand = np.flatnonzero(ok)
    row, col = divmod(int(cand[rng.integers(cand.size)]), ok.shape[1])
    mask = np.zeros((size, size), bool)
    mask[1 + row : 1 + row + h, 1 + col : 1 + col + w] = stamp
    return mask


def _render(
    rng: np.random.Generator,
    size: int,
    label: int,
    variant: str = "v1",
    marker_rng: np.random.Generator | None = None,
):
    """Render one phantom of ``variant``, with a marker drawn from ``marker_rng`` if given.

    Returns image (S, S) float32, lesion mask (S, S) bool, lungs (S, S) bool, the number of
    opacities (0 for NORMAL) and the marker mask (S, S) bool.
    """
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
    count = 0
    if label == PNEUMONIA:
        texture = _smooth_field(rng, size, max(4, size // 12))
        added, mask, count = _add_opacities(rng, size, margins, lung_soft, texture, variant)
        img = img + added

    # Confounder marker (own generator: the main stream's draws do not depend on it).
    marker = np.zeros((size, size), bool)
    if marker_rng is not None:
        marker = _marker_mask(marker_rng, lungs)
        level = _F32(marker_rng.uniform(*_MARKER_LEVEL_RANGE))
        img = np.where(marker, np.maximum(img, level), img)

    # Exposure: smooth low-frequency gain, global gain/offset, pixel noise.
    low = _smooth_curve(rng, y, 2, 0.03) + _smooth_curve(rng, x, 2, 0.03)
    gain = rng.uniform(0.92, 1.08)
    img = img * (_F32(gain) * (_F32(1.0) + low)) + _F32(rng.uniform(-0.02, 0.02))
    noise_std = rng.uniform(0.02, 0.035)
    img = img + _F32(noise_std) * rng.standard_normal((size, size), dtype=_F32)
    return np.clip(img, 0.0, 1.0).astype(_F32, copy=False), mask, lungs, count, marker


# ----------------------------------------------------------------------------
# Public API.


def _marker_probability(label: int, confounder: float, marker_correlated: bool) -> float:
    """P(marker) of one image under the confounder rule (see the module docstring)."""
    if confounder == 0.0:
        return 0.0
    if not marker_correlated:
        return 0.5
    return confounder if label == PNEUMONIA else 1.0 - confounder


class _Generated(NamedTuple):
    arrays: PhantomArrays
    lungs: np.ndarray  # bool (N, S, S)
    counts: np.ndarray  # int32 (N,)


def _generate(
    num_images: int,
    seed: int,
    image_size: int,
    pneumonia_fraction: float,
    variant: str = "v1",
    confounder: float = 0.0,
    marker_correlated: bool = True,
) -> _Generated:
    _check_args(num_images, seed, image_size, pneumonia_fraction)
    _check_variant(variant, confounder)
    n, s = int(num_images), int(image_size)
    confounder = float(confounder)
    images = np.empty((n, s, s, 1), _F32)
    masks = np.empty((n, s, s), bool)
    markers = np.zeros((n, s, s), bool)
    lungs = np.empty((n, s, s), bool)
    labels = np.empty((n,), np.int32)
    counts = np.empty((n,), np.int32)
    stream = _VARIANT_STREAMS[variant]
    for i in range(n):
        rng = np.random.default_rng([int(seed), i, *stream])
        label = PNEUMONIA if rng.random() < pneumonia_fraction else NORMAL
        marker_rng = None
        p_marker = _marker_probability(label, confounder, marker_correlated)
        if p_marker > 0.0:
            marker_rng = np.random.default_rng([int(seed), i, *stream, _MARKER_STREAM])
            if not marker_rng.random() < p_marker:
                marker_rng = None
        images[i, :, :, 0], masks[i], lungs[i], counts[i], markers[i] = _render(
            rng, s, label, variant, marker_rng
        )
        labels[i] = label
    return _Generated(PhantomArrays(images, masks, labels, markers), lungs, counts)


def generate_phantom(
    num_images: int,
    seed: int,
    image_size: int = 128,
    pneumonia_fraction: float = 0.5,
    *,
    variant: str = "v1",
    confounder: float = 0.0,
    marker_correlated: bool = True,
) -> PhantomArrays:
    """Generate ``num_images`` phantom chest X-rays of ``image_size`` x ``image_size``.

    Returns PhantomArrays: images float32 (N, S, S, 1) in [0, 1], masks bool
    (N, S, S), labels int32 (N,), markers bool (N, S, S).  Each label is PNEUMONIA
    with probability ``pneumonia_fraction``.  ``variant`` is "v1" or "v2";
    ``confounder`` (v2 only) is the marker probability p, with
    P(marker | PNEUMONIA) = p and P(marker | NORMAL) = 1 - p when
    ``marker_correlated``, else 0.5 for every image; 0 draws no marker.
    Deterministic; image i depends only on (seed, i, image_size,
    pneumonia_fraction, variant, confounder, marker_correlated).  Raises ValueError
    for ``num_images < 1``, ``image_size < 32``, a negative seed, a fraction or
    confounder outside [0, 1], an unknown variant or a confounder with v1.
    """
    return _generate(
        num_images, seed, image_size, pneumonia_fraction, variant, confounder, marker_correlated
    ).arrays


def phantom_lung_masks(
    num_images: int,
    seed: int,
    image_size: int = 128,
    pneumonia_fraction: float = 0.5,
    *,
    variant: str = "v1",
) -> np.ndarray:
    """Lung-field masks, bool (N, S, S), of the images ``generate_phantom`` returns.

    Same arguments as ``generate_phantom`` (the lungs do not depend on the
    confounder).  The image-left lung lies in columns ``< S / 2``, the image-right
    lung in columns ``>= S / 2``.
    """
    return _generate(num_images, seed, image_size, pneumonia_fraction, variant).lungs


def phantom_lesion_counts(
    num_images: int,
    seed: int,
    image_size: int = 128,
    pneumonia_fraction: float = 0.5,
    *,
    variant: str = "v1",
) -> np.ndarray:
    """Number of opacities drawn in each image, int32 (N,) (0 for NORMAL).

    Same arguments as ``phantom_lung_masks``.  Opacities may overlap, so the
    mask can have fewer connected components than this count.
    """
    return _generate(num_images, seed, image_size, pneumonia_fraction, variant).counts


def lesion_area_fractions(arrays: PhantomArrays) -> np.ndarray:
    """Lesion-mask area / image area, float64 (N,) (0 for NORMAL images)."""
    return np.asarray(arrays.masks, bool).mean(axis=(1, 2), dtype=np.float64)


def phantom_split(
    split: str,
    seed: int = 0,
    image_size: int = 128,
    num_images: int | None = None,
    *,
    variant: str = "v1",
    confounder: float = 0.0,
) -> PhantomArrays:
    """The ``split`` ("train", "val" or "test") of the phantom data set ``seed``.

    ``num_images`` defaults to ``SPLITS[split]``; a smaller value gives a prefix
    of the full split.  Generated with ``generate_phantom(num_images,
    split_seed(split, seed), image_size, variant=variant, confounder=confounder,
    marker_correlated=split in ("train", "val"))``: the marker goes with the label in
    "train" and "val" and is independent of it in "test".  Unknown split ->
    ValueError.
    """
    derived = split_seed(split, seed)
    n = SPLITS[split] if num_images is None else num_images
    return generate_phantom(
        n,
        derived,
        image_size,
        variant=variant,
        confounder=confounder,
        marker_correlated=split in _CORRELATED_SPLITS,
    )
