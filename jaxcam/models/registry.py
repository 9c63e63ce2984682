"""Model registry: name -> backbone constructor.

Adding an architecture is one file (a backbone module: normalised image -> A) and
one :func:`register_model` call. Every saliency method and metric then works on it.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import flax.linen as nn

from jaxcam.checks import check_integer
from jaxcam.models.base import CAMClassifier
from jaxcam.models.convnext import convnext_tiny
from jaxcam.models.inception_resnet_v2 import inception_resnet_v2
from jaxcam.models.resnet import resnet18, resnet50
from jaxcam.models.small_cnn import SmallCNN
from jaxcam.models.vit import vit_b16

_BACKBONES: dict[str, Callable[..., nn.Module]] = {}
_INPUT_SIZES: dict[str, int] = {}


def register_model(name: str, backbone: Callable[..., nn.Module], input_size: int) -> None:
    """Register ``backbone(**kwargs) -> nn.Module`` under ``name`` with its default input size.

    Raises TypeError unless ``name`` is a string, ``backbone`` a module class or a
    factory (not a module instance) and ``input_size`` an integer; ValueError for a
    size below 1 or a name already taken.
    """
    if not isinstance(name, str):
        raise TypeError(f"model name must be a string, got {name!r}")
    if isinstance(backbone, nn.Module) or not callable(backbone):
        hint = " (a module instance: pass its class)" if isinstance(backbone, nn.Module) else ""
        raise TypeError(
            f"backbone of model {name!r} must be callable (a module class or a function "
            f"returning a module), got {type(backbone).__name__}{hint}"
        )
    input_size = check_integer(input_size, f"input_size of model {name!r}", minimum=1)
    if name in _BACKBONES:
        raise ValueError(f"model {name!r} is already registered")
    _BACKBONES[name] = backbone
    _INPUT_SIZES[name] = input_size


def model_names() -> tuple[str, ...]:
    return tuple(sorted(_BACKBONES))


def _check_name(name: str) -> None:
    if name not in _BACKBONES:
        raise ValueError(f"unknown model {name!r}; known models: {', '.join(model_names())}")


def default_input_size(name: str) -> int:
    _check_name(name)
    return _INPUT_SIZES[name]


def create_model(
    name: str,
    num_classes: int = 2,
    output: str = "relu",
    *,
    in_channels: int = 1,
    hidden: tuple[int, ...] = (),
    **backbone_kwargs: Any,
) -> CAMClassifier:
    """Build the CAM-compatible classifier ``name`` (see :func:`model_names`)."""
    _check_name(name)
    return CAMClassifier(
        backbone=_BACKBONES[name](**backbone_kwargs),
        num_classes=num_classes,
        output=output,
        hidden=hidden,
        in_channels=in_channels,
    )


register_model("small_cnn", SmallCNN, input_size=128)

register_model("resnet18", resnet18, input_size=224)
register_model("resnet50", resnet50, input_size=224)
register_model("inception_resnet_v2", inception_resnet_v2, input_size=299)
register_model("convnext_tiny", convnext_tiny, input_size=224)
register_model("vit_b16", vit_b16, input_size=224)
