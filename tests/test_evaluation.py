"""jaxcam.evaluation: fixed-size batching over a data set."""

import numpy as np
import pytest

from jaxcam.evaluation import in_batches


def test_in_batches_pads_the_last_batch_and_cuts_the_padding():
    seen = []

    def fn(x, y):
        seen.append(x.shape[0])
        return {"sum": x + y, "first": x[:, 0]}

    x = np.arange(14, dtype=np.float32).reshape(7, 2)
    y = np.ones((7, 2), np.float32)
    out = in_batches(fn, [x, y], batch_size=3)
    assert seen == [3, 3, 3]  # one compiled shape
    np.testing.assert_array_equal(out["sum"], x + 1)
    np.testing.assert_array_equal(out["first"], x[:, 0])


def test_in_batches_rejects_an_empty_data_set():
    with pytest.raises(ValueError, match="no examples"):
        in_batches(lambda x: x, [np.zeros((0, 2))], batch_size=4)
