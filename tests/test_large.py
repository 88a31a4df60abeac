"""A real run on a float16 tensor of more than 2**31 elements (64-bit index arithmetic)."""

import numpy as np
import pytest
import torch
from accuracy import check_against_exact

import tvm_lrn
from tvm_lrn import canonicalize, reference

pytestmark = pytest.mark.large


def test_float16_tensor_beyond_2_pow_31_elements():
    c, inner = 4, 2**29 + 3  # 2**31 + 12 elements: 4.3 GB in, 4.3 GB out
    x = torch.full((c, inner), 1.5, dtype=torch.float16)
    rng = np.random.default_rng(0)
    cols = np.unique(
        np.concatenate(
            [rng.integers(0, inner, 60), [0, 1, 2**28, 2**29 - 1], np.arange(inner - 8, inner)]
        )
    )
    values = rng.uniform(-6e4, 6e4, (c, cols.size)).astype(np.float16)
    values[:, -1] = [6e4, -3e-8, 250.0, -1e-3]  # the very last column mixes magnitudes
    x[:, torch.from_numpy(cols)] = torch.from_numpy(values)
    y = tvm_lrn.run(x, size=3, alpha=1e-4, beta=0.75, bias=1.0, axis=0)
    assert y.shape == x.shape and y.dtype == torch.float16
    got = y[:, torch.from_numpy(cols)].numpy()
    # LRN along axis 0 couples only the 4 values of a column: check each sampled column.
    p = canonicalize(3, 1e-4, 0.75, 1.0, axis=0, ndim=2)
    check_against_exact(got, reference.lrn_exact(values, p), "float16")
    untouched = np.setdiff1d(np.arange(inner - 100, inner), cols)
    want = reference.lrn(np.full((c, 1), 1.5, np.float16), 3, axis=0)
    np.testing.assert_array_equal(
        y[:, torch.from_numpy(untouched)].numpy(), np.broadcast_to(want, (c, untouched.size))
    )
