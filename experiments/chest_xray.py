"""Table 1 (X-ray rows) and Figure 1 of the paper on the Kaggle chest X-rays.

Command (the Kaggle "Chest X-ray Images (Pneumonia)" folders under DIR, i.e.
``DIR/{train,val,test}/{NORMAL,PNEUMONIA}/*.jpeg``; a GPU machine for the full model)::

    python experiments/chest_xray.py --source DIR [--model inception_resnet_v2]
        [--keras-weights imagenet.weights.h5] [--epochs 6] [--run-dir runs/chest_xray]

Prepares the folders once as array_record under ``--data-dir`` (decoded, resized to
the model's input size; grayscale, or RGB for Keras weights), trains the model with
its ReLU output (balanced class weights, checkpoints every 100 steps and at each
epoch; run it again to resume), then prints::

    training inception_resnet_v2 on chest_xray:DIR (5216 train, 16 val images) ...
    epoch 1/6  loss ...  val accuracy ...  val AUC ...          (one line per epoch)
    <N> images, accuracy 0.xxx, alpha = 0.xx (chosen ...), ties: smooth, ...
    All images / NORMAL (234 images) / PNEUMONIA (390 images)
    method | AD | BAD | Incorrect % AD | Incorrect % BAD | O>Y % BAD | ...   (CAM, Grad-CAM,
    Grad-CAM++)

and writes into the run folder ``evaluate_test/`` (evaluation.json, table.md,
bad_curve.png) and ``explain/`` (figure1.png for the first PNEUMONIA test images,
maps.npz, explain.json, explain.md). The Kaggle val split has only 16 images; ``--val-split``
may name another. The paper's model is InceptionResNetV2 (299 x 299); pass
``--model resnet18`` or ``small_cnn`` for a quicker run.
"""

from __future__ import annotations

import argparse
import sys

from jaxcam.cli import main as jaxcam_main
from jaxcam.cli.common import DEFAULT_DATA_DIR


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--source", required=True, help="the Kaggle chest_xray folder")
    parser.add_argument(
        "--data-dir", default=DEFAULT_DATA_DIR, help="prepared data folder (as the CLI's)"
    )
    parser.add_argument("--run-dir", default="results/chest_xray", help="run folder")
    parser.add_argument("--model", default="inception_resnet_v2")
    parser.add_argument("--image-size", type=int, default=None, help="default: the model's")
    parser.add_argument("--keras-weights", default=None, help="start from Keras weights")
    parser.add_argument("--epochs", type=int, default=6)
    parser.add_argument(
        "--width-scale", type=float, default=None, help="InceptionResNetV2: scale conv widths"
    )
    parser.add_argument(
        "--occlusion", type=float, default=None, help="default: jaxcam train's (0.5)"
    )
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--learning-rate", type=float, default=3e-3)
    parser.add_argument("--val-split", default="val")
    parser.add_argument("--figure-images", type=int, default=6)
    parser.add_argument("--methods", default="cam,grad_cam,grad_cam_plus_plus")
    parser.add_argument("--no-progress", action="store_true")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    data = ["--data", f"chest_xray:{args.source}", "--data-dir", args.data_dir]
    model = ["--model", args.model]
    if args.image_size:
        model += ["--image-size", str(args.image_size)]
    if args.keras_weights:
        model += ["--keras-weights", args.keras_weights]
    if args.width_scale is not None:
        model += ["--width-scale", str(args.width_scale)]
    quiet = ["--no-progress"] if args.no_progress else []
    train = ["train", *data, *model, "--run-dir", args.run_dir, "--epochs", str(args.epochs)]
    train += ["--batch-size", str(args.batch_size), "--learning-rate", str(args.learning_rate)]
    train += ["--val-split", args.val_split, *quiet]
    if args.occlusion is not None:
        train += ["--occlusion", str(args.occlusion)]
    status = jaxcam_main(train)
    if status:
        return status
    status = jaxcam_main(["evaluate", "--run-dir", args.run_dir, "--methods", args.methods, *quiet])
    if status:
        return status
    # Figure 1: the first PNEUMONIA test images (the class with something to localise).
    return jaxcam_main(
        [
            "explain",
            "--run-dir",
            args.run_dir,
            "--label",
            "PNEUMONIA",
            "--first",
            str(args.figure_images),
            "--methods",
            args.methods,
        ]
    )


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
