"""Models: CAM-compatible classifiers and the registry."""

from jaxcam.models.base import CAMClassifier, SplitModel, bind
from jaxcam.models.convnext import ConvNeXt, convnext_tiny
from jaxcam.models.head_only import FeatureMapInput, head_only_model
from jaxcam.models.inception_resnet_v2 import InceptionResNetV2, inception_resnet_v2
from jaxcam.models.init import init_variables, variable_shapes

# keras_weights imports Keras lazily, inside its functions: importing it here is free.
from jaxcam.models.keras_weights import (
    KerasImport,
    import_keras_inception_resnet_v2,
    inception_resnet_v2_from_keras,
    load_keras_inception_resnet_v2,
)
from jaxcam.models.layers import LayerModel, layer_names, split_at
from jaxcam.models.outputs import OUTPUT_ACTIVATIONS, apply_output, check_output_activation
from jaxcam.models.protocol import Explainable, ExplainableDefaults, InputSpec
from jaxcam.models.registry import create_model, default_input_size, model_names, register_model
from jaxcam.models.resnet import ResNet, resnet18, resnet50
from jaxcam.models.small_cnn import SmallCNN
from jaxcam.models.vit import ViT, vit_b16

__all__ = [
    "OUTPUT_ACTIVATIONS",
    "CAMClassifier",
    "ConvNeXt",
    "Explainable",
    "ExplainableDefaults",
    "FeatureMapInput",
    "InceptionResNetV2",
    "InputSpec",
    "KerasImport",
    "LayerModel",
    "ResNet",
    "SmallCNN",
    "SplitModel",
    "ViT",
    "apply_output",
    "check_output_activation",
    "bind",
    "convnext_tiny",
    "create_model",
    "default_input_size",
    "head_only_model",
    "import_keras_inception_resnet_v2",
    "inception_resnet_v2",
    "inception_resnet_v2_from_keras",
    "init_variables",
    "layer_names",
    "load_keras_inception_resnet_v2",
    "model_names",
    "register_model",
    "resnet18",
    "resnet50",
    "split_at",
    "variable_shapes",
    "vit_b16",
]
