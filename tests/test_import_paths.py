"""No import path loses the safety: what PyTorch's ONNX exporters write for LRN, and the
graphs Dynamo compiles with symbolic sizes, end up as the safe op.

The model is conv-ReLU-LRN-maxpool; at input scale 1e20 the LRN's ``x * x`` overflows
float32, so torch eager (and any unfused decomposition) loses the activation, while the
safe op stays within :func:`accuracy.float32_bound` of float64 torch.
"""

from __future__ import annotations

import copy
import warnings

import numpy as np
import onnx
import pytest
import torch
import torch.nn as nn
from accuracy import float32_bound, rel_err

import tvm_lrn

SCALE = 1e20
SHAPE = (1, 3, 64, 64)


class ConvLRNPool(nn.Module):
    def __init__(self, size=5):
        super().__init__()
        self.conv = nn.Conv2d(3, 8, 3, padding=1, bias=False)  # positively homogeneous
        self.lrn = nn.LocalResponseNorm(size, alpha=1e-4, beta=0.75, k=2.0)
        self.pool = nn.MaxPool2d(2)

    def forward(self, x):
        return self.pool(self.lrn(torch.relu(self.conv(x))))


def _net(size=5):
    torch.manual_seed(0)
    return ConvLRNPool(size).eval()


def _inputs(shape=SHAPE, seed=1):
    return torch.randn(*shape, generator=torch.Generator().manual_seed(seed))


def _check_safe(net, run, x):
    """``run(x * SCALE)`` matches float64 torch where float32 eager does not."""
    with torch.no_grad():
        truth = copy.deepcopy(net).double()(x.double() * SCALE).numpy()
        eager = net(x * SCALE).numpy()
    assert rel_err(eager, truth) > 1e-2  # the overflow this guards against
    got = run(x * SCALE)
    got = got.detach().numpy() if isinstance(got, torch.Tensor) else got
    assert rel_err(got, truth) < float32_bound(net, x)


def _export(net, path, exporter: str):
    x = _inputs()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the legacy exporter's deprecation notice
        if exporter == "legacy":
            torch.onnx.export(
                net, (x,), str(path), opset_version=13, dynamo=False, input_names=["x"]
            )
        else:
            torch.onnx.export(net, (x,), str(path), dynamo=True, verbose=False, input_names=["x"])
    return path


@pytest.mark.parametrize("size", [5, 4])  # 4: PyTorch's even window [c-2, c+1]
@pytest.mark.parametrize("exporter", ["legacy", "dynamo"])
def test_pytorch_onnx_exports_fuse_to_the_safe_op(tmp_path, exporter, size):
    net = _net(size)
    path = _export(net, tmp_path / "net.onnx", exporter)
    ops = {n.op_type for n in onnx.load(str(path)).graph.node}
    assert "LRN" not in ops and "AveragePool" in ops  # the decomposition, not an LRN node
    with warnings.catch_warnings():
        warnings.simplefilter("error", UserWarning)  # fused: no lookalike warning
        mod = tvm_lrn.from_onnx(path)
    text = mod.script()
    assert text.count("R.tvm_lrn(") == 1 and "avg_pool" not in text
    model = tvm_lrn.compile(mod)
    _check_safe(net, lambda x: model(x.numpy()), _inputs())


def test_onnx_shape_dict_folds_with_the_given_shape(tmp_path):
    net = _net()
    path = _export(net, tmp_path / "net.onnx", "legacy")
    name = onnx.load(str(path)).graph.input[0].name
    with pytest.raises(ValueError, match="not inputs of the model"):
        tvm_lrn.from_onnx(path, shape_dict={"nope": [1, 3, 64, 64]})
    mod = tvm_lrn.from_onnx(path, shape_dict={name: [1, 3, 64, 64]})
    assert mod.script().count("R.tvm_lrn(") == 1


@pytest.mark.parametrize("dynamic", [True, None])  # None: Dynamo goes symbolic on a 2nd shape
@pytest.mark.parametrize("whole_graph", [False, True])
def test_dynamo_graphs_with_symbolic_sizes_stay_safe(dynamic, whole_graph):
    net = _net()
    torch._dynamo.reset()
    compiled = torch.compile(
        net, backend="tvm_lrn", dynamic=dynamic, options={"whole_graph": whole_graph}
    )
    try:
        for shape in [SHAPE, (2, 3, 40, 48), (3, 3, 24, 32)]:
            with warnings.catch_warnings(record=True) as seen:
                warnings.simplefilter("always")
                _check_safe(net, compiled, _inputs(shape))
            fell_back = [w for w in seen if "symbolic sizes" in str(w.message)]
            assert not fell_back or whole_graph  # the default mode takes them as they are
    finally:
        torch._dynamo.reset()


def test_whole_graph_failure_goes_to_inductor_with_the_safe_op(monkeypatch):
    from tvm_lrn.frontend import dynamo

    def fail(*args, **kwargs):
        raise RuntimeError("no importer for this op")

    monkeypatch.setattr(dynamo, "compile_graph", fail)
    net = _net()
    torch._dynamo.reset()
    try:
        compiled = torch.compile(net, backend="tvm_lrn", options={"whole_graph": True})
        # inference (no gradients): the whole-graph mode applies, and its failure is seen
        with torch.no_grad(), pytest.warns(UserWarning, match="no importer.*safe LRN op"):
            _check_safe(net, compiled, _inputs())
    finally:
        torch._dynamo.reset()


def test_folding_keeps_every_other_node():
    # A graph without shape computations is imported as before (the folding is a no-op).
    from onnx import TensorProto, helper

    nodes = [helper.make_node("Relu", ["x"], ["r"]), helper.make_node("Neg", ["r"], ["y"])]
    graph = helper.make_graph(
        nodes,
        "g",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, (2, 3))],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, (2, 3))],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])
    x = np.array([[-1, 2, -3], [4, -5, 6]], np.float32)
    np.testing.assert_array_equal(tvm_lrn.compile(tvm_lrn.from_onnx(model))(x), -np.maximum(x, 0))
