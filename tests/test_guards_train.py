"""Guard for training: on a learnable tiny set, training lowers the loss and beats chance."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np

from jaxcam.data import ArraySplit
from jaxcam.models import bind
from jaxcam.runs import ModelSpec
from jaxcam.train import TrainConfig, fit

SPEC = ModelSpec("small_cnn", image_size=16, backbone_kwargs=(("widths", (4, 8)),))  # ReLU output


def square_or_scatter_split(count: int, seed: int) -> ArraySplit:
    """``count`` noisy 16x16x1 images, alternately class 0 and 1, each with 36 bright pixels:
    in a 6x6 square at a random place (class 1) or scattered (class 0). Both classes have
    the same mean brightness, so only the shape tells them apart."""
    rng = np.random.default_rng(seed)
    labels = (np.arange(count) % 2).astype(np.int32)
    images = rng.uniform(0.0, 0.4, size=(count, 16, 16, 1))
    for i, label in enumerate(labels):
        if label == 1:
            row, col = rng.integers(0, 11, size=2)
            images[i, row : row + 6, col : col + 6] += 0.6
        else:
            images[i].reshape(-1)[rng.choice(256, size=36, replace=False)] += 0.6
    return ArraySplit(images.astype(np.float32), labels)


def one_vs_rest_loss(logits: np.ndarray, labels: np.ndarray) -> float:
    """Mean over images of the summed sigmoid cross-entropy of logits (N, classes), in numpy:
    -log sigmoid(s) for the true class, -log(1 - sigmoid(s)) for the others."""
    targets = np.eye(logits.shape[1])[labels]
    per_logit = np.logaddexp(0.0, logits) - targets * logits
    return float(per_logit.sum(axis=1).mean())


def pairwise_auc(scores: np.ndarray, positive: np.ndarray) -> float:
    """P(a positive scores above a negative), ties one half: every pair counted."""
    above = scores[positive][:, None] - scores[~positive][None, :]
    return float(np.mean((above > 0) + 0.5 * (above == 0)))


@jax.jit
def _batch_logits(model, images: jax.Array) -> jax.Array:
    return jax.vmap(lambda x: model.logits(model.features(x)))(images)


def logits_of(model, images: np.ndarray) -> np.ndarray:
    """Logits S (N, classes) of a bound model on images (N, H, W, C), float64."""
    return np.asarray(_batch_logits(model, jnp.asarray(images)), np.float64)


def test_training_lowers_the_loss_and_beats_chance_on_a_learnable_set():
    train, val = square_or_scatter_split(48, seed=0), square_or_scatter_split(24, seed=1)
    module = SPEC.build()
    initial = module.init(jax.random.key(0), jnp.zeros((1, 16, 16, 1)))
    # This start ranks the validation squares backwards: any skill comes from training.
    start = bind(module, initial)
    assert pairwise_auc(logits_of(start, val.images)[:, 1], val.labels == 1) < 0.5
    result = fit(
        module,
        train,
        val,
        TrainConfig(epochs=4, batch_size=8, learning_rate=3e-2),
        initial_variables=initial,
        log=lambda line: None,
    )
    history = result.history
    assert [entry["step"] for entry in history] == [6, 12, 18, 24]
    # The optimiser's view: the last epoch's mean training loss is far below the first's.
    assert history[-1]["loss"] < 0.6 * history[0]["loss"], history
    # The same loss written out in numpy, on the whole training set in inference mode.
    before = one_vs_rest_loss(logits_of(start, train.images), train.labels)
    after = one_vs_rest_loss(logits_of(result.model, train.images), train.labels)
    assert after < 0.5 * before, (before, after)
    # Held-out images: the class-1 logit ranks the squares first, and the argmax of Y is
    # mostly right (chance: AUC 0.5, accuracy 0.5).
    val_logits = logits_of(result.model, val.images)
    assert pairwise_auc(val_logits[:, 1], val.labels == 1) > 0.9
    scores = np.maximum(val_logits, 0.0)  # Y of the ReLU output
    assert np.mean(scores.argmax(axis=1) == val.labels) > 0.8
    assert history[-1]["val_auc"] > 0.9
