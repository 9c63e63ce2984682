"""Models: CAM-compatible classifiers and the registry."""

from jaxcam.models.base import (
    OUTPUT_ACTIVATIONS,
    CAMClassifier,
    SplitModel,
    apply_output,
    bind,
)
from jaxcam.models.head_only import FeatureMapInput, head_only_model
from jaxcam.models.inception_resnet_v2 import InceptionResNetV2, inception_resnet_v2
from jaxcam.models.registry import create_model, default_input_size, model_names, register_model
from jaxcam.models.resnet import ResNet, resnet18, resnet50
from jaxcam.models.small_cnn import SmallCNN

__all__ = [
    "OUTPUT_ACTIVATIONS",
    "CAMClassifier",
    "FeatureMapInput",
    "InceptionResNetV2",
    "ResNet",
    "SmallCNN",
    "SplitModel",
    "apply_output",
    "bind",
    "create_model",
    "default_input_size",
    "head_only_model",
    "inception_resnet_v2",
    "model_names",
    "register_model",
    "resnet18",
    "resnet50",
]
