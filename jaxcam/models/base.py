"""The CAM-compatible classifier and its functional split (paper §2, eq. 1-4).

Every architecture in jaxcam is a *backbone* (raw image -> last conv feature map
``A``) wrapped by :class:`CAMClassifier`, which adds model-side input
normalisation and the head the saliency methods need::

    features(x) -> A            (B, H, W, C) raw pixels -> (B, h, w, K)
    pool(A)     -> p            global average pooling, linear in A  -> (B, K)
    pooled_logits(p) -> S       [MLP ->] dense                      -> (B, classes)
    head(A)     -> Y            output_activation(pooled_logits(pool(A)))

A subclass may override ``pool``, ``pooled_logits``, ``logits_after_first_layer`` or
``logits`` (e.g. max pooling, another hidden activation): :class:`SplitModel` calls
the methods of the module's own class, and the fast exact derivative path of
Grad-CAM++ (which assumes GAP followed by the first dense layer) is used only when
no head method is overridden or the subclass declares ``keeps_linear_pooling``.
Overriding ``head`` is refused by :func:`bind`: the saliency methods differentiate
``apply_output(logits(A), output)``, which must be what the model outputs.

:class:`SplitModel` binds a module to its variables and exposes the same split as
*per-example* pure functions (one image, one map); it is a pytree, so it is passed
into ``jax.jit`` as an argument and the parameters are never baked in as constants.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, ClassVar

import flax.linen as nn
import jax
import jax.numpy as jnp
from flax import struct

from jaxcam.checks import check_backbone_output, check_feature_map, check_image_batch
from jaxcam.models.outputs import OUTPUT_ACTIVATIONS as OUTPUT_ACTIVATIONS  # re-exported
from jaxcam.models.outputs import apply_output as apply_output
from jaxcam.models.outputs import check_output_activation as check_output_activation
from jaxcam.models.pixel_stats import DEFAULT_PIXEL_MEAN, DEFAULT_PIXEL_STD

Array = jax.Array

#: The methods of :class:`CAMClassifier` that define its head (A -> logits -> Y).
HEAD_METHODS: tuple[str, ...] = ("pool", "pooled_logits", "logits_after_first_layer", "logits")


class Backbone(nn.Module):
    """Protocol for a backbone: ``__call__(x, train) -> A``.

    ``x`` is the *normalised* image batch (B, H, W, C); ``A`` is the target feature
    map (B, h, w, K). ``min_input_size`` is the smallest H (= W) it accepts.
    """

    min_input_size: ClassVar[int] = 1

    def __call__(self, x: Array, train: bool = False) -> Array:  # pragma: no cover
        raise NotImplementedError


class CAMClassifier(nn.Module):
    """backbone -> GAP -> (optional smooth MLP) -> dense -> output activation.

    Attributes:
      backbone: raw-normalised image -> last conv feature map ``A``.
      num_classes: number of classes.
      output: output activation, one of ``relu`` (the paper's), ``softmax``,
        ``linear``, ``exp``.
      hidden: widths of a GELU MLP between pooling and the class layer; empty (the
        default) gives the CAM head conv -> GAP -> dense. CAM needs that plain head;
        Grad-CAM and Grad-CAM++ work with any.
      in_channels: image channels expected (1 for X-rays).
      pixel_mean, pixel_std: model-side normalisation, so that masking acts on raw
        pixels (black = 0 in the raw image, before normalisation).

    Class attribute ``keeps_linear_pooling``: a subclass that overrides a head method
    (:data:`HEAD_METHODS`) but keeps ``logits(A) = logits_after_first_layer(GAP(A) @
    kernel + bias)``, with kernel and bias those of the first dense layer
    (``hidden_0``, or ``classifier`` without hidden layers), sets it to True to keep
    the fast exact Grad-CAM++ path; otherwise an override means the general path.
    """

    keeps_linear_pooling: ClassVar[bool] = False

    backbone: nn.Module
    num_classes: int = 2
    output: str = "relu"
    hidden: tuple[int, ...] = ()
    in_channels: int = 1
    pixel_mean: float = DEFAULT_PIXEL_MEAN
    pixel_std: float = DEFAULT_PIXEL_STD

    def setup(self) -> None:
        check_output_activation(self.output)
        if self.num_classes < 1:
            raise ValueError(f"num_classes must be >= 1, got {self.num_classes}")
        self.mlp = [nn.Dense(width, name=f"hidden_{i}") for i, width in enumerate(self.hidden)]
        self.classifier = nn.Dense(self.num_classes, name="classifier")

    @property
    def min_input_size(self) -> int:
        return getattr(self.backbone, "min_input_size", 1)

    def features(self, x: Array, train: bool = False) -> Array:
        """Raw images (B, H, W, C) -> feature map A (B, h, w, K).

        Raises ValueError (naming the backbone) unless A has rank 4 and the images' B.
        """
        check_image_batch(x, self.in_channels, self.min_input_size)
        feature_map = self.backbone((x - self.pixel_mean) / self.pixel_std, train=train)
        check_backbone_output(feature_map, x.shape[0], type(self.backbone).__name__)
        return feature_map

    def pool(self, feature_map: Array) -> Array:
        """Global average pooling (eq. 1): (..., h, w, K) -> (..., K). Linear in A."""
        return jnp.mean(feature_map, axis=(-3, -2))

    def pooled_logits(self, pooled: Array) -> Array:
        """Pooled features (..., K) -> logits S (..., classes)."""
        layers = [*self.mlp, self.classifier]
        return self.logits_after_first_layer(layers[0](pooled))

    def logits_after_first_layer(self, x: Array) -> Array:
        """Output of the first dense layer after pooling (bias included) -> logits."""
        layers = [*self.mlp, self.classifier]
        for dense in layers[1:]:
            x = dense(nn.gelu(x))
        return x

    def logits(self, feature_map: Array) -> Array:
        """Feature map A (..., h, w, K) -> logits S (..., classes)."""
        return self.pooled_logits(self.pool(feature_map))

    def head(self, feature_map: Array) -> Array:
        """Feature map A (..., h, w, K) -> scores Y (..., classes)."""
        return apply_output(self.logits(feature_map), self.output)

    def __call__(self, x: Array, train: bool = False) -> Array:
        return self.head(self.features(x, train=train))


def overridden_head_methods(module: CAMClassifier) -> tuple[str, ...]:
    """The :data:`HEAD_METHODS` (and ``head``) that the module's class overrides."""
    subclasses = type(module).__mro__[: type(module).__mro__.index(CAMClassifier)]
    return tuple(
        name for name in (*HEAD_METHODS, "head") if any(name in vars(cls) for cls in subclasses)
    )


def has_linear_pooling(module: CAMClassifier) -> bool:
    """True when the module's logits are ``logits_after_first_layer(GAP(A) @ kernel + bias)``:
    its class overrides no head method, or declares ``keeps_linear_pooling``."""
    return module.keeps_linear_pooling or not overridden_head_methods(module)


@struct.dataclass
class SplitModel:
    """A classifier bound to its variables, as per-example pure functions.

    ``SplitModel`` is a pytree (the variables are its leaves, the module is static),
    so jitted steps take it as an argument. It implements every member of
    :class:`jaxcam.models.Explainable`, what the saliency methods and metrics take;
    :func:`bind` builds one for a :class:`CAMClassifier`. Every method calls the
    module's own class (a subclass's overrides included).
    """

    module: CAMClassifier = struct.field(pytree_node=False)
    variables: Any

    @property
    def output(self) -> str:
        return self.module.output

    @property
    def num_classes(self) -> int:
        return self.module.num_classes

    @property
    def has_linear_pooling(self) -> bool:
        """True when ``logits(A) = logits_after_first_layer(GAP(A) @ kernel + bias)``.

        That structure (with :meth:`first_layer`) is what the fast exact derivative
        path needs. It holds for :class:`CAMClassifier` itself and for a subclass
        that overrides none of :data:`HEAD_METHODS` or declares
        ``keeps_linear_pooling = True``; any other subclass (e.g. max pooling) gets
        the general path. An object implementing this protocol for another head
        returns False.
        """
        return has_linear_pooling(self.module)

    @property
    def feature_channels(self) -> int | None:
        """K, the channels of A the head takes (rows of the first dense kernel), or
        ``None`` when the head's pooling is not known to keep K."""
        if not self.has_linear_pooling:
            return None
        return int(self.first_layer()[0].shape[0])

    def for_image(self, image: Array) -> SplitModel:
        """The model itself: its logits read A only, never the image (H, W, C)."""
        return self

    def _apply(self, method: str, x: Array) -> Array:
        return self.module.apply(self.variables, x[None], method=method)[0]

    def features(self, image: Array) -> Array:
        """Image (H, W, C) -> feature map A (h, w, K)."""
        if getattr(image, "ndim", None) != 3:
            raise ValueError(
                "SplitModel.features takes one image of shape (H, W, C), got shape "
                f"{getattr(image, 'shape', None)}"
            )
        return self._apply("features", image)

    def logits(self, feature_map: Array) -> Array:
        """Feature map A (h, w, K) -> logits S (classes,)."""
        check_feature_map(feature_map, self.feature_channels)
        return self._apply("logits", feature_map)

    def first_layer(self) -> tuple[Array, Array]:
        """Kernel (K, m) and bias (m,) of the dense layer right after pooling.

        With it the exact derivatives start after that layer (the fast path of
        :func:`jaxcam.derivatives.pure_derivatives_pooled`).
        """
        layer = self.variables["params"]["hidden_0" if self.module.hidden else "classifier"]
        return layer["kernel"], layer["bias"]

    def logits_after_first_layer(self, x: Array) -> Array:
        """First dense layer's output (m,) -> logits S (classes,)."""
        return self._apply("logits_after_first_layer", x)

    def image_logits(self, image: Array) -> Array:
        """Image (H, W, C) -> logits S (classes,): the whole network."""
        return self.logits(self.features(image))

    def scores(self, image: Array) -> Array:
        """Image (H, W, C) -> scores Y (classes,): the model's output."""
        return apply_output(self.image_logits(image), self.output)

    def class_weights(self) -> Array:
        """CAM weights w^c_k (eq. 3) as a (K, classes) matrix; needs the plain GAP->dense head."""
        if self.module.hidden:
            raise ValueError(
                "CAM needs a conv -> GAP -> dense head; this model has hidden layers "
                f"{self.module.hidden}: use Grad-CAM or Grad-CAM++"
            )
        overridden = overridden_head_methods(self.module)
        if overridden:
            raise ValueError(
                f"CAM needs a conv -> GAP -> dense head; {type(self.module).__name__} "
                f"overrides {', '.join(overridden)}: use Grad-CAM or Grad-CAM++"
            )
        return self.variables["params"]["classifier"]["kernel"]


def bind(module: CAMClassifier, variables: Any) -> SplitModel:
    """Bind a :class:`CAMClassifier` to its variables (``{'params': ..., 'batch_stats': ...}``).

    Raises TypeError for a subclass that overrides ``head``: the saliency methods
    differentiate ``apply_output(logits(A), output)``, so a different head would be
    explained wrongly; override ``logits`` (or ``pool``...) instead.
    """
    if not isinstance(module, CAMClassifier):
        raise TypeError(f"bind expects a CAMClassifier, got {type(module).__name__}")
    if "head" in overridden_head_methods(module):
        raise TypeError(
            f"{type(module).__name__} overrides CAMClassifier.head; jaxcam explains "
            "apply_output(logits(A), output): override logits (or pool, pooled_logits) instead"
        )
    if not isinstance(variables, Mapping) or "params" not in variables:
        raise ValueError("variables must contain 'params' (as returned by module.init)")
    return SplitModel(module=module, variables=variables)
