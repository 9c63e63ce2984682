"""The classes of the phantom set and the arrays a phantom data set is held in."""

from __future__ import annotations

from typing import NamedTuple

import numpy as np

NORMAL = 0
PNEUMONIA = 1
CLASS_NAMES = ("NORMAL", "PNEUMONIA")


class PhantomArrays(NamedTuple):
    """A phantom data set held in memory.

    images: float32 (N, S, S, 1), raw intensities in [0, 1] (black = 0).
    masks: bool (N, S, S), ground-truth lesion mask (all False for NORMAL).
    labels: int32 (N,), 0 = NORMAL, 1 = PNEUMONIA.
    markers: bool (N, S, S), confounder marker pixels (all False without a marker,
    always for v1).
    twins: float32 (N, S, S, 1), each image without its lesions: same anatomy, marker,
    exposure and noise draw (equal to the image for NORMAL).
    supports: bool (N, S, S), the lesion support: where the lesions add intensity, so
    the only pixels where an image and its twin may differ (contains ``masks``).
    lesion_ids: uint8 (N, S, S), per-lesion masks: 0 off ``masks``, i on the half-max
    region of the image's i-th lesion (a pixel in several regions belongs to the lesion
    that is brightest there).

    Every function of ``jaxcam.data`` fills every field; the defaults None only keep
    three- and four-field constructions working.
    """

    images: np.ndarray
    masks: np.ndarray
    labels: np.ndarray
    markers: np.ndarray | None = None
    twins: np.ndarray | None = None
    supports: np.ndarray | None = None
    lesion_ids: np.ndarray | None = None
