"""Time per image of every saliency method, relative to Grad-CAM.

Command::

    python benchmarks/bench_methods.py                 # small_cnn 128x128x1, batch 16 (CPU-sized)
    python benchmarks/bench_methods.py --quick         # tiny smoke run (small_cnn 32x32, batch 4)
    python benchmarks/bench_methods.py --model resnet18 --size 64 --channels 3 --classes 10
    python benchmarks/bench_methods.py --model resnet18 --size 64 --layer backbone/stage3_block2

For each method it times the library's jitted batch step (``saliency_step``: features,
the method's map, Lanczos upsampling and normalisation for a batch, vmapped once) on a
device-resident batch of uniform random images with random weights: the first call
(compile) and the fastest of ``--repeats`` calls, each ended by ``block_until_ready``.
The forward alone (``jax.vmap(model.scores)``, jitted) is timed the same way. Prints one
row per method: ms per image, the ratio to Grad-CAM's step, the ratio to one forward,
and the compile time; ``--json PATH`` writes every number. ``--layer`` explains a named
layer of the backbone (:func:`jaxcam.models.split_at`; CAM needs the backbone's output
and is skipped there).
"""

from __future__ import annotations

import argparse
import json
import time
from collections.abc import Callable, Sequence
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

import jaxcam
from jaxcam.derivatives import derivatives_along
from jaxcam.models import default_input_size, split_at
from jaxcam.saliency import saliency_step
from jaxcam.saliency.scores import class_score

# name -> (registered method, options); Grad-CAM is the reference row.
METHODS: dict[str, tuple[str, dict[str, Any]]] = {
    "cam": ("cam", {}),
    "grad_cam": ("grad_cam", {}),
    "grad_cam_plus_plus": ("grad_cam_plus_plus", {"derivatives": "exact"}),
    "grad_cam_plus_plus_closed": ("grad_cam_plus_plus", {"derivatives": "closed_form"}),
    # The exact derivatives forced through the general path (Taylor mode / nested jvp).
    "grad_cam_plus_plus_general": (
        "grad_cam_plus_plus",
        {"derivatives": "exact", "path": "general"},
    ),
    "grad_cam_plus_plus_nested": (
        "grad_cam_plus_plus",
        {"derivatives": "exact", "path": "general", "derivative_method": "nested_jvp"},
    ),
    "hires_cam": ("hires_cam", {}),
    "xgrad_cam": ("xgrad_cam", {}),
    "layer_cam": ("layer_cam", {}),
    "score_cam": ("score_cam", {}),
    "ablation_cam": ("ablation_cam", {}),
    "eigen_cam": ("eigen_cam", {}),
}
REFERENCE = "grad_cam"
#: The rows run unless --methods names others (the forced-path rows cost h*w*K passes).
DEFAULT_METHODS: tuple[str, ...] = tuple(
    name
    for name in METHODS
    if name not in ("grad_cam_plus_plus_general", "grad_cam_plus_plus_nested")
)


def timed(fn: Callable[[], Any]) -> float:
    start = time.perf_counter()
    jax.block_until_ready(fn())
    return time.perf_counter() - start


def best_seconds(fn: Callable[[], Any], repeats: int) -> float:
    """Fastest of ``repeats`` calls: robust to other processes sharing the machine."""
    return min(timed(fn) for _ in range(max(1, repeats)))


def build_model(args: argparse.Namespace) -> jaxcam.SplitModel:
    module = jaxcam.create_model(
        args.model, num_classes=args.classes, output=args.output, in_channels=args.channels
    )
    shape = (1, args.size, args.size, args.channels)
    variables = jax.jit(module.init)(jax.random.key(0), jnp.zeros(shape, jnp.float32))
    return jaxcam.bind(module, variables)


def run(args: argparse.Namespace) -> dict[str, Any]:
    model = build_model(args)
    target = split_at(model, args.layer)
    rng = np.random.default_rng(0)
    images = jnp.asarray(
        rng.random((args.batch, args.size, args.size, args.channels), dtype=np.float32)
    )
    classes = jnp.zeros((args.batch,), jnp.int32)
    feature_shape = jax.eval_shape(target.features, images[0]).shape
    forward = jax.jit(lambda m, x: jax.vmap(m.scores)(x))
    record: dict[str, Any] = {
        "device": jax.devices()[0].device_kind,
        "backend": jax.default_backend(),
        "jax": jax.__version__,
        "model": args.model,
        "layer": args.layer,
        "feature_map": list(feature_shape),
        "image": [args.size, args.size, args.channels],
        "classes": args.classes,
        "output": args.output,
        "batch": args.batch,
        "repeats": args.repeats,
        "forward_compile_s": timed(lambda: forward(model, images)),
        "forward_ms_per_image": 1e3
        * best_seconds(lambda: forward(model, images), args.repeats)
        / args.batch,
        "methods": {},
    }
    for name in args.methods:
        method, options = METHODS[name]
        if method == "cam" and target is not model:
            record["methods"][name] = {"skipped": "CAM needs the backbone's output"}
            continue
        static = tuple(sorted(options.items()))

        def step(method: str = method, static: tuple = static) -> Any:
            return saliency_step(target, images, classes, method, static)

        compile_s = timed(step)
        seconds = best_seconds(step, args.repeats)
        record["methods"][name] = {
            "ms_per_image": 1e3 * seconds / args.batch,
            "compile_s": compile_s,
        }
        print(f"  done: {name} ({1e3 * seconds / args.batch:.2f} ms/image)", flush=True)
    if args.directions:
        record["directions"] = per_direction(target, images[0], args)
    reference = record["methods"].get(REFERENCE, {}).get("ms_per_image")
    for row in record["methods"].values():
        if "ms_per_image" in row:
            row["x_grad_cam"] = row["ms_per_image"] / reference if reference else None
            row["x_forward"] = row["ms_per_image"] / record["forward_ms_per_image"]
    return record


def per_direction(target: Any, image: jax.Array, args: argparse.Namespace) -> dict[str, Any]:
    """Exact pure derivatives of the class score along the first ``args.directions`` basis
    directions of A for one image, by Taylor mode and by nested jvp (the general path's
    two methods): seconds per direction, and the whole map's estimate (times h*w*K).

    ``h(y) = score(logits(A + pad(y)))`` for y with N elements: its derivatives along the N
    basis directions of y are those along the first N of A, exactly.
    """
    target = target.for_image(image)
    feature_map = target.features(image)
    size = feature_map.size
    count = min(args.directions, size)
    output = args.output

    # The model and A are arguments of the jitted function (not constants baked into it).
    def along(model: Any, a: jax.Array, y: jax.Array, method: str) -> tuple[jax.Array, ...]:
        score = class_score(output, 0, model.logits(a))

        def h(z: jax.Array) -> jax.Array:
            moved = a.reshape(-1) + jnp.pad(z, (0, size - count))
            return score(model.logits(moved.reshape(a.shape)))

        return derivatives_along(h, y, None, 3, method=method)

    step = jax.jit(along, static_argnames="method")
    zeros = jnp.zeros((count,), feature_map.dtype)
    out: dict[str, Any] = {"directions": count, "of": size}
    for method in ("taylor", "nested_jvp"):

        def call(m: str = method) -> tuple[jax.Array, ...]:
            return step(target, feature_map, zeros, method=m)

        compile_s = timed(call)
        seconds = best_seconds(call, args.repeats)
        out[method] = {
            "ms_per_direction": 1e3 * seconds / count,
            "map_estimate_s": seconds / count * size,
            "compile_s": compile_s,
        }
        print(f"  done: {method} along {count} directions ({seconds:.2f} s)", flush=True)
    out["nested_over_taylor"] = (
        out["nested_jvp"]["ms_per_direction"] / out["taylor"]["ms_per_direction"]
    )
    return out


def table(record: dict[str, Any]) -> str:
    header = ("method", "ms/image", "x Grad-CAM", "x forward", "compile s")
    rows = [header]
    for name, row in record["methods"].items():
        if "skipped" in row:
            rows.append((name, "skipped", row["skipped"], "", ""))
            continue
        ratio = row["x_grad_cam"]
        rows.append(
            (
                name,
                f"{row['ms_per_image']:.2f}",
                "n/a" if ratio is None else f"{ratio:.2f}",
                f"{row['x_forward']:.1f}",
                f"{row['compile_s']:.1f}",
            )
        )
    widths = [max(len(r[i]) for r in rows) for i in range(len(header))]
    lines = [" | ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)) for r in rows]
    lines.insert(1, "-+-".join("-" * w for w in widths))
    return "\n".join(lines)


def parse(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description="Time per image of every saliency method")
    parser.add_argument("--quick", action="store_true", help="tiny smoke run")
    parser.add_argument("--model", default="small_cnn", choices=jaxcam.model_names())
    parser.add_argument("--layer", default="backbone", help="layer to explain (split_at)")
    parser.add_argument("--size", type=int, help="image side (default: the model's)")
    parser.add_argument("--channels", type=int, help="default 1 for small_cnn, else 3")
    parser.add_argument("--classes", type=int, help="default 2 for small_cnn, else 1000")
    parser.add_argument("--output", default="softmax", help="relu, softmax, linear or exp")
    parser.add_argument("--batch", type=int, help="images per step (default 16, --quick 4)")
    parser.add_argument(
        "--methods",
        default=",".join(DEFAULT_METHODS),
        help=f"comma-separated, from {', '.join(METHODS)}",
    )
    parser.add_argument(
        "--directions",
        type=int,
        default=0,
        help="also time the exact derivatives along the first N basis directions of A, "
        "Taylor mode against nested jvp (per direction; 0: skip)",
    )
    parser.add_argument("--repeats", type=int, help="timed calls, best of (default 5)")
    parser.add_argument("--json", help="write the numbers to this path")
    args = parser.parse_args(argv)
    args.methods = [m.strip() for m in args.methods.split(",") if m.strip()]
    unknown = [m for m in args.methods if m not in METHODS]
    if unknown or not args.methods:
        parser.error(f"unknown --methods {unknown}; choose from {', '.join(METHODS)}")
    small = args.model == "small_cnn"
    args.size = args.size or (32 if args.quick else default_input_size(args.model))
    args.channels = args.channels or (1 if small else 3)
    args.classes = args.classes or (2 if small else 1000)
    args.batch = args.batch or (4 if args.quick else 16)
    args.repeats = args.repeats or (2 if args.quick else 5)
    return args


def main(argv: Sequence[str] | None = None) -> dict[str, Any]:
    start = time.perf_counter()
    args = parse(argv)
    print(
        f"device {jax.devices()[0].device_kind} ({jax.default_backend()}), jax {jax.__version__}",
        flush=True,
    )
    record = run(args)
    print(
        f"{args.model} {args.size}x{args.size}x{args.channels}, {args.classes} classes, "
        f"{args.output}, batch {args.batch}; layer {args.layer}: A {tuple(record['feature_map'])}; "
        f"forward {record['forward_ms_per_image']:.2f} ms/image"
    )
    print(table(record))
    if "directions" in record:
        d = record["directions"]
        print(
            f"exact derivatives along {d['directions']} of {d['of']} directions: "
            f"taylor {d['taylor']['ms_per_direction']:.3f} ms/direction "
            f"(whole map ~{d['taylor']['map_estimate_s']:.1f} s), nested jvp "
            f"{d['nested_jvp']['ms_per_direction']:.3f} ms/direction "
            f"(~{d['nested_jvp']['map_estimate_s']:.1f} s): nested / taylor "
            f"{d['nested_over_taylor']:.1f}x"
        )
    record["wall_s"] = time.perf_counter() - start
    print(f"wall {record['wall_s']:.1f} s", flush=True)
    if args.json:
        with open(args.json, "w") as f:
            json.dump(record, f, indent=2)
    return record


if __name__ == "__main__":
    main()
