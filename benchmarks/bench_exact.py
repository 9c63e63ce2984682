"""Exact versus closed-form Grad-CAM++: time per batch, their ratio, the general path.

Command::

    python benchmarks/bench_exact.py            # CPU-sized defaults; GPU sizes on a GPU
    python benchmarks/bench_exact.py --batch 64 --repeats 20

Every case runs under ``jax.default_matmul_precision("highest")``, compiled once,
timed as the median of ``--repeats`` runs (``block_until_ready``). Prints one line
per case::

    case                                    | closed ms | exact ms | ratio
    head 7x7x2048 -> 1000 softmax, batch B  | ...       | ...      | ...

* ``head``: Grad-CAM++ maps from feature maps A (no backbone): GAP -> dense(C) ->
  the named score. ``exact`` is the default fast path (K directions, past the dense
  layer); ``closed`` is d2 = g^2, d3 = g^3.
* ``phantom``: from images through the small CNN (128x128, 16x16x64 map), what a
  user runs on a data set.
* ``general``: the O(N^2) nested-jvp path along all h*w*K basis directions, time
  per image at batch 1 and at ``--general-batch`` (8x8x512 -> 10 classes on CPU;
  7x7x2048 -> 1000 classes on a GPU). Inside one vmapped step the work that does
  not depend on the image (the basis directions pushed through GAP and the dense
  layer) is done once per batch, so the per-image cost falls with the batch.
"""

from __future__ import annotations

import argparse
import statistics
import time
from collections.abc import Callable

import jax
import jax.numpy as jnp
import numpy as np

import jaxcam
from jaxcam.models import bind, head_only_model
from jaxcam.saliency import saliency_step


def median_seconds(fn: Callable[[], jax.Array], repeats: int) -> float:
    jax.block_until_ready(fn())  # compile
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        jax.block_until_ready(fn())
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def map_step(**options):
    """``(model, images) -> maps``: Grad-CAM++ through the library's jitted batch step."""
    frozen = tuple(sorted(options.items()))
    return lambda model, images: saliency_step(
        model, images, jnp.zeros(images.shape[0], jnp.int32), "grad_cam_plus_plus", frozen, True
    )[0]


def compare(name: str, model, images, repeats: int, **options) -> None:
    closed = map_step(derivatives="closed_form")
    exact = map_step(derivatives="exact", **options)
    t_closed = median_seconds(lambda: closed(model, images), repeats)
    t_exact = median_seconds(lambda: exact(model, images), repeats)
    print(
        f"{name:<48} | {1e3 * t_closed:9.2f} | {1e3 * t_exact:9.2f} | {t_exact / t_closed:6.2f}",
        flush=True,
    )


def main() -> None:
    parser = argparse.ArgumentParser(description="exact vs closed-form Grad-CAM++ timings")
    on_gpu = jax.default_backend() == "gpu"
    parser.add_argument("--batch", type=int, default=64 if on_gpu else 16)
    parser.add_argument("--repeats", type=int, default=10 if on_gpu else 3)
    parser.add_argument(
        "--general-batch",
        type=int,
        default=8,
        help="batch of the general path (its direction work is shared by the batch)",
    )
    args = parser.parse_args()
    print(
        f"backend {jax.default_backend()}, device {jax.devices()[0].device_kind}, "
        f"jax {jax.__version__}"
    )
    print(f"{'case':<48} | closed ms | exact ms  | ratio")
    rng = np.random.default_rng(0)
    batch = args.batch
    with jax.default_matmul_precision("highest"):
        for score in ("exp", "softmax"):
            model = head_only_model((7, 7, 2048), 1000, score)
            maps = jnp.asarray(rng.uniform(size=(batch, 7, 7, 2048)), jnp.float32)
            compare(f"head 7x7x2048 -> 1000 {score}, batch {batch}", model, maps, args.repeats)

        phantom = jaxcam.create_model("small_cnn", num_classes=2, output="relu")
        variables = phantom.init(jax.random.key(0), jnp.zeros((1, 128, 128, 1)))
        images = jnp.asarray(rng.uniform(size=(batch, 128, 128, 1)), jnp.float32)
        for score in ("exp", "softmax"):
            compare(
                f"phantom 128x128 (16x16x64) {score} score, batch {batch}",
                bind(phantom, variables),
                images,
                args.repeats,
                score=score,
            )

        size, channels, classes = (7, 2048, 1000) if on_gpu else (8, 512, 10)
        model = head_only_model((size, size, channels), classes, "softmax")
        general = map_step(derivatives="exact", path="general")
        pooled = map_step(derivatives="exact", path="pooled")
        for per in (1, args.general_batch):
            maps = jnp.asarray(rng.uniform(size=(per, size, size, channels)), jnp.float32)
            t_general = median_seconds(
                lambda maps=maps: general(model, maps), max(1, args.repeats // 2)
            )
            t_pooled = median_seconds(lambda maps=maps: pooled(model, maps), args.repeats)
            print(
                f"general path {size}x{size}x{channels} -> {classes} softmax, batch {per}: "
                f"{1e3 * t_general / per:.1f} ms/image "
                f"(fast pooled path {1e3 * t_pooled / per:.2f} ms/image)",
                flush=True,
            )


if __name__ == "__main__":
    main()
