"""Exact vs closed-form Grad-CAM++ layer by layer, for a ReLU and a GELU small CNN.

Command::

    python experiments/higher_order_layers.py

The companion of ``experiments/higher_order.py`` (which compares the two at the last
layer only). Two small CNNs (``small_cnn``, ``--widths``) that differ only in their
nonlinearity (``activation="relu"`` or ``"gelu"``, the exact erf form) are trained
with the same data (``--train-size`` phantom images of ``--image-size`` px), the same
initialisation and the same budget (``--epochs``, one seed). Then, for each named
layer L (:func:`jaxcam.models.layer_names`: every conv, every BatchNorm, the backbone's
output) and each of ``--test-size`` test images, Grad-CAM++ for the predicted class is
computed at L (:func:`jaxcam.models.split_at`) twice: from the exact pure 2nd and 3rd
derivatives of the score and from the closed form (d2 = g^2, d3 = g^3, g = dS^c/dA_L).

The score is the one the networks are trained with, ``--output`` (default
``softmax``, trained with softmax cross-entropy). Softmax is the informative choice:
with a ``relu`` or ``linear`` output every exact map of the ReLU network is zero
(d2 = d3 = 0, alpha := 0/0 := 0), and with ``exp`` the closed form is exact for the
ReLU network at every layer (below any layer its body is piecewise linear, so
S is piecewise linear in A_L and Y = exp(S) gives d2 = Y g^2, d3 = Y g^3: alpha is
the closed form's). With softmax the ReLU network's gap comes from the output
nonlinearity alone; the GELU network adds the curvature of its body. (With two
classes softmax is Y = sigmoid(z), z = S^c - S^other: exact alpha =
1 / (2 + sum_ab A_ab z' s3/s2) with z' = dz/dA and s2, s3 the 2nd and 3rd derivatives
of the sigmoid, which for a confident prediction tends to 1 / (2 - sum_ab A_ab z'),
against the closed form's 1 / (2 + sum_ab A_ab g): other gradients, opposite sign.)

Columns (per example, then summarised over the test images):

* ``net``, ``layer``: the network and the layer name without ``backbone/``;
* ``shape``: A_L per image (h, w, K);
* ``1-corr``: 1 - Pearson correlation of the normalised maps (relu, divided by their
  maximum) at the layer's resolution, exact vs closed form; undefined where either
  map is constant (e.g. all zero), then left out (``n/a`` if none is left); mean/max;
* ``alpha changed``: share of the (h, w, K) alphas with
  ``|a_exact - a_closed| > rtol * max(|a_exact|, |a_closed|)``, rtol = ``--alpha-rtol``
  (default 1e-3); two zeros are equal, so positions no derivative reaches (dead
  ReLUs; the 3 of 4 inputs of a 2x2 max pool it does not pick, hence 0.250) count as
  unchanged; mean/max;
* ``w change``: ``|w_e/|w_e| - w_c/|w_c||`` in [0, 2], the change of the direction of
  the channel weights w_k = sum_ab alpha relu(d1) (a zero vector stays zero: 1 when
  only one is zero); scale-free, as the exact d1 (of Y) and the closed form's (of
  S^c) differ in scale; mean/max;
* ``zero e/c``: share of all-zero maps, exact / closed form.

With the defaults (3-5 minutes on 2 shared CPU cores, about 200 s of CPU time: ~30 s
of training, the rest the layers, most of it the GELU network's 32x32 layers, whose
exact derivatives take the general path; the ReLU network's take the fast
piecewise-linear one) it
prints one line per training epoch, each network's test accuracy (seed 0: 0.955 and
0.955 on 200 test images) and the table; with seed 0::

    4 test images per row (layers under backbone/):
    net  | layer       | shape    | 1-corr          | alpha changed | w change        | zero e/c
    relu | Conv_0      | 32x32x8  | 1.5e+00/1.5e+00 | 0.498/0.500   | 1.9e+00/2.0e+00 | 0.00/0.00
    relu | BatchNorm_0 | 32x32x8  | 9.8e-01/1.5e+00 | 0.497/0.498   | 1.4e+00/1.4e+00 | 0.00/0.00
    relu | Conv_1      | 32x32x8  | 1.1e+00/1.2e+00 | 0.182/0.187   | 1.6e+00/1.9e+00 | 0.00/0.00
    relu | BatchNorm_1 | 32x32x8  | 8.8e-01/1.2e+00 | 0.181/0.186   | 1.3e+00/1.7e+00 | 0.00/0.00
    relu | Conv_2      | 16x16x16 | 8.7e-01/1.1e+00 | 0.474/0.481   | 1.3e+00/1.6e+00 | 0.00/0.00
    relu | BatchNorm_2 | 16x16x16 | 4.2e-01/8.2e-01 | 0.471/0.479   | 6.3e-01/9.0e-01 | 0.00/0.00
    relu | Conv_3      | 16x16x16 | 9.3e-01/1.1e+00 | 0.205/0.206   | 1.4e+00/1.6e+00 | 0.00/0.00
    relu | BatchNorm_3 | 16x16x16 | 8.0e-01/1.2e+00 | 0.204/0.204   | 1.1e+00/1.4e+00 | 0.00/0.00
    relu | Conv_4      | 8x8x32   | 8.9e-01/1.2e+00 | 0.476/0.491   | 1.5e+00/1.6e+00 | 0.50/0.00
    relu | BatchNorm_4 | 8x8x32   | 3.7e-02/8.4e-02 | 0.465/0.475   | 5.4e-01/7.9e-01 | 0.00/0.00
    relu | Conv_5      | 8x8x32   | 1.9e-03/3.1e-03 | 0.376/0.390   | 6.3e-01/7.9e-01 | 0.00/0.00
    relu | BatchNorm_5 | 8x8x32   | 6.0e-04/7.8e-04 | 0.376/0.390   | 4.2e-01/4.5e-01 | 0.00/0.00
    relu | backbone    | 8x8x32   | 7.2e-04/9.5e-04 | 0.859/0.906   | 5.2e-01/5.7e-01 | 0.00/0.00
    gelu | Conv_0      | 32x32x8  | 8.8e-01/1.4e+00 | 1.000/1.000   | 1.5e+00/1.7e+00 | 0.00/0.00
    gelu | BatchNorm_0 | 32x32x8  | 8.7e-01/1.5e+00 | 1.000/1.000   | 1.3e+00/1.8e+00 | 0.00/0.00
    gelu | Conv_1      | 32x32x8  | 1.0e+00/1.5e+00 | 0.250/0.250   | 1.4e+00/1.9e+00 | 0.00/0.00
    gelu | BatchNorm_1 | 32x32x8  | 1.2e+00/1.4e+00 | 0.250/0.250   | 1.4e+00/1.6e+00 | 0.00/0.00
    gelu | Conv_2      | 16x16x16 | 1.1e+00/1.2e+00 | 1.000/1.000   | 1.4e+00/1.8e+00 | 0.00/0.00
    gelu | BatchNorm_2 | 16x16x16 | 8.0e-01/1.3e+00 | 1.000/1.000   | 1.2e+00/1.5e+00 | 0.00/0.00
    gelu | Conv_3      | 16x16x16 | 8.3e-01/1.2e+00 | 0.250/0.250   | 1.2e+00/1.7e+00 | 0.00/0.00
    gelu | BatchNorm_3 | 16x16x16 | 9.3e-01/1.2e+00 | 0.250/0.250   | 1.5e+00/1.7e+00 | 0.00/0.00
    gelu | Conv_4      | 8x8x32   | 8.4e-01/1.4e+00 | 1.000/1.000   | 1.4e+00/1.6e+00 | 0.00/0.00
    gelu | BatchNorm_4 | 8x8x32   | 7.7e-01/1.0e+00 | 1.000/1.000   | 1.3e+00/1.5e+00 | 0.00/0.00
    gelu | Conv_5      | 8x8x32   | 8.2e-01/1.6e+00 | 1.000/1.000   | 1.3e+00/1.6e+00 | 0.00/0.00
    gelu | BatchNorm_5 | 8x8x32   | 1.6e+00/1.7e+00 | 1.000/1.000   | 1.6e+00/1.8e+00 | 0.00/0.00
    gelu | backbone    | 8x8x32   | 8.1e-04/1.2e-03 | 1.000/1.000   | 4.7e-01/5.3e-01 | 0.00/0.00

Over seeds 0-2 (test accuracy 0.945-0.955 for both networks; 4 images a row, so each
mean is rough):

* ``backbone`` (after the last activation; the head GAP -> dense is linear in A, only
  the softmax is curved): the networks agree. Nearly every alpha changes (0.81-1.0; a
  ReLU network's all-zero channel has alpha 1/2 in both forms) and the weights'
  direction moves by 0.4-0.6, yet the maps hardly move: 1-corr 7e-4 to 4e-3.
* the last stage below the last activation (BatchNorm_4, Conv_5, BatchNorm_5): the
  ReLU network's maps stay close (1-corr 6e-4 to 4e-2; its gap is the softmax's
  alone), the GELU network's are about unrelated (0.3 to 1.6): there the curvature of
  the body, which the closed form drops, decides.
* the first two stages and Conv_4: both networks' exact and closed-form maps are
  about unrelated (1-corr 0.33 to 1.5; one exception, the ReLU network's Conv_4 with
  seed 2, 1.5e-2 on its one non-zero exact map; there 25-75% of its exact maps are
  zero). So below its last stage even the ReLU network's exact Grad-CAM++ is another
  method than the closed form.
* ``alpha changed``: every GELU alpha that a derivative reaches changes (1.0; 0.250
  right before a max pool); of the ReLU network's, 0.17-0.53 change.

Controls (``--activations relu``, seed 0): with ``--output exp`` exact and closed form
agree at every layer to float32 rounding (alpha changed 0, 1-corr at most 2.4e-7, w
change at most 1.2e-5); with ``--output relu`` every exact map is zero (zero e/c
1.00/0.00 at every layer).

It writes ``results/higher_order_layers/results.json``: the rows, the networks'
test accuracies, the definitions, the arguments and the versions.
"""

from __future__ import annotations

import argparse
import dataclasses
import functools
import sys
import time
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

import jaxcam
from jaxcam.data import phantom_split
from jaxcam.evaluation import write_results_file
from jaxcam.models import LayerModel, SplitModel, layer_names, split_at
from jaxcam.models.small_cnn import ACTIVATIONS
from jaxcam.saliency import grad_cam_plus_plus_alpha, grad_cam_plus_plus_derivatives, normalise
from jaxcam.train import TrainConfig, accuracy, train_on_arrays

Array = jax.Array


def _sizes(text: str) -> tuple[int, ...]:
    return tuple(int(s) for s in text.split(","))


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--out", default="results/higher_order_layers", help="output folder")
    parser.add_argument("--seed", type=int, default=0, help="data, initialisation, training")
    parser.add_argument("--train-size", type=int, default=800)
    parser.add_argument("--test-size", type=int, default=4, help="images explained per layer")
    parser.add_argument("--accuracy-size", type=int, default=200, help="test images scored")
    parser.add_argument("--epochs", type=int, default=6)
    parser.add_argument("--image-size", type=int, default=32)
    parser.add_argument("--widths", default="8,16,32", help="small_cnn stage widths")
    parser.add_argument(
        "--output",
        default="softmax",
        choices=jaxcam.models.OUTPUT_ACTIVATIONS,
        help="output activation: trained with and differentiated",
    )
    parser.add_argument("--activations", default="relu,gelu", help="networks, comma-separated")
    parser.add_argument("--layers", default="", help="comma-separated layer names (default all)")
    parser.add_argument("--alpha-rtol", type=float, default=1e-3)
    args = parser.parse_args(argv)
    try:
        args.widths = _sizes(args.widths)
    except ValueError:
        parser.error(f"--widths must be comma-separated integers, got {args.widths!r}")
    args.activations = tuple(args.activations.split(","))
    args.layers = tuple(name for name in args.layers.split(",") if name)
    if min(args.widths) < 1:
        parser.error(f"--widths must be positive, got {args.widths}")
    if not set(args.activations) <= set(ACTIVATIONS):
        parser.error(f"--activations must be among {ACTIVATIONS}, got {args.activations}")
    for name in ("train_size", "test_size", "accuracy_size", "epochs"):
        if getattr(args, name) < 1:
            parser.error(f"--{name.replace('_', '-')} must be >= 1")
    if not args.alpha_rtol > 0:
        parser.error("--alpha-rtol must be > 0")
    return args


# ----------------------------------------------------------------------------
# The per-layer comparison.


def pearson(x: Array, y: Array) -> Array:
    """Pearson correlation of two maps; NaN where either is constant."""
    x = jnp.ravel(x) - jnp.mean(x)
    y = jnp.ravel(y) - jnp.mean(y)
    norm = jnp.sqrt(jnp.sum(x * x) * jnp.sum(y * y))
    return jnp.where(norm > 0, jnp.sum(x * y) / jnp.where(norm > 0, norm, 1.0), jnp.nan)


def unit(vector: Array) -> Array:
    """``vector / |vector|``; a zero vector stays zero."""
    size = jnp.linalg.norm(vector)
    return jnp.where(size > 0, vector / jnp.where(size > 0, size, 1.0), 0.0)


def weights_and_map(feature_map: Array, d1: Array, d2: Array, d3: Array) -> tuple[Array, ...]:
    """Eq. 7-8 from the derivatives (h, w, K): alpha (h, w, K), w (K,), map (h, w)."""
    alpha = grad_cam_plus_plus_alpha(feature_map, d2, d3)
    weights = jnp.sum(alpha * jax.nn.relu(d1), axis=(0, 1))
    weights = jnp.where(jnp.isfinite(weights), weights, 0.0)
    with jax.default_matmul_precision("highest"):
        saliency = jax.nn.relu(jnp.einsum("hwk,k->hw", feature_map, weights))
    return alpha, weights, saliency


def explained_at(split: SplitModel | LayerModel, image: Array) -> SplitModel | LayerModel:
    """The split bound to ``image`` where the rest of the network reads it."""
    if isinstance(split, LayerModel) and split.reads_image:
        return split.for_image(image)
    return split


@functools.partial(jax.jit, static_argnames=("alpha_rtol",))
def compare_layer(
    split: SplitModel | LayerModel, images: Array, alpha_rtol: float
) -> dict[str, Array]:
    """Exact vs closed form at the split's layer for images (N, H, W, C); per image."""

    def one(image: Array) -> dict[str, Array]:
        model = explained_at(split, image)
        c = jnp.argmax(model.image_logits(image)).astype(jnp.int32)
        feature_map = model.features(image)
        exact = weights_and_map(feature_map, *grad_cam_plus_plus_derivatives(model, feature_map, c))
        closed = weights_and_map(
            feature_map,
            *grad_cam_plus_plus_derivatives(model, feature_map, c, derivatives="closed_form"),
        )
        (alpha_e, w_e, map_e), (alpha_c, w_c, map_c) = exact, closed
        scale = jnp.maximum(jnp.abs(alpha_e), jnp.abs(alpha_c))
        return {
            "one_minus_corr": 1.0 - pearson(normalise(map_e), normalise(map_c)),
            "alpha_changed": jnp.mean(jnp.abs(alpha_e - alpha_c) > alpha_rtol * scale),
            "weight_change": jnp.linalg.norm(unit(w_e) - unit(w_c)),
            "zero_exact": jnp.all(map_e == 0),
            "zero_closed": jnp.all(map_c == 0),
        }

    return jax.lax.map(one, images)


def _mean_max(values: np.ndarray) -> dict[str, float | None]:
    if values.size == 0:
        return {"mean": None, "max": None}
    return {"mean": float(np.mean(values)), "max": float(np.max(values))}


def summarise(per_image: dict[str, Array]) -> dict[str, Any]:
    values = {k: np.asarray(v, np.float64) for k, v in per_image.items()}
    one_minus_corr = values["one_minus_corr"][np.isfinite(values["one_minus_corr"])]
    return {
        "examples": int(values["alpha_changed"].size),
        "one_minus_corr": {**_mean_max(one_minus_corr), "defined": int(one_minus_corr.size)},
        "alpha_changed": _mean_max(values["alpha_changed"]),
        "weight_change": _mean_max(values["weight_change"]),
        "zero_maps": {name: float(np.mean(values[f"zero_{name}"])) for name in ("exact", "closed")},
    }


# ----------------------------------------------------------------------------
# Networks.


def train_network(args: argparse.Namespace, activation: str, data: Any) -> SplitModel:
    """A small CNN with ``activation``, trained on ``data`` with the shared budget."""
    module = jaxcam.create_model(
        "small_cnn", num_classes=2, output=args.output, widths=args.widths, activation=activation
    )
    config = TrainConfig(epochs=args.epochs, seed=args.seed)
    config = dataclasses.replace(config, batch_size=min(config.batch_size, args.train_size))
    return train_on_arrays(module, data, None, config, log=lambda line: print(activation, line))


def layer_rows(
    network: str, model: SplitModel, images: Array, args: argparse.Namespace
) -> dict[str, dict]:
    """(network, layer) -> summary, for every layer of ``args.layers`` (default all)."""
    shapes = layer_names(model, tuple(images.shape[1:]))
    unknown = set(args.layers) - set(shapes)
    if unknown:
        raise ValueError(f"unknown layers {sorted(unknown)}; known: {', '.join(shapes)}")
    rows = {}
    for layer in args.layers or tuple(shapes):
        start = time.perf_counter()
        per_image = compare_layer(split_at(model, layer), images, args.alpha_rtol)
        rows[f"{network} {layer}"] = {
            "network": network,
            "layer": layer,
            "shape": list(shapes[layer]),
            **summarise(per_image),
            "seconds": round(time.perf_counter() - start, 2),
        }
    return rows


# ----------------------------------------------------------------------------
# Table and entry point.


def _pair(summary: dict[str, float | None], spec: str) -> str:
    if summary["mean"] is None:
        return "n/a"
    return f"{summary['mean']:{spec}}/{summary['max']:{spec}}"


def format_table(rows: dict[str, dict]) -> str:
    """One line per row; layer names without their ``backbone/`` prefix."""
    header = ("net", "layer", "shape", "1-corr", "alpha changed", "w change", "zero e/c")
    lines = [
        (
            row["network"],
            row["layer"].removeprefix("backbone/"),
            "x".join(str(s) for s in row["shape"]),
            _pair(row["one_minus_corr"], ".1e"),
            _pair(row["alpha_changed"], ".3f"),
            _pair(row["weight_change"], ".1e"),
            f"{row['zero_maps']['exact']:.2f}/{row['zero_maps']['closed']:.2f}",
        )
        for row in rows.values()
    ]
    widths = [max(len(r[i]) for r in (header, *lines)) for i in range(len(header))]
    return "\n".join(
        " | ".join(cell.ljust(width) for cell, width in zip(r, widths, strict=True)).rstrip()
        for r in (header, *lines)
    )


def main(argv: list[str] | None = None) -> dict:
    args = parse_args(argv)
    start = time.perf_counter()
    data = phantom_split("train", args.seed, args.image_size, num_images=args.train_size)
    count = max(args.test_size, args.accuracy_size)
    test = phantom_split("test", args.seed, args.image_size, num_images=count)
    scored = (test.images[: args.accuracy_size], test.labels[: args.accuracy_size])
    images = jnp.asarray(test.images[: args.test_size])
    rows: dict[str, dict] = {}
    networks: dict[str, dict] = {}
    for activation in args.activations:
        model = train_network(args, activation, data)
        networks[activation] = {"test_accuracy": accuracy(model, *scored)}
        print(
            f"{activation}: test accuracy {networks[activation]['test_accuracy']:.3f} "
            f"({args.accuracy_size} images)"
        )
        rows.update(layer_rows(activation, model, images, args))
    print(f"{args.test_size} test images per row (layers under backbone/):")
    print(format_table(rows))

    results = write_results_file(
        args.out,
        {
            "rows": rows,
            "networks": networks,
            "definitions": {
                "one_minus_corr": "1 - Pearson of the normalised exact and closed-form maps",
                "alpha_changed": "share of alphas with |a_e - a_c| > rtol * max(|a_e|, |a_c|)",
                "weight_change": "| w_e / |w_e| - w_c / |w_c| | (zero vectors stay zero)",
                "zero_maps": "share of all-zero maps: exact, closed form",
                "class": "predicted (argmax of the logits)",
                "score": f"the output activation the networks are trained with ({args.output})",
            },
        },
        args,
        start,
    )
    return results


if __name__ == "__main__":
    main(sys.argv[1:])
