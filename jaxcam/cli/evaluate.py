"""``jaxcam evaluate``: Table 1 (every registered metric) of saliency methods on a split."""

from __future__ import annotations

import argparse
import time
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
    quiet_tfds,
    write_json,
)


def evaluate_command(args: argparse.Namespace) -> dict[str, Any]:
    import jaxcam
    from jaxcam.data.sources import Subset, one_image_per_random_class
    from jaxcam.data.splits import split_batches
    from jaxcam.evaluation import evaluation_record, markdown_table, software_versions
    from jaxcam.metrics import get_metric
    from jaxcam.viz import save_line_plot

    quiet_tfds()
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
    out = output_dir(args, f"evaluate_{args.split}")
    class_names = list(getattr(split, "class_names", ()))
    how = "given" if args.alpha is not None else "chosen where the methods differ most"
    data_name = args.data or run["data"]["spec"]
    headline = (
        f"{sum(evaluation.class_counts.values())} images, accuracy {evaluation.accuracy:.3f}, "
        f"alpha = {evaluation.alpha:.2f} ({how}), ties: {evaluation.ties}, "
        f"explained class: {args.explain}"
    )
    tables = {"All images": evaluation.results}
    if len(evaluation.class_counts) <= 10:  # per-class tables for few classes
        for c, rows in sorted(evaluation.by_class.items()):
            name = class_names[c] if c < len(class_names) else str(c)
            tables[f"{name} ({evaluation.class_counts[c]} images)"] = rows
    sections = [f"# Table 1: {model_info['name']} on {data_name} / {args.split}", "", headline]
    printed = [headline]
    for title, rows in tables.items():
        sections += ["", f"## {title}", "", markdown_table(rows)]
        printed += ["", title, jaxcam.format_table(rows)]
    print("\n".join(printed))
    record = {
        **evaluation_record(evaluation),
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
        "table.md and bad_curve.png into --out (default RUN_DIR/evaluate_SPLIT).",
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
    evaluate.add_argument("--limit", type=int, default=None, help="only the first N images")
    evaluate.add_argument(
        "--random-classes",
        type=int,
        default=None,
        help="one random image from each of K random classes (the paper's ImageNet rows)",
    )
    evaluate.add_argument("--seed", type=int, default=0, help="seed of --random-classes")
    evaluate.add_argument("--batch-size", type=int, default=64)
    evaluate.add_argument("--no-progress", action="store_true")
    evaluate.set_defaults(handler=evaluate_command)
