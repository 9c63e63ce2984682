"""Training a CAM-compatible classifier with optax.

The loss is chosen by the output activation: ``softmax`` trains with softmax
cross-entropy; ``relu``, ``linear`` and ``exp`` train with one-vs-rest sigmoid
cross-entropy on the logits (as CheXNet-style X-ray models do), which pushes the
true class's logit above 0 and the others below, so a ReLU output gives the true
class a positive score and the others 0.

Occlusion-aware training (``TrainConfig.occlusion > 0``): each training image is,
with that probability, partly blacked out by :func:`random_black_occlusion` - a
blob-shaped region of random area, set to 0 in the raw image, as BAD's black images
are - so that black images are in the model's training distribution (the idea
behind ROAR and ROAD). The label is kept.
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
from jaxcam.metrics import smooth_random_field
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
    occlusion: float = 0.0  # probability that a training image is partly blacked out
    occluded_area: tuple[float, float] = (0.05, 0.95)  # range of the blacked-out share

    def __post_init__(self) -> None:
        if not 0.0 <= self.occlusion <= 1.0:
            raise ValueError(f"occlusion must be a probability in [0, 1], got {self.occlusion}")
        low, high = self.occluded_area
        if not 0.0 < low <= high < 1.0:
            raise ValueError(
                "occluded_area must be (low, high) with 0 < low <= high < 1, "
                f"got {self.occluded_area}"
            )


def random_black_occlusion(
    key: Array, image: Array, area: tuple[float, float] = (0.05, 0.95)
) -> Array:
    """Black out a random blob-shaped region of one raw image (H, W, C) -> (H, W, C).

    The region is where :func:`jaxcam.metrics.smooth_random_field` is below its
    q-quantile, q drawn uniformly from ``area``: exactly round(q * H * W) pixels become 0,
    in a few blobs shaped like the complement of an upsampled saliency map.
    """
    height, width = image.shape[:2]
    field_key, area_key = jax.random.split(key)
    field = smooth_random_field(field_key, (height, width))
    share = jax.random.uniform(area_key, minval=area[0], maxval=area[1])
    count = jnp.round(share * height * width).astype(jnp.int32)
    ranks = jnp.argsort(jnp.argsort(field.reshape(-1))).reshape(height, width)
    return jnp.where((ranks < count)[..., None], jnp.zeros_like(image), image)


def classification_loss(logits: Array, labels: Array, output: str) -> Array:
    """Mean loss of logits (B, classes) against integer labels (B,)."""
    one_hot = jax.nn.one_hot(labels, logits.shape[-1], dtype=logits.dtype)
    if output == "softmax":
        return jnp.mean(optax.softmax_cross_entropy(logits, one_hot))
    return jnp.mean(jnp.sum(optax.sigmoid_binary_cross_entropy(logits, one_hot), axis=-1))


def init_variables(model: CAMClassifier, image_shape: tuple[int, ...], seed: int) -> Any:
    """Variables of ``model`` for images of shape (H, W, C)."""
    return jax.jit(model.init)(jax.random.key(seed), jnp.zeros((1, *image_shape), jnp.float32))


def occlude_batch(key: Array, images: Array, config: TrainConfig) -> Array:
    """Apply :func:`random_black_occlusion` to each image with probability ``config.occlusion``."""
    keys = jax.random.split(key, images.shape[0])

    def one(image_key: Array, image: Array) -> Array:
        choose_key, blob_key = jax.random.split(image_key)
        occluded = random_black_occlusion(blob_key, image, config.occluded_area)
        return jnp.where(jax.random.uniform(choose_key) < config.occlusion, occluded, image)

    return jax.vmap(one)(keys, images)


def make_train_step(
    model: CAMClassifier, optimizer: optax.GradientTransformation, config: TrainConfig
) -> Callable[..., tuple[Any, Any, Array]]:
    """A jitted ``(variables, opt_state, images, labels, key) -> (variables, opt_state, loss)``.

    ``key`` draws the occlusions when ``config.occlusion > 0``.
    """

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
    def step(variables: Any, opt_state: Any, images: Array, labels: Array, key: Array):
        if config.occlusion > 0:
            images = occlude_batch(key, images, config)
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
    step = make_train_step(model, optimizer, config)
    occlusion_key = jax.random.key(config.seed + 1)
    start = time.perf_counter()
    for epoch in range(config.epochs):
        losses = []
        epoch_batches = first_epoch if epoch == 0 else batches_for_epoch(epoch)
        for i, batch in enumerate(_device_batches(epoch_batches)):
            key = jax.random.fold_in(occlusion_key, epoch * steps_per_epoch + i)
            variables, opt_state, loss = step(variables, opt_state, *batch, key)
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


def train_on_arrays(
    model: CAMClassifier,
    train_set: Any,
    val_set: Any,
    config: TrainConfig = TrainConfig(),
    log: Callable[[str], None] = print,
) -> SplitModel:
    """:func:`train` on in-memory splits (anything with ``images`` and ``labels``, e.g.
    :class:`jaxcam.data.PhantomArrays`): shuffled grain batches, a new order each epoch,
    validation accuracy logged after each epoch."""
    from jaxcam.data import batches

    return train(
        model,
        lambda epoch: batches(train_set, config.batch_size, seed=config.seed * 1000 + epoch),
        train_set.images.shape[1:],
        config,
        evaluate=lambda m: {"val accuracy": accuracy(m, val_set.images, val_set.labels)},
        log=log,
    )
