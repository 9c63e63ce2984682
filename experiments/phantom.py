"""Table 1 and Figure 1 of the paper on the embedded phantom chest X-rays (the demo).

Command (what ``make demo`` runs; the same as ``jaxcam run experiments/phantom.py``)::

    python experiments/phantom.py [--set KEY=VALUE ...]

e.g. ``--set seed=1``, ``--set train.epochs=2``, ``--set evaluation.alpha=0.5``,
``--set data.variant=v2 --set data.confounder=0.9``, ``--set train.occlusion=0``,
``--set evaluation.extra_methods=`` (no extra rows), ``--set model.output=softmax
--set evaluation.methods=cam,grad_cam,grad_cam_plus_plus,grad_cam_plus_plus_exact``;
``--print-config`` prints every setting.

Builds the phantom data set (TFDS, array_record) under ``results/tfds``, trains the
small CAM-compatible CNN with the paper's ReLU output and occlusion-aware training
(one line per epoch), explains the predicted class of every test image with CAM,
Grad-CAM and Grad-CAM++ (closed form, as in the paper), chooses BAD's alpha where the
methods' black images differ most, scores every alpha of the grid in the same pass,
and prints::

    test accuracy 0.9xx (300 images)
    alpha = 0.xx (chosen where the methods' black images differ most; ties: smooth)

    PNEUMONIA test images (1xx): the class to localise
    method | AD | BAD | Incorrect % AD | Incorrect % BAD | O>Y % BAD | ... | BAD curve mean
    CAM, Grad-CAM (equal: eq. 12), Grad-CAM++, then reference maps built from the lesion
    masks: ground truth (best possible), random noise, inverted ground truth (worst)

    All test images (the paper's protocol)
    CAM, Grad-CAM, Grad-CAM++

and, if BAD does not rank the ground-truth map better than noise and than the inverted
ground truth, a WARNING. Then the model's reliance on the lesions (each test image
against its lesion-free twin: mean r = (Y - Y_twin) / Y, share with r > 0.5, share whose
prediction flips) and, on the PNEUMONIA images the model relies on, the methods and
reference rows under every imputer (black = BAD, blur, mean, noisy linear = ROAD, twin =
the counterfactual truth) at the same alpha, with a WARNING where BAD misranks the
references there. Then the library's other cheap methods (HiResCAM, XGrad-CAM,
LayerCAM, Ablation-CAM, Eigen-CAM) as extra rows, scored in a second pass at the same
alpha (they do not enter the alpha search, so the tables above stay the paper's).

It writes ``results/phantom/results.json`` (every number, per class, the alpha curve and
search, the config, versions), ``figure1.png`` (maps of every method, explained class
per row) and ``bad_curve.png`` (BAD vs alpha on the PNEUMONIA images, alpha marked).
"""

from __future__ import annotations

import sys

from jaxcam.experiments import DataConfig, EvaluationConfig, ExperimentConfig, script_main
from jaxcam.train import TrainConfig


def get_config() -> ExperimentConfig:
    return ExperimentConfig(
        name="phantom",
        data=DataConfig(source="phantom", focus_class="PNEUMONIA"),
        # Occlusion-aware training: README "Is BAD trustworthy?" says why.
        train=TrainConfig(epochs=8, occlusion=0.5),
        evaluation=EvaluationConfig(
            references=("ground_truth", "noise", "inverted"),
            # The imputers side by side on the lesion-reliant images (issue 16): black is
            # the paper's BAD, the twin's pixels the counterfactual truth.
            reliant_metrics=(
                "black_average_drop",
                "blurred_average_drop",
                "mean_average_drop",
                "noisy_linear_average_drop",
                "counterfactual_average_drop",
            ),
            # The library's other cheap methods (Score-CAM's 64 forwards left out).
            extra_methods=("hires_cam", "xgrad_cam", "layer_cam", "ablation_cam", "eigen_cam"),
        ),
    )


def main(argv: list[str] | None = None) -> dict:
    return script_main(get_config, argv)


if __name__ == "__main__":
    main(sys.argv[1:])
