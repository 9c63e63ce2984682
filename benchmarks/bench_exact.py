"""Exact Grad-CAM++ timings: exact vs closed form, and the general path's two methods.

Commands (from the repository root; ``PYTHONPATH=.`` where jaxcam is not installed)::

    python benchmarks/bench_exact.py                  # every case; GPU sizes on a GPU
    python benchmarks/bench_exact.py --only general   # only the general-path comparison
    python benchmarks/bench_exact.py --quick          # tiny sizes, a few seconds (smoke test)
    python benchmarks/bench_exact.py --only general --general-shape 7x7x2048 \\
        --classes 1000 --general-batches 1,8,64 --chunk 2048

Every case runs under ``jax.default_matmul_precision("highest")`` through the
library's jitted batch step (``saliency_step``), compiled once (compile time
printed), timed as the median of repeated runs (``block_until_ready``).

* ``head``: Grad-CAM++ maps from feature maps A (no backbone): GAP -> dense(C) ->
  the named score. ``exact`` is the default pooled path; ``closed`` is d2 = g^2,
  d3 = g^3.
* ``phantom``: from images through the small CNN (128x128, 16x16x64 map).
* ``general``: the path for any head (``path="general"``, forced here on a GAP ->
  dense -> softmax head): pure derivatives along all h*w*K basis directions with
  nested jvp (``derivative_method="nested_jvp"``, the reference) and with Taylor
  mode (``"taylor"``, the default), in ms/image at each batch, their ratio, and the
  difference between the two normalised float32 maps (largest and median over the
  batch; a few random maps are ill-conditioned in float32, alpha's denominator
  cancelling: both methods are then ~1e-2 off a float64 reference, median ~5e-6).
  Defaults: 7x7x2048 -> 1000 classes at batch 1, 8, 64 on a GPU; 8x8x256 -> 100 at
  1, 8, 32 on a CPU.

Imports only jax, flax, numpy and jaxcam's models/saliency (no data pipeline).

Measured on one H200 (jax 0.11.2), the whole default run (60 s wall, peak 0.6 GiB;
``--only general`` 48 s, ``--quick`` 25 s, mostly compiles)::

    batch | nested ms/img | taylor ms/img | speed-up
        1 |        43.687 |         1.995 |    21.9x
        8 |         5.578 |         0.482 |    11.6x
       64 |         0.727 |         0.091 |     8.0x

Larger chunks help Taylor mode on a GPU (batch 64: 0.063 ms/image at ``--chunk 8192``,
0.049 at 32768, peak 0.6 GiB).
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


def median_seconds(fn: Callable[[], jax.Array], repeats: int, budget_s: float = 5.0):
    """``(first output, compile seconds, median run seconds)``.

    Runs at least twice, at most ``repeats`` times, and stops once ``budget_s`` is spent.
    """
    start = time.perf_counter()
    first = jax.block_until_ready(fn())
    compile_s = time.perf_counter() - start
    times: list[float] = []
    while len(times) < repeats and (len(times) < 2 or sum(times) < budget_s):
        start = time.perf_counter()
        jax.block_until_ready(fn())
        times.append(time.perf_counter() - start)
    return first, compile_s, statistics.median(times)


def map_step(**options):
    """``(model, images) -> maps``: Grad-CAM++ through the library's jitted batch step."""
    frozen = tuple(sorted(options.items()))
    return lambda model, images: saliency_step(
        model, images, jnp.zeros(images.shape[0], jnp.int32), "grad_cam_plus_plus", frozen, True
    )[0]


def peak_memory() -> str:
    stats = jax.devices()[0].memory_stats() or {}
    peak = stats.get("peak_bytes_in_use")
    return "" if peak is None else f" | peak {peak / 2**30:.1f} GiB"


def compare(name: str, model, images, repeats: int, **options) -> None:
    closed = map_step(derivatives="closed_form")
    exact = map_step(derivatives="exact", **options)
    *_, t_closed = median_seconds(lambda: closed(model, images), repeats)
    *_, t_exact = median_seconds(lambda: exact(model, images), repeats)
    print(
        f"{name:<48} | {1e3 * t_closed:9.2f} | {1e3 * t_exact:9.2f} | {t_exact / t_closed:6.2f}",
        flush=True,
    )


def general_path(shape, classes: int, batches, repeats: int, chunk: int | None, rng) -> None:
    """Nested jvp vs Taylor mode on the general path, ms/image per batch."""
    model = head_only_model(shape, classes, "softmax")
    label = "x".join(map(str, shape))
    print(
        f"\ngeneral path (path='general'), {label} -> {classes} softmax, "
        f"{int(np.prod(shape))} directions, chunk {chunk or 'auto'}"
    )
    print(
        f"{'batch':>5} | {'nested ms/img':>13} | {'taylor ms/img':>13} | {'speed-up':>8} | "
        f"{'compile s (n/t)':>15} | map diff max/median"
    )
    for batch in batches:
        maps = jnp.asarray(rng.uniform(size=(batch, *shape)), jnp.float32)
        results = {}
        for method in ("nested_jvp", "taylor"):
            step = map_step(
                derivatives="exact", path="general", derivative_method=method, chunk_size=chunk
            )
            results[method] = median_seconds(lambda s=step, m=maps: s(model, m), repeats)
        (n_out, n_compile, n_run), (t_out, t_compile, t_run) = results.values()
        diff = jnp.max(jnp.abs(n_out - t_out), axis=(1, 2))
        print(
            f"{batch:>5} | {1e3 * n_run / batch:13.3f} | {1e3 * t_run / batch:13.3f} | "
            f"{n_run / t_run:7.1f}x | {n_compile:7.1f}/{t_compile:<7.1f} | "
            f"{float(jnp.max(diff)):.1e}/{float(jnp.median(diff)):.1e}{peak_memory()}",
            flush=True,
        )


def parse_shape(text: str) -> tuple[int, int, int]:
    h, w, k = (int(part) for part in text.lower().split("x"))
    return h, w, k


def main() -> None:
    on_gpu = jax.default_backend() == "gpu"
    parser = argparse.ArgumentParser(description="exact Grad-CAM++ timings")
    parser.add_argument("--only", choices=("all", "head", "phantom", "general"), default="all")
    parser.add_argument("--quick", action="store_true", help="tiny sizes (a smoke test)")
    parser.add_argument("--batch", type=int, default=64 if on_gpu else 16, help="head, phantom")
    parser.add_argument("--repeats", type=int, default=10 if on_gpu else 3)
    parser.add_argument("--general-shape", type=parse_shape, default=None, help="e.g. 7x7x2048")
    parser.add_argument("--classes", type=int, default=None, help="classes of the general head")
    parser.add_argument(
        "--general-batches", default=None, help="comma-separated batches, e.g. 1,8,64"
    )
    parser.add_argument("--chunk", type=int, default=None, help="directions per chunk (auto)")
    args = parser.parse_args()
    if args.quick:
        head_shape, head_classes, image_size = (4, 4, 32), 10, 32
        general_shape, classes, batches = (4, 4, 16), 10, [1, 4]
        args.batch, args.repeats = 4, 2
    else:
        head_shape, head_classes, image_size = (7, 7, 2048), 1000, 128
        general_shape, classes = ((7, 7, 2048), 1000) if on_gpu else ((8, 8, 256), 100)
        batches = [1, 8, 64] if on_gpu else [1, 8, 32]
    general_shape = args.general_shape or general_shape
    classes = args.classes or classes
    if args.general_batches:
        batches = [int(b) for b in args.general_batches.split(",")]

    print(
        f"backend {jax.default_backend()}, device {jax.devices()[0].device_kind}, "
        f"jax {jax.__version__}"
    )
    rng = np.random.default_rng(0)
    batch = args.batch
    with jax.default_matmul_precision("highest"):
        if args.only in ("all", "head", "phantom"):
            print(f"{'case':<48} | closed ms | exact ms  | ratio")
        if args.only in ("all", "head"):
            label = "x".join(map(str, head_shape))
            for score in ("softmax",) if args.quick else ("exp", "softmax"):
                model = head_only_model(head_shape, head_classes, score)
                maps = jnp.asarray(rng.uniform(size=(batch, *head_shape)), jnp.float32)
                name = f"head {label} -> {head_classes} {score}, batch {batch}"
                compare(name, model, maps, args.repeats)
        if args.only in ("all", "phantom"):
            phantom = jaxcam.create_model("small_cnn", num_classes=2, output="relu")
            variables = phantom.init(jax.random.key(0), jnp.zeros((1, image_size, image_size, 1)))
            images = jnp.asarray(rng.uniform(size=(batch, image_size, image_size, 1)), jnp.float32)
            for score in ("softmax",) if args.quick else ("exp", "softmax"):
                compare(
                    f"phantom {image_size}x{image_size} {score} score, batch {batch}",
                    bind(phantom, variables),
                    images,
                    args.repeats,
                    score=score,
                )
        if args.only in ("all", "general"):
            general_path(general_shape, classes, batches, args.repeats, args.chunk, rng)


if __name__ == "__main__":
    main()
