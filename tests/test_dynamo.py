"""torch.compile(model, backend="tvm_lrn"): in its whole-graph mode what from_torch +
tvm_lrn.compile give; by default inductor's graph with the LRN as the custom op."""

from __future__ import annotations

import warnings

import numpy as np
import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F

import tvm_lrn
from tvm_lrn.frontend import dynamo

warnings.filterwarnings("ignore", category=FutureWarning)

#: The whole-graph mode (the default mode hands the graph to inductor).
WHOLE = {"whole_graph": True}


class Net(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(3, 8, 3, padding=1, bias=False)
        self.lrn = nn.LocalResponseNorm(5, alpha=1e-4, beta=0.75, k=2.0)

    def forward(self, x):
        y = self.lrn(torch.relu(self.conv(x)))
        return F.local_response_norm(y * 1e20, 4) + y  # even size, huge input


@pytest.fixture()
def compiled_graphs(monkeypatch):
    """Record what the backend compiled (and make a silent eager fallback fail)."""
    seen = []
    real = dynamo.compile_graph

    def spy(gm, example_inputs, target=None):
        run = real(gm, example_inputs, target)
        seen.append(run)
        return run

    monkeypatch.setattr(dynamo, "compile_graph", spy)
    torch._dynamo.reset()
    yield seen
    torch._dynamo.reset()


def test_backend_is_registered_by_entry_point():
    assert "tvm_lrn" in torch._dynamo.list_backends()


def test_torch_compile_matches_from_torch(compiled_graphs):
    torch.manual_seed(0)
    net = Net().eval()
    x = torch.randn(2, 3, 6, 6) * 1e3
    with torch.no_grad():
        got = torch.compile(net, backend="tvm_lrn", options=WHOLE)(x)
        want = tvm_lrn.compile(tvm_lrn.from_torch(net, x))(x)
        truth = net.double()(x.double())
    assert len(compiled_graphs) == 1
    assert compiled_graphs[0].tvm_lrn_module.script().count("R.tvm_lrn(") == 2
    np.testing.assert_array_equal(got.numpy(), want.numpy())
    assert np.all(np.isfinite(got.numpy()))
    # norm-wise: single outputs near zero carry the float32 rounding of the conv
    err = np.max(np.abs(got.numpy() - truth.numpy())) / np.max(np.abs(truth.numpy()))
    assert err < 1e-5


def test_graph_break_and_multiple_outputs(compiled_graphs):
    def fn(x):
        a = F.local_response_norm(x, 3)
        torch._dynamo.graph_break()
        return F.local_response_norm(a * 1e25, 2), a.sum()

    x = torch.randn(1, 5, 2, 2)
    a, s = torch.compile(fn, backend="tvm_lrn", options=WHOLE)(x)
    ref_a, ref_s = fn(x.double())
    assert len(compiled_graphs) == 2
    np.testing.assert_allclose(a.numpy(), ref_a.numpy(), rtol=1e-5)
    np.testing.assert_allclose(s.numpy(), ref_s.numpy(), rtol=1e-5)


def test_fx_importer_path_when_export_fails(compiled_graphs, monkeypatch):
    import tvm_lrn.frontend.torch as frontend_torch

    def refuse(*args, **kwargs):
        raise RuntimeError("torch.export refused the graph")

    monkeypatch.setattr(frontend_torch, "from_torch", refuse)
    net = nn.Sequential(nn.LocalResponseNorm(4), nn.ReLU())
    x = torch.randn(1, 6, 3, 3) * 1e22
    got = torch.compile(net, backend="tvm_lrn", options=WHOLE)(x)
    assert len(compiled_graphs) == 1
    assert "R.tvm_lrn(" in compiled_graphs[0].tvm_lrn_module.script()
    np.testing.assert_allclose(got.numpy(), net(x.double()).numpy(), rtol=1e-6)
