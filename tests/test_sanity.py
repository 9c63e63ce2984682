"""jaxcam.sanity: the cascading randomisation order, the re-drawn models and the check."""

import math

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from conftest import toy_model
from scipy.stats import spearmanr

import jaxcam
from jaxcam.evaluation import ReferenceMap
from jaxcam.models import create_model
from jaxcam.models.head_only import FeatureMapInput
from jaxcam.saliency import compute_maps
from jaxcam.sanity import (
    TRAINED,
    cascading_randomisation,
    randomisation_check,
    randomisation_layers,
    spearman_per_image,
)

TOY_GROUPS = ["classifier", "backbone/Conv_1", "backbone/Conv_0"]


def subtree(params, group):
    for part in group.split("/"):
        params = params[part]
    return params


def trees_equal(first, second) -> bool:
    leaves = zip(jax.tree.leaves(first), jax.tree.leaves(second), strict=True)
    return jax.tree.structure(first) == jax.tree.structure(second) and all(
        np.array_equal(a, b) for a, b in leaves
    )


class NamedBackbone(nn.Module):
    """Two convs named against the alphabet: ``z_first`` runs first, ``a_last`` last."""

    @nn.compact
    def __call__(self, x: jax.Array, train: bool = False) -> jax.Array:
        x = nn.relu(nn.Conv(3, (3, 3), name="z_first")(x))
        return nn.relu(nn.Conv(4, (3, 3), name="a_last")(x))


def abstract_model(module, shape):
    """``module`` bound to the shapes of its variables only (enough for the order)."""
    return jaxcam.bind(module, jax.eval_shape(module.init, jax.random.key(0), jnp.zeros(shape)))


def small_cnn(widths):
    module = create_model("small_cnn", num_classes=2, widths=widths)
    return module, module.init(jax.random.key(0), jnp.zeros((1, 8, 8, 1)))


def test_order_is_head_first_then_backbone_modules_top_down():
    assert randomisation_layers(toy_model()) == TOY_GROUPS
    # an MLP head (a backbone without parameters): the layer nearest the output first
    head = jaxcam.CAMClassifier(backbone=FeatureMapInput(), hidden=(5, 3), in_channels=4)
    head_groups = randomisation_layers(abstract_model(head, (1, 2, 2, 4)))
    assert head_groups == ["classifier", "hidden_1", "hidden_0"]
    # the order the forward pass reaches the modules, not the alphabet ...
    module = jaxcam.CAMClassifier(backbone=NamedBackbone(), num_classes=2, in_channels=1)
    named = randomisation_layers(abstract_model(module, (1, 8, 8, 1)))
    assert named == ["classifier", "backbone/a_last", "backbone/z_first"]
    # ... and not the trained tree's key order: jax.tree.map sorts dict keys (BatchNorm_*
    # before Conv_*). SmallCNN((2, 3)): stage 0 Conv_0 BatchNorm_0 Conv_1 BatchNorm_1,
    # stage 1 Conv_2 ... BatchNorm_3.
    module = create_model("small_cnn", num_classes=2, widths=(2, 3))
    resorted = abstract_model(module, (1, 8, 8, 1))  # its dicts come back sorted
    assert list(resorted.variables["params"]["backbone"])[0] == "BatchNorm_0"
    expected = ["classifier"]
    for index in (3, 2, 1, 0):
        expected += [f"backbone/BatchNorm_{index}", f"backbone/Conv_{index}"]
    assert randomisation_layers(resorted) == expected


def test_step_k_redraws_exactly_the_first_k_groups():
    trained = toy_model(seed=0)
    # re-drawn values come from the module's own init with the given key: the toy model
    # initialised with seed 5 holds them (up to rounding: another compiled program)
    redrawn = toy_model(seed=5).variables["params"]
    steps = cascading_randomisation(trained, jax.random.key(5))
    assert [name for name, _ in steps] == TOY_GROUPS
    for count, (_, model) in enumerate(steps, start=1):
        params = model.variables["params"]
        for index, group in enumerate(TOY_GROUPS):
            if index < count:
                jax.tree.map(
                    lambda a, b: np.testing.assert_allclose(a, b, rtol=1e-6, atol=1e-7),
                    subtree(params, group),
                    subtree(redrawn, group),
                )
            else:  # kept bit for bit
                kept = subtree(trained.variables["params"], group)
                assert trees_equal(subtree(params, group), kept), (count, group)
        # the kernels really change (biases start at 0 in both)
        kernel = subtree(params, TOY_GROUPS[count - 1])["kernel"]
        assert not np.array_equal(
            kernel, subtree(trained.variables["params"], TOY_GROUPS[count - 1])["kernel"]
        )
    # steps as a count or as chosen step numbers
    assert [n for n, _ in cascading_randomisation(trained, jax.random.key(5), 2)] == TOY_GROUPS[:2]
    picked = cascading_randomisation(trained, jax.random.key(5), (1, 3))
    assert [n for n, _ in picked] == ["classifier", "backbone/Conv_0"]
    assert trees_equal(picked[1][1].variables, steps[2][1].variables)
    with pytest.raises(ValueError, match="1..3"):
        cascading_randomisation(trained, jax.random.key(5), (0, 4))


def test_batch_norm_statistics_are_kept_and_its_scale_reset():
    # SmallCNN((2,)): Conv_0 BatchNorm_0 Conv_1 BatchNorm_1 -> classifier, BatchNorm_1, ...
    module, variables = small_cnn(widths=(2,))
    # stand-ins for trained values: statistics and BatchNorm scales moved from their init
    trained_variables = {
        "params": jax.tree.map(lambda x: x + 0.5, variables["params"]),
        "batch_stats": jax.tree.map(lambda x: x + 2.0, variables["batch_stats"]),
    }
    trained = jaxcam.bind(module, trained_variables)
    ((name, model),) = cascading_randomisation(trained, jax.random.key(1), (2,))
    assert name == "backbone/BatchNorm_1"
    assert trees_equal(model.variables["batch_stats"], trained_variables["batch_stats"])
    batch_norm = model.variables["params"]["backbone"]["BatchNorm_1"]
    np.testing.assert_array_equal(batch_norm["scale"], np.ones(2))  # flax's init: 1, 0
    np.testing.assert_array_equal(batch_norm["bias"], np.zeros(2))
    kept = model.variables["params"]["backbone"]["Conv_1"]
    assert trees_equal(kept, trained_variables["params"]["backbone"]["Conv_1"])


def test_spearman_per_image_by_hand():
    first = np.array([[[1, 2], [3, 4]], [[0, 0], [1, 2]], [[5, 5], [5, 5]]], np.float32)
    second = np.array([[[4, 3], [2, 1]], [[1, 2], [3, 4]], [[1, 2], [3, 4]]], np.float32)
    # reversed: -1; ties share rank 1.5: centred ranks (-1, -1, .5, 1.5) vs
    # (-1.5, -.5, .5, 1.5): 4.5 / sqrt(4.5 * 5); a constant map: undefined
    rho = spearman_per_image(first, second)
    assert rho[0] == pytest.approx(-1.0)
    assert rho[1] == pytest.approx(4.5 / math.sqrt(22.5))
    assert math.isnan(rho[2])
    assert rho[1] == pytest.approx(spearmanr(first[1].ravel(), second[1].ravel())[0])


def toy_data(count: int = 6):
    images = np.random.default_rng(0).uniform(0.0, 1.0, (count, 16, 16, 2)).astype(np.float32)
    return images, np.arange(count, dtype=np.int32) % 3


def test_randomised_maps_differ_from_the_trained_ones():
    trained = toy_model()
    images, _ = toy_data()
    maps, classes = compute_maps(trained, images, None, "grad_cam")
    ((_, randomised),) = cascading_randomisation(trained, jax.random.key(3), 1)
    randomised_maps, _ = compute_maps(randomised, images, classes, "grad_cam")
    assert np.abs(np.asarray(maps) - np.asarray(randomised_maps)).max() > 0.1
    rho = spearman_per_image(np.asarray(maps), np.asarray(randomised_maps))
    assert np.nanmean(rho) < 0.9


def test_check_scores_randomised_maps_on_the_trained_model():
    trained = toy_model(output="exp")  # scores exp(logits) > 0: every drop is defined
    images, labels = toy_data()
    key = jax.random.key(3)
    options = {"alpha": 0.5, "batch_size": 8}
    check = randomisation_check(
        trained, (images, labels), ["grad_cam"], steps=(1,), key=key, **options
    )
    assert check.steps == ((0, TRAINED), (1, "classifier"))
    assert check.rows["Grad-CAM", 0].rank_correlation == 1.0
    # the same maps, made here and passed explicitly, scored on the trained model
    ((_, randomised),) = cascading_randomisation(trained, key, (1,))
    _, classes = compute_maps(trained, images, None, "grad_cam")
    maps, _ = compute_maps(randomised, images, classes, "grad_cam")
    given = {"image": images, "label": labels, "given": np.asarray(maps)}
    row = {"given": ReferenceMap(lambda example, key: example["given"], needs=("given",))}
    explicit = jaxcam.evaluate(trained, given, row, curve=False, **options)
    for metric in ("average_drop", "black_average_drop"):
        expected = explicit.results["given"].metrics[metric].value
        assert check.value("Grad-CAM", 1, metric) == pytest.approx(expected, rel=1e-6)
    # the same maps scored on the randomised model would give another AD
    wrong = jaxcam.evaluate(randomised, given, row, curve=False, **options)
    assert wrong.results["given"].average_drop.value != pytest.approx(
        check.value("Grad-CAM", 1, "average_drop"), rel=1e-3
    )
