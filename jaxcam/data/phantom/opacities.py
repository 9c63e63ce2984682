"""The pneumonia opacities: outline, textured profile and half-max mask, v1 and v2 placement.

Lesion ids: opacity i (1-based, in drawing order) owns the pixels of its half-max region;
a pixel in the half-max regions of several opacities goes to the one whose opacity value
(before the lung weighting) is largest there, the earlier one on a tie.  So the label map
is non-zero exactly on the half-max mask, and an opacity hidden under a brighter one may
own no pixel.
"""

from __future__ import annotations

import math
from typing import NamedTuple

import numpy as np

from jaxcam.data.phantom.fields import F32

#: v2: P(1), ..., P(5) opacities in a PNEUMONIA image.
V2_LESION_COUNT_PROBS = (0.35, 0.25, 0.20, 0.12, 0.08)
#: v2: target opacity area, a fraction of the lung field (both lungs), drawn log-uniformly.
V2_LESION_AREA_RANGE = (0.0005, 0.15)
#: v2: opacity peak over the local lung intensity, drawn log-uniformly.
V2_CONTRAST_RANGE = (0.04, 0.35)
_LN2 = math.log(2.0)
_V2_MIN_RADIUS = 1.0  # pixels: every v2 opacity covers its centre pixel


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


class _Canvas(NamedTuple):
    """What the opacities are painted into, all (S, S): the max-composited intensity
    ``added`` (float32), the union of half-max regions ``mask`` (bool), the owning opacity
    of each half-max pixel ``lesion_ids`` (uint8, 0 = none) and its value ``owner_value``
    (float32, 0 where none)."""

    added: np.ndarray
    mask: np.ndarray
    lesion_ids: np.ndarray
    owner_value: np.ndarray


def _paint_opacity(
    canvas: _Canvas,
    lesion: int,
    texture: np.ndarray,
    centre: tuple[int, int],
    jitter: np.ndarray,
    radius: float,
    shape: _Shape,
    contrast: float,
    tex_amp: float,
) -> None:
    """Max-composite one textured opacity, number ``lesion`` (1-based), into ``canvas``, in
    place: its value into ``added``, its half-max region into ``mask`` and, where it is the
    brightest opacity whose half-max region holds the pixel, into ``lesion_ids``.  ``centre``
    is a pixel (row, col), ``jitter`` (2,) a sub-pixel (dy, dx) offset, ``radius`` the
    nominal half-max radius in pixels."""
    size = canvas.added.shape[0]
    cy, cx = centre
    jy, jx = jitter
    ecc = shape.ecc
    # Work in a window around the centre.
    extent = radius * max(ecc, 1 / ecc) * (1.0 + shape.harm_amp.sum())
    half = int(math.ceil(2.2 * extent)) + 2
    y0, y1 = max(cy - half, 0), min(cy + half + 1, size)
    x0, x1 = max(cx - half, 0), min(cx + half + 1, size)
    dy = (np.arange(y0, y1, dtype=F32) - F32(cy + jy))[:, None]
    dx = (np.arange(x0, x1, dtype=F32) - F32(cx + jx))[None, :]
    ct, st = F32(math.cos(shape.theta)), F32(math.sin(shape.theta))
    a = (dx * ct + dy * st) / F32(radius * ecc)
    b = (-dx * st + dy * ct) / F32(radius / ecc)
    phi = np.arctan2(b, a)
    edge = np.ones_like(phi)
    for order, amp, ph in zip((2, 3, 5), shape.harm_amp, shape.harm_phase, strict=True):
        edge += F32(amp) * np.cos(F32(order) * phi + F32(ph))
    q = np.sqrt(a * a + b * b) / edge
    profile = np.exp(F32(-_LN2) * q ** F32(shape.kappa))
    patch = texture[y0:y1, x0:x1]
    value = F32(contrast) * profile * (F32(1.0) + F32(tex_amp) * np.tanh(patch))
    window = (slice(y0, y1), slice(x0, x1))
    np.maximum(canvas.added[window], value, out=canvas.added[window])
    region = q <= 1.0  # profile >= half max
    canvas.mask[window] |= region
    owns = region & (value > canvas.owner_value[window])  # value > 0 inside the region
    canvas.lesion_ids[window][owns] = lesion
    canvas.owner_value[window][owns] = value[owns]


def _opacities_v1(rng, size, margins, texture, canvas: _Canvas) -> int:
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
        _paint_opacity(canvas, k + 1, texture, centre, jitter, radius, shape, contrast, tex_amp)
    return n_les


def _opacities_v2(rng, size, margins, texture, canvas: _Canvas) -> int:
    """v2: 1-5 opacities anywhere in the lungs, tiny to large, faint to bright; returns their
    number."""
    lung_pixels = np.flatnonzero(((margins[0] > 0) | (margins[1] > 0)).ravel())
    field = lung_pixels.size
    n_les = 1 + int(rng.choice(len(V2_LESION_COUNT_PROBS), p=V2_LESION_COUNT_PROBS))
    a_lo, a_hi = V2_LESION_AREA_RANGE
    c_lo, c_hi = V2_CONTRAST_RANGE
    for k in range(n_les):
        frac = math.exp(rng.uniform(math.log(a_lo), math.log(a_hi)))
        radius = max(math.sqrt(frac * field / math.pi), _V2_MIN_RADIUS)
        shape = _draw_shape(rng)
        contrast = math.exp(rng.uniform(math.log(c_lo), math.log(c_hi)))
        tex_amp = rng.uniform(0.1, 0.3)
        centre = divmod(int(lung_pixels[rng.integers(field)]), size)
        jitter = rng.uniform(-0.3, 0.3, size=2)
        _paint_opacity(canvas, k + 1, texture, centre, jitter, radius, shape, contrast, tex_amp)
    return n_les


class Opacities(NamedTuple):
    """The opacities of one image, all (S, S) but ``count``.

    added: float32, the intensity they add, already weighted by the soft lung field; its
      non-zero pixels are the lesion support (where the image differs from its twin).
    mask: bool, the union of their half-max regions, clipped to the lungs.
    lesion_ids: uint8, 0 off the mask, else the owning opacity (1-based, see the module doc).
    num_opacities: the number of opacities drawn.
    """

    added: np.ndarray
    mask: np.ndarray
    lesion_ids: np.ndarray
    num_opacities: int


def add_opacities(rng, size, margins, lung_soft, texture, variant) -> Opacities:
    """Draw the opacities of ``variant`` (v1 or v2) into one image of side ``size``."""
    canvas = _Canvas(
        np.zeros((size, size), F32),
        np.zeros((size, size), bool),
        np.zeros((size, size), np.uint8),
        np.zeros((size, size), F32),
    )
    draw = _opacities_v1 if variant == "v1" else _opacities_v2
    count = draw(rng, size, margins, texture, canvas)
    lungs = (margins[0] > 0) | (margins[1] > 0)
    lesion_ids = np.where(lungs, canvas.lesion_ids, np.uint8(0))
    return Opacities(canvas.added * lung_soft, canvas.mask & lungs, lesion_ids, count)
