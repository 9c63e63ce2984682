"""Saliency methods: CAM, Grad-CAM, Grad-CAM++ (exact or closed form), HiResCAM,
XGrad-CAM, LayerCAM, Score-CAM, Ablation-CAM, Eigen-CAM."""

from jaxcam.saliency.ablation_cam import ablated_logits, ablation_cam
from jaxcam.saliency.cam import cam
from jaxcam.saliency.eigen_cam import eigen_cam
from jaxcam.saliency.grad_cam import class_score_gradient, grad_cam
from jaxcam.saliency.grad_cam_plus_plus import (
    grad_cam_plus_plus,
    grad_cam_plus_plus_alpha,
    grad_cam_plus_plus_derivatives,
)
from jaxcam.saliency.hires_cam import hires_cam
from jaxcam.saliency.layer_cam import layer_cam
from jaxcam.saliency.maps import (
    compute_maps,
    for_image,
    normalise,
    predicted_class,
    saliency_map,
    saliency_maps,
    saliency_step,
    upsample,
)
from jaxcam.saliency.registry import (
    CHEAP_COSTS,
    COSTS,
    MORE_METHODS,
    PAPER_METHOD_NAMES,
    PAPER_METHODS,
    SALIENCY_METHODS,
    MethodInfo,
    example_method,
    get_saliency_method,
    method_info,
    method_names,
    method_rows,
    register_saliency_method,
)
from jaxcam.saliency.score_cam import SCORE_CAM_WEIGHTS, channel_mask, score_cam
from jaxcam.saliency.scores import SCORE_FORMS, class_score
from jaxcam.saliency.xgrad_cam import xgrad_cam

__all__ = [
    "CHEAP_COSTS",
    "COSTS",
    "MORE_METHODS",
    "PAPER_METHOD_NAMES",
    "PAPER_METHODS",
    "SALIENCY_METHODS",
    "MethodInfo",
    "compute_maps",
    "method_info",
    "method_names",
    "method_rows",
    "SCORE_CAM_WEIGHTS",
    "SCORE_FORMS",
    "ablated_logits",
    "ablation_cam",
    "cam",
    "channel_mask",
    "class_score",
    "class_score_gradient",
    "eigen_cam",
    "example_method",
    "for_image",
    "get_saliency_method",
    "grad_cam",
    "grad_cam_plus_plus",
    "grad_cam_plus_plus_alpha",
    "grad_cam_plus_plus_derivatives",
    "hires_cam",
    "layer_cam",
    "normalise",
    "predicted_class",
    "register_saliency_method",
    "saliency_map",
    "saliency_maps",
    "saliency_step",
    "score_cam",
    "upsample",
    "xgrad_cam",
]
