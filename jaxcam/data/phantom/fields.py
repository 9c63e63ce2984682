"""Float32 building blocks of the drawing: pixel grid, soft edges, smooth random fields.

All float32, no per-pixel Python loops.
"""

from __future__ import annotations

import functools

import numpy as np

F32 = np.float32


def sigmoid(z):
    """The logistic function, float32 in and out (via tanh)."""
    return F32(0.5) * (F32(1.0) + np.tanh(F32(0.5) * z))


@functools.lru_cache(maxsize=8)
def pixel_grid(size: int):
    """Normalised pixel-centre coordinates in [-1, 1]: X (1, S) and Y (S, 1)."""
    c = ((np.arange(size, dtype=np.float64) + 0.5) / size * 2.0 - 1.0).astype(F32)
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
    w = (w * w * (3.0 - 2.0 * w)).astype(F32)
    return i0, i0 + 1, w


def smooth_field(rng: np.random.Generator, size: int, cells: int) -> np.ndarray:
    """A smooth random field (S, S) float32 with unit-variance grid values."""
    g = rng.standard_normal((cells + 1, cells + 1), dtype=F32)
    i0, i1, w = _interp_plan(size, cells)
    rows = g[i0] * (1 - w)[:, None] + g[i1] * w[:, None]  # (S, cells+1)
    return rows[:, i0] * (1 - w)[None, :] + rows[:, i1] * w[None, :]


def smooth_curve(rng: np.random.Generator, coord: np.ndarray, n: int, amp: float) -> np.ndarray:
    """Sum of ``n`` random low-frequency cosines evaluated at ``coord``."""
    freq = rng.uniform(0.4, 2.2, size=n)
    phase = rng.uniform(0.0, 2 * np.pi, size=n)
    weight = rng.uniform(-amp, amp, size=n)
    out = np.zeros_like(coord)
    for f, p, a in zip(freq, phase, weight, strict=True):
        out += F32(a) * np.cos(F32(f * np.pi) * coord + F32(p))
    return out
