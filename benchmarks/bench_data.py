"""Real-data pipeline throughput: preparing a chest X-ray folder, reading batches, training.

Command::

    python benchmarks/bench_data.py [--images 256] [--source-size 1024] [--image-size 299]
        [--model small_cnn] [--batch-size 32] [--steps 20]

Writes a synthetic Kaggle-layout folder of ``--images`` JPEGs (``--source-size``
pixels square, like the Kaggle X-rays' 1-2 k pixels), then prints::

    prepare    <n> images in <t> s = <r> img/s    (decode, resize, PNG, array_record)
    read       <r> img/s                          (split_batches: PNG decode, 8 threads)
    train      <r> img/s  (<model>, batch <b>, after compilation)
    input-bound: yes/no                           (reading slower than training?)

Reading must outpace training, or the accelerator waits for the host.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
from PIL import Image

from jaxcam.data import load_chest_xray, split_batches
from jaxcam.models import init_variables
from jaxcam.runs import ModelSpec
from jaxcam.train import TrainConfig, optimizer_and_step


def write_folder(root: Path, images: int, size: int) -> None:
    rng = np.random.default_rng(0)
    for i in range(images):
        split = ("train", "val", "test")[i % 3]
        label = ("NORMAL", "PNEUMONIA")[i % 2]
        folder = root / split / label
        folder.mkdir(parents=True, exist_ok=True)
        pixels = rng.integers(0, 255, size=(size // 8, size // 8), dtype=np.uint8)
        Image.fromarray(pixels).resize((size, size)).save(folder / f"{i}.jpeg", quality=90)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--images", type=int, default=256)
    parser.add_argument("--source-size", type=int, default=1024)
    parser.add_argument("--image-size", type=int, default=299)
    parser.add_argument("--model", default="small_cnn")
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--steps", type=int, default=20)
    args = parser.parse_args()
    print(f"devices: {jax.devices()}")
    with tempfile.TemporaryDirectory() as tmp:
        source, data_dir = Path(tmp) / "chest_xray", Path(tmp) / "prepared"
        write_folder(source, args.images, args.source_size)
        start = time.perf_counter()
        splits = {
            s: load_chest_xray(source, s, data_dir, args.image_size) for s in ("train", "val")
        }
        seconds = time.perf_counter() - start
        print(
            f"prepare    {args.images} images in {seconds:.1f} s "
            f"= {args.images / seconds:.0f} img/s"
        )

        train = splits["train"]
        start, count = time.perf_counter(), 0
        for _ in range(2):
            for batch in split_batches(train, args.batch_size, seed=0):
                count += len(batch["label"])
        read_rate = count / (time.perf_counter() - start)
        print(f"read       {read_rate:.0f} img/s")

        spec = ModelSpec(args.model, image_size=args.image_size)
        model = spec.build()
        config = TrainConfig(batch_size=args.batch_size)
        optimizer, step = optimizer_and_step(model, config, args.steps + 1)
        variables = init_variables(model, spec.image_shape, 0)
        with jax.numpy_dtype_promotion("standard"):
            opt_state = optimizer.init(variables["params"])
        images = jnp.asarray(
            np.random.default_rng(0).uniform(size=(args.batch_size, *spec.image_shape)), jnp.float32
        )
        labels = jnp.zeros(args.batch_size, jnp.int32)
        weights, key = jnp.ones(2, jnp.float32), jax.random.key(0)
        variables, opt_state, loss = step(variables, opt_state, images, labels, key, weights)
        jax.block_until_ready(loss)
        start = time.perf_counter()
        for _ in range(args.steps):
            variables, opt_state, loss = step(variables, opt_state, images, labels, key, weights)
        jax.block_until_ready(loss)
        train_rate = args.steps * args.batch_size / (time.perf_counter() - start)
        print(f"train      {train_rate:.0f} img/s  ({args.model}, batch {args.batch_size})")
        print(f"input-bound: {'yes' if read_rate < train_rate else 'no'}")


if __name__ == "__main__":
    main()
