"""The CAM-compatible classifier and its functional split (paper §2, eq. 1-4).

Every architecture in jaxcam is a *backbone* (raw image -> last conv feature map
``A``) wrapped by :class:`CAMClassifier`, which adds model-side input
normalisation and the head the saliency methods need::

    features(x) -> A            (B, H, W, C) raw pixels -> (B, h, w, K)
    pool(A)     -> p            global average pooling, linear in A  -> (B, K)
    pooled_logits(p) -> S       [MLP ->] dense                      -> (B, classes)
    head(A)     -> Y            output_activation(pooled_logits(pool(A)))

:class:`SplitModel` binds a module to its variables and exposes the same split as
*per-example* pure functions (one image, one map); it is a pytree, so it is passed
into ``jax.jit`` as an argument and the parameters are never baked in as constants.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, ClassVar

import flax.linen as nn
import jax
import jax.numpy as jnp
from flax import struct

from jaxcam.checks import check_image_batch

Array = jax.Array

OUTPUT_ACTIVATIONS: tuple[str, ...] = ("relu", "softmax", "linear", "exp")


def check_output_activation(output: str) -> str:
    if output not in OUTPUT_ACTIVATIONS:
        raise ValueError(f"output activation must be one of {OUTPUT_ACTIVATIONS}, got {output!r}")
    return output


def apply_output(logits: Array, output: str) -> Array:
    """Output activation on logits ``S`` (..., classes) -> scores ``Y`` (..., classes)."""
    check_output_activation(output)
    if output == "relu":
        return jax.nn.relu(logits)
    if output == "softmax":
        return jax.nn.softmax(logits, axis=-1)
    if output == "exp":
        return jnp.exp(logits)
    return logits


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
    """

    backbone: nn.Module
    num_classes: int = 2
    output: str = "relu"
    hidden: tuple[int, ...] = ()
    in_channels: int = 1
    pixel_mean: float = 0.5
    pixel_std: float = 0.25

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
        """Raw images (B, H, W, C) -> feature map A (B, h, w, K)."""
        check_image_batch(x, self.in_channels, self.min_input_size)
        return self.backbone((x - self.pixel_mean) / self.pixel_std, train=train)

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


@struct.dataclass
class SplitModel:
    """A classifier bound to its variables, as per-example pure functions.

    ``SplitModel`` is a pytree (the variables are its leaves, the module is static),
    so jitted steps take it as an argument. Any object with the same methods works
    with the saliency methods and metrics; :func:`bind` builds one for a
    :class:`CAMClassifier`.
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
        path needs; an object implementing this protocol for another head returns
        False and gets the general path.
        """
        return True

    def _apply(self, method: Callable[..., Array], x: Array) -> Array:
        return self.module.apply(self.variables, x[None], method=method)[0]

    def features(self, image: Array) -> Array:
        """Image (H, W, C) -> feature map A (h, w, K)."""
        return self._apply(CAMClassifier.features, image)

    def logits(self, feature_map: Array) -> Array:
        """Feature map A (h, w, K) -> logits S (classes,)."""
        return self._apply(CAMClassifier.logits, feature_map)

    def first_layer(self) -> tuple[Array, Array]:
        """Kernel (K, m) and bias (m,) of the dense layer right after pooling.

        With it the exact derivatives start after that layer (the fast path of
        :func:`jaxcam.derivatives.pure_derivatives_pooled`).
        """
        layer = self.variables["params"]["hidden_0" if self.module.hidden else "classifier"]
        return layer["kernel"], layer["bias"]

    def logits_after_first_layer(self, x: Array) -> Array:
        """First dense layer's output (m,) -> logits S (classes,)."""
        return self._apply(CAMClassifier.logits_after_first_layer, x)

    def scores(self, image: Array) -> Array:
        """Image (H, W, C) -> scores Y (classes,): the model's output."""
        return apply_output(self.logits(self.features(image)), self.output)

    def class_weights(self) -> Array:
        """CAM weights w^c_k (eq. 3) as a (K, classes) matrix; needs the plain GAP->dense head."""
        if self.module.hidden:
            raise ValueError(
                "CAM needs a conv -> GAP -> dense head; this model has hidden layers "
                f"{self.module.hidden}: use Grad-CAM or Grad-CAM++"
            )
        return self.variables["params"]["classifier"]["kernel"]


def bind(module: CAMClassifier, variables: Any) -> SplitModel:
    """Bind a :class:`CAMClassifier` to its variables (``{'params': ..., 'batch_stats': ...}``)."""
    if not isinstance(module, CAMClassifier):
        raise TypeError(f"bind expects a CAMClassifier, got {type(module).__name__}")
    if "params" not in variables:
        raise ValueError("variables must contain 'params' (as returned by module.init)")
    return SplitModel(module=module, variables=variables)
