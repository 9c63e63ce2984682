"""Saliency methods: CAM, Grad-CAM, Grad-CAM++ (exact or closed form)."""

from jaxcam.saliency.cam import cam
from jaxcam.saliency.grad_cam import grad_cam
from jaxcam.saliency.grad_cam_plus_plus import (
    grad_cam_plus_plus,
    grad_cam_plus_plus_alpha,
    grad_cam_plus_plus_derivatives,
)
from jaxcam.saliency.maps import (
    SALIENCY_METHODS,
    get_saliency_method,
    normalise,
    predicted_class,
    register_saliency_method,
    saliency_map,
    saliency_maps,
    saliency_step,
    upsample,
)
from jaxcam.saliency.scores import SCORE_FORMS, class_score

__all__ = [
    "SALIENCY_METHODS",
    "SCORE_FORMS",
    "cam",
    "class_score",
    "get_saliency_method",
    "grad_cam",
    "grad_cam_plus_plus",
    "grad_cam_plus_plus_alpha",
    "grad_cam_plus_plus_derivatives",
    "normalise",
    "predicted_class",
    "register_saliency_method",
    "saliency_map",
    "saliency_maps",
    "saliency_step",
    "upsample",
]
