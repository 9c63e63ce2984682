"""Two processes on one machine (CPU collectives over gloo) give the one-process tables,
with equal and with unequal shares of the data (the process with fewer batches pads)."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import textwrap

import pytest

pytestmark = pytest.mark.slow

WORKER = textwrap.dedent(
    """
    import json, sys
    import numpy as np
    import jax
    import jax.numpy as jnp
    import flax.linen as nn

    port, process, share = int(sys.argv[1]), int(sys.argv[2]), sys.argv[3]
    if process >= 0:
        jax.config.update("jax_cpu_collectives_implementation", "gloo")
        jax.distributed.initialize(f"127.0.0.1:{port}", num_processes=2, process_id=process)
    import jaxcam

    class Tiny(nn.Module):
        @nn.compact
        def __call__(self, x, train=False):
            return nn.relu(nn.Conv(4, (3, 3), strides=2)(x))

    module = jaxcam.CAMClassifier(backbone=Tiny(), num_classes=2, output="softmax")
    model = jaxcam.bind(module, module.init(jax.random.key(0), jnp.zeros((1, 16, 16, 1))))
    rng = np.random.default_rng(0)
    images = rng.uniform(size=(40, 16, 16, 1)).astype(np.float32)
    labels = (np.arange(40) % 2).astype(np.int32)
    rows = {
        "all": np.arange(40),
        "equal": np.arange(process, 40, 2),
        "unequal": np.arange(0, 32) if process == 0 else np.arange(32, 40),
        "empty": np.arange(0, 40) if process == 0 else np.arange(0),
    }[share]
    try:
        evaluation = jaxcam.evaluate(
            model, {"image": images[rows], "label": labels[rows]},
            ["cam", "grad_cam", "grad_cam_plus_plus"], ties="raster", batch_size=8,
            grid=(0.25, 0.5, 0.75),
        )
    except ValueError as error:
        print(json.dumps({"error": str(error)}))
        sys.exit(0)
    print(json.dumps({
        "alpha": evaluation.alpha,
        "images": sum(evaluation.class_counts.values()),
        "rows": {n: [r.average_drop.value, r.black_average_drop.value, r.curve_area]
                 for n, r in evaluation.results.items()},
    }))
    """
)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def run(share: str, processes: int) -> list[dict]:
    env = {**os.environ, "JAX_PLATFORMS": "cpu", "XLA_FLAGS": ""}
    port = free_port()
    ids = range(processes) if processes > 1 else [-1]
    running = [
        subprocess.Popen(
            [sys.executable, "-c", WORKER, str(port), str(i), share],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env=env,
        )
        for i in ids
    ]
    outputs = []
    for process in running:
        out, err = process.communicate(timeout=300)
        assert process.returncode == 0, err[-3000:]
        outputs.append(json.loads(out.strip().splitlines()[-1]))
    return outputs


@pytest.fixture(scope="module")
def single():
    return run("all", 1)[0]


@pytest.mark.parametrize("share", ["equal", "unequal"])
def test_two_processes_give_the_single_process_tables(single, share):
    for result in run(share, 2):
        assert result["images"] == 40
        assert result["alpha"] == single["alpha"]
        for name, values in single["rows"].items():
            assert result["rows"][name] == pytest.approx(values, rel=1e-5), (share, name)


def test_a_process_without_data_gets_a_clear_error_not_a_hang():
    for result in run("empty", 2):
        assert "have no images while others do" in result["error"]
