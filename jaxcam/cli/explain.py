"""``jaxcam explain``: Figure 1, saliency overlays for images of a split or image files."""

from __future__ import annotations

import argparse
import os
import sys
from typing import Any

import numpy as np

from jaxcam.cli.common import (
    add_explanation_args,
    method_table,
    model_from_args,
    open_split,
    output_dir,
    quiet_tfds,
    write_json,
)


def explain_command(args: argparse.Namespace) -> dict[str, Any]:
    import jaxcam
    from jaxcam.data.folders import read_image
    from jaxcam.train import predict_scores
    from jaxcam.viz import save_figure

    quiet_tfds()
    if args.explain == "label" and args.images:
        raise ValueError(
            "--explain label needs labels, and --images files have none: use --explain "
            "predicted, or a split (--split, --label)"
        )
    out = output_dir(args, "explain")  # first: checked before any work
    run, model, model_info = model_from_args(args)
    size, channels = int(model_info["image_size"]), int(model_info["in_channels"])
    if args.images:
        images = np.stack([read_image(path, size, channels) for path in args.images])
        names = [os.path.basename(path) for path in args.images]
        labels = None
        class_names = list((run or {}).get("data", {}).get("class_names", []))
    else:
        split = open_split(args, run, model_info)
        class_names = list(getattr(split, "class_names", ()))
        if args.first < 1:
            raise ValueError(f"--first must be >= 1, got {args.first}")
        chosen = np.arange(len(split))
        if args.label is not None:
            if args.label not in class_names:
                raise ValueError(
                    f"--label {args.label!r} is not a class of the data: {class_names}"
                )
            chosen = np.flatnonzero(np.asarray(split.labels) == class_names.index(args.label))
        chosen = chosen[: args.first]
        if len(chosen) == 0:
            raise ValueError(f"no images of {args.label!r} in split {args.split!r}")
        items = [split[int(i)] for i in chosen]
        images = np.stack([item["image"] for item in items])
        labels = np.asarray([item["label"] for item in items])
        paths = getattr(split, "paths", None)
        names = [paths[i] if paths else f"{args.split}[{i}]" for i in chosen]
    methods = method_table(args.methods)
    scores = predict_scores(model, images)
    predicted = scores.argmax(-1)
    # The explained class c of each image: its predicted class, or its label.
    explained = predicted if args.explain == "predicted" else labels
    assert explained is not None  # --explain label without labels is refused above
    maps = {
        name: jaxcam.compute_maps(model, images, explained, method, **options)[0]
        for name, (method, options) in methods.items()
    }
    label_of = lambda c: class_names[c] if c < len(class_names) else str(int(c))
    rows = [
        {
            "image": names[i],
            "label": None if labels is None else label_of(labels[i]),
            "predicted": label_of(predicted[i]),
            "explained": label_of(explained[i]),
            "explained_index": int(explained[i]),
            "score": float(scores[i, explained[i]]),
            "scores": [float(s) for s in scores[i]],
            "all_scores_zero": bool(np.all(scores[i] == 0)),
        }
        for i in range(len(images))
    ]
    for row in rows:
        row["title"] = row_title(row)
    zero_rows = sum(row["all_scores_zero"] for row in rows)
    degenerate = None
    if zero_rows:
        degenerate = (
            f"every score is 0 for {zero_rows} of {len(rows)} images: their maps explain "
            "nothing (a ReLU output that is 0 everywhere?)"
        )
        print(f"WARNING: {degenerate}", file=sys.stderr, flush=True)
    save_figure(out / "figure1.png", images, None, maps, [row["title"] for row in rows])
    arrays: dict[str, Any] = dict(maps)  # (numpy's stubs type **kwds as its bool option)
    np.savez_compressed(out / "maps.npz", **arrays)
    write_json(
        out / "explain.json",
        {
            "model": model_info,
            "methods": list(methods),
            "explained_class": args.explain,
            "degenerate": degenerate,
            "images": rows,
            "maps": "maps.npz",
        },
    )
    lines = [
        f"Explained class: {args.explain}; Y = its score.",
        "",
        "| image | label | predicted | explained | Y | scores | note |",
        "|---|---|---|---|---|---|---|",
    ]
    lines += [
        f"| {r['image']} | {r['label'] or ''} | {r['predicted']} | {r['explained']} | "
        f"{r['score']:.4g} | "
        + ", ".join(f"{s:.4g}" for s in r["scores"])
        + f" | {ZERO_NOTE if r['all_scores_zero'] else ''} |"
        for r in rows
    ]
    (out / "explain.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))
    print(f"wrote {out / 'figure1.png'}, {out / 'maps.npz'}, {out / 'explain.json'}")
    return {"images": rows}


ZERO_NOTE = "every score is 0: the maps explain nothing"


def row_title(row: dict[str, Any]) -> str:
    """A figure row's caption: label, prediction, the explained class and its score Y."""
    title = f"label {row['label']}, " if row["label"] is not None else ""
    title += f"pred {row['predicted']}, explained {row['explained']} (Y = {row['score']:.3g})"
    return title + (" - every score is 0" if row["all_scores_zero"] else "")


def add_explain_parser(commands: Any) -> None:
    """The ``jaxcam explain`` subcommand and its arguments."""
    explain = commands.add_parser(
        "explain",
        help="Figure 1: saliency overlays for images",
        description="Draw saliency overlays (one row per image, one column per method) for "
        "given image files or the first N images of a split. Writes figure1.png, maps.npz "
        "(the maps), explain.json and explain.md (label, prediction, the explained class "
        "and its score Y, and all scores per image; rows whose scores are all 0 are marked) "
        "into --out (default RUN_DIR/explain).",
    )
    add_explanation_args(explain)
    explain.add_argument(
        "--explain",
        default="predicted",
        choices=("predicted", "label"),
        help="the class each map explains: the predicted one (default) or the label",
    )
    explain.add_argument("--first", type=int, default=8, help="the first N images of the split")
    explain.add_argument("--label", default=None, help="only images of this class (a name)")
    explain.add_argument("--images", nargs="+", help="image files instead of a split")
    explain.set_defaults(handler=explain_command)
