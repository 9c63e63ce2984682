"""Models: CAM-compatible classifiers and the registry."""

from jaxcam.models.base import (
    OUTPUT_ACTIVATIONS,
    CAMClassifier,
    SplitModel,
    apply_output,
    bind,
)
from jaxcam.models.registry import create_model, default_input_size, model_names, register_model
from jaxcam.models.small_cnn import SmallCNN

__all__ = [
    "OUTPUT_ACTIVATIONS",
    "CAMClassifier",
    "SmallCNN",
    "SplitModel",
    "apply_output",
    "bind",
    "create_model",
    "default_input_size",
    "model_names",
    "register_model",
]

from jaxcam.models.inception_resnet_v2 import InceptionResNetV2, inception_resnet_v2  # noqa: E402
from jaxcam.models.resnet import ResNet, resnet18, resnet50  # noqa: E402

__all__ += ["InceptionResNetV2", "ResNet", "inception_resnet_v2", "resnet18", "resnet50"]
