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

Lesion-free twins (v1 and v2): every image comes with its twin, ``PhantomArrays.twins``,
the same image with the opacities left out (same anatomy, marker, exposure and the same
noise draw; a NORMAL image is its own twin), for counterfactual tests of what a model
relies on (:mod:`jaxcam.reliance`).  The two differ only on the lesion *support*
(``supports``), the pixels where the opacities add a non-zero intensity: a superset of
the half-max mask, since the opacity profile has tails.  There the image is >= its
twin, as every step after the opacities (marker, exposure gain > 0, offset, noise,
clipping) is monotone.  ``lesion_ids`` splits the mask per opacity (1-based, in drawing
order; a pixel in several half-max regions goes to the opacity that is brightest there).
Rendering the twin draws nothing from the generators: the images are unchanged.

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

Modules: :mod:`.schema` (classes, :class:`PhantomArrays`), :mod:`.fields` (float32 grid and
smooth random fields), :mod:`.render` (one image: the anatomy, exposure and noise),
:mod:`.opacities` (v1 and v2 opacities), :mod:`.marker` (the v2 confounder),
:mod:`.generator` (checks, seed streams, :func:`generate_phantom`) and :mod:`.split_seeds`
(split sizes and seeds, :func:`phantom_split`).
"""

from jaxcam.data.phantom.generator import (
    MIN_IMAGE_SIZE,
    VARIANTS,
    generate_phantom,
    lesion_area_fractions,
    phantom_lesion_counts,
    phantom_lung_masks,
)
from jaxcam.data.phantom.marker import MARKER_SIZE_RANGE
from jaxcam.data.phantom.opacities import (
    V2_CONTRAST_RANGE,
    V2_LESION_AREA_RANGE,
    V2_LESION_COUNT_PROBS,
)
from jaxcam.data.phantom.schema import CLASS_NAMES, NORMAL, PNEUMONIA, PhantomArrays
from jaxcam.data.phantom.split_seeds import (
    SPLIT_SEED_OFFSETS,
    SPLIT_SEED_STRIDE,
    SPLITS,
    phantom_split,
    split_seed,
)

__all__ = [
    "CLASS_NAMES",
    "MARKER_SIZE_RANGE",
    "MIN_IMAGE_SIZE",
    "NORMAL",
    "PNEUMONIA",
    "SPLITS",
    "SPLIT_SEED_OFFSETS",
    "SPLIT_SEED_STRIDE",
    "V2_CONTRAST_RANGE",
    "V2_LESION_AREA_RANGE",
    "V2_LESION_COUNT_PROBS",
    "VARIANTS",
    "PhantomArrays",
    "generate_phantom",
    "lesion_area_fractions",
    "phantom_lesion_counts",
    "phantom_lung_masks",
    "phantom_split",
    "split_seed",
]
