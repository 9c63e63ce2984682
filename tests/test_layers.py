"""Explaining an intermediate layer (issue 11): layer names, the split, and its maps
against a backbone cut at that layer and against a perturbation written out."""

import functools

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from conftest import lanczos3_upsample_reference, normalise_reference, toy_model

import jaxcam
from jaxcam.evaluation import evaluate
from jaxcam.metrics import average_drop, black_average_drop, masked_scores
from jaxcam.models import CAMClassifier, LayerModel, layer_names, resnet18, split_at
from jaxcam.models.resnet import BasicBlock, ResNet
from jaxcam.saliency import grad_cam, grad_cam_plus_plus, saliency_maps

WIDTH, SIZE = 2, 32  # ResNet-18 at width 2: stage 2 gives A (4, 4, 4) for a 32x32 image
STAGE2 = "backbone/stage2_block2"


class Tail(nn.Module):
    """ResNet-18's stages 3 and 4, written out: A of stage 2 -> A of stage 4."""

    @nn.compact
    def __call__(self, x, train: bool = False):
        for stage in (3, 4):
            for index in (1, 2):
                x = BasicBlock(
                    WIDTH * 2 ** (stage - 1),
                    strides=2 if index == 1 else 1,
                    name=f"stage{stage}_block{index}",
                )(x, train=train)
        return x


class CutClassifier(CAMClassifier):
    """Backbone cut after stage 2; the head runs the rest of ResNet-18, then GAP -> dense."""

    def setup(self):
        super().setup()
        self.tail = Tail()

    def logits(self, feature_map):
        return self.pooled_logits(self.pool(self.tail(feature_map)))


@functools.cache
def resnet_and_cut():
    module = CAMClassifier(backbone=resnet18(width=WIDTH), num_classes=3, output="softmax")
    # Random parameters and BatchNorm statistics drawn on the host (no init to compile).
    shapes = jax.eval_shape(module.init, jax.random.key(0), jnp.zeros((1, SIZE, SIZE, 1)))
    rng = np.random.default_rng(0)

    def draw(path, leaf):
        name = path[-1].key
        if name in ("scale", "var"):
            value = rng.uniform(0.5, 1.5, leaf.shape)
        elif name in ("bias", "mean"):
            value = rng.normal(0.0, 0.1, leaf.shape)
        else:  # kernels, scaled by their fan-in
            value = rng.normal(0.0, 1.0, leaf.shape) / np.sqrt(np.prod(leaf.shape[:-1]))
        return jnp.asarray(value, leaf.dtype)

    variables = jax.tree_util.tree_map_with_path(draw, shapes)
    stats = variables["batch_stats"]
    full = jaxcam.bind(module, variables)

    cut_module = CutClassifier(
        backbone=ResNet(stage_sizes=(2, 2), width=WIDTH), num_classes=3, output="softmax"
    )

    def split(tree):
        backbone = tree["backbone"]
        early = {
            k: v for k, v in backbone.items() if k.split("_")[0] in ("stem", "stage1", "stage2")
        }
        late = {k: v for k, v in backbone.items() if k not in early}
        return {
            "backbone": early,
            "tail": late,
            **{k: v for k, v in tree.items() if k != "backbone"},
        }

    cut_variables = {"params": split(variables["params"]), "batch_stats": split(stats)}
    shapes = jax.eval_shape(cut_module.init, jax.random.key(0), jnp.zeros((1, SIZE, SIZE, 1)))
    assert jax.tree.structure(shapes) == jax.tree.structure(cut_variables)  # same parameters
    return full, jaxcam.bind(cut_module, cut_variables)


def image(seed=0, size=SIZE):
    return jnp.asarray(np.random.default_rng(seed).uniform(size=(size, size, 1)), jnp.float32)


def test_layer_names_and_the_backbone_output():
    full, _ = resnet_and_cut()
    names = layer_names(full, (64, 64, 1))
    assert names[STAGE2] == (8, 8, 2 * WIDTH) and names["backbone"] == (2, 2, 8 * WIDTH)
    assert names["backbone/stem_conv"] == (32, 32, WIDTH)
    assert names["backbone/stage3_block1/downsample_bn"] == (4, 4, 4 * WIDTH)
    assert list(names)[-1] == "backbone"  # in the order the layers run
    # The backbone's output, by name or as the block that returns it: the model itself.
    assert split_at(full) is full and split_at(full, "backbone/stage4_block2") is full
    with pytest.raises(
        ValueError, match="unknown layer 'backbone/layer3'; known layers: backbone/stem_conv"
    ):
        split_at(full, "backbone/layer3")


def test_grad_cam_and_exact_grad_cam_plus_plus_at_stage2_equal_a_cut_backbone():
    full, cut = resnet_and_cut()
    layer = split_at(full, STAGE2)
    assert isinstance(layer, LayerModel) and not layer.reads_image
    assert not cut.has_linear_pooling  # both take the general exact path
    x = image()

    @jax.jit
    def compare(x):
        a = layer.features(x)
        classes = jnp.arange(3)  # every class at once
        return {
            "A": (a, cut.features(x)),
            "logits": (layer.logits(a), cut.logits(a), full.image_logits(x)),
            **{
                method.__name__: (
                    jax.vmap(lambda c, m=method: m(layer, a, c))(classes),
                    jax.vmap(lambda c, m=method: m(cut, a, c))(classes),
                )
                for method in (grad_cam, grad_cam_plus_plus)
            },
        }

    found = compare(x)
    assert found["A"][0].shape == (4, 4, 2 * WIDTH)
    for name, (got, *wants) in found.items():
        for want in wants:
            np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-6, err_msg=name)
        if name in ("grad_cam", "grad_cam_plus_plus"):
            assert int(jnp.sum(jnp.max(got, axis=(-2, -1)) > 0)) >= 2, name


def perturbed_logits(model, layer, x, epsilon):
    """The network's logits with ``epsilon`` added to the output of ``layer`` (written out)."""

    def interceptor(next_fun, args, kwargs, context):
        out = next_fun(*args, **kwargs)
        if context.method_name == "__call__" and "/".join(context.module.path) == layer:
            out = out + epsilon[None]
        return out

    def forward(module, images):
        with nn.intercept_methods(interceptor):
            return module.logits(module.features(images))

    return model.module.apply(model.variables, x[None], method=forward)[0]


def test_a_layer_inside_a_residual_block_takes_the_partial_derivative():
    # The main path of a down-sampling block, before the shortcut is added: the rest of
    # the network also reads the image (through the shortcut), which stays as it is.
    full, _ = resnet_and_cut()
    inner = "backbone/stage2_block1/BatchNorm_1"
    layer = split_at(full, inner)
    assert layer.reads_image
    x = image(1)
    shape = jax.eval_shape(layer.features, x).shape
    with pytest.raises(ValueError, match="also reads the image through other paths"):
        layer.logits(jnp.zeros(shape))
    bound = layer.for_image(x)

    @jax.jit
    def compare(x):
        a = layer.features(x)
        classes = jnp.arange(3)

        def perturbation_grad_cam(c):
            # d softmax_c / d epsilon at 0: the gradient w.r.t. a zero perturbation there.
            gradient = jax.grad(lambda e: jax.nn.softmax(perturbed_logits(full, inner, x, e))[c])(
                jnp.zeros_like(a)
            )
            return jax.nn.relu(a @ jnp.mean(gradient, axis=(0, 1)))

        maps = jax.vmap(lambda c: grad_cam(bound, a, c, form="naive"))(classes)  # Y itself
        return bound.logits(a), full.image_logits(x), maps, jax.vmap(perturbation_grad_cam)(classes)

    logits, want_logits, maps, want = compare(x)
    np.testing.assert_allclose(logits, want_logits, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(maps, want, rtol=1e-4, atol=1e-6 * float(jnp.max(want)))
    assert float(jnp.max(want)) > 0
    # The batched step binds each image itself (the normalised map does not see the form).
    batched, _ = saliency_maps(layer, np.asarray(x)[None], np.array([2]), "grad_cam")
    want = normalise_reference(lanczos3_upsample_reference(maps[2], (SIZE, SIZE)))  # numpy
    np.testing.assert_allclose(batched[0], want, atol=1e-5)


def test_evaluate_explains_an_intermediate_layer():
    # The toy backbone's first conv: 16x16x2 -> (8, 8, 4), then relu and the second conv.
    model = toy_model()
    layer = split_at(model, "backbone/Conv_0")
    assert isinstance(layer, LayerModel) and not layer.reads_image
    rng = np.random.default_rng(2)
    images = rng.uniform(size=(5, 16, 16, 2)).astype(np.float32)
    labels = np.array([0, 1, 2, 0, 1], np.int32)
    methods = {"Score-CAM": ("score_cam", {"chunk_size": 2})}  # masks from A_L, whole forwards
    evaluation = evaluate(layer, (images, labels), methods, alpha=0.5, curve=False, batch_size=4)
    for name, (method, options) in methods.items():
        maps, classes = saliency_maps(layer, images, None, method, **options)
        scores = masked_scores(layer, images, np.asarray(maps), np.asarray(classes), 0.5)
        for got, want in (
            (evaluation.results[name].average_drop, average_drop(scores, labels)),
            (evaluation.results[name].black_average_drop, black_average_drop(scores, labels)),
        ):
            assert got.value == pytest.approx(want.value, rel=1e-5, abs=1e-6)
            assert got.incorrect == pytest.approx(want.incorrect)


def test_evaluate_at_a_layer_inside_a_residual_block_equals_the_per_batch_functions():
    # The shortcut reads the image: evaluate binds each image, as saliency_maps does.
    full, _ = resnet_and_cut()
    layer = split_at(full, "backbone/stage2_block1/BatchNorm_1")
    assert layer.reads_image
    images = np.stack([np.asarray(image(i)) for i in range(3)])
    labels = np.array([0, 2, 1], np.int32)
    methods = {"Grad-CAM": ("grad_cam", {})}
    evaluation = evaluate(layer, (images, labels), methods, alpha=0.5, curve=False, batch_size=3)
    maps, classes = saliency_maps(layer, images, None, "grad_cam")
    scores = masked_scores(layer, images, np.asarray(maps), np.asarray(classes), 0.5)
    got = evaluation.results["Grad-CAM"]
    assert got.average_drop.value == pytest.approx(average_drop(scores, labels).value, rel=1e-5)
    bad = black_average_drop(scores, labels).value
    assert got.black_average_drop.value == pytest.approx(bad, rel=1e-5, abs=1e-7)
