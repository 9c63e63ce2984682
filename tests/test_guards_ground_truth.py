"""Guard for the ground-truth study's BAD side: its rows are BAD of the ladder's maps, and on a
model whose score is the image's brightness the ground truth beats the inverted map.

(The study's ``--quick`` run trains too briefly for a defined BAD: its ReLU model gives Y = 0
on the PNEUMONIA images, so its BAD rows are None; this test calls the study's scoring step
on a model whose scores are known instead.)
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from conftest import head_model, load_script

import jaxcam
from jaxcam.evaluation import reference_key
from jaxcam.ground_truth import ladder
from jaxcam.models import bind

#: Whole experiments: `make test-slow` (and CI) runs them.
pytestmark = pytest.mark.slow

ALPHA = 0.25  # keeps 64 of 256 pixels: more than the largest lesion (36)
SIDES = (4, 4, 5, 5, 6, 6)  # lesion squares; their areas fill the study's three size groups


def brightness_model():
    """Head-only model over 16x16x1 "images" (features(x) == x), ReLU output, weights
    (-1, 1): Y^1 = relu(mean(x)) > 0 for a non-black image, Y^0 = 0."""
    model = head_model(channels=1, num_classes=2, output="relu", size=16)
    params = {"classifier": {"kernel": jnp.array([[-1.0, 1.0]]), "bias": jnp.zeros(2)}}
    return bind(model.module, {"params": params})


def pneumonia_images() -> dict[str, np.ndarray]:
    """Dim noisy images (pixels in [0, 0.2)) with one bright square lesion (pixels 1) each."""
    rng = np.random.default_rng(0)
    count = len(SIDES)
    images = rng.uniform(0.0, 0.2, size=(count, 16, 16, 1)).astype(np.float32)
    masks = np.zeros((count, 16, 16), bool)
    for i, side in enumerate(SIDES):
        row, col = rng.integers(1, 15 - side, size=2)
        masks[i, row : row + side, col : col + side] = True
    images[masks] = 1.0
    return {
        "image": images,
        "label": np.ones(count, np.int32),
        "mask": masks,
        "marker": np.zeros_like(masks),
    }


def test_study_bad_rows_are_bad_of_the_ladder_maps_and_know_the_inverted_map():
    study = load_script("experiments/ground_truth.py")
    model = brightness_model()
    data = pneumonia_images()
    area = data["mask"].mean(axis=(1, 2))
    result = study.score_ladder(
        model, data, area, ALPHA, "smooth", 0.0, methods={"CAM": ("cam", {})}
    )
    rows = result["rows"]
    # The same numbers from the per-batch functions: each rung's maps built with the key
    # the engine gives image i, scored with image i's tie order.
    keys = jax.vmap(lambda i: reference_key(0, i))(jnp.arange(len(SIDES)))
    rungs = jax.jit(jax.vmap(ladder))(jnp.asarray(data["mask"]), keys)
    for name in ("ground_truth", "noise", "inverted"):
        scores = jaxcam.masked_scores(
            model, data["image"], np.asarray(rungs[name]), data["label"], ALPHA, ties="smooth"
        )
        bad = jaxcam.black_average_drop(scores, data["label"]).value
        ad = jaxcam.average_drop(scores, data["label"]).value
        assert rows[name]["BAD"] == pytest.approx(bad, rel=1e-5), name
        assert rows[name]["AD"] == pytest.approx(ad, rel=1e-5), name
    # Y is the mean brightness. The ground truth's black image keeps the whole lesion (at
    # least 16 pixels of 1); the inverted map's keeps 64 background pixels (each < 0.2, so
    # less than 12.8 in all): every inverted black image loses more, so BAD(GT) < BAD(inv).
    assert rows["ground_truth"]["lesion kept"] == 1.0 and rows["inverted"]["lesion kept"] == 0.0
    assert rows["ground_truth"]["BAD"] < rows["inverted"]["BAD"]
    assert result["checks"]["BAD(ground truth) < BAD(inverted)"] is True
