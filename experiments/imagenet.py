"""Table 1 (ImageNet rows) of the paper: one image from each of 100 random classes.

Command (a class-per-folder directory such as the ImageNet validation set sorted into
synset folders, or a prepared TFDS set; a Keras InceptionResNetV2 file with its
1000-class top, or a jaxcam run folder)::

    python experiments/imagenet.py --data folder:DIR --keras-weights irv2.weights.h5 \\
        --keras-output softmax
    python experiments/imagenet.py --data tfds:imagenet2012 --split validation \\
        --keras-weights irv2.keras

Keras' 1000 ImageNet class indices follow the sorted synset ids (n01440764, ...), which
is the order of sorted folder names, so a folder of synset folders lines up with the
Keras top. Draws ``--classes`` classes at random (seeded) among those present and one
random image of each, explains the predicted class with CAM, Grad-CAM and Grad-CAM++,
chooses BAD's alpha where the methods differ most, and prints::

    100 images of 100 random classes (seed 0) from folder:DIR / all
    100 images, accuracy 0.xxx, alpha = 0.xx (chosen ...), ties: smooth, ...
    All images
    method | AD | BAD | Incorrect % AD | Incorrect % BAD | O>Y % BAD | ...

It writes ``evaluation.json`` (with the chosen image indices), ``table.md`` and
``bad_curve.png`` into ``--out``.
"""

from __future__ import annotations

import argparse
import sys

from jaxcam.cli import main as jaxcam_main
from jaxcam.cli.common import DEFAULT_DATA_DIR


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--data", required=True, help="folder:DIR or tfds:NAME")
    parser.add_argument("--split", default="all", help="split to draw from ('all': no splits)")
    parser.add_argument(
        "--data-dir", default=DEFAULT_DATA_DIR, help="prepared data folder (as the CLI's)"
    )
    parser.add_argument("--keras-weights", default=None, help="Keras InceptionResNetV2 file")
    parser.add_argument(
        "--keras-output",
        default=None,
        help="output activation of a weights-only Keras file (a Keras 3 .weights.h5 "
        "stores none: softmax for Keras' own top)",
    )
    parser.add_argument("--run-dir", default=None, help="or a jaxcam run folder")
    parser.add_argument("--classes", type=int, default=100, help="number of random classes")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--methods", default="cam,grad_cam,grad_cam_plus_plus")
    parser.add_argument("--out", default="results/imagenet")
    parser.add_argument("--no-progress", action="store_true")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    print(
        f"{args.classes} images of {args.classes} random classes (seed {args.seed}) "
        f"from {args.data} / {args.split}"
    )
    model = ["--keras-weights", args.keras_weights] if args.keras_weights else []
    if args.keras_output:
        model += ["--keras-output", args.keras_output]
    model += ["--run-dir", args.run_dir] if args.run_dir else []
    return jaxcam_main(
        ["evaluate", *model, "--data", args.data, "--data-dir", args.data_dir]
        + ["--split", args.split, "--random-classes", str(args.classes), "--seed", str(args.seed)]
        + ["--methods", args.methods, "--out", args.out]
        + (["--no-progress"] if args.no_progress else [])
    )


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
