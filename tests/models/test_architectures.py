"""Architectures: reference parameter counts (shape-only), tiny forward passes, bad input."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxcam.models import InceptionResNetV2, ResNet, bind, create_model, model_names
from jaxcam.saliency import saliency_maps

KEY = jax.random.PRNGKey(0)


def _count(tree) -> int:
    return sum(int(np.prod(leaf.shape)) for leaf in jax.tree_util.tree_leaves(tree))


def _abstract_init(model, size: int, channels: int = 3):
    """Variable shapes from ``model.init`` without running the network."""
    x = jax.ShapeDtypeStruct((1, size, size, channels), jnp.float32)
    return jax.eval_shape(model.init, KEY, x), x


def _compile_quickly(fn, *args):
    """jit ``fn`` as one XLA program with backend optimisations off.

    Compiling the whole test once beats op-by-op dispatch, and on CPU XLA's
    optimisation passes dominate the time of these tiny, run-once programs.
    """
    options = {"xla_backend_optimization_level": 0}
    return jax.jit(fn).lower(*args).compile(compiler_options=options)


def _feature_shape(model, variables, x) -> tuple[int, ...]:
    out = jax.eval_shape(lambda v, im: model.apply(v, im, method=model.features), variables, x)
    return tuple(out.shape)


# --- reference sizes --------------------------------------------------------------------


def test_inception_resnet_v2_matches_keras_counts():
    model = create_model("inception_resnet_v2", num_classes=1000, in_channels=3)
    variables, x = _abstract_init(model, 299)
    assert _count(variables) == 55_873_736  # Keras include_top=True, incl. BN moving stats
    # The backbone alone is Keras' include_top=False model.
    backbone = {
        "params": variables["params"]["backbone"],
        "batch_stats": variables["batch_stats"]["backbone"],
    }
    assert _count(backbone) == 54_336_736
    assert _count(variables) - _count(backbone) == 1536 * 1000 + 1000
    assert _feature_shape(model, variables, x) == (1, 8, 8, 1536)
    # BatchNorm has no gamma (Keras scale=False): its params are the betas only.
    bn_bias = sum(
        _count(leaf)
        for path, leaf in jax.tree_util.tree_leaves_with_path(backbone["params"])
        if any(getattr(k, "key", None) == "bn" for k in path)
    )
    assert 2 * bn_bias == _count(backbone["batch_stats"])


@pytest.mark.parametrize(
    ("name", "params", "features"),
    [("resnet18", 11_689_512, (1, 7, 7, 512)), ("resnet50", 25_557_032, (1, 7, 7, 2048))],
)
def test_resnet_matches_torchvision_counts(name, params, features):
    model = create_model(name, num_classes=1000, in_channels=3)
    variables, x = _abstract_init(model, 224)
    # torchvision's parameter count excludes the BN running statistics.
    assert _count(variables["params"]) == params
    assert _feature_shape(model, variables, x) == features


# --- real forward passes on tiny versions -------------------------------------------------

TINY = {
    "small_cnn": ({"widths": (4, 8)}, 8),
    "resnet18": ({"width": 4}, 32),
    "resnet50": ({"width": 4}, 32),
    "inception_resnet_v2": ({"repeats": (1, 1, 1), "width_scale": 1 / 16}, 75),
    "convnext_tiny": ({"depths": (1, 1), "dims": (4, 8)}, 32),
    "vit_b16": (
        {"patch_size": 4, "dim": 8, "depth": 1, "heads": 2, "mlp_dim": 8, "image_size": 8},
        8,
    ),
}
# LayerNorm models: no running statistics to update in training.
NO_BATCH_NORM = {"convnext_tiny", "vit_b16"}


def test_every_registered_model_has_a_tiny_config():
    assert set(TINY) <= set(model_names())
    builtin = {"small_cnn", "resnet18", "resnet50", "inception_resnet_v2"}
    assert builtin | {"convnext_tiny", "vit_b16"} <= set(model_names())


# The two largest architectures (~9 s each) run with the slow tests.
@pytest.mark.parametrize(
    "name",
    [
        pytest.param(n, marks=pytest.mark.slow) if n in ("inception_resnet_v2", "resnet50") else n
        for n in sorted(TINY)
    ],
)
def test_tiny_forward_eval_and_train(name):
    kwargs, size = TINY[name]
    model = create_model(name, num_classes=3, output="linear", in_channels=1, **kwargs)
    x = jax.random.uniform(jax.random.PRNGKey(1), (2, size, size, 1))

    def run(x):
        def features_and_scores(module, x):
            feature_map = module.features(x)
            return feature_map, module.head(feature_map)

        # init runs in eval mode, so its output is the eval forward pass.
        (feature_map, y), variables = model.init_with_output(KEY, x, method=features_and_scores)
        y_train, updates = model.apply(variables, x, train=True, mutable=["batch_stats"])
        return variables, y, feature_map, y_train, updates

    variables, y, feature_map, y_train, updates = _compile_quickly(run, x)(x)
    assert set(variables) == ({"params"} if name in NO_BATCH_NORM else {"params", "batch_stats"})
    assert y.shape == (2, 3)
    assert bool(jnp.all(jnp.isfinite(y)))
    assert feature_map.ndim == 4 and feature_map.shape[0] == 2
    assert bool(jnp.all(jnp.isfinite(feature_map)))
    assert y_train.shape == (2, 3)
    assert bool(jnp.all(jnp.isfinite(y_train)))
    if name in NO_BATCH_NORM:
        assert not updates.get("batch_stats")
        np.testing.assert_allclose(y_train, y, rtol=1e-5, atol=1e-6)  # no dropout either
    else:
        _check_batch_stats_moved(variables, updates)
    maps, classes = saliency_maps(bind(model, variables), np.asarray(x), None, "cam")
    assert maps.shape == (2, size, size) and classes.shape == (2,)
    assert float(jnp.min(maps)) >= 0.0 and float(jnp.max(maps)) <= 1.0


def _check_batch_stats_moved(variables, updates) -> None:
    assert jax.tree_util.tree_structure(updates["batch_stats"]) == jax.tree_util.tree_structure(
        variables["batch_stats"]
    )
    moved = jax.tree_util.tree_map(
        lambda a, b: bool(jnp.any(a != b)), updates["batch_stats"], variables["batch_stats"]
    )
    assert any(jax.tree_util.tree_leaves(moved))  # the running statistics were updated


def test_resnet_and_irv2_feature_maps_at_min_size():
    for name, kwargs, size, channels in [
        ("resnet18", {"width": 4}, 32, 32),
        ("resnet50", {"width": 4}, 32, 128),
        ("inception_resnet_v2", {"repeats": (1, 1, 1), "width_scale": 1 / 16}, 75, 96),
    ]:
        model = create_model(name, in_channels=3, **kwargs)
        variables, x = _abstract_init(model, size)
        assert _feature_shape(model, variables, x) == (1, 1, 1, channels), name


# --- bad input ------------------------------------------------------------------------


def test_unknown_model_lists_known_names():
    with pytest.raises(ValueError, match="unknown model 'nope'") as err:
        create_model("nope")
    for name in ("small_cnn", "resnet18", "resnet50", "inception_resnet_v2"):
        assert name in str(err.value)


@pytest.mark.parametrize(
    ("name", "kwargs", "minimum"),
    [
        ("resnet18", {"width": 4}, 32),
        ("resnet50", {"width": 4}, 32),
        ("inception_resnet_v2", {"repeats": (1, 1, 1), "width_scale": 1 / 16}, 75),
    ],
)
def test_too_small_input_is_rejected(name, kwargs, minimum):
    model = create_model(name, **kwargs)
    assert model.min_input_size == minimum
    x = jnp.zeros((1, minimum - 1, minimum - 1, 1))
    with pytest.raises(ValueError, match=f"minimum input size {minimum}x{minimum}"):
        model.init(KEY, x)


def test_bad_backbone_options_are_rejected():
    x = jnp.zeros((1, 32, 32, 1))
    with pytest.raises(ValueError, match="block must be one of"):
        ResNet(block="wide").init(KEY, x)
    x = jnp.zeros((1, 75, 75, 1))
    with pytest.raises(ValueError, match="repeats"):
        InceptionResNetV2(repeats=(1, -1, 1)).init(KEY, x)
    with pytest.raises(ValueError, match="width_scale"):
        InceptionResNetV2(width_scale=0.0).init(KEY, x)
