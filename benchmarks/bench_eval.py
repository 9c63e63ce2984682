"""Table-1 evaluation throughput: the forward floor, the jitted step and ``jaxcam.evaluate``.

Command::

    python benchmarks/bench_eval.py                # small_cnn 128x128x1, batch 32, CPU-sized
    python benchmarks/bench_eval.py --quick        # tiny smoke run (small_cnn 32x32, batch 8)
    python benchmarks/bench_eval.py --preset gpu   # ResNet-50 224x224x3, 1000 classes, batch 64
    python benchmarks/bench_eval.py --preset cpu   # ResNet-18 224x224x3, 10 classes, batch 16
    python benchmarks/bench_eval.py --model resnet18 --batch 16 --curve --json out.json
    python benchmarks/bench_eval.py --imputers --batch 8 --images 32   # BAD fills vs black

Everything runs in one process on the default device, with random weights and
uniform random images. For each configuration it measures:

* ``forward``: the jitted ``jax.vmap(model.scores)`` on a device-resident batch (the
  fastest of ``--repeats`` calls before the other measurements and as many after), and the
  **floor** of Table-1 work, ``forward / (1 + M * (1 + J))``: one forward per image plus,
  per method (M), one explanation-image forward and one black-image forward per alpha
  scored (J = 1 at a fixed alpha, the whole grid with ``--curve``).
* ``step``: ``engine.step(model, sums, batch)`` of the config ``evaluate`` builds, on a
  device-resident batch dict (image, label, index, valid, as ``Engine.run`` builds it),
  the fastest of ``--repeats`` calls, each ended by ``block_until_ready`` (the forward:
  likewise). The engine comes from ``jaxcam.evaluation.engine_for`` (the cache
  ``evaluate`` takes its engine from), its config from ``jaxcam.evaluation.step_config``.
* ``run``: ``Engine.run`` of that already-compiled engine over the host arrays
  (streaming, re-chunking, host-to-device copies; no compilation).
* ``evaluate``: ``jaxcam.evaluate(model, (images, labels), methods, ...)`` on host numpy
  arrays of ``--images`` images, end to end. A first call on one batch warms up; the
  second call is timed (the fastest of ``--evaluate-repeats`` calls, default 1, on a
  shared machine). The compilations seen during each call (``jax.monitoring``)
  are reported: an ``evaluate`` that builds a new ``Engine`` (a new ``jax.jit``) per call
  recompiles its step every call, and then the rate net of that is printed too.

Prints the device, then one row per configuration::

    config | forward img/s | floor img/s | step img/s (x floor) | run img/s (x floor) | ...

then per configuration the compile times (first calls), what the timed ``evaluate``
call compiled again and any error (a failing ``evaluate`` is timed up to the error and
marked FAILED; the other measurements still run), and the wall time.

``--preset gpu`` runs two configurations: (a) CAM, Grad-CAM, exact Grad-CAM++ with a
softmax output, (b) CAM, Grad-CAM, closed-form Grad-CAM++ with a ReLU output, each at a
fixed alpha without the curve.
``--preset cpu`` runs the CPU work of one alpha: ResNet-18 224x224x3, 10 classes, batch
16, Grad-CAM, exact Grad-CAM++ and HiResCAM, AD and BAD without the curve.
``--full-sort`` turns off the top-k selection that replaces the full sort of each map at
one alpha (:mod:`jaxcam.metrics.selection`): the earlier path, for comparison.
``--json PATH`` writes every number. Needs jax, flax, numpy (not ``jaxcam.data``).

``--imputers`` instead times BAD's other fills (:func:`imputer_costs`): ``evaluate`` with
``metrics=[average_drop, X]`` against ``[average_drop, black_average_drop]`` on the same
data (ms/img and the ratio to black), and each fill's perturbation alone (jitted, vmapped
over a batch) against one forward of the model.
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import json
import time
from collections.abc import Callable, Iterator, Sequence
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

import jaxcam
from jaxcam.batching import array_batches
from jaxcam.evaluation import (
    Engine,
    StepConfig,
    engine_for,
    evaluation_from_sums,
    step_config,
    zero_evaluation_sums,
)
from jaxcam.metrics import ALPHA_GRID, get_metric, perturbation_key, pixel_ranks, selection
from jaxcam.models import SplitModel, default_input_size

# --methods name -> (display name, evaluate's (registered method, options)).
METHODS: dict[str, tuple[str, tuple[str, dict[str, Any]]]] = {
    "cam": ("CAM", ("cam", {})),
    "grad_cam": ("Grad-CAM", ("grad_cam", {})),
    "grad_cam_plus_plus": ("Grad-CAM++", ("grad_cam_plus_plus", {"derivatives": "exact"})),
    "grad_cam_plus_plus_closed": (
        "Grad-CAM++ closed",
        ("grad_cam_plus_plus", {"derivatives": "closed_form"}),
    ),
    "hires_cam": ("HiResCAM", ("hires_cam", {})),
}
SHORT_NAMES = {
    "cam": "cam",
    "grad_cam": "gcam",
    "grad_cam_plus_plus": "gcam++",
    "grad_cam_plus_plus_closed": "gcam++cf",
    "hires_cam": "hires",
}

# jax.monitoring events of one compilation: tracing, lowering, XLA compile.
COMPILE_EVENTS = (
    "/jax/core/compile/jaxpr_trace_duration",
    "/jax/core/compile/jaxpr_to_mlir_module_duration",
    "/jax/core/compile/backend_compile_duration",
)
BACKEND_COMPILE = COMPILE_EVENTS[-1]


@dataclasses.dataclass(frozen=True)
class Case:
    """One benchmarked configuration."""

    label: str
    model: str
    size: int
    channels: int
    classes: int
    batch: int
    methods: tuple[str, ...]
    output: str
    alpha: float
    curve: bool
    images: int
    repeats: int
    masked_batch: int
    evaluate_repeats: int = 1

    @property
    def alphas(self) -> tuple[float, ...]:
        """The alphas a pass scores, as ``evaluate`` builds them for a given alpha."""
        return tuple(sorted({*ALPHA_GRID, self.alpha})) if self.curve else (self.alpha,)

    @property
    def forwards_per_image(self) -> int:
        """Forwards per image: the image, then per method E and one B per alpha."""
        return 1 + len(self.methods) * (1 + len(self.alphas))

    def describe(self) -> str:
        methods = ",".join(SHORT_NAMES[m] for m in self.methods)
        alpha = f"curve({len(self.alphas)})" if self.curve else f"a={self.alpha:g}"
        return (
            f"{self.label}{self.model} {self.size}x{self.size}x{self.channels} "
            f"C{self.classes} B{self.batch} {self.output} {methods} {alpha}"
        )


class CompileLog:
    """Tracing, lowering and XLA compile durations reported by ``jax.monitoring``."""

    def __init__(self) -> None:
        self.events: list[tuple[str, str, float]] | None = None
        jax.monitoring.register_event_duration_secs_listener(self._listen)

    def _listen(self, event: str, duration: float, **kwargs: Any) -> None:
        if self.events is not None and event in COMPILE_EVENTS:
            self.events.append((event, str(kwargs.get("fun_name", "?")), float(duration)))

    @contextlib.contextmanager
    def watch(self) -> Iterator[list[tuple[str, str, float]]]:
        """Collect the events of the block into the yielded list."""
        self.events = events = []
        try:
            yield events
        finally:
            self.events = None


def compile_summary(events: Sequence[tuple[str, str, float]]) -> dict[str, Any]:
    """Backend compilations (count, names) and total compile overhead in seconds."""
    backend = [(name, seconds) for event, name, seconds in events if event == BACKEND_COMPILE]
    return {
        "backend_compiles": len(backend),
        "backend_compile_s": sum(seconds for _, seconds in backend),
        "overhead_s": sum(seconds for _, _, seconds in events),
        "largest": sorted(backend, key=lambda item: -item[1])[:3],
    }


def timed(fn: Callable[[], Any]) -> tuple[Any, float]:
    start = time.perf_counter()
    out = jax.block_until_ready(fn())
    return out, time.perf_counter() - start


def attempt(fn: Callable[[], Any]) -> tuple[float, str | None]:
    """Seconds of ``fn()`` (up to the error if it raises) and the error, if any."""
    start = time.perf_counter()
    try:
        jax.block_until_ready(fn())
    except Exception as error:  # reported; the other measurements go on
        return time.perf_counter() - start, f"{type(error).__name__}: {error}"
    return time.perf_counter() - start, None


def best_seconds(fn: Callable[[], Any], repeats: int) -> float:
    """Fastest of ``repeats`` calls: robust to other processes sharing the machine."""
    return min(timed(fn)[1] for _ in range(max(1, repeats)))


_VARIABLES: dict[tuple[str, int, int, int], Any] = {}


def build_model(case: Case) -> SplitModel:
    """Random weights; configurations that differ only in the output share them."""
    module = jaxcam.create_model(
        case.model, num_classes=case.classes, output=case.output, in_channels=case.channels
    )
    key = (case.model, case.size, case.channels, case.classes)
    if key not in _VARIABLES:
        shape = (1, case.size, case.size, case.channels)
        _VARIABLES[key] = jax.jit(module.init)(jax.random.key(0), jnp.zeros(shape, jnp.float32))
    return jaxcam.bind(module, _VARIABLES[key])


def make_engine(config: StepConfig, batch: int) -> Engine:
    """The engine ``evaluate`` takes from its cache for this config, so compiles are shared."""
    return engine_for(config, batch, tuple(jax.devices()))


def case_config(case: Case, model: SplitModel) -> StepConfig:
    """The config ``evaluate`` builds for a given alpha (no search, predicted class)."""
    methods = {METHODS[m][0]: METHODS[m][1] for m in case.methods}
    return step_config(model, methods, case.alphas, masked_batch_size=case.masked_batch)


def rate(images: int, seconds: float) -> float:
    return images / seconds if seconds > 0 else float("nan")


def run_case(case: Case, log: CompileLog) -> dict[str, Any]:
    """Every measurement of one configuration (img/s, compile seconds)."""
    rng = np.random.default_rng(0)
    shape = (case.images, case.size, case.size, case.channels)
    images = rng.random(shape, dtype=np.float32)
    labels = rng.integers(0, case.classes, case.images).astype(np.int32)
    model = build_model(case)
    result: dict[str, Any] = {"config": case.describe(), **dataclasses.asdict(case)}
    result["alphas"] = list(case.alphas)
    result["forwards_per_image"] = case.forwards_per_image

    # 1. The forward floor.
    device_images = jax.device_put(images[: case.batch])
    forward = jax.jit(lambda m, x: jax.vmap(m.scores)(x))
    _, result["forward_compile_s"] = timed(lambda: forward(model, device_images))
    forward_s = best_seconds(lambda: forward(model, device_images), case.repeats)

    # 2. The jitted step on a device-resident batch.
    config = case_config(case, model)
    engine = make_engine(config, case.batch)
    traces = engine.traces
    host_batch = {
        "image": images[: engine.batch_size],
        "label": labels[: engine.batch_size],
        "index": np.arange(engine.batch_size, dtype=np.int32),
        "valid": np.ones(engine.batch_size, bool),
    }
    batch = jax.device_put(host_batch, engine.data_sharding)
    sums = jax.device_put(zero_evaluation_sums(config), engine.replicated)
    placed = jax.device_put(model, engine.replicated)
    _, result["step_compile_s"] = timed(lambda: engine.step(placed, sums, batch))
    step_s = best_seconds(lambda: engine.step(placed, sums, batch), case.repeats)
    result["step_img_s"] = rate(engine.batch_size, step_s)

    # 3a. The warm engine streaming the host arrays (no compile), and the results build.
    arrays = {"image": images, "label": labels}
    run_sums, run_s = timed(lambda: engine.run(model, array_batches(arrays, engine.batch_size)))
    result["run_img_s"] = rate(case.images, run_s)
    names = [METHODS[m][0] for m in case.methods]
    errors: dict[str, str] = {}
    result["errors"] = errors
    result["results_build_s"], error = attempt(
        lambda: evaluation_from_sums(
            run_sums, names, case.alphas, case.alpha, {}, config.ties, config.tie_seed
        )
    )
    if error:
        errors["results build"] = error

    # 3b. The user-facing call: a first call on one batch compiles, the second is timed.
    methods = {METHODS[m][0]: METHODS[m][1] for m in case.methods}

    def call(count: int) -> jaxcam.Evaluation:
        return jaxcam.evaluate(
            model,
            (images[:count], labels[:count]),
            methods,
            alpha=case.alpha,
            curve=case.curve,
            batch_size=case.batch,
            masked_batch_size=case.masked_batch,
        )

    with log.watch() as first_events:
        result["evaluate_first_call_s"], error = attempt(lambda: call(case.batch))
    if error:
        errors["evaluate first call"] = error
    with log.watch() as events:
        evaluate_s, error = attempt(lambda: call(case.images))
    for _ in range(case.evaluate_repeats - 1):  # the compiles reported are the first call's
        if error is None:
            seconds, error = attempt(lambda: call(case.images))
            evaluate_s = min(evaluate_s, seconds)
    if error:
        errors["evaluate timed call"] = error
    result["evaluate_failed"] = error is not None
    first, second = compile_summary(first_events), compile_summary(events)
    result["benchmark_engine_traces"] = engine.traces - traces  # 1: evaluate reused its step
    result["evaluate_first_call_compiles"] = first
    result["evaluate_timed_call_compiles"] = second
    result["evaluate_s"] = evaluate_s
    result["evaluate_img_s"] = rate(case.images, evaluate_s)
    result["evaluate_net_img_s"] = rate(case.images, evaluate_s - second["overhead_s"])
    result["recompiles_per_call"] = second["backend_compile_s"] > 0.1 * evaluate_s

    # 4. The forward again: on a shared machine the floor is the best of before and after.
    forward_s = min(forward_s, best_seconds(lambda: forward(model, device_images), case.repeats))
    result["forward_img_s"] = rate(case.batch, forward_s)
    result["floor_img_s"] = result["forward_img_s"] / case.forwards_per_image
    for key in ("step", "run", "evaluate", "evaluate_net"):
        result[f"{key}_x_floor"] = result[f"{key}_img_s"] / result["floor_img_s"]
    return result


def table(results: Sequence[dict[str, Any]]) -> str:
    header = (
        "config",
        "forward img/s",
        "floor img/s",
        "step img/s (x floor)",
        "run img/s (x floor)",
        "evaluate img/s (x floor)",
    )
    rows = [header]
    for r in results:
        rows.append(
            (
                r["config"],
                f"{r['forward_img_s']:.1f}",
                f"{r['floor_img_s']:.1f}",
                f"{r['step_img_s']:.1f} ({r['step_x_floor']:.2f})",
                f"{r['run_img_s']:.1f} ({r['run_x_floor']:.2f})",
                f"{r['evaluate_img_s']:.1f} ({r['evaluate_x_floor']:.2f})"
                + (" FAILED" if r["evaluate_failed"] else ""),
            )
        )
    widths = [max(len(row[i]) for row in rows) for i in range(len(header))]
    lines = [" | ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)) for row in rows]
    lines.insert(1, "-+-".join("-" * w for w in widths))
    return "\n".join(lines)


def details(r: dict[str, Any]) -> str:
    first, second = r["evaluate_first_call_compiles"], r["evaluate_timed_call_compiles"]
    largest = ", ".join(f"{name} {seconds:.1f} s" for name, seconds in second["largest"])
    verdict = (
        f"RECOMPILED ({second['backend_compiles']} XLA compile(s): {largest}); "
        f"net of {second['overhead_s']:.1f} s trace+lower+compile: "
        f"{r['evaluate_net_img_s']:.1f} img/s ({r['evaluate_net_x_floor']:.2f} x floor)"
        if r["recompiles_per_call"]
        else f"no step recompile ({second['backend_compiles']} small compile(s), "
        f"{second['overhead_s']:.2f} s)"
    )
    return (
        f"{r['config']}: {r['forwards_per_image']} forwards/image; step engine shared with "
        "evaluate (engine_for), "
        f"traced {r['benchmark_engine_traces']}x; first calls (s): "
        f"forward {r['forward_compile_s']:.1f}, step {r['step_compile_s']:.1f}, "
        f"evaluate {r['evaluate_first_call_s']:.1f} ({first['backend_compiles']} XLA "
        f"compile(s), {first['backend_compile_s']:.1f} s); results build "
        f"{1e3 * r['results_build_s']:.0f} ms\n"
        f"  timed evaluate call ({r['images']} images, {r['evaluate_s']:.2f} s): {verdict}"
        + "".join(f"\n  ERROR in {where}: {error}" for where, error in r["errors"].items())
    )


#: BAD's fills other than black, timed by :func:`imputer_costs`.
IMPUTERS: tuple[str, ...] = (
    "blurred_average_drop",
    "mean_average_drop",
    "noisy_linear_average_drop",
    "counterfactual_average_drop",
)


def imputer_costs(case: Case, imputers: Sequence[str] = IMPUTERS) -> list[dict[str, Any]]:
    """ms/img of each BAD fill, relative to black, on ``case``'s model and random data.

    Per fill X (and black): ``evaluate`` with ``metrics=[average_drop, X]`` over
    ``case.images`` images (after a call on one batch that compiles and one untimed call),
    and X's perturbation alone: ``jax.vmap`` of its per-image function over one batch at
    ``case.alpha`` (maps: random smooth fields), jitted; next to it one jitted forward of
    the batch. Each is the fastest of ``case.repeats`` calls, timed round robin. The data
    carry a random ``twin``.
    """
    rng = np.random.default_rng(0)
    shape = (case.images, case.size, case.size, case.channels)
    data = {
        "image": rng.random(shape, dtype=np.float32),
        "label": rng.integers(0, case.classes, case.images).astype(np.int32),
        "twin": rng.random(shape, dtype=np.float32),
    }
    model = build_model(case)
    methods = {METHODS[m][0]: METHODS[m][1] for m in case.methods}

    def call(metrics: tuple[str, ...], count: int) -> jaxcam.Evaluation:
        return jaxcam.evaluate(
            model,
            {k: v[:count] for k, v in data.items()},
            methods,
            metrics=metrics,
            alpha=case.alpha,
            curve=case.curve,
            batch_size=case.batch,
            masked_batch_size=case.masked_batch,
        )

    batch = {k: jnp.asarray(v[: case.batch]) for k, v in data.items()}
    maps = jax.vmap(lambda k: jaxcam.metrics.smooth_random_field(k, (case.size, case.size)))(
        jax.random.split(jax.random.key(1), case.batch)
    )
    ranks = jax.vmap(pixel_ranks)(maps)
    keys = jax.vmap(lambda i: perturbation_key(0, i))(jnp.arange(case.batch))
    num_kept = round(case.alpha * case.size * case.size)
    forward = jax.jit(lambda m, x: jax.vmap(m.scores)(x))
    timed(lambda: forward(model, batch["image"]))

    names = ("black_average_drop", *imputers)
    evaluations: dict[str, Callable[[], Any]] = {}
    alone: dict[str, Callable[[], Any]] = {}
    for name in names:
        metrics = ("average_drop", name)
        timed(lambda metrics=metrics: call(metrics, case.batch))  # compile
        timed(lambda metrics=metrics: call(metrics, case.images))  # first-call costs
        evaluations[name] = lambda metrics=metrics: call(metrics, case.images)
        perturb = jax.jit(
            jax.vmap(get_metric(name).perturb, in_axes=(0, 0, 0, None, 0, 0)),
            static_argnums=3,
        )
        alone[name] = lambda perturb=perturb: perturb(
            batch["image"], maps, ranks, num_kept, {"twin": batch["twin"]}, keys
        )
        timed(alone[name])
    # Round robin, fastest of the repeats: a load that changes during the run (a shared
    # machine) then shifts every metric alike.
    seconds: dict[str, list[float]] = {name: [] for name in names}
    perturb_seconds: dict[str, list[float]] = {name: [] for name in names}
    forward_seconds = []
    for _ in range(max(1, case.repeats)):
        forward_seconds.append(timed(lambda: forward(model, batch["image"]))[1])
        for name in names:
            seconds[name].append(timed(evaluations[name])[1])
            perturb_seconds[name].append(timed(alone[name])[1])
    rows = [
        {
            "metric": name,
            "label": get_metric(name).label,
            "evaluate_ms_per_img": 1e3 * min(seconds[name]) / case.images,
            "perturb_ms_per_img": 1e3 * min(perturb_seconds[name]) / case.batch,
            "forward_ms_per_img": 1e3 * min(forward_seconds) / case.batch,
        }
        for name in names
    ]
    black = rows[0]
    for row in rows:
        row["evaluate_x_black"] = row["evaluate_ms_per_img"] / black["evaluate_ms_per_img"]
        row["perturb_x_forward"] = row["perturb_ms_per_img"] / row["forward_ms_per_img"]
    return rows


def imputer_table(case: Case, rows: Sequence[dict[str, Any]]) -> str:
    header = ("metric", "evaluate ms/img (x black)", "perturb ms/img (x forward)")
    forward = rows[0]["forward_ms_per_img"]
    lines = [f"{case.describe()}: evaluate with metrics [AD, X]; forward {forward:.2f} ms/img"]
    table_rows = [header] + [
        (
            f"{r['label']} ({r['metric']})",
            f"{r['evaluate_ms_per_img']:.2f} ({r['evaluate_x_black']:.2f})",
            f"{r['perturb_ms_per_img']:.3f} ({r['perturb_x_forward']:.2f})",
        )
        for r in rows
    ]
    widths = [max(len(row[i]) for row in table_rows) for i in range(len(header))]
    lines += [
        " | ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)) for row in table_rows
    ]
    lines.insert(2, "-+-".join("-" * w for w in widths))
    return "\n".join(lines)


def parse(argv: Sequence[str] | None) -> tuple[argparse.Namespace, list[Case]]:
    parser = argparse.ArgumentParser(description="Table-1 evaluation throughput vs the floor")
    on_gpu = jax.default_backend() == "gpu"
    parser.add_argument(
        "--preset",
        choices=("gpu", "cpu"),
        help="gpu: ResNet-50, two configurations; cpu: ResNet-18, 10 classes, batch 16",
    )
    parser.add_argument("--quick", action="store_true", help="tiny smoke run")
    parser.add_argument("--model", default="small_cnn", choices=jaxcam.model_names())
    parser.add_argument("--size", type=int, help="image side (default: the model's)")
    parser.add_argument("--channels", type=int, help="default 1 for small_cnn, else 3")
    parser.add_argument("--classes", type=int, help="default 2 for small_cnn, else 1000")
    parser.add_argument("--batch", type=int, help="images per step (default 32, --quick 8)")
    parser.add_argument("--methods", default="cam,grad_cam,grad_cam_plus_plus_closed")
    parser.add_argument("--output", default="relu", help="relu, softmax, linear or exp")
    parser.add_argument("--alpha", type=float, default=0.5)
    parser.add_argument("--curve", action="store_true", help="score the whole alpha grid")
    parser.add_argument("--repeats", type=int, help="timed step/forward calls (best of)")
    parser.add_argument("--images", type=int, help="images of the evaluate call (16 batches)")
    parser.add_argument("--masked-batch", type=int, default=512, help="masked images per call")
    parser.add_argument(
        "--evaluate-repeats", type=int, default=1, help="timed evaluate calls (best of)"
    )
    parser.add_argument("--json", help="write the numbers to this path")
    parser.add_argument(
        "--full-sort", action="store_true", help="rank by the full sort even at one alpha"
    )
    parser.add_argument(
        "--imputers", action="store_true", help="time BAD's other fills against black instead"
    )
    args = parser.parse_args(argv)
    if args.preset and args.quick:
        parser.error("--preset and --quick exclude each other")
    methods = tuple(m.strip() for m in args.methods.split(",") if m.strip())
    unknown = [m for m in methods if m not in METHODS]
    if unknown or not methods:
        parser.error(f"unknown --methods {unknown}; choose from {', '.join(METHODS)}")
    repeats = args.repeats or (2 if args.quick else 10 if on_gpu else 5)

    def case(label: str, **fields: Any) -> Case:
        batch = fields.get("batch", args.batch or (8 if args.quick else 32))
        default_images = (4 if args.quick else 16) * batch
        values: dict[str, Any] = {
            "model": args.model,
            "size": args.size,
            "channels": args.channels,
            "classes": args.classes,
            "batch": batch,
            "methods": methods,
            "output": args.output,
            "alpha": args.alpha,
            "curve": args.curve,
            "images": args.images or default_images,
            "repeats": repeats,
            "masked_batch": args.masked_batch,
            "evaluate_repeats": max(1, args.evaluate_repeats),
            **fields,
        }
        small = values["model"] == "small_cnn"
        values["size"] = values["size"] or default_input_size(values["model"])
        values["channels"] = values["channels"] or (1 if small else 3)
        values["classes"] = values["classes"] or (2 if small else 1000)
        return Case(label=label, **values)

    if args.preset == "gpu":
        resnet = {"model": "resnet50", "size": 224, "channels": 3, "classes": 1000, "batch": 64}
        rest = {**resnet, "alpha": args.alpha, "curve": False}
        cases = [
            case(
                "a) ", methods=("cam", "grad_cam", "grad_cam_plus_plus"), output="softmax", **rest
            ),
            case(
                "b) ",
                methods=("cam", "grad_cam", "grad_cam_plus_plus_closed"),
                output="relu",
                **rest,
            ),
        ]
    elif args.preset == "cpu":
        cases = [
            case(
                "",
                model="resnet18",
                size=224,
                channels=3,
                classes=10,
                batch=16,
                methods=("grad_cam", "grad_cam_plus_plus", "hires_cam"),
                output=args.output,
                alpha=args.alpha,
                curve=False,
            )
        ]
    elif args.quick:
        cases = [case("", size=args.size or 32)]
    else:
        cases = [case("")]
    return args, cases


@contextlib.contextmanager
def ranking_path(full_sort: bool) -> Iterator[None]:
    """The full sort (True) or the top-k selection at one alpha for the block; cached
    engines compiled the other way are dropped on the way in and out."""
    before = selection._ENABLED
    selection._ENABLED = not full_sort
    if selection._ENABLED != before:
        engine_for.cache_clear()
    try:
        yield
    finally:
        if selection._ENABLED != before:
            engine_for.cache_clear()
        selection._ENABLED = before


def main(argv: Sequence[str] | None = None) -> list[dict[str, Any]]:
    start = time.perf_counter()
    args, cases = parse(argv)
    device = jax.devices()[0]
    header = (
        f"device {device.device_kind} ({jax.default_backend()}, {jax.device_count()} device(s)), "
        f"jax {jax.__version__}, ranking at one alpha: "
        + ("full sort" if args.full_sort else "top-k selection")
    )
    print(header, flush=True)
    results = []
    with ranking_path(args.full_sort):
        if args.imputers:
            for case in cases:
                rows = imputer_costs(case)
                print(imputer_table(case, rows), flush=True)
                results.extend({"config": case.describe(), **row} for row in rows)
        else:
            log = CompileLog()
            for case in cases:
                results.append(run_case(case, log))
                done = time.perf_counter() - start
                print(f"  done: {case.describe()} ({done:.0f} s)", flush=True)
            print(table(results))
            for r in results:
                print(details(r))
    wall = time.perf_counter() - start
    print(f"wall {wall:.1f} s", flush=True)
    if args.json:
        record = {
            "device": device.device_kind,
            "backend": jax.default_backend(),
            "device_count": jax.device_count(),
            "jax": jax.__version__,
            "full_sort": args.full_sort,
            "wall_s": wall,
            "results": results,
        }
        with open(args.json, "w") as f:
            json.dump(record, f, indent=2, default=str)
    return results


if __name__ == "__main__":
    main()
