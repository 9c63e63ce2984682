"""Shared fixtures: tiny models whose feature maps and heads the tests control."""

from __future__ import annotations

import contextlib
import importlib.util
import subprocess
import sys
from pathlib import Path
from typing import ClassVar

import flax.linen as nn
import jax
import jax.extend
import jax.numpy as jnp
import numpy as np

import jaxcam
from jaxcam.models import head_only_model

jax.config.update("jax_numpy_dtype_promotion", "strict")


def head_model(
    channels: int = 3,
    num_classes: int = 2,
    output: str = "relu",
    hidden: tuple[int, ...] = (),
    size: int = 4,
    seed: int = 0,
    dtype: jnp.dtype = jnp.float32,
):
    """A bound head-only model over A of shape (size, size, channels): features(A) == A."""
    return head_only_model((size, size, channels), num_classes, output, hidden, seed, dtype)


def random_feature_map(shape, seed: int = 1, dtype=jnp.float32) -> jax.Array:
    """Non-negative A (post-ReLU, as a last conv layer gives)."""
    return jnp.asarray(np.random.default_rng(seed).uniform(0.0, 1.0, size=shape), dtype)


def dot_precisions(closed_jaxpr) -> list:
    """The precision of every dot_general in a traced program, sub-jaxprs included."""
    found = []

    def walk(jaxpr):
        for eqn in jaxpr.eqns:
            if eqn.primitive.name == "dot_general":
                found.append(eqn.params["precision"])
            for sub in jax.extend.core.jaxprs_in_params(eqn.params):
                walk(sub)

    walk(closed_jaxpr.jaxpr)
    return found


class ToyBackbone(nn.Module):
    """A backbone outside the library: two strided convs, (B, 16, 16, 2) -> A (B, 4, 4, 6)."""

    min_input_size: ClassVar[int] = 4

    @nn.compact
    def __call__(self, x: jax.Array, train: bool = False) -> jax.Array:
        x = nn.relu(nn.Conv(4, (3, 3), strides=2)(x))
        return nn.relu(nn.Conv(6, (3, 3), strides=2)(x))


def toy_model(output: str = "softmax", seed: int = 0):
    """:class:`ToyBackbone` in a 3-class CAM classifier over 2-channel 16x16 images, bound."""
    module = jaxcam.CAMClassifier(
        backbone=ToyBackbone(), num_classes=3, output=output, in_channels=2
    )
    return jaxcam.bind(module, module.init(jax.random.key(seed), jnp.zeros((1, 16, 16, 2))))


REPOSITORY = Path(__file__).resolve().parents[1]


def load_script(relative_path: str):
    """Import a script of the repository (``experiments/phantom.py``...) as a module.

    It is registered in ``sys.modules`` while it runs, so its dataclasses resolve their
    annotations through it.
    """
    path = REPOSITORY / relative_path
    spec = importlib.util.spec_from_file_location(path.stem, path)
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


def lanczos3_matrix(input_size: int, output_size: int) -> np.ndarray:
    """Lanczos-3 upsampling as a matrix (output_size, input_size), float64, in numpy.

    Written from the conventions of ``jax.image.scale_and_translate`` (which
    ``jax.image.resize`` calls with scale = output / input, no translation): pixel
    centres sit at half-integers, so output pixel i samples the input at
    ``s = (i + 0.5) * input / output - 0.5``; input pixel j weighs
    ``L(s - j) = sinc(s - j) sinc((s - j) / 3)`` for ``|s - j| < 3``, else 0 (the kernel
    is widened only when downsampling, never here); only pixels inside the input count,
    and each output's weights are divided by their sum.
    """
    if output_size < input_size:
        raise ValueError("the reference covers upsampling only")
    samples = (np.arange(output_size) + 0.5) * input_size / output_size - 0.5
    offsets = samples[:, None] - np.arange(input_size)[None, :]
    kernel = np.where(np.abs(offsets) < 3, np.sinc(offsets) * np.sinc(offsets / 3), 0.0)
    return kernel / kernel.sum(axis=1, keepdims=True)


def lanczos3_upsample_reference(saliency, size: tuple[int, int]) -> np.ndarray:
    """A map (h, w) upsampled to ``size`` (H, W) with :func:`lanczos3_matrix` (separable)."""
    values = np.asarray(saliency, np.float64)
    rows = lanczos3_matrix(values.shape[0], size[0])
    columns = lanczos3_matrix(values.shape[1], size[1])
    return rows @ values @ columns.T


def normalise_reference(saliency) -> np.ndarray:
    """A map (H, W) clipped below at 0 and divided by its maximum (0 stays 0), in numpy."""
    clipped = np.maximum(np.asarray(saliency, np.float64), 0.0)
    peak = clipped.max()
    return clipped / peak if peak > 0 else clipped


#: A child process that holds an flock on argv[1] until its stdin closes.
HOLD_LOCK = """
import fcntl, os, sys
descriptor = os.open(sys.argv[1], os.O_RDWR | os.O_CREAT)
fcntl.flock(descriptor, fcntl.LOCK_EX)
os.write(descriptor, str(os.getpid()).encode())
print("locked", flush=True)
sys.stdin.read()
"""


@contextlib.contextmanager
def lock_held_by_another_process(path: Path):
    """A child process holding an flock on ``path``; yields the process."""
    path.parent.mkdir(parents=True, exist_ok=True)
    child = subprocess.Popen(
        [sys.executable, "-c", HOLD_LOCK, str(path)],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert child.stdout.readline().strip() == "locked"
        yield child
    finally:
        child.kill()
        child.wait()
