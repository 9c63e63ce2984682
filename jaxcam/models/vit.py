"""Vision Transformer backbones (Dosovitskiy et al. 2021, "An Image is Worth 16x16 Words").

The layout follows torchvision's ``vit_b_16``: a 16x16 stride-16 patch embedding
(conv with bias) to ``dim`` channels; a learned class token prepended to the patch
tokens; a learned position embedding for the 1 + (image_size / patch_size)^2 tokens;
``depth`` pre-norm encoder blocks

    x + SelfAttention(LayerNorm(x)), then x + MLP(LayerNorm(x)),  MLP: Dense mlp_dim
    -> GELU (exact erf form) -> Dense dim

(multi-head self-attention with biased query/key/value/output projections), and a
final LayerNorm. Every LayerNorm has epsilon 1e-6; dropout is left out (inference).

Differences from torchvision, for CAM:

* torchvision classifies from the class token. A CAM head must be GAP -> dense over a
  spatial map, so the backbone returns the final (normalised) **patch tokens**
  reshaped to their grid (B, h, w, dim), h = H / patch_size (14x14x768 at 224x224),
  and the head pools that grid (same parameter count). The class token is kept in the
  network (it takes part in every block's attention) but is not in any feature map.
  The final LayerNorm acts per token, so applying it to the patch tokens alone
  (``final_norm``) gives the same values as applying it to all tokens.
* At input sizes other than ``image_size`` the grid part of the position embedding is
  resized (bilinear, :func:`resize_position_embedding`) to the actual patch grid, so
  any size that is a multiple of ``patch_size`` works; other sizes raise ValueError.

Layer names (:func:`jaxcam.models.layer_names`): ``backbone/patch_embed`` (the patch
embedding, before the class token and position embedding), ``backbone/block{i}``
(1-based: the patch tokens of encoder block ``i`` as a grid (B, h, w, dim)),
``backbone/final_norm`` (the backbone's output). ``block{i}`` is an identity module
placed after the token-level encoder block ``encoder{i}`` (rank 3, not listed); the
tokens the next block reads are re-assembled from the class token and its output.
Substituting it (:func:`jaxcam.models.split_at`) replaces the patch tokens only: the
class token is passed on from the image, so the rest of the network reads the image
too and derivatives are partial ones, through the patch tokens, as pytorch-grad-cam's
ViT reshape transform takes them.
"""

from __future__ import annotations

import math
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp

Array = jax.Array

_EPSILON = 1e-6


def _layer_norm(name: str) -> nn.LayerNorm:
    """LayerNorm over the last axis, epsilon 1e-6, as torchvision's."""
    return nn.LayerNorm(epsilon=_EPSILON, use_fast_variance=False, name=name)


def resize_position_embedding(embedding: Array, grid: tuple[int, int]) -> Array:
    """Position embedding (1, 1 + g*g, D) for a g x g patch grid -> (1, 1 + h*w, D).

    The class token's entry (first) is kept; the grid part, row-major over (g, g), is
    resized bilinearly (``jax.image.resize``: half-pixel centres, antialiased when
    shrinking) to ``grid`` = (h, w). At (g, g) the embedding is returned as it is.
    """
    tokens, dim = embedding.shape[1] - 1, embedding.shape[2]
    side = math.isqrt(tokens)
    if side * side != tokens:
        raise ValueError(f"position embedding has {tokens} grid tokens, not a square number")
    if tuple(grid) == (side, side):
        return embedding
    patches = embedding[0, 1:].reshape(side, side, dim)
    resized = jax.image.resize(patches, (*grid, dim), method="bilinear")
    return jnp.concatenate([embedding[:, :1], resized.reshape(1, -1, dim)], axis=1)


class SelfAttention(nn.Module):
    """Multi-head self-attention: tokens (B, L, D) -> (B, L, D).

    Query, key, value and output projections are Dense layers with bias (torchvision's
    packed ``in_proj`` has the same parameters); heads split D into ``heads`` parts.
    """

    heads: int

    @nn.compact
    def __call__(self, x: Array) -> Array:
        batch, length, dim = x.shape
        head_dim = dim // self.heads

        def project(name: str) -> Array:
            out = nn.Dense(dim, name=name)(x)
            return out.reshape(batch, length, self.heads, head_dim)

        query, key, value = project("query"), project("key"), project("value")
        logits = jnp.einsum("bqhd,bkhd->bhqk", query, key) / math.sqrt(head_dim)
        weights = jax.nn.softmax(logits, axis=-1)
        mixed = jnp.einsum("bhqk,bkhd->bqhd", weights, value).reshape(batch, length, dim)
        return nn.Dense(dim, name="out")(mixed)


class EncoderBlock(nn.Module):
    """Pre-norm transformer block: tokens (B, L, D) -> (B, L, D)."""

    heads: int
    mlp_dim: int

    @nn.compact
    def __call__(self, x: Array) -> Array:
        dim = x.shape[-1]
        x = x + SelfAttention(self.heads, name="attention")(_layer_norm("norm1")(x))
        y = _layer_norm("norm2")(x)
        y = nn.Dense(self.mlp_dim, kernel_init=nn.initializers.xavier_uniform(), name="mlp1")(y)
        y = nn.gelu(y, approximate=False)
        y = nn.Dense(dim, kernel_init=nn.initializers.xavier_uniform(), name="mlp2")(y)
        return x + y


class PatchGrid(nn.Module):
    """Identity on a patch-token grid (B, h, w, D): the named layer of one block's output."""

    @nn.compact
    def __call__(self, grid: Array) -> Array:
        return grid


class ViT(nn.Module):
    """ViT backbone: normalised images (B, H, W, C) -> final patch tokens A (B, h, w, dim).

    Attributes:
      patch_size: side of a patch (16 for ViT-B/16); H and W must be multiples of it.
      dim: token width (768).
      depth: encoder blocks (12).
      heads: attention heads (12); must divide ``dim``.
      mlp_dim: hidden width of the MLP (3072).
      image_size: the size the position embedding is learned for (224: a 14x14 grid);
        a multiple of ``patch_size``.

    ``min_input_size`` is ``patch_size`` (a 1x1 grid).
    """

    patch_size: int = 16
    dim: int = 768
    depth: int = 12
    heads: int = 12
    mlp_dim: int = 3072
    image_size: int = 224

    @property
    def min_input_size(self) -> int:
        return self.patch_size

    def _check(self, height: int, width: int) -> None:
        sizes = (self.patch_size, self.dim, self.depth, self.heads, self.mlp_dim, self.image_size)
        if min(sizes) < 1:
            raise ValueError(
                f"patch_size, dim, depth, heads, mlp_dim and image_size must be >= 1, got {sizes}"
            )
        if self.dim % self.heads:
            raise ValueError(f"heads ({self.heads}) must divide dim ({self.dim})")
        if self.image_size % self.patch_size:
            raise ValueError(
                f"image_size ({self.image_size}) must be a multiple of patch_size "
                f"({self.patch_size})"
            )
        if height % self.patch_size or width % self.patch_size or min(height, width) < 1:
            raise ValueError(
                f"ViT input size {height}x{width} must be a positive multiple of the patch "
                f"size {self.patch_size} in both dimensions"
            )

    @nn.compact
    def __call__(self, x: Array, train: bool = False) -> Array:
        del train  # no BatchNorm, no dropout: the same forward in training
        batch, height, width, _ = x.shape
        self._check(height, width)
        grid = nn.Conv(
            self.dim,
            (self.patch_size, self.patch_size),
            strides=(self.patch_size, self.patch_size),
            padding="VALID",
            kernel_init=nn.initializers.variance_scaling(1.0, "fan_in", "truncated_normal"),
            name="patch_embed",
        )(x)
        rows, cols = grid.shape[1], grid.shape[2]
        class_token = self.param("class_token", nn.initializers.zeros, (1, 1, self.dim))
        side = self.image_size // self.patch_size
        position = self.param(
            "position_embedding", nn.initializers.normal(0.02), (1, 1 + side * side, self.dim)
        )
        tokens = jnp.concatenate(
            [
                jnp.broadcast_to(class_token, (batch, 1, self.dim)),
                grid.reshape(batch, -1, self.dim),
            ],
            axis=1,
        )
        tokens = tokens + resize_position_embedding(position, (rows, cols))
        for index in range(1, self.depth + 1):
            tokens = EncoderBlock(self.heads, self.mlp_dim, name=f"encoder{index}")(tokens)
            patches = tokens[:, 1:].reshape(batch, rows, cols, self.dim)
            grid = PatchGrid(name=f"block{index}")(patches)
            if index < self.depth:  # the next block reads this grid and the image's class token
                tokens = jnp.concatenate([tokens[:, :1], grid.reshape(batch, -1, self.dim)], axis=1)
        return _layer_norm("final_norm")(grid)


def vit_b16(**kwargs: Any) -> ViT:
    """ViT-B/16 backbone (patch 16, dim 768, 12 blocks, 12 heads, MLP 3072): 224 -> 14x14x768.

    Keyword arguments override the attributes (e.g. a tiny ``dim`` and ``depth``).
    """
    return ViT(**kwargs)


__all__ = [
    "EncoderBlock",
    "PatchGrid",
    "SelfAttention",
    "ViT",
    "resize_position_embedding",
    "vit_b16",
]
