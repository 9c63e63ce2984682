"""What every saliency method, metric and evaluation needs of a model: :class:`Explainable`.

A model is explained one example at a time, through its split at a feature map A
(paper §2)::

    features(image) -> A        one raw image (H, W, C) -> feature map (h, w, K)
    logits(A)       -> S        (classes,)
    scores(image)   -> Y        apply_output(image_logits(image), output), (classes,)

**Required** members: ``module`` (what images it takes: :class:`InputSpec`), ``output``,
``num_classes``, ``features`` and ``logits``.

**Optional** members, the fast paths and conveniences, are declared here too, so that
callers read them instead of probing for them; :class:`ExplainableDefaults` gives each
a default, and a class that implements only the required members subclasses it:

* ``has_linear_pooling`` (default False): ``logits(A) = logits_after_first_layer(GAP(A)
  @ kernel + bias)`` with ``first_layer() -> (kernel, bias)``; True enables the fast
  exact Grad-CAM++ path and the pooled Ablation-CAM path.
* ``feature_channels`` (default None): K, when the head knows it (A is checked against it).
* ``for_image(image)`` (default: the model itself): the model bound to the image it
  explains, for a split whose logits also read the image (a layer inside a residual block).
* ``image_logits(image)`` (default ``logits(features(image))``) and ``scores(image)``.
* ``class_weights()`` (default: ValueError): CAM's (K, classes) weights.

:class:`jaxcam.models.SplitModel` and :class:`jaxcam.models.LayerModel` implement every
member themselves. A model is passed into ``jax.jit`` as an argument, so it must be a
pytree (e.g. a ``flax.struct.dataclass``).
"""

from __future__ import annotations

from typing import Any, Protocol, runtime_checkable

import flax.linen as nn
import jax

from jaxcam.checks import check_class_index, check_feature_map
from jaxcam.models.outputs import apply_output

Array = jax.Array

#: The members of :class:`Explainable` every model implements itself.
REQUIRED_MEMBERS: tuple[str, ...] = ("module", "output", "num_classes", "features", "logits")
#: The members :class:`ExplainableDefaults` gives a default.
OPTIONAL_MEMBERS: tuple[str, ...] = (
    "has_linear_pooling",
    "feature_channels",
    "for_image",
    "image_logits",
    "scores",
    "first_layer",
    "logits_after_first_layer",
    "class_weights",
)


@runtime_checkable
class InputSpec(Protocol):
    """The images a model takes (a :class:`jaxcam.models.CAMClassifier` is one)."""

    @property
    def in_channels(self) -> int:
        """C of the raw images (B, H, W, C)."""
        ...

    @property
    def min_input_size(self) -> int:
        """The smallest H (= W) the model accepts."""
        ...


@runtime_checkable
class Explainable(Protocol):
    """A model as per-example functions of one image (see the module doc)."""

    # Required.

    @property
    def module(self) -> InputSpec:
        """What images the model takes (``in_channels``, ``min_input_size``)."""
        ...

    @property
    def output(self) -> str:
        """The output activation: ``relu``, ``softmax``, ``linear`` or ``exp``."""
        ...

    @property
    def num_classes(self) -> int: ...

    def features(self, image: Array) -> Array:
        """Image (H, W, C) -> feature map A (h, w, K)."""
        ...

    def logits(self, feature_map: Array) -> Array:
        """Feature map A (h, w, K) -> logits S (classes,)."""
        ...

    # Optional: defaults in ExplainableDefaults.

    @property
    def has_linear_pooling(self) -> bool:
        """True when ``logits(A) = logits_after_first_layer(GAP(A) @ kernel + bias)``."""
        ...

    @property
    def feature_channels(self) -> int | None:
        """K of A when the head knows it, else None."""
        ...

    def for_image(self, image: Array) -> Explainable:
        """The model bound to the image (H, W, C) it explains."""
        ...

    def image_logits(self, image: Array) -> Array:
        """Image (H, W, C) -> logits S (classes,): the whole network."""
        ...

    def scores(self, image: Array) -> Array:
        """Image (H, W, C) -> scores Y (classes,): the model's output."""
        ...

    def first_layer(self) -> tuple[Array, Array]:
        """Kernel (K, m) and bias (m,) of the dense layer right after pooling."""
        ...

    def logits_after_first_layer(self, x: Array) -> Array:
        """First dense layer's output (m,) -> logits S (classes,)."""
        ...

    def class_weights(self) -> Array:
        """CAM weights w^c_k as a (K, classes) matrix."""
        ...


class ExplainableDefaults:
    """The optional members of :class:`Explainable` with their defaults.

    Subclass it and implement the required members (``module``, ``output``,
    ``num_classes``, ``features``, ``logits``) to get an :class:`Explainable`: no fast
    path, K unchecked, no image binding, CAM unavailable.
    """

    @property
    def has_linear_pooling(self) -> bool:
        """False: the general paths (no ``first_layer``)."""
        return False

    @property
    def feature_channels(self) -> int | None:
        """None: K of A is not checked."""
        return None

    def for_image(self: Explainable, image: Array) -> Explainable:
        """The model itself: its logits do not read the image."""
        return self

    def image_logits(self: Explainable, image: Array) -> Array:
        """Image (H, W, C) -> logits S (classes,): ``logits(features(image))``."""
        return self.logits(self.features(image))

    def scores(self: Explainable, image: Array) -> Array:
        """Image (H, W, C) -> scores Y (classes,): ``apply_output(image_logits(image))``."""
        return apply_output(self.image_logits(image), self.output)

    def first_layer(self) -> tuple[Array, Array]:
        raise NotImplementedError(
            f"{type(self).__name__} has no pooled head (has_linear_pooling is False)"
        )

    def logits_after_first_layer(self, x: Array) -> Array:
        raise NotImplementedError(
            f"{type(self).__name__} has no pooled head (has_linear_pooling is False)"
        )

    def class_weights(self) -> Array:
        raise ValueError(
            f"CAM needs a conv -> GAP -> dense head; {type(self).__name__} does not give its "
            "class weights: use grad_cam or another gradient method"
        )


__all__ = [
    "OPTIONAL_MEMBERS",
    "REQUIRED_MEMBERS",
    "Explainable",
    "ExplainableDefaults",
    "InputSpec",
]


def check_bound_model(model: Any, name: str = "model") -> None:
    """A bound split model (``jaxcam.bind(module, variables)``), not a bare flax module:
    it has every member of :class:`jaxcam.models.Explainable`."""
    if isinstance(model, nn.Module):
        raise TypeError(
            f"{name} is an unbound {type(model).__name__} (a flax module without its "
            "variables); use jaxcam.bind(module, variables)"
        )
    missing = [a for a in REQUIRED_MEMBERS if not hasattr(model, a)]
    if missing:
        raise TypeError(
            f"{name} must be a bound split model (jaxcam.bind(module, variables)); "
            f"{type(model).__name__} has no {', '.join(missing)}"
        )
    missing = [a for a in OPTIONAL_MEMBERS if not hasattr(model, a)]
    if missing:
        raise TypeError(
            f"{name} must implement jaxcam.models.Explainable; {type(model).__name__} has no "
            f"{', '.join(missing)} (subclass jaxcam.models.ExplainableDefaults for them)"
        )


def check_explained(model: Explainable, feature_map: Any, class_index: Any) -> None:
    """The arguments of a per-example saliency method ``(model, A (h, w, K), c)``.

    The model must be bound, A one map whose K matches the head (when the model
    knows its K: ``feature_channels``), c an integer scalar in range (unless traced).
    """
    check_bound_model(model)
    check_feature_map(feature_map, model.feature_channels)
    check_class_index(class_index, model.num_classes)
