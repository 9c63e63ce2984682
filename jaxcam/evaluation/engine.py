"""Streaming a data set through the evaluation step, sharded over the local devices.

The host streams fixed-size batches (arrays, or any iterable of batch dicts such as a
grain loader) to the device, keeps at most two steps in flight, and gets back only the
sums. The batch axis is sharded over all local devices (``jax.sharding``); with
several processes each streams its own rows (:func:`data_set_indices`).
"""

from __future__ import annotations

import functools
import sys
import time
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from typing import Any

import jax
import numpy as np
from jax.sharding import Mesh, NamedSharding, PartitionSpec

from jaxcam.batching import Batch, fixed_size_batches
from jaxcam.checks import check_class_indices, check_image_batch
from jaxcam.evaluation.step import EvaluationSums, StepConfig, evaluation_step, zero_evaluation_sums
from jaxcam.models.protocol import Explainable

Array = jax.Array


class Progress:
    """Prints images done and images per second to stderr, at most every ``every`` seconds."""

    def __init__(self, every: float = 5.0, stream: Any = sys.stderr):
        self.every, self.stream = every, stream
        self.start = self.last = time.perf_counter()
        self.shown = -1

    def __call__(self, done: int, final: bool = False) -> None:
        now = time.perf_counter()
        if (final and done != self.shown) or now - self.last >= self.every:
            self.shown = done
            rate = done / max(now - self.start, 1e-9)
            print(f"  evaluated {done:,} images, {rate:,.0f} img/s", file=self.stream, flush=True)
            self.last = now


def data_set_indices(start: int, count: int) -> np.ndarray:
    """Data set indices (int32) of this process's rows ``start .. start + count - 1``.

    With several processes (hosts), each streams its own part of the data: local row
    ``i`` of process ``p`` out of ``P`` is data set index ``i * P + p``, so every image
    has its own tie order. With one process the index is the row.
    """
    local = np.arange(start, start + count, dtype=np.int64)
    return (local * jax.process_count() + jax.process_index()).astype(np.int32)


class Engine:
    """Runs :func:`evaluation_step` over batches, sharded over the local devices.

    One compiled step per image shape: batches are re-chunked to ``batch_size`` (a
    multiple of the device count), the last one padded.
    """

    def __init__(self, config: StepConfig, batch_size: int, devices: Sequence[Any] | None = None):
        if int(batch_size) != batch_size or batch_size < 1:
            raise ValueError(f"batch_size must be an integer >= 1, got {batch_size!r}")
        self.config = config
        devices = list(devices if devices is not None else jax.devices())
        self.mesh = Mesh(np.asarray(devices), ("data",))
        local = max(1, len(devices) // jax.process_count())
        self.batch_size = -(-int(batch_size) // local) * local  # rows per process
        self.data_sharding = NamedSharding(self.mesh, PartitionSpec("data"))
        self.replicated = NamedSharding(self.mesh, PartitionSpec())
        self.traces = 0

        def step(model: Explainable, sums: EvaluationSums, batch: Mapping[str, Array]):
            self.traces += 1  # runs once per compilation (a Python side effect of tracing)
            return evaluation_step(config, model, sums, batch)

        self.step = jax.jit(step, out_shardings=self.replicated)

    def run(
        self,
        model: Explainable,
        batches: Iterable[Batch],
        progress: Callable[[int, bool], None] | None = None,
    ) -> EvaluationSums:
        """Sums over every image of ``batches`` (host copies)."""
        config = self.config
        module = model.module
        sums = zero_evaluation_sums(config)
        sums = jax.device_put(sums, self.replicated)
        model = jax.device_put(model, self.replicated)
        done, finished, in_flight = 0, 0, None
        local = fixed_size_batches(
            batches, self.batch_size, ("image", "label", *config.batch_fields())
        )
        for host_batch, count in _agreed_steps(local):
            if done == 0 and count:
                check_image_batch(host_batch["image"], module.in_channels, module.min_input_size)
            labels = check_class_indices(
                host_batch["label"][:count], config.num_classes, count, name="labels"
            )
            host_batch["label"] = np.concatenate(
                [labels, np.zeros(self.batch_size - count, np.int32)]
            )
            host_batch["image"] = np.asarray(host_batch["image"], np.float32)
            host_batch["index"] = data_set_indices(done, self.batch_size)
            host_batch["valid"] = np.arange(self.batch_size) < count
            device_batch = {
                name: jax.make_array_from_process_local_data(self.data_sharding, value)
                for name, value in host_batch.items()
            }
            sums = self.step(model, sums, device_batch)
            if in_flight is not None:  # at most two steps in flight
                jax.block_until_ready(in_flight)
                if progress is not None:  # the previous step's images are computed
                    progress(finished, False)
            in_flight = sums.images
            finished = done + count
            done += count
        if done == 0:
            raise ValueError("no images to evaluate: the data is empty")
        sums = jax.device_get(sums)
        if progress is not None:
            progress(done, True)
        return sums


def _agreed_steps(
    local: Iterator[tuple[dict[str, np.ndarray], int]],
) -> Iterator[tuple[dict[str, np.ndarray], int]]:
    """This process's ``(batch, count)`` items, as many as the process with the most.

    Every process must run the sharded step the same number of times. With several
    processes, each step they first agree (a host all-gather of one flag) on whether any
    still has data; one that has run out feeds an all-padding batch (``count`` 0, every
    row invalid) shaped like its earlier batches. A process with no data at all cannot
    shape one: every process then raises the same ValueError instead of waiting forever.
    """
    if jax.process_count() == 1:
        yield from local
        return
    from jax.experimental import multihost_utils

    template: dict[str, np.ndarray] | None = None  # zeros shaped like this process's batches
    while True:
        item = next(local, None)
        if item is not None and template is None:
            template = {k: np.zeros_like(v) for k, v in item[0].items()}
        shaped = template is not None
        flags = np.asarray(
            multihost_utils.process_allgather(np.asarray([item is not None, shaped], np.int32))
        ).reshape(-1, 2)
        if not flags[:, 0].any():
            return
        if not flags[:, 1].all():
            empty = [int(p) for p in np.flatnonzero(flags[:, 1] == 0)]
            raise ValueError(
                f"process(es) {empty} have no images while others do: give every process "
                "at least one batch of the data"
            )
        if item is None:
            assert template is not None
            item = ({k: v.copy() for k, v in template.items()}, 0)
        yield item


@functools.lru_cache(maxsize=32)
def engine_for(config: StepConfig, batch_size: int, devices: tuple[Any, ...]) -> Engine:
    """The :class:`Engine` of a configuration, built once: repeated evaluations reuse its
    compiled step (a new ``jax.jit`` of a new closure would compile again)."""
    return Engine(config, batch_size, devices)
