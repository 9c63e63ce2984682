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

Unbalanced sets (the Kaggle chest X-rays are about 3:1 PNEUMONIA in train):
``TrainConfig.class_weighting="balanced"`` weights each example's loss by
N / (classes * n_class). :func:`fit` validates after each epoch (accuracy, ROC AUC),
writes orbax checkpoints into a run folder (:mod:`jaxcam.runs`) and resumes
an interrupted run to the same parameters as an uninterrupted one.
"""

from __future__ import annotations

import dataclasses
import functools
import os
import time
from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import optax

from jaxcam.checkpoints import CheckpointStore
from jaxcam.checks import check_image_batch
from jaxcam.data.splits import ArraySplit, check_split_labels, split_batches
from jaxcam.metrics import smooth_random_field
from jaxcam.models.base import CAMClassifier, SplitModel, bind
from jaxcam.models.init import init_variables, variable_shapes
from jaxcam.prediction import (
    accuracy as accuracy,
)
from jaxcam.prediction import (
    classification_report as classification_report,
)
from jaxcam.prediction import (
    predict_logits as predict_logits,
)
from jaxcam.prediction import (  # re-exported: callers import them from here too
    predict_scores as predict_scores,
)
from jaxcam.prediction import (
    ranking_scores as ranking_scores,
)
from jaxcam.prediction import (
    roc_auc as roc_auc,
)
from jaxcam.prediction import (
    validate as validate,
)
from jaxcam.runs import history_line, open_run, write_history

Array = jax.Array

CLASS_WEIGHTINGS = ("none", "balanced")

#: The occlusion probability ``jaxcam train`` uses by default. The README's "Is BAD
#: trustworthy?" study (experiments/ground_truth.py, docs/ground_truth_results.md): without
#: occlusion-aware training BAD's black images lie outside the training distribution and
#: BAD mostly measures the model's reaction to black (tau BAD 0.26, BAD curve 0.05 with
#: smooth ties); with p = 0.5 tau BAD is 0.39 and the curve 0.62. The demo trains with it.
#: ``TrainConfig.occlusion`` itself stays 0.0: the library's recipe is plain training
#: unless asked, so existing API users and recorded runs keep their meaning.
RECOMMENDED_OCCLUSION = 0.5


@dataclasses.dataclass(frozen=True)
class TrainConfig:
    epochs: int = 6
    batch_size: int = 32
    learning_rate: float = 3e-3
    weight_decay: float = 1e-4
    seed: int = 0
    occlusion: float = 0.0  # probability that a training image is partly blacked out
    occluded_area: tuple[float, float] = (0.05, 0.95)  # range of the blacked-out share
    class_weighting: str = "none"  # or "balanced": loss weight N / (classes * n_class)

    def __post_init__(self) -> None:
        for name in ("epochs", "batch_size"):
            value = getattr(self, name)
            if isinstance(value, bool) or int(value) != value or value < 1:
                raise ValueError(f"{name} must be an integer >= 1, got {value!r}")
        if isinstance(self.seed, bool) or int(self.seed) != self.seed or not 0 <= self.seed < 2**22:
            raise ValueError(f"seed must be an integer in [0, 2**22), got {self.seed!r}")
        if not self.learning_rate > 0:
            raise ValueError(f"learning_rate must be > 0, got {self.learning_rate!r}")
        if self.class_weighting not in CLASS_WEIGHTINGS:
            raise ValueError(
                f"class_weighting must be one of {CLASS_WEIGHTINGS}, got {self.class_weighting!r}"
            )
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


def classification_loss(
    logits: Array, labels: Array, output: str, class_weights: Array | None = None
) -> Array:
    """Mean loss of logits (B, classes) against integer labels (B,); each example's loss
    is multiplied by ``class_weights[label]`` (classes,) when given."""
    one_hot = jax.nn.one_hot(labels, logits.shape[-1], dtype=logits.dtype)
    if output == "softmax":
        losses = optax.softmax_cross_entropy(logits, one_hot)
    else:
        losses = jnp.sum(optax.sigmoid_binary_cross_entropy(logits, one_hot), axis=-1)
    if class_weights is not None:
        losses = losses * class_weights[labels]
    return jnp.mean(losses)


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
    """A jitted ``(variables, opt_state, images, labels, key, class_weights) -> (variables,
    opt_state, loss)``.

    ``key`` draws the occlusions when ``config.occlusion > 0``; ``class_weights``
    (classes,) weights each example's loss by its label (ones: unweighted).
    """

    def loss_and_stats(
        params: Any, state: Any, images: Array, labels: Array, class_weights: Array
    ) -> tuple[Array, Any]:
        # ``state``: the mutable collections besides params (batch_stats), if any.
        logits, updates = model.apply(
            {"params": params, **state},
            images,
            train=True,
            mutable=list(state),
            method=lambda module, x, train: module.logits(module.features(x, train=train)),
        )
        return classification_loss(logits, labels, model.output, class_weights), updates

    @jax.jit
    def step(
        variables: Any,
        opt_state: Any,
        images: Array,
        labels: Array,
        key: Array,
        class_weights: Array,
    ):
        if config.occlusion > 0:
            images = occlude_batch(key, images, config)
        state = {name: value for name, value in variables.items() if name != "params"}
        (loss, state), grads = jax.value_and_grad(loss_and_stats, has_aux=True)(
            variables["params"], state, images, labels, class_weights
        )
        with jax.numpy_dtype_promotion("standard"):  # optax mixes int and float scalars
            updates, opt_state = optimizer.update(grads, opt_state, variables["params"])
            params = optax.apply_updates(variables["params"], updates)
        return {"params": params, **state}, opt_state, loss

    return step


def class_weights_for(labels: np.ndarray, num_classes: int, weighting: str) -> np.ndarray:
    """Per-class loss weights (classes,) float32.

    ``"balanced"``: w_c = N / (classes * n_c), so every class carries the same total
    weight (Keras' and scikit-learn's "balanced"); ``"none"``: all 1.
    """
    if weighting not in CLASS_WEIGHTINGS:
        raise ValueError(f"class_weighting must be one of {CLASS_WEIGHTINGS}, got {weighting!r}")
    if weighting == "none":
        return np.ones(num_classes, np.float32)
    counts = np.bincount(np.asarray(labels), minlength=num_classes)
    if (counts == 0).any():
        missing = [int(c) for c in np.flatnonzero(counts == 0)]
        raise ValueError(f"balanced class weights need every class in training; none of {missing}")
    return (len(labels) / (num_classes * counts)).astype(np.float32)


@functools.lru_cache(maxsize=8)
def optimizer_and_step(
    model: CAMClassifier, config: TrainConfig, total_steps: int
) -> tuple[optax.GradientTransformation, Callable[..., Any]]:
    """AdamW with a one-cycle cosine schedule over ``total_steps``, and its jitted train
    step; built once per setting, so a resumed run in the same process compiles nothing."""
    schedule = optax.cosine_onecycle_schedule(total_steps, config.learning_rate, pct_start=0.15)
    optimizer = optax.adamw(schedule, weight_decay=config.weight_decay)
    return optimizer, make_train_step(model, optimizer, config)


@dataclasses.dataclass
class FitResult:
    """What :func:`fit` returns: the trained model (last step), the step it reached, the
    history (one dict per finished epoch) and the step it resumed from (None: fresh)."""

    model: SplitModel
    step: int
    total_steps: int
    history: list[dict[str, Any]]
    resumed_from: int | None = None


def fit(
    model: CAMClassifier,
    train_split: Any,
    val_split: Any = None,
    config: TrainConfig = TrainConfig(),
    *,
    run_dir: str | os.PathLike | None = None,
    run_info: dict[str, Any] | None = None,
    checkpoint_every: int = 0,
    max_steps: int | None = None,
    initial_variables: Any = None,
    log: Callable[[str], None] = print,
    progress: bool = False,
) -> FitResult:
    """Train ``model`` on a split; with ``run_dir``, checkpoint and resume.

    Args:
      model: the classifier.
      train_split, val_split: random-access splits (``len(split)``, ``split[i] ->
        {"image": (H, W, C) float32, "label": int}``, a ``labels`` array): a
        :class:`jaxcam.data.ImageSplit`, or :class:`jaxcam.data.ArraySplit` over arrays.
      config: optimisation settings (every one is recorded; a resume must match).
      run_dir: folder for ``run.json``, checkpoints and ``history.json``. If it holds
        checkpoints of the same run, training continues from the latest: the step
        count continues and the result equals an uninterrupted run (same data order,
        same occlusion keys; a test checks the parameters).
      run_info: what else ``run.json`` records (model spec, data) and a resume checks.
      checkpoint_every: also save every this many steps (0: at epoch ends only).
      max_steps: stop after this global step (saving it), e.g. to split a long run.
      initial_variables: start from these variables (e.g. imported Keras weights)
        instead of a random initialisation.
      log: where progress lines go.
      progress: show a progress bar over the steps of each epoch.

    Each epoch is a new seeded permutation of the training split (the last partial
    batch dropped). After each epoch the validation accuracy and ROC AUC are logged,
    the ``latest`` checkpoint is written, and ``best`` when the validation AUC (the
    accuracy if the AUC is undefined) is the best so far.

    Logged: the time the model took to initialise (or restore), the batches per epoch
    (and how many images each epoch leaves out), the time the first step took (it compiles
    the training step), and per epoch its own time (without that first step) and the time
    since ``fit`` was called.
    """
    fit_start = time.perf_counter()
    if int(checkpoint_every) != checkpoint_every or checkpoint_every < 0:
        raise ValueError(f"checkpoint_every must be an integer >= 0, got {checkpoint_every!r}")
    if max_steps is not None and (int(max_steps) != max_steps or max_steps < 1):
        raise ValueError(f"max_steps must be an integer >= 1, got {max_steps!r}")
    labels = np.asarray(train_split.labels)
    for name, split in (("training", train_split), ("validation", val_split)):
        if split is not None:
            check_split_labels(split, model.num_classes, name)
    steps_per_epoch = len(train_split) // config.batch_size
    if steps_per_epoch == 0:
        raise ValueError(
            f"the training split has {len(train_split)} examples, fewer than one batch of "
            f"{config.batch_size}: lower the batch size"
        )
    total_steps = config.epochs * steps_per_epoch
    if run_dir is not None:  # first: a folder of another run is refused before any work
        record = {**(run_info or {}), "train": dataclasses.asdict(config)}
        record["train"]["steps_per_epoch"] = steps_per_epoch
        open_run(run_dir, record)
    image_shape = tuple(np.shape(train_split[0]["image"]))
    if val_split is not None and tuple(np.shape(val_split[0]["image"])) != image_shape:
        raise ValueError(
            f"validation images are {np.shape(val_split[0]['image'])}, training images "
            f"{image_shape}: load both at the same size and channels"
        )
    check_image_batch(np.zeros((1, *image_shape), np.float32), model.in_channels, 1)
    weights = jnp.asarray(class_weights_for(labels, model.num_classes, config.class_weighting))

    optimizer, step_fn = optimizer_and_step(model, config, total_steps)
    store = CheckpointStore.open_for_training(run_dir, log) if run_dir is not None else None
    resuming = store is not None and store.latest_step() is not None
    with jax.numpy_dtype_promotion("standard"):  # optax mixes int and float scalars
        if resuming:  # shapes only: the checkpoint provides the values
            variables = variable_shapes(model, image_shape)
            opt_state = jax.eval_shape(optimizer.init, variables["params"])
        else:
            variables = initial_variables
            if variables is None:
                variables = init_variables(model, image_shape, config.seed)
            opt_state = optimizer.init(variables["params"])

    # The epoch's loss sum stays on the device (no host sync per step).
    step, history, loss_sum, resumed_from = 0, [], jnp.float32(0.0), None
    if resuming:
        assert store is not None and run_dir is not None  # resuming needs the run folder
        state, saved = store.resume({"model": variables, "optimizer": opt_state}, log)
        variables, opt_state = state["model"], state["optimizer"]
        step, history = saved["step"], saved["history"]
        loss_sum = jnp.float32(saved["loss_sum"])
        resumed_from = step
        log(f"resuming {os.fspath(run_dir)} at step {step}/{total_steps}")
    if resuming:
        what = "restored the checkpoint"
    else:  # compiling the initialisation can take as long as compiling the training step
        what = "initialised the model" if initial_variables is None else "set up the model"
    log(f"{what} in {time.perf_counter() - fit_start:.1f} s")
    dropped = len(train_split) - steps_per_epoch * config.batch_size
    log(
        f"{len(train_split)} images per epoch: {steps_per_epoch} batches of {config.batch_size}"
        + (f"; the last {dropped} images of each shuffled epoch are dropped" if dropped else "")
    )
    stop = total_steps if max_steps is None else min(total_steps, int(max_steps))
    occlusion_key = jax.random.key(config.seed + 1)
    first_step_pending = True  # the first step of this call compiles the training step

    def save(kind: str, metrics: dict[str, Any] | None = None) -> None:
        if store is None or run_dir is None:  # (store exists exactly when run_dir is given)
            return
        state = {"model": variables, "optimizer": opt_state}
        saved = {"step": step, "history": history, "loss_sum": float(loss_sum)}
        store.save_latest(step, state, saved)
        if kind == "epoch" and metrics is not None:
            kind = "auc" if metrics["auc"] is not None else "accuracy"
            score = metrics[kind]
            if store.save_best(step, state, saved, score):
                log(f"  best so far (validation {kind} {score:.4f}): saved")
        write_history(run_dir, history)

    try:
        while step < stop:
            epoch_start = time.perf_counter()
            epoch, first = divmod(step, steps_per_epoch)
            last = min(steps_per_epoch, first + stop - step)
            batches = split_batches(
                train_split,
                config.batch_size,
                seed=config.seed * 1000 + epoch,
                drop_remainder=True,
                start_batch=first,
            )
            bar = _progress_bar(
                progress, f"epoch {epoch + 1}/{config.epochs}", first, steps_per_epoch
            )
            for _, batch in zip(range(first, last), batches, strict=False):
                key = jax.random.fold_in(occlusion_key, step)
                images = jnp.asarray(batch["image"], jnp.float32)
                batch_labels = jnp.asarray(batch["label"], jnp.int32)
                step_start = time.perf_counter()
                variables, opt_state, loss = step_fn(
                    variables, opt_state, images, batch_labels, key, weights
                )
                if first_step_pending:  # timed alone: it compiles (not counted in the epoch)
                    first_step_pending = False
                    jax.block_until_ready(loss)
                    seconds = time.perf_counter() - step_start
                    epoch_start += seconds
                    if bar is not None:
                        bar.clear()
                    log(f"compiled the training step and ran its first step in {seconds:.1f} s")
                    if bar is not None:
                        bar.refresh()
                loss_sum = loss_sum + loss
                step += 1
                if bar is not None:
                    bar.update(1)
                if checkpoint_every and step % checkpoint_every == 0 and step % steps_per_epoch:
                    save("step")
            if bar is not None:
                bar.close()
            if step % steps_per_epoch:  # stopped inside an epoch (max_steps)
                save("step")
                break
            entry = {"epoch": epoch + 1, "step": step, "loss": float(loss_sum) / steps_per_epoch}
            loss_sum = jnp.float32(0.0)
            metrics = None
            if val_split is not None:
                metrics = validate(bind(model, variables), val_split, config.batch_size)
                entry |= {"val_accuracy": metrics["accuracy"], "val_auc": metrics["auc"]}
            history.append(entry)
            now = time.perf_counter()
            log(history_line(entry, config.epochs, now - epoch_start, total=now - fit_start))
            save("epoch", metrics)
    finally:
        if store is not None:
            store.close()
    return FitResult(bind(model, variables), step, total_steps, history, resumed_from)


def _progress_bar(enabled: bool, label: str, done: int, total: int) -> Any:
    if not enabled:
        return None
    from tqdm.auto import tqdm

    return tqdm(total=total, initial=done, desc=label, unit="step", leave=False)


def train_on_arrays(
    model: CAMClassifier,
    train_set: Any,
    val_set: Any = None,
    config: TrainConfig = TrainConfig(),
    log: Callable[[str], None] = print,
) -> SplitModel:
    """:func:`fit` on in-memory splits (anything with ``images`` and ``labels``, e.g.
    :class:`jaxcam.data.PhantomArrays`), without checkpoints; returns the model."""
    as_split = lambda s: None if s is None else ArraySplit(s.images, s.labels)
    return fit(model, as_split(train_set), as_split(val_set), config, log=log).model
