"""``jaxcam evaluate``: Table 1 (every registered metric) of saliency methods on a split."""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Mapping
from typing import Any

import numpy as np

from jaxcam.cli.common import (
    add_explanation_args,
    method_table,
    metric_help,
    metrics_arg,
    model_from_args,
    open_split,
    output_dir,
    positive_int,
    quiet_tfds,
    write_json,
)

BLACK_METRIC = "black_average_drop"


def black_raised_warning(rows: Mapping[str, Any]) -> str | None:
    """The one-line WARNING when, for any method, most black images raised the score
    (BAD's ``mostly_increased``), naming those methods and their share; else None."""
    raised = {
        name: row.metrics[BLACK_METRIC].increase_in_confidence
        for name, row in rows.items()
        if BLACK_METRIC in row.metrics and row.metrics[BLACK_METRIC].mostly_increased
    }
    if not raised:
        return None
    shares = ", ".join(f"{name} {100 * share:.1f} %" for name, share in raised.items())
    return (
        f"WARNING: most black images raised the score (O > Y) for {shares} of the images; "
        "BAD's clamp counts each as a perfect 0, so BAD mostly measures the model's reaction "
        "to black: train with occlusion (`jaxcam train --occlusion 0.5`, the default), see "
        "the README's 'Is BAD trustworthy?'"
    )


def degenerate_reason(rows: Mapping[str, Any]) -> str | None:
    """Why the table says nothing, when no image of any row has a defined ratio (every
    score Y of the explained class is 0, below, or not finite); else None."""
    summaries = [s for row in rows.values() for s in row.metrics.values()]
    summaries = [s for s in summaries if hasattr(s, "num_excluded")]
    if not summaries or any(s.num_excluded < s.num_images for s in summaries):
        return None
    return (
        "every score is 0: no image has a score Y > 0 for its explained class (Y <= 0 or "
        "not finite), so no AD or BAD ratio is defined (a ReLU output that is 0 everywhere?)"
    )


def alpha_not_chosen(evaluation: Any, degenerate: str | None) -> str | None:
    """Why a chosen alpha means nothing (every map empty, every score 0, or the methods'
    black images never differ); None when it was given or chosen meaningfully."""
    if not evaluation.alpha_chosen:
        return None
    images = sum(evaluation.class_counts.values())
    if all(row.empty_maps == images for row in evaluation.results.values()):
        return "every map is empty"
    if degenerate is not None:
        return "every score is 0"
    if max(evaluation.alpha_differences.values(), default=0.0) <= 0.0:
        return "the methods' black images are the same at every alpha"
    return None


def evaluate_command(args: argparse.Namespace) -> dict[str, Any]:
    import jaxcam
    from jaxcam.data.sources import Subset, one_image_per_random_class
    from jaxcam.data.splits import split_batches
    from jaxcam.evaluation import evaluation_record, markdown_table, software_versions
    from jaxcam.metrics import get_metric
    from jaxcam.viz import save_line_plot

    quiet_tfds()
    out = output_dir(args, f"evaluate_{args.split}")  # first: checked before any work
    run, model, model_info = model_from_args(args)
    split = open_split(args, run, model_info)
    methods = method_table(args.methods)
    if args.random_classes is not None:
        indices = one_image_per_random_class(split.labels, args.random_classes, args.seed)
    else:
        indices = np.arange(len(split) if args.limit is None else min(args.limit, len(split)))
    subset = Subset(split, indices)
    start = time.perf_counter()

    def batches():
        # Data set index = position in the evaluated subset: one tie order per image.
        for batch in split_batches(subset, args.batch_size):
            yield {"image": batch["image"], "label": batch["label"]}

    evaluation = jaxcam.evaluate(
        model,
        batches(),
        methods,
        metrics=args.metrics,
        alpha=args.alpha,
        ties=args.ties,
        explain=args.explain,
        batch_size=args.batch_size,
        progress=not args.no_progress,
    )
    class_names = list(getattr(split, "class_names", ()))
    data_name = args.data or run["data"]["spec"]
    degenerate = degenerate_reason(evaluation.results)
    not_chosen = alpha_not_chosen(evaluation, degenerate)
    if not_chosen is not None:
        alpha_text = f"alpha: not chosen, {not_chosen} ({evaluation.alpha:.2f} shown)"
    else:
        how = "given" if args.alpha is not None else "chosen where the methods differ most"
        alpha_text = f"alpha = {evaluation.alpha:.2f} ({how})"
    if degenerate is not None and args.explain == "predicted":
        accuracy_text = "accuracy n/a (every score is 0)"
    else:
        accuracy_text = f"accuracy {evaluation.accuracy:.3f}"
    headline = (
        f"{sum(evaluation.class_counts.values())} images, {accuracy_text}, {alpha_text}, "
        f"ties: {evaluation.ties}, explained class: {args.explain}"
    )
    warnings = [f"WARNING: {degenerate}"] if degenerate is not None else []
    raised = black_raised_warning(evaluation.results)
    warnings += [raised] if raised is not None else []
    for line in warnings:
        print(line, file=sys.stderr, flush=True)
    tables = {"All images": evaluation.results}
    if len(evaluation.class_counts) <= 10:  # per-class tables for few classes
        for c, rows in sorted(evaluation.by_class.items()):
            if not evaluation.class_counts[c]:
                continue  # a class of the model without images here
            name = class_names[c] if c < len(class_names) else str(c)
            tables[f"{name} ({evaluation.class_counts[c]} images)"] = rows
    sections = [f"# Table 1: {model_info['name']} on {data_name} / {args.split}", "", headline]
    sections += ["", *warnings] if warnings else []
    printed = [headline]
    for title, rows in tables.items():
        sections += ["", f"## {title}", "", markdown_table(rows)]
        printed += ["", title, jaxcam.format_table(rows)]
    print("\n".join(printed))
    record = {
        **evaluation_record(evaluation),
        "degenerate": degenerate,
        "warnings": warnings,
        "methods": {n: {"method": m, "options": o} for n, (m, o) in methods.items()},
        "explained_class": args.explain,
        "model": model_info,
        "checkpoint": args.checkpoint if args.run_dir else None,
        "data": {
            "spec": data_name,
            "split": args.split,
            "images": len(indices),
            "indices": [int(i) for i in indices],
            "random_classes": args.random_classes,
            "seed": args.seed,
        },
        "class_names": class_names,
        "versions": software_versions(),
        "wall_time_s": round(time.perf_counter() - start, 1),
    }
    if not_chosen is not None:
        record |= {"alpha_chosen": False, "alpha_not_chosen": not_chosen}
    write_json(out / "evaluation.json", record)
    (out / "table.md").write_text("\n".join(sections) + "\n")
    written = [out / "evaluation.json", out / "table.md"]
    for name in evaluation.metrics:  # one curve figure per metric scored per alpha
        metric = get_metric(name)
        if not metric.per_alpha:
            continue
        path = out / ("bad_curve.png" if name == "black_average_drop" else f"{name}_curve.png")
        save_line_plot(
            path,
            {
                row: (evaluation.alphas, [r.curves[name][a].value for a in evaluation.alphas])
                for row, r in evaluation.results.items()
            },
            title=f"{metric.label} vs alpha ({args.split}, all images)",
            x_label="alpha (share of pixels kept)",
            y_label=metric.label,
            marked_x=evaluation.alpha,
        )
        written.append(path)
    print("wrote " + ", ".join(str(p) for p in written))
    return record


def add_evaluate_parser(commands: Any) -> None:
    """The ``jaxcam evaluate`` subcommand and its arguments."""
    from jaxcam.metrics import DEFAULT_TIES, TIE_POLICIES

    evaluate = commands.add_parser(
        "evaluate",
        help="Table 1: AD and BAD of saliency methods on a split",
        description="Explain every image of a split with the chosen methods and score the "
        "maps with Average Drop and Black Average Drop (alpha given or chosen where the "
        "methods' black images differ most; the whole alpha curve in the same pass). Prints "
        "the table for all images and per class, and writes evaluation.json (every number), "
        "table.md and bad_curve.png into --out (default RUN_DIR/evaluate_SPLIT; checked "
        "writable before any work). A WARNING line (stderr and evaluation.json) says when "
        "most black images raised the score for some method, or when every score is 0 (the "
        "table is then meaningless and alpha is not chosen).",
    )
    add_explanation_args(evaluate)
    evaluate.add_argument(
        "--metrics",
        type=metrics_arg,
        default="average_drop,black_average_drop",
        help="comma-separated registered metrics, in column order: " + metric_help(),
    )
    evaluate.add_argument("--alpha", type=float, default=None, help="BAD's alpha (default: chosen)")
    evaluate.add_argument("--ties", default=DEFAULT_TIES, choices=TIE_POLICIES)
    evaluate.add_argument("--explain", default="predicted", choices=("predicted", "label"))
    evaluate.add_argument(
        "--limit", type=positive_int, default=None, help="only the first N images (N >= 1)"
    )
    evaluate.add_argument(
        "--random-classes",
        type=positive_int,
        default=None,
        help="one random image from each of K random classes (the paper's ImageNet rows)",
    )
    evaluate.add_argument("--seed", type=int, default=0, help="seed of --random-classes")
    evaluate.add_argument("--batch-size", type=positive_int, default=64)
    evaluate.add_argument("--no-progress", action="store_true")
    evaluate.set_defaults(handler=evaluate_command)
