"""Predictions of a bound model on in-memory images, and the classification metrics
training reports: accuracy and ROC AUC (the Mann-Whitney statistic with mid-ranks)."""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from jaxcam.batching import in_batches
from jaxcam.checks import check_image_batch
from jaxcam.data.splits import split_batches
from jaxcam.models.outputs import apply_output
from jaxcam.models.protocol import Explainable

Array = jax.Array


@jax.jit
def _scores_step(model: Explainable, images: Array) -> Array:
    return jax.vmap(model.scores)(images)


@jax.jit
def _logits_step(model: Explainable, images: Array) -> Array:
    return jax.vmap(lambda image: model.logits(model.features(image)))(images)


def predict_scores(model: Explainable, images: np.ndarray, batch_size: int = 64) -> np.ndarray:
    """Scores Y (N, classes) of raw images (N, H, W, C), in fixed-size batches."""
    check_image_batch(images, model.module.in_channels, model.module.min_input_size)
    return in_batches(lambda x: _scores_step(model, jnp.asarray(x)), [images], batch_size)


def accuracy(model: Explainable, images: np.ndarray, labels: np.ndarray) -> float:
    """Share of images whose predicted class (argmax of Y) equals the label."""
    return float(np.mean(predict_scores(model, images).argmax(-1) == labels))


# ----------------------------------------------------------------------------
# Validation: accuracy and ROC AUC.


def roc_auc(scores: np.ndarray, positive: np.ndarray) -> float | None:
    """Area under the ROC curve of ``scores`` (N,) for the boolean ``positive`` (N,).

    The Mann-Whitney form: the probability that a random positive scores above a
    random negative, ties counting one half (mid-ranks). ``None`` when one of the
    two groups is empty.
    """
    scores = np.asarray(scores, np.float64)
    positive = np.asarray(positive, bool)
    if scores.shape != positive.shape or scores.ndim != 1:
        raise ValueError(
            f"scores and labels must be two (N,) arrays, got {scores.shape} and {positive.shape}"
        )
    num_pos, num_neg = int(positive.sum()), int((~positive).sum())
    if num_pos == 0 or num_neg == 0:
        return None
    order = np.argsort(scores, kind="stable")
    sorted_scores = scores[order]
    ranks = np.empty(len(scores), np.float64)
    # Mid-rank of each run of equal scores (1-based).
    starts = np.flatnonzero(np.r_[True, sorted_scores[1:] != sorted_scores[:-1]])
    ends = np.r_[starts[1:], len(scores)]
    for start, end in zip(starts, ends, strict=True):
        ranks[order[start:end]] = (start + end + 1) / 2.0
    return float((ranks[positive].sum() - num_pos * (num_pos + 1) / 2.0) / (num_pos * num_neg))


def ranking_scores(logits: np.ndarray, output: str) -> np.ndarray:
    """Per-class scores to rank images by for ROC AUC: the softmax probabilities for a
    softmax model, else the logits (monotone in the one-vs-rest sigmoid probability the
    model is trained on, and not clipped at 0 like a ReLU output)."""
    if output == "softmax":
        return np.asarray(jax.nn.softmax(jnp.asarray(logits), axis=-1))
    return np.asarray(logits)


def classification_report(logits: np.ndarray, labels: np.ndarray, output: str) -> dict:
    """Accuracy (argmax of Y), ROC AUC (class 1 for two classes; else the mean one-vs-rest
    AUC over the classes present) and the image count."""
    labels = np.asarray(labels)
    scores = np.asarray(apply_output(jnp.asarray(logits), output))
    ranking = ranking_scores(logits, output)
    if logits.shape[-1] == 2:
        auc = roc_auc(ranking[:, 1], labels == 1)
    else:
        aucs = [roc_auc(ranking[:, c], labels == c) for c in range(logits.shape[-1])]
        defined = [a for a in aucs if a is not None]
        auc = float(np.mean(defined)) if defined else None
    return {
        "accuracy": float(np.mean(scores.argmax(-1) == labels)),
        "auc": auc,
        "images": int(len(labels)),
    }


def predict_logits(
    model: Explainable, split: Any, batch_size: int = 64
) -> tuple[np.ndarray, np.ndarray]:
    """Logits S (N, classes) and labels (N,) of every example of a split, in data order."""
    logits, labels = [], []
    for batch in split_batches(split, batch_size):
        count = len(batch["label"])
        images = batch["image"]
        if count < batch_size:  # pad: one compiled shape
            images = np.concatenate([images, np.repeat(images[:1], batch_size - count, 0)])
        logits.append(np.asarray(_logits_step(model, jnp.asarray(images, jnp.float32)))[:count])
        labels.append(np.asarray(batch["label"]))
    if not logits:
        raise ValueError("the split is empty: nothing to predict")
    return np.concatenate(logits), np.concatenate(labels)


def validate(model: Explainable, split: Any, batch_size: int = 64) -> dict:
    """:func:`classification_report` of ``model`` on a split."""
    logits, labels = predict_logits(model, split, batch_size)
    return classification_report(logits, labels, model.output)


# ----------------------------------------------------------------------------
# Training loop with checkpoints.
