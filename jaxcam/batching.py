"""Host-side batching: fixed-size batches of in-memory arrays or of any batch stream.

Nothing here runs on the device: these helpers cut and pad numpy arrays so that a
jitted step sees one shape (one compilation).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from typing import Any

import jax
import numpy as np

Batch = Mapping[str, np.ndarray]


def in_batches(fn: Callable[..., Any], arrays: Sequence[np.ndarray], batch_size: int) -> Any:
    """Apply ``fn(*batch)`` over aligned arrays in batches of exactly ``batch_size``.

    The last batch is padded by repeating its first rows and the padding is cut
    from the outputs; outputs (any pytree of arrays) are concatenated on the host.
    For per-image outputs of small sets (figures, predictions); data set metrics
    stream through :func:`evaluate` instead.
    """
    total = len(arrays[0])
    if total == 0:
        raise ValueError("no examples to process")
    batch_size = min(batch_size, total)
    outputs = []
    for start in range(0, total, batch_size):
        chunk = [np.asarray(a[start : start + batch_size]) for a in arrays]
        count = len(chunk[0])
        padded = [np.concatenate([c, np.repeat(c[:1], batch_size - count, axis=0)]) for c in chunk]
        outputs.append(jax.tree.map(lambda x, n=count: np.asarray(x)[:n], fn(*padded)))
    return jax.tree.map(lambda *xs: np.concatenate(xs), *outputs)


def fixed_size_batches(
    data: Iterable[Batch], batch_size: int, keys: Sequence[str]
) -> Iterator[tuple[dict[str, np.ndarray], int]]:
    """Re-chunk batches of any size into ``(batch, count)`` of exactly ``batch_size`` rows.

    The last batch is padded with zeros; ``count`` rows are real. Holds at most one
    batch plus one incoming batch on the host.
    """
    pending: dict[str, list[np.ndarray]] = {k: [] for k in keys}
    pending_rows = 0
    for incoming in data:
        missing = [k for k in keys if k not in incoming]
        if missing:
            raise ValueError(f"each batch must hold {list(keys)}; missing {missing}")
        rows = len(incoming["label"])
        for k in keys:
            if len(incoming[k]) != rows:
                raise ValueError(
                    f"batch arrays must have the same length: {k!r} has {len(incoming[k])}, "
                    f"'label' has {rows}"
                )
            pending[k].append(np.asarray(incoming[k]))
        pending_rows += rows
        while pending_rows >= batch_size:
            joined = {k: np.concatenate(v) for k, v in pending.items()}
            yield {k: v[:batch_size] for k, v in joined.items()}, batch_size
            pending = {k: [v[batch_size:]] for k, v in joined.items()}
            pending_rows -= batch_size
    if pending_rows:
        joined = {k: np.concatenate(v) for k, v in pending.items()}
        padded = {
            k: np.concatenate([v, np.zeros((batch_size - pending_rows, *v.shape[1:]), v.dtype)])
            for k, v in joined.items()
        }
        yield padded, pending_rows


def array_batches(arrays: Mapping[str, Any], batch_size: int) -> Iterator[Batch]:
    """Slices of in-memory arrays {"image": (N, ...), "label": (N,), ...} (views, no copies)."""
    total = len(arrays["label"])
    for start in range(0, total, batch_size):
        yield {k: v[start : start + batch_size] for k, v in arrays.items()}
