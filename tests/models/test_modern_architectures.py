"""ConvNeXt-T and ViT-B/16: torchvision's parameter counts, layer names, forwards against
NumPy references, every saliency method at their layers, the ViT split at a block, and
the position-embedding resize."""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from scipy.special import erf

from jaxcam.models import bind, create_model, layer_names, split_at
from jaxcam.models.vit import ViT, resize_position_embedding
from jaxcam.saliency.registry import example_method, method_names

KEY = jax.random.key(0)
# 32x32 images: stage 1 at 8x8 (4 channels), stage 2 at 4x4 (8).
CONVNEXT = {"depths": (1, 2), "dims": (4, 8)}
CONVNEXT_SIZE = 32
# 16x16 images: a 4x4 grid of 8-wide tokens, the position embedding learned for it.
VIT = {"patch_size": 4, "dim": 8, "depth": 2, "heads": 2, "mlp_dim": 16, "image_size": 16}
VIT_SIZE = 16
TINY = {"convnext_tiny": (CONVNEXT, CONVNEXT_SIZE), "vit_b16": (VIT, VIT_SIZE)}


def _count(tree) -> int:
    return sum(int(np.prod(leaf.shape)) for leaf in jax.tree_util.tree_leaves(tree))


def _compile_quickly(fn, *args):
    """jit ``fn`` with XLA's backend optimisations off (they dominate on tiny programs)."""
    return jax.jit(fn).lower(*args).compile(compiler_options={"xla_backend_optimization_level": 0})


def _draw(shapes, seed: int = 0):
    """Random parameters drawn on the host: every block does something (no 1e-6 scales)."""
    rng = np.random.default_rng(seed)

    def draw(path, leaf):
        name = path[-1].key
        if name in ("scale", "layer_scale"):
            value = rng.uniform(0.5, 1.5, leaf.shape)
        elif name == "bias":
            value = rng.normal(0.0, 0.1, leaf.shape)
        elif name == "kernel":  # scaled by its fan-in
            value = rng.normal(0.0, 1.0, leaf.shape) / np.sqrt(np.prod(leaf.shape[:-1]))
        else:  # class token, position embedding
            value = rng.normal(0.0, 0.5, leaf.shape)
        return jnp.asarray(value, leaf.dtype)

    return jax.tree_util.tree_map_with_path(draw, shapes)


@functools.cache
def _tiny(name: str):
    """(bound tiny model with random parameters, one image (H, W, 1))."""
    kwargs, size = TINY[name]
    module = create_model(name, num_classes=3, output="softmax", in_channels=1, **kwargs)
    shapes = jax.eval_shape(module.init, KEY, jnp.zeros((1, size, size, 1)))
    image = np.random.default_rng(1).uniform(size=(size, size, 1)).astype(np.float32)
    return bind(module, _draw(shapes)), jnp.asarray(image)


def _normalised(model, image) -> np.ndarray:
    """The image as the backbone sees it (the classifier's pixel normalisation), float64."""
    module = model.module
    return (np.asarray(image, np.float64) - module.pixel_mean) / module.pixel_std


def _np(tree):
    return jax.tree_util.tree_map(lambda leaf: np.asarray(leaf, np.float64), tree)


# --- NumPy references ---------------------------------------------------------------------


def _np_layer_norm(x: np.ndarray, p) -> np.ndarray:
    mean = x.mean(-1, keepdims=True)
    variance = ((x - mean) ** 2).mean(-1, keepdims=True)
    return (x - mean) / np.sqrt(variance + 1e-6) * p["scale"] + p["bias"]


def _np_gelu(x: np.ndarray) -> np.ndarray:
    return 0.5 * x * (1.0 + erf(x / np.sqrt(2.0)))


def _np_patchify(x: np.ndarray, p, size: int) -> np.ndarray:
    """Conv size x size, stride size, no padding: (H, W, C) -> (H/size, W/size, out)."""
    rows, cols, channels = x.shape[0] // size, x.shape[1] // size, x.shape[2]
    patches = x.reshape(rows, size, cols, size, channels).transpose(0, 2, 1, 3, 4)
    return (
        patches.reshape(rows, cols, -1) @ p["kernel"].reshape(-1, p["kernel"].shape[-1])
        + (p["bias"])
    )


def _np_convnext_block(x: np.ndarray, p) -> np.ndarray:
    """Depthwise 7x7 (padding 3) -> LN -> Dense 4d -> GELU -> Dense d -> scale -> + x."""
    rows, cols, _ = x.shape
    padded = np.pad(x, ((3, 3), (3, 3), (0, 0)))
    kernel = p["dwconv"]["kernel"][:, :, 0, :]  # (7, 7, channels)
    y = sum(padded[a : a + rows, b : b + cols] * kernel[a, b] for a in range(7) for b in range(7))
    y = _np_layer_norm(y + p["dwconv"]["bias"], p["norm"])
    y = _np_gelu(y @ p["pwconv1"]["kernel"] + p["pwconv1"]["bias"])
    y = y @ p["pwconv2"]["kernel"] + p["pwconv2"]["bias"]
    return x + p["layer_scale"] * y


def _np_convnext(params, x: np.ndarray) -> np.ndarray:
    """The tiny ConvNeXt backbone: (H, W, C) -> (H/8, W/8, 8), final LN per position."""
    x = _np_layer_norm(_np_patchify(x, params["stem"]["conv"], 4), params["stem"]["norm"])
    for stage, depth in enumerate(CONVNEXT["depths"], start=1):
        if stage > 1:
            down = params[f"downsample{stage}"]
            x = _np_patchify(_np_layer_norm(x, down["norm"]), down["conv"], 2)
        for index in range(1, depth + 1):
            x = _np_convnext_block(x, params[f"stage{stage}_block{index}"])
    return _np_layer_norm(x, params["final_norm"])


def _np_encoder(p, tokens: np.ndarray) -> np.ndarray:
    """Pre-norm encoder block on tokens (L, D) with VIT['heads'] heads."""
    length, dim = tokens.shape
    heads = VIT["heads"]
    a = _np_layer_norm(tokens, p["norm1"])
    q, k, v = (
        (a @ p["attention"][n]["kernel"] + p["attention"][n]["bias"]).reshape(length, heads, -1)
        for n in ("query", "key", "value")
    )
    scores = np.einsum("qhd,khd->hqk", q, k) / np.sqrt(dim // heads)
    weights = np.exp(scores - scores.max(-1, keepdims=True))
    weights /= weights.sum(-1, keepdims=True)
    mixed = np.einsum("hqk,khd->qhd", weights, v).reshape(length, dim)
    tokens = tokens + mixed @ p["attention"]["out"]["kernel"] + p["attention"]["out"]["bias"]
    y = _np_layer_norm(tokens, p["norm2"])
    y = _np_gelu(y @ p["mlp1"]["kernel"] + p["mlp1"]["bias"])
    return tokens + y @ p["mlp2"]["kernel"] + p["mlp2"]["bias"]


def _np_vit_tokens(params, x: np.ndarray) -> list[np.ndarray]:
    """All tokens (1 + h*w, D), class token first, after each encoder block (at image_size)."""
    grid = _np_patchify(x, params["patch_embed"], VIT["patch_size"])
    tokens = np.concatenate([params["class_token"][0], grid.reshape(-1, VIT["dim"])])
    tokens = tokens + params["position_embedding"][0]  # used as is at image_size
    states = []
    for index in range(1, VIT["depth"] + 1):
        tokens = _np_encoder(params[f"encoder{index}"], tokens)
        states.append(tokens)
    return states


# --- reference sizes (torchvision) --------------------------------------------------------


@pytest.mark.parametrize(
    ("name", "params", "features"),
    [("convnext_tiny", 28_589_128, (1, 7, 7, 768)), ("vit_b16", 86_567_656, (1, 14, 14, 768))],
)
def test_matches_torchvision_counts(name, params, features):
    model = create_model(name, num_classes=1000, in_channels=3)
    x = jax.ShapeDtypeStruct((1, 224, 224, 3), jnp.float32)
    variables = jax.eval_shape(model.init, KEY, x)
    assert set(variables) == {"params"}  # LayerNorm only: no running statistics
    assert _count(variables) == params
    out = jax.eval_shape(lambda v, im: model.apply(v, im, method=model.features), variables, x)
    assert tuple(out.shape) == features
    if name == "vit_b16":  # class token + 1 + 14 * 14 learned positions
        assert variables["params"]["backbone"]["class_token"].shape == (1, 1, 768)
        assert variables["params"]["backbone"]["position_embedding"].shape == (1, 197, 768)


# --- layer names --------------------------------------------------------------------------


def test_convnext_layer_names():
    model, _ = _tiny("convnext_tiny")

    def block(name: str, rows: int, dim: int) -> list[tuple[str, tuple[int, ...]]]:
        inner = [("dwconv", dim), ("norm", dim), ("pwconv1", 4 * dim), ("pwconv2", dim)]
        return [(f"{name}/{n}", (rows, rows, k)) for n, k in inner] + [(name, (rows, rows, dim))]

    # Inner modules finish first, so they are listed before the module that holds them.
    expected = [
        ("backbone/stem/conv", (8, 8, 4)),
        ("backbone/stem/norm", (8, 8, 4)),
        ("backbone/stem", (8, 8, 4)),
        *block("backbone/stage1_block1", 8, 4),
        ("backbone/downsample2/norm", (8, 8, 4)),
        ("backbone/downsample2/conv", (4, 4, 8)),
        ("backbone/downsample2", (4, 4, 8)),
        *block("backbone/stage2_block1", 4, 8),
        *block("backbone/stage2_block2", 4, 8),
        ("backbone/final_norm", (4, 4, 8)),
        ("backbone", (4, 4, 8)),
    ]
    assert list(layer_names(model, (CONVNEXT_SIZE, CONVNEXT_SIZE, 1)).items()) == expected
    # 224x224 ConvNeXt-T: the stage maps of torchvision's layout.
    full = create_model("convnext_tiny", in_channels=3)
    variables = jax.eval_shape(full.init, KEY, jax.ShapeDtypeStruct((1, 32, 32, 3), jnp.float32))
    zeros = jax.tree_util.tree_map(lambda leaf: jnp.zeros(leaf.shape, leaf.dtype), variables)
    names = layer_names(bind(full, zeros), (224, 224, 3))
    assert names["backbone/stem"] == (56, 56, 96)
    assert names["backbone/stage1_block3"] == (56, 56, 96)
    assert names["backbone/downsample2"] == (28, 28, 192)
    assert names["backbone/stage3_block9"] == (14, 14, 384)
    assert names["backbone/stage4_block3"] == (7, 7, 768)
    assert "backbone/stage4_block4" not in names


def test_vit_layer_names_are_patch_grids_only():
    model, _ = _tiny("vit_b16")
    grid = {"backbone/patch_embed": (4, 4, 8), "backbone/block1": (4, 4, 8)}
    grid |= {"backbone/block2": (4, 4, 8), "backbone/final_norm": (4, 4, 8), "backbone": (4, 4, 8)}
    # The encoder blocks work on token sequences (rank 3): none of their modules is listed.
    assert list(layer_names(model, (16, 16, 1)).items()) == list(grid.items())
    at_32 = layer_names(model, (32, 32, 1))  # an 8x8 grid, the position embedding resized
    assert set(at_32.values()) == {(8, 8, 8)}


# --- forwards against NumPy references ----------------------------------------------------


def test_convnext_forward_matches_a_numpy_reference():
    model, image = _tiny("convnext_tiny")
    feature_map = model.features(image)
    expected = _np_convnext(_np(model.variables["params"]["backbone"]), _normalised(model, image))
    assert feature_map.shape == (4, 4, 8)
    np.testing.assert_allclose(feature_map, expected, rtol=1e-4, atol=1e-4)


def test_vit_map_is_the_final_patch_tokens_without_the_class_token():
    model, image = _tiny("vit_b16")
    params = _np(model.variables["params"]["backbone"])
    tokens = _np_vit_tokens(params, _normalised(model, image))[-1]  # (1 + 16, 8)
    feature_map = model.features(image)
    assert feature_map.shape == (4, 4, 8)  # 16 positions: the 17 tokens less the class token
    expected = _np_layer_norm(tokens[1:], params["final_norm"]).reshape(4, 4, 8)
    np.testing.assert_allclose(feature_map, expected, rtol=1e-4, atol=1e-4)
    # GAP over the grid -> dense gives the logits.
    head = _np(model.variables["params"]["classifier"])
    logits = expected.mean(axis=(0, 1)) @ head["kernel"] + head["bias"]
    np.testing.assert_allclose(model.image_logits(image), logits, rtol=1e-4, atol=1e-4)


# --- the ViT split at a block -------------------------------------------------------------


def test_vit_substituting_a_blocks_own_grid_reproduces_the_logits():
    model, image = _tiny("vit_b16")
    image_logits = model.image_logits(image)
    reads_image = {"backbone/patch_embed": False, "backbone/block1": True}
    reads_image["backbone/block2"] = False  # the last block: only its grid goes on
    for layer, reads in reads_image.items():
        split = split_at(model, layer)
        assert split.reads_image is reads, layer
        bound = split.for_image(image)
        np.testing.assert_allclose(
            bound.logits(bound.features(image)), image_logits, rtol=1e-5, atol=1e-5
        )


def test_vit_block_substitution_keeps_the_image_class_token():
    model, image = _tiny("vit_b16")
    params = _np(model.variables["params"]["backbone"])
    after_block1 = _np_vit_tokens(params, _normalised(model, image))[0]
    other_grid = np.random.default_rng(2).normal(size=(4, 4, 8))
    # The rest of the network by hand: block 2 reads the image's class token and the new grid.
    tokens = np.concatenate([after_block1[:1], other_grid.reshape(16, 8)])
    tokens = _np_encoder(params["encoder2"], tokens)
    pooled = _np_layer_norm(tokens[1:], params["final_norm"]).mean(axis=0)
    head = _np(model.variables["params"]["classifier"])
    expected = pooled @ head["kernel"] + head["bias"]
    split = split_at(model, "backbone/block1").for_image(image)
    got = split.logits(jnp.asarray(other_grid, jnp.float32))
    np.testing.assert_allclose(got, expected, rtol=1e-4, atol=1e-4)


# --- saliency methods at the layers -------------------------------------------------------

INNER_LAYER = {"convnext_tiny": "backbone/stage2_block1", "vit_b16": "backbone/block1"}


@pytest.mark.parametrize("name", sorted(TINY))
def test_every_method_at_an_inner_layer_gives_finite_maps(name):
    model, image = _tiny(name)
    layer = INNER_LAYER[name]
    split = split_at(model, layer).for_image(image)
    methods = [m for m in method_names() if m != "cam"]  # CAM needs the backbone's output

    def run(image):
        feature_map = split.features(image)
        maps = {m: example_method(m, {}, image)(split, feature_map, jnp.int32(1)) for m in methods}
        maps["cam"] = example_method("cam", {}, image)(model, model.features(image), jnp.int32(1))
        return maps

    maps = _compile_quickly(run, image)(image)
    assert set(maps) == set(method_names())
    shape = layer_names(model, image.shape)[layer][:2]
    backbone_shape = layer_names(model, image.shape)["backbone"][:2]
    for method, saliency in maps.items():
        assert saliency.shape == (backbone_shape if method == "cam" else shape), method
        assert bool(jnp.all(jnp.isfinite(saliency))), method


def _grad_cam_at(name: str, layers: list[str]) -> None:
    """Grad-CAM of class 2 at each of ``layers``: finite maps of the layer's (h, w)."""
    model, image = _tiny(name)
    shapes = layer_names(model, image.shape)
    splits = {layer: split_at(model, layer).for_image(image) for layer in layers}
    grad_cam = example_method("grad_cam", {}, image)

    def run(image):
        return {
            layer: grad_cam(split, split.features(image), jnp.int32(2))
            for layer, split in splits.items()
        }

    maps = _compile_quickly(run, image)(image)
    for layer in layers:
        assert maps[layer].shape == shapes[layer][:2], layer
        assert bool(jnp.all(jnp.isfinite(maps[layer]))), layer


@pytest.mark.parametrize("name", sorted(TINY))
def test_grad_cam_at_every_block_gives_finite_maps(name):
    model, image = _tiny(name)
    # The block-level layers (stem, blocks, downsamples, final norm, the backbone's output).
    _grad_cam_at(
        name, [layer for layer in layer_names(model, image.shape) if layer.count("/") <= 1]
    )


@pytest.mark.slow
def test_grad_cam_at_every_convnext_layer_gives_finite_maps():
    """Every layer, the modules inside the blocks included (15-30 s on a CPU: slow)."""
    model, image = _tiny("convnext_tiny")
    _grad_cam_at("convnext_tiny", list(layer_names(model, image.shape)))


# --- position embedding -------------------------------------------------------------------


def test_position_embedding_resize():
    embedding = jnp.asarray(np.random.default_rng(3).normal(size=(1, 5, 3)), jnp.float32)
    assert resize_position_embedding(embedding, (2, 2)) is embedding  # at image_size: as is
    # 2x2 -> 4x4 bilinear (half-pixel centres, edges clamped): per axis [a, b] becomes
    # [a, 3a/4 + b/4, a/4 + 3b/4, b]; row-major grid entries 1..4 are (0,0) (0,1) (1,0) (1,1).
    grid = np.asarray(embedding[0, 1:]).reshape(2, 2, 3)
    weights = np.array([[1.0, 0.0], [0.75, 0.25], [0.25, 0.75], [0.0, 1.0]])
    expected = np.einsum("ia,jb,abd->ijd", weights, weights, grid).reshape(16, 3)
    resized = resize_position_embedding(embedding, (4, 4))
    assert resized.shape == (1, 17, 3)
    np.testing.assert_allclose(resized[0, 0], embedding[0, 0])  # the class token's entry
    np.testing.assert_allclose(resized[0, 1:], expected, rtol=1e-6, atol=1e-6)
    with pytest.raises(ValueError, match="not a square number"):
        resize_position_embedding(embedding[:, :4], (2, 2))


def test_input_sizes():
    convnext, _ = _tiny("convnext_tiny")
    assert convnext.module.min_input_size == 32  # ConvNeXt-T's total stride, 4 * 2 * 2 * 2
    with pytest.raises(ValueError, match="minimum input size 32x32"):
        convnext.module.apply(convnext.variables, jnp.zeros((1, 31, 31, 1)))
    model, _ = _tiny("vit_b16")
    assert model.module.min_input_size == VIT["patch_size"]
    with pytest.raises(ValueError, match="multiple of the patch size 4"):
        model.module.apply(model.variables, jnp.zeros((1, 18, 18, 1)))
    with pytest.raises(ValueError, match="minimum input size 4x4"):
        model.module.apply(model.variables, jnp.zeros((1, 3, 3, 1)))
    with pytest.raises(ValueError, match="image_size .* multiple of patch_size"):
        ViT(**{**VIT, "image_size": 18}).init(KEY, jnp.zeros((1, 16, 16, 1)))
