"""jaxcam: CAM, Grad-CAM and exact Grad-CAM++ with Average Drop and Black Average Drop.

The package follows the paper (Shimomura & Nakamura, "Black Average Drop"):
models -> saliency -> derivatives -> metrics -> data -> experiments.
"""

from jaxcam.derivatives import (
    directional_derivatives,
    global_average_pool_weights,
    pure_derivatives,
    pure_derivatives_pooled,
)
from jaxcam.evaluation import (
    Evaluation,
    ReferenceMap,
    evaluate,
    evaluate_methods,
    format_table,
)
from jaxcam.metrics import (
    ALPHA_GRID,
    Metric,
    average_drop,
    black_average_drop,
    black_image,
    choose_alpha,
    explanation_image,
    masked_scores,
    metric_names,
    register_metric,
)
from jaxcam.models import (
    CAMClassifier,
    SplitModel,
    bind,
    create_model,
    layer_names,
    model_names,
    register_model,
    split_at,
)
from jaxcam.saliency import (
    MORE_METHODS,
    PAPER_METHODS,
    SALIENCY_METHODS,
    cam,
    compute_maps,
    grad_cam,
    grad_cam_plus_plus,
    method_names,
    register_saliency_method,
    saliency_maps,
)

__version__ = "0.1.0"

__all__ = [
    "MORE_METHODS",
    "Metric",
    "method_names",
    "metric_names",
    "register_metric",
    "layer_names",
    "split_at",
    "ALPHA_GRID",
    "PAPER_METHODS",
    "Evaluation",
    "ReferenceMap",
    "evaluate",
    "SALIENCY_METHODS",
    "CAMClassifier",
    "SplitModel",
    "average_drop",
    "bind",
    "black_average_drop",
    "black_image",
    "cam",
    "choose_alpha",
    "compute_maps",
    "create_model",
    "directional_derivatives",
    "evaluate_methods",
    "explanation_image",
    "format_table",
    "global_average_pool_weights",
    "grad_cam",
    "grad_cam_plus_plus",
    "masked_scores",
    "model_names",
    "pure_derivatives",
    "pure_derivatives_pooled",
    "register_model",
    "register_saliency_method",
    "saliency_maps",
]
