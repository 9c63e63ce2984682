"""Training a CAM-compatible classifier with optax.

The loss is chosen by the output activation: ``softmax`` trains with softmax
cross-entropy; ``relu``, ``linear`` and ``exp`` train with one-vs-rest sigmoid
cross-entropy on the logits (as CheXNet-style X-ray models do), which pushes the
true class's logit above 0 and the others below, so a ReLU output gives the true
class a positive score and the others 0.
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Callable, Iterable, Iterator
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import optax

from jaxcam.checks import check_image_batch
from jaxcam.evaluation import in_batches
from jaxcam.models.base import CAMClassifier, SplitModel, bind

Array = jax.Array
Batch = dict[str, np.ndarray]


@dataclasses.dataclass(frozen=True)
class TrainConfig:
    epochs: int = 6
    batch_size: int = 32
    learning_rate: float = 3e-3
    weight_decay: float = 1e-4
    seed: int = 0


def classification_loss(logits: Array, labels: Array, output: str) -> Array:
    """Mean loss of logits (B, classes) against integer labels (B,)."""
    one_hot = jax.nn.one_hot(labels, logits.shape[-1], dtype=logits.dtype)
    if output == "softmax":
        return jnp.mean(optax.softmax_cross_entropy(logits, one_hot))
    return jnp.mean(jnp.sum(optax.sigmoid_binary_cross_entropy(logits, one_hot), axis=-1))


def init_variables(model: CAMClassifier, image_shape: tuple[int, ...], seed: int) -> Any:
    """Variables of ``model`` for images of shape (H, W, C)."""
    return jax.jit(model.init)(jax.random.key(seed), jnp.zeros((1, *image_shape), jnp.float32))


def make_train_step(
    model: CAMClassifier, optimizer: optax.GradientTransformation
) -> Callable[..., tuple[Any, Any, Array]]:
    """A jitted ``(variables, opt_state, images, labels) -> (variables, opt_state, loss)``."""

    def loss_and_stats(params: Any, batch_stats: Any, images: Array, labels: Array):
        logits, updates = model.apply(
            {"params": params, "batch_stats": batch_stats},
            images,
            train=True,
            mutable=["batch_stats"],
            method=lambda module, x, train: module.logits(module.features(x, train=train)),
        )
        return classification_loss(logits, labels, model.output), updates["batch_stats"]

    @jax.jit
    def step(variables: Any, opt_state: Any, images: Array, labels: Array):
        (loss, batch_stats), grads = jax.value_and_grad(loss_and_stats, has_aux=True)(
            variables["params"], variables["batch_stats"], images, labels
        )
        with jax.numpy_dtype_promotion("standard"):  # optax mixes int and float scalars
            updates, opt_state = optimizer.update(grads, opt_state, variables["params"])
            params = optax.apply_updates(variables["params"], updates)
        return {"params": params, "batch_stats": batch_stats}, opt_state, loss

    return step


@jax.jit
def _scores_step(model: SplitModel, images: Array) -> Array:
    return jax.vmap(model.scores)(images)


def predict_scores(model: SplitModel, images: np.ndarray, batch_size: int = 64) -> np.ndarray:
    """Scores Y (N, classes) of raw images (N, H, W, C), in fixed-size batches."""
    check_image_batch(images, model.module.in_channels, model.module.min_input_size)
    return in_batches(lambda x: _scores_step(model, jnp.asarray(x)), [images], batch_size)


def accuracy(model: SplitModel, images: np.ndarray, labels: np.ndarray) -> float:
    """Share of images whose predicted class (argmax of Y) equals the label."""
    return float(np.mean(predict_scores(model, images).argmax(-1) == labels))


def train(
    model: CAMClassifier,
    batches_for_epoch: Callable[[int], Iterable[Batch]],
    image_shape: tuple[int, ...],
    config: TrainConfig = TrainConfig(),
    evaluate: Callable[[SplitModel], dict[str, float]] | None = None,
    log: Callable[[str], None] = print,
) -> SplitModel:
    """Train ``model``; return it bound to the trained variables.

    Args:
      model: the classifier.
      batches_for_epoch: ``epoch -> iterable of {'image': (B,H,W,C), 'label': (B,)}``.
      image_shape: (H, W, C) of the images.
      config: optimisation settings.
      evaluate: optional ``model -> {name: value}`` printed after each epoch.
      log: where progress lines go.
    """
    variables = init_variables(model, image_shape, config.seed)
    first_epoch = list(batches_for_epoch(0))  # read once: counts the steps, then trains
    steps_per_epoch = len(first_epoch)
    schedule = optax.cosine_onecycle_schedule(
        config.epochs * steps_per_epoch, config.learning_rate, pct_start=0.15
    )
    optimizer = optax.adamw(schedule, weight_decay=config.weight_decay)
    with jax.numpy_dtype_promotion("standard"):  # optax mixes int and float scalars
        opt_state = optimizer.init(variables["params"])
    step = make_train_step(model, optimizer)
    start = time.perf_counter()
    for epoch in range(config.epochs):
        losses = []
        epoch_batches = first_epoch if epoch == 0 else batches_for_epoch(epoch)
        for batch in _device_batches(epoch_batches):
            variables, opt_state, loss = step(variables, opt_state, *batch)
            losses.append(loss)
        message = (
            f"epoch {epoch + 1}/{config.epochs}  loss {float(jnp.mean(jnp.stack(losses))):.4f}"
        )
        if evaluate is not None:
            metrics = evaluate(bind(model, variables))
            message += "".join(f"  {name} {value:.3f}" for name, value in metrics.items())
        log(f"{message}  ({time.perf_counter() - start:.0f} s)")
    return bind(model, variables)


def _device_batches(batches: Iterable[Batch]) -> Iterator[tuple[Array, Array]]:
    for batch in batches:
        yield jnp.asarray(batch["image"], jnp.float32), jnp.asarray(batch["label"], jnp.int32)
