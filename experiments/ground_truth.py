"""Ground-truth study: do AD and BAD rank saliency maps the way the lesion masks do?

Command::

    python experiments/ground_truth.py                 # the full study (about 40 min, 2 CPUs)
    python experiments/ground_truth.py --quick         # a reduced run (about 1 min)

For every setting - phantom variant (v1, v2), training seed (0, 1, 2), occlusion-aware
training (off, p = 0.5) and, on v2 without occlusion, a shortcut confounder (p = 0.9) -
and each tie policy of BAD (random, smooth) it trains the
demo's model (small CNN, ReLU output), chooses BAD's alpha by the demo's rule (all test
images, CAM / Grad-CAM / Grad-CAM++) and scores, on the PNEUMONIA test images (class
PNEUMONIA explained), a *ladder* of maps of known quality built from each lesion mask
(:data:`jaxcam.ground_truth.LADDER_QUALITY`: ground truth 4; blurred 3; shifted, noisy
2; centre blob, uniform, noise 1; inverted 0) and the library's methods, with

* AD, BAD at the chosen alpha and the mean of BAD over the alpha curve;
* localisation scores against the mask: pointing game, energy inside the mask, and the
  share of the lesion that the black image keeps.

Kendall's tau-b between each metric's ranking of the ladder and the designed levels
says how well the metric knows a good map (1: perfectly, 0: not at all, < 0: backwards);
it is reported per setting, by lesion size (terciles of lesion area) and, with the
confounder, for a map of the shortcut marker. The methods scored next to the ladder are
the paper's three plus, by default, the library's cheap ones (HiResCAM, XGrad-CAM,
LayerCAM, Ablation-CAM, Eigen-CAM); ``--methods all`` adds Score-CAM (64 forwards per
image), ``--methods paper`` (the ``--quick`` default) keeps the paper's three. It prints
one summary line per setting, then the tables, and writes
``results/ground_truth/results.json``, ``results.md``, ``curves.png`` (BAD vs alpha per
rung, v2 seed 0) and ``tau.png``.
"""

from __future__ import annotations

import argparse
import itertools
import json
import sys
import time
from pathlib import Path
from typing import Any

import absl.logging
import jax
import jax.numpy as jnp
import numpy as np
import tensorflow_datasets as tfds

import jaxcam
from jaxcam.data import PNEUMONIA, lesion_area_fractions, load_phantom_splits
from jaxcam.evaluation import reference_key, software_versions
from jaxcam.ground_truth import (
    LADDER_QUALITY,
    energy_inside_mask,
    ladder,
    ladder_references,
    lesion_kept_share,
    marker_reference,
    pointing_game,
    rank_agreement,
)
from jaxcam.metrics import DEFAULT_TIES, kept_pixel_count, tie_priority, top_pixel_mask
from jaxcam.saliency import MORE_METHODS
from jaxcam.train import TrainConfig, accuracy, train_on_arrays
from jaxcam.viz import save_line_plot

#: The curve of the study: a coarser grid than the demo's (time), plus the chosen alpha.
CURVE_GRID = (0.1, 0.3, 0.5, 0.7, 0.9)
LOWER_IS_BETTER = {"AD": True, "BAD": True, "BAD curve": True}
#: ``--methods``: the rows scored next to the ladder (alpha is always chosen by the paper's).
CHEAP = ("HiResCAM", "XGrad-CAM", "LayerCAM", "Ablation-CAM", "Eigen-CAM")
METHOD_SETS: dict[str, dict[str, tuple[str, dict[str, Any]]]] = {
    "paper": dict(jaxcam.PAPER_METHODS),
    "cheap": {**jaxcam.PAPER_METHODS, **{name: MORE_METHODS[name] for name in CHEAP}},
    "all": {**jaxcam.PAPER_METHODS, **MORE_METHODS},
}
METRICS = ("AD", "BAD", "BAD curve", "pointing", "energy", "lesion kept")


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--out", default="results/ground_truth")
    parser.add_argument("--data-dir", default="results/tfds")
    parser.add_argument("--seeds", default="0,1,2")
    parser.add_argument("--variants", default="v1,v2")
    parser.add_argument(
        "--occlusion", default="0,0.5", help="occlusion probabilities to train with"
    )
    parser.add_argument("--confounder", default="0,0.9", help="marker correlations (v2 only)")
    parser.add_argument("--ties", default="smooth,random", help="tie policies to compare")
    parser.add_argument(
        "--methods",
        default="cheap",
        choices=tuple(METHOD_SETS),
        help="methods scored with the ladder: paper, cheap (paper + cheap extras), all",
    )
    parser.add_argument("--epochs", type=int, default=8)
    parser.add_argument("--image-size", type=int, default=128)
    parser.add_argument("--split-sizes", default=None, help="train,val,test (default 1200,200,300)")
    parser.add_argument(
        "--resume",
        action="store_true",
        help="keep the results already in OUT/results.json and run only the missing ones",
    )
    parser.add_argument(
        "--quick", action="store_true", help="reduced defaults (tests, smoke runs); flags still win"
    )
    if parser.parse_args(argv).quick:
        parser.set_defaults(
            seeds="0",
            variants="v2",
            occlusion="0",
            confounder="0,0.9",
            epochs=2,
            image_size=64,
            split_sizes="96,16,48",
            methods="paper",  # test time: the extra rows add ~10 s of compiles
        )
    return parser.parse_args(argv)


def _floats(text: str) -> list[float]:
    return [float(t) for t in text.split(",") if t]


def localisation(
    model: jaxcam.SplitModel,
    data: dict[str, np.ndarray],
    alpha: float,
    ties: str,
    tie_seed: int = 0,
    methods: dict[str, tuple[str, dict[str, Any]]] = jaxcam.PAPER_METHODS,
) -> dict[str, dict[str, float]]:
    """Mean pointing game, energy inside the mask and lesion kept share per map, (N images).

    The ladder's keys and the tie order are the engine's (same index, same seed), so the
    kept share is that of the black images that BAD scored.
    """
    images, masks = data["image"], data["mask"]
    labels = data["label"]
    maps = {
        name: jaxcam.compute_maps(model, images, labels, method, **options)[0]
        for name, (method, options) in methods.items()
    }
    indices = jnp.arange(len(labels))
    keys = jax.vmap(lambda i: reference_key(tie_seed, i))(indices)
    rungs = jax.jit(jax.vmap(ladder))(jnp.asarray(masks), keys)
    maps.update({name: np.asarray(value) for name, value in rungs.items()})
    height, width = masks.shape[1:]
    num_kept = kept_pixel_count(alpha, height, width)

    @jax.jit
    def scores(saliency: jax.Array, mask: jax.Array, index: jax.Array):
        priority = tie_priority(ties, tie_seed, index, (height, width))
        kept = top_pixel_mask(saliency, num_kept, priority)
        return (
            pointing_game(saliency, mask).astype(jnp.float32),
            energy_inside_mask(saliency, mask),
            lesion_kept_share(kept, mask),
        )

    out = {}
    for name, value in maps.items():
        pointing, energy, kept = jax.vmap(scores)(jnp.asarray(value), jnp.asarray(masks), indices)
        out[name] = {
            "pointing": float(jnp.mean(pointing)),
            "energy": float(jnp.mean(energy)),
            "lesion kept": float(jnp.mean(kept)),
        }
    return out


def metric_values(evaluation: jaxcam.Evaluation, names: list[str]) -> dict[str, dict[str, Any]]:
    """AD, BAD at the headline alpha and the curve mean per row."""
    return {
        name: {
            "AD": evaluation.results[name].average_drop.value,
            "BAD": evaluation.results[name].black_average_drop.value,
            "BAD curve": evaluation.results[name].curve_area,
            "BAD O>Y": evaluation.results[name].black_average_drop.increase_in_confidence,
        }
        for name in names
    }


def taus(rows: dict[str, dict[str, Any]]) -> dict[str, float | None]:
    """Kendall tau-b between each metric's ranking of the ladder and LADDER_QUALITY."""
    out = {}
    for metric in METRICS:
        values = {rung: rows[rung].get(metric) for rung in LADDER_QUALITY}
        if any(v is None for v in values.values()):
            out[metric] = None
            continue
        higher = not LOWER_IS_BETTER.get(metric, False)
        tau = rank_agreement(values, LADDER_QUALITY, higher_is_better=higher)
        out[metric] = None if np.isnan(tau) else tau
    return out


def run_setting(
    args: argparse.Namespace,
    variant: str,
    seed: int,
    occlusion: float,
    confounder: float,
    tie_policies: list[str],
) -> list[dict[str, Any]]:
    """Train one model; score the ladder under each tie policy (one result each)."""
    data = load_phantom_splits(
        args.data_dir,
        seed,
        args.image_size,
        split_sizes=args.split_sizes,
        variant=variant,
        confounder=confounder,
    )
    module = jaxcam.create_model("small_cnn", num_classes=2, output="relu")
    config = TrainConfig(epochs=args.epochs, seed=seed, occlusion=occlusion)
    model = train_on_arrays(module, data["train"], data["val"], config, log=lambda line: None)
    test = data["test"]
    test_accuracy = accuracy(model, test.images, test.labels)

    # alpha by the demo's rule: every test image, the paper's three methods.
    everything = jaxcam.evaluate(
        model, (test.images, test.labels), jaxcam.PAPER_METHODS, curve=False
    )
    alpha = everything.alpha

    sick = test.labels == PNEUMONIA
    pneumonia = {
        "image": test.images[sick],
        "label": test.labels[sick],
        "mask": test.masks[sick],
        "marker": test.markers[sick],
    }
    setting = {
        "variant": variant,
        "seed": seed,
        "occlusion": occlusion,
        "confounder": confounder,
        "test_accuracy": test_accuracy,
        "pneumonia_images": int(sick.sum()),
        "alpha": alpha,
    }
    area = lesion_area_fractions(test)[sick]
    return [
        {
            **setting,
            "ties": ties,
            **score_ladder(
                model, pneumonia, area, alpha, ties, confounder, METHOD_SETS[args.methods]
            ),
        }
        for ties in tie_policies
    ]


def score_ladder(
    model: jaxcam.SplitModel,
    pneumonia: dict[str, np.ndarray],
    area: np.ndarray,
    alpha: float,
    ties: str,
    confounder: float,
    methods: dict[str, tuple[str, dict[str, Any]]] = jaxcam.PAPER_METHODS,
) -> dict[str, Any]:
    """The ladder and the methods on the PNEUMONIA images, under one tie policy."""
    rows_methods = {**methods, **LADDER}
    evaluation = jaxcam.evaluate(
        model, pneumonia, rows_methods, alpha=alpha, grid=CURVE_GRID, explain="label", ties=ties
    )
    rows = metric_values(evaluation, list(rows_methods))
    for name, scores in localisation(model, pneumonia, alpha, ties, methods=methods).items():
        rows[name].update(scores)
        rows[name]["tie_decided"] = evaluation.results[name].tie_decided
    result: dict[str, Any] = {
        "rows": rows,
        "tau": taus(rows),
        "curves": {
            name: [evaluation.results[name].curve[a].value for a in evaluation.alphas]
            for name in rows_methods
        },
        "alphas": list(evaluation.alphas),
        "checks": {
            f"BAD(ground truth) < BAD({other})": _less(
                rows["ground_truth"]["BAD"], rows[other]["BAD"]
            )
            for other in ("noise", "inverted")
        },
    }

    # By lesion size: terciles of lesion area among the PNEUMONIA test images.
    tercile = np.digitize(area, np.quantile(area, [1 / 3, 2 / 3]))
    result["by_size"] = {}
    for t, label in enumerate(("small", "medium", "large")):
        chosen = tercile == t
        part = {k: v[chosen] for k, v in pneumonia.items()}
        sub = jaxcam.evaluate(
            model, part, LADDER, alpha=alpha, curve=False, explain="label", ties=ties
        )
        sub_taus = taus(metric_values(sub, list(LADDER)))
        result["by_size"][label] = {
            "area_percent": [float(100 * area[chosen].min()), float(100 * area[chosen].max())],
            "images": int(chosen.sum()),
            "tau": {m: sub_taus[m] for m in ("AD", "BAD")},
        }

    # The shortcut: on PNEUMONIA images that carry the marker, a map of the marker.
    if confounder > 0:
        marked = pneumonia["marker"].any(axis=(1, 2))
        part = {k: v[marked] for k, v in pneumonia.items()}
        shortcut_rows = {
            "ground_truth": LADDER["ground_truth"],
            "marker": MARKER,
            "noise": LADDER["noise"],
            "inverted": LADDER["inverted"],
        }
        sub = jaxcam.evaluate(
            model, part, shortcut_rows, alpha=alpha, curve=False, explain="label", ties=ties
        )
        result["shortcut"] = {
            "images": int(marked.sum()),
            "rows": metric_values(sub, list(shortcut_rows)),
        }
    return result


LADDER = ladder_references()
MARKER = marker_reference()


def _less(a: float | None, b: float | None) -> bool:
    """a < b; False when either is undefined (no image had a positive score)."""
    return a is not None and b is not None and a < b


def _fmt(value: float | None, digits: int = 3) -> str:
    return "n/a" if value is None else f"{value:.{digits}f}"


def summary_line(r: dict[str, Any]) -> str:
    tau = r["tau"]
    checks = (
        "ok"
        if all(r["checks"].values())
        else "FAILS " + ", ".join(k for k, v in r["checks"].items() if not v)
    )
    return (
        f"{r['variant']} seed {r['seed']} occlusion {r['occlusion']:.1f} confounder "
        f"{r['confounder']:.1f} ties {r['ties']} | acc {r['test_accuracy']:.3f} | "
        f"alpha {r['alpha']:.2f} | tau AD "
        f"{_fmt(tau['AD'], 2)} BAD {_fmt(tau['BAD'], 2)} curve {_fmt(tau['BAD curve'], 2)} | "
        f"GT check {checks}"
    )


def markdown(results: list[dict[str, Any]], wall: float) -> str:
    lines = [
        "# Ground-truth study",
        "",
        f"Wall time {wall:.0f} s. Kendall tau-b vs the ladder's designed quality (1 = perfect).",
        "",
    ]
    lines.append(
        "| variant | seed | occlusion | confounder | ties | acc | alpha | "
        + " | ".join(f"tau {m}" for m in METRICS)
        + " | BAD(GT) < BAD(noise), < BAD(inverted) |"
    )
    lines.append("|" + "---|" * (8 + len(METRICS)))
    for r in results:
        checks = " / ".join("yes" if v else "**no**" for v in r["checks"].values())
        lines.append(
            f"| {r['variant']} | {r['seed']} | {r['occlusion']:.1f} | {r['confounder']:.1f} | "
            f"{r['ties']} | "
            f"{r['test_accuracy']:.3f} | {r['alpha']:.2f} | "
            + " | ".join(_fmt(r["tau"][m], 2) for m in METRICS)
            + f" | {checks} |"
        )
    lines += ["", "## Per rung (mean over settings of each variant / occlusion / confounder)", ""]
    groups: dict[tuple, list[dict[str, Any]]] = {}
    for r in results:
        groups.setdefault((r["variant"], r["occlusion"], r["confounder"], r["ties"]), []).append(r)
    columns = (
        "AD",
        "BAD",
        "BAD curve",
        "BAD O>Y",
        "tie_decided",
        "pointing",
        "energy",
        "lesion kept",
    )
    for (variant, occlusion, confounder, ties), group in groups.items():
        lines += [
            f"### {variant}, occlusion {occlusion:.1f}, confounder {confounder:.1f}, "
            f"ties {ties} ({len(group)} seeds)",
            "",
            "| map | quality | " + " | ".join(columns) + " |",
            "|" + "---|" * (2 + len(columns)),
        ]
        for name in group[0]["rows"]:
            cells = []
            for c in columns:
                values = [g["rows"].get(name, {}).get(c) for g in group]  # resumed: fewer
                cells.append(
                    _fmt(None if any(v is None for v in values) else float(np.mean(values)))
                )
            quality = LADDER_QUALITY.get(name, "method")
            lines.append(f"| {name} | {quality} | " + " | ".join(cells) + " |")
        lines.append("")
        sizes = {
            label: [g["by_size"][label]["tau"] for g in group]
            for label in ("small", "medium", "large")
        }
        lines.append(
            "By lesion size (tau AD / tau BAD, mean over seeds): "
            + "; ".join(
                f"{label} {_fmt(_mean([t['AD'] for t in ts]), 2)} / "
                f"{_fmt(_mean([t['BAD'] for t in ts]), 2)}"
                for label, ts in sizes.items()
            )
        )
        if "shortcut" in group[0]:
            rows = [g["shortcut"]["rows"] for g in group]
            lines.append(
                "Shortcut marker (PNEUMONIA images with the marker), mean BAD: "
                + ", ".join(
                    f"{name} {_fmt(_mean([r[name]['BAD'] for r in rows]))}" for name in rows[0]
                )
            )
        lines.append("")
    return "\n".join(lines)


def _key(r: dict[str, Any]) -> tuple:
    return (r["variant"], r["seed"], r["occlusion"], r["confounder"], r["ties"])


def _mean(values: list[float | None]) -> float | None:
    kept = [v for v in values if v is not None]
    return float(np.mean(kept)) if kept else None


def main(argv: list[str] | None = None) -> list[dict[str, Any]]:
    args = parse_args(argv)
    tfds.disable_progress_bar()
    absl.logging.set_verbosity(absl.logging.ERROR)
    start = time.perf_counter()
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    results = []
    settings = [  # seed-major; the confounder is studied without occlusion (time)
        (variant, seed, occlusion, confounder)
        for seed, variant, confounder, occlusion in itertools.product(
            [int(s) for s in args.seeds.split(",")],
            args.variants.split(","),
            _floats(args.confounder),
            _floats(args.occlusion),
        )
        if (variant == "v2" or confounder == 0) and (confounder == 0 or occlusion == 0)
    ]
    earlier_wall = 0.0
    if args.resume and (out / "results.json").exists():
        saved = json.loads((out / "results.json").read_text())
        results, earlier_wall = saved["settings"], saved.get("wall_time_s", 0.0)
        print(f"resuming: {len(results)} results in {out / 'results.json'}")
    done = {_key(r) for r in results}
    for variant, seed, occlusion, confounder in settings:
        missing = [
            t for t in args.ties.split(",") if (variant, seed, occlusion, confounder, t) not in done
        ]
        if not missing:
            continue
        for result in run_setting(args, variant, seed, occlusion, confounder, missing):
            results.append(result)
            print(summary_line(result), flush=True)
        wall = earlier_wall + time.perf_counter() - start
        (out / "results.json").write_text(
            json.dumps(
                {"settings": results, "wall_time_s": wall, "versions": software_versions()},
                indent=1,
            )
        )
    wall = earlier_wall + time.perf_counter() - start
    report = markdown(results, wall)
    (out / "results.md").write_text(report)
    print(report)
    first = next(  # the demo's configuration, if it was run
        (
            r
            for r in results
            if (r["variant"], r["occlusion"], r["confounder"], r["ties"])
            == ("v1", 0.5, 0.0, DEFAULT_TIES)
        ),
        results[0],
    )
    save_line_plot(
        out / "curves.png",
        {name: (first["alphas"], values) for name, values in first["curves"].items()},
        title=f"BAD vs alpha, PNEUMONIA test images ({first['variant']}, seed {first['seed']})",
        x_label="alpha (kept share)",
        y_label="BAD",
        marked_x=first["alpha"],
    )
    labels = [
        f"{r['variant']}/s{r['seed']}/o{r['occlusion']:.1f}/c{r['confounder']:.1f}/{r['ties']}"
        for r in results
    ]
    save_line_plot(
        out / "tau.png",
        {
            metric: (list(range(len(results))), [r["tau"][metric] for r in results])
            for metric in ("AD", "BAD", "BAD curve", "energy")
        },
        title="Kendall tau-b vs designed quality, per setting (x: "
        + ", ".join(labels[:3])
        + ", ...)",
        x_label="setting index (see results.md)",
        y_label="tau",
    )
    print(f"wrote {out}/results.json, results.md, curves.png, tau.png ({wall:.0f} s)")
    return results


if __name__ == "__main__":
    main(sys.argv[1:])
