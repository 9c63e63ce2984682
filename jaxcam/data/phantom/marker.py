"""The v2 confounder: a laterality-marker letter clear of the lungs, and when an image has one."""

from __future__ import annotations

import numpy as np

from jaxcam.data.phantom.schema import PNEUMONIA

#: Confounder marker height, a fraction of the image side (at least 5 pixels).
MARKER_SIZE_RANGE = (0.05, 0.08)
_MARKER_BAND = 0.22  # the marker lies within this fraction of the side from an edge
MARKER_LEVEL_RANGE = (0.80, 0.95)  # raw marker intensity, before exposure and noise


# Laterality-marker glyphs (rows x cols bitmaps), scaled to the marker box.
_GLYPHS = tuple(
    np.array([[c == "#" for c in row] for row in rows], bool)
    for rows in (
        ("#...", "#...", "#...", "#...", "####"),  # L
        ("###.", "#..#", "###.", "#.#.", "#..#"),  # R
    )
)


def marker_mask(rng: np.random.Generator, lungs: np.ndarray) -> np.ndarray:
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


def marker_probability(label: int, confounder: float, marker_correlated: bool) -> float:
    """P(marker) of one image under the confounder rule (see :mod:`jaxcam.data.phantom`)."""
    if confounder == 0.0:
        return 0.0
    if not marker_correlated:
        return 0.5
    return confounder if label == PNEUMONIA else 1.0 - confounder
