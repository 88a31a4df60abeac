"""FuseLRN: every importer's decomposed LRN becomes R.tvm_lrn; lookalikes stay as they are.

The torch.export, FX and ONNX forms are produced by TVM's own importers. The TFLite form
is built by hand with BlockBuilder, mirroring ``convert_lrn`` in TVM 0.27's
``relax/frontend/tflite/tflite_frontend.py`` (square -> reshape(-1, C, 1, 1) ->
avg_pool2d NHWC -> reshape -> add(bias, alpha * .) -> power -> divide), because the
``tflite`` package is not installed here. Numbers are checked against tvm_lrn.reference.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass

import numpy as np
import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F
import tvm
from tvm import relax

from tvm_lrn.reference import lrn as lrn_reference
from tvm_lrn.transform import FuseLRN, find_lrn

warnings.filterwarnings("ignore", category=FutureWarning)


def _torch_ep_mod(fn, x, dynamic=False):
    from tvm.relax.frontend.torch import from_exported_program

    class M(nn.Module):
        def forward(self, x):
            return fn(x)

    dyn = {"x": {0: torch.export.Dim("batch")}} if dynamic else None
    ep = torch.export.export(M(), (x,), dynamic_shapes=dyn)
    return from_exported_program(ep, unwrap_unit_return_tuple=True)


def _lrn_calls(mod):
    return [line for line in mod.script().splitlines() if "R.tvm_lrn(" in line]


def _run(mod, x):
    ex = tvm.compile(mod, "llvm")
    return relax.VirtualMachine(ex, tvm.cpu())["main"](tvm.runtime.tensor(x)).numpy()


def _assert_unchanged(mod):
    out = FuseLRN()(mod)
    assert not _lrn_calls(out)
    assert find_lrn(mod) == []
    tvm.ir.assert_structural_equal(out, mod)


# --------------------------------------------------------------------------- torch.export


@pytest.mark.parametrize(
    "shape,size,dtype",
    [
        ((2, 7, 5), 3, torch.float32),  # 3-D: expand_dims + pad + avg_pool2d
        ((2, 7, 4, 3), 4, torch.float32),  # 4-D: reshape + pad + avg_pool3d, even size
        ((1, 6, 2, 3, 4), 5, torch.float32),  # 5-D: reshape folds the trailing dims
        ((1, 8, 3, 3), 2, torch.float16),
        ((1, 8, 3, 3), 6, torch.bfloat16),
        ((1, 5, 3, 3), 1, torch.float32),  # size 1: a pool that averages one value
        ((1, 3, 2, 2), 9, torch.float32),  # window wider than the channel count
    ],
)
def test_torch_export_form(shape, size, dtype):
    x = torch.randn(*shape).to(dtype)
    mod = _torch_ep_mod(lambda t: F.local_response_norm(t, size, 3e-4, 0.5, 1.25), x)
    (match,) = find_lrn(mod)
    assert match.size == size
    p = match.params
    assert (p.lo, p.hi, p.axis) == (size // 2, (size - 1) // 2, 1)  # torch's window
    assert match.convention == ("torch" if size % 2 == 0 else "caffe")
    assert match.dtype == str(dtype).replace("torch.", "")
    assert p.bias == 1.25 and p.beta == 0.5
    # alpha is the constant the importer stored, rounded to the model dtype.
    assert p.alpha == pytest.approx(3e-4 / size, rel=4e-3)
    fused = FuseLRN()(mod)
    text = fused.script()
    assert len(_lrn_calls(fused)) == 1
    for gone in ("avg_pool", "nn.pad", "R.power", "R.divide", "R.multiply"):
        assert gone not in text


@pytest.mark.parametrize("size", [4, 5])
def test_torch_export_numbers(size):
    x = np.random.default_rng(size).standard_normal((2, 9, 3, 4)).astype("float32") * 1e20
    mod = _torch_ep_mod(lambda t: F.local_response_norm(t, size, 1e-4, 0.75, 2.0), torch.tensor(x))
    got = _run(FuseLRN()(mod), x)
    ref = lrn_reference(x, size, 1e-4, 0.75, 2.0, convention="torch")
    np.testing.assert_allclose(got, ref, rtol=2e-6)
    assert not np.allclose(_run(mod, x), ref, rtol=1e-3)  # the unfused chain overflows


def test_torch_export_symbolic_batch():
    x = torch.randn(3, 6, 4, 4)
    mod = _torch_ep_mod(lambda t: F.local_response_norm(t, 4), x, dynamic=True)
    fused = FuseLRN()(mod)
    (line,) = _lrn_calls(fused)
    assert "lo=2" in line and "hi=1" in line
    data = np.random.default_rng(0).standard_normal((5, 6, 4, 4)).astype("float32")
    np.testing.assert_allclose(_run(fused, data), lrn_reference(data, 4), rtol=2e-6)


def test_two_lrns_and_other_users_of_intermediates():
    def fn(t):
        a = F.local_response_norm(t, 3)
        b = F.local_response_norm(torch.relu(a) + 1.0, 4, 1e-3, 0.6, 1.5)
        return b * 2 + (t * t).sum()  # t*t is also used outside the LRN

    x = torch.randn(1, 6, 3, 3)
    mod = _torch_ep_mod(fn, x)
    assert len(find_lrn(mod)) == 2
    fused = FuseLRN()(mod)
    assert len(_lrn_calls(fused)) == 2
    np.testing.assert_allclose(_run(fused, x.numpy()), fn(x.double()).numpy(), rtol=1e-5)


def test_pass_does_not_mutate_its_input():
    mod = _torch_ep_mod(lambda t: F.local_response_norm(t, 3), torch.randn(1, 4, 2, 2))
    before = mod.script()
    FuseLRN()(mod)
    assert mod.script() == before


def test_exact_scalars_replace_rounded_constants():
    x = torch.randn(1, 4, 2, 2).to(torch.bfloat16)
    mod = _torch_ep_mod(lambda t: F.local_response_norm(t, 3, 2e-4, 0.6, 1.5), x)
    (plain,) = find_lrn(mod)
    assert plain.params.beta == 0.6015625  # 0.6 rounded to bfloat16 by the importer
    hints = {("bfloat16", 0.6015625): 0.6, ("bfloat16", plain.alpha): 2e-4}
    (exact,) = find_lrn(mod, hints)
    assert exact.params.beta == 0.6 and exact.alpha == 2e-4


# --------------------------------------------------------------------------- FX importer


class CaffeStyleLRN(nn.Module):
    """The hand-written LRN of the classic Caffe -> PyTorch AlexNet ports."""

    def __init__(self, size, alpha, beta, k=1.0, pool_padding=None):
        super().__init__()
        pad = (size - 1) // 2 if pool_padding is None else pool_padding
        self.average = nn.AvgPool3d((size, 1, 1), stride=1, padding=(pad, 0, 0))
        self.alpha, self.beta, self.k = alpha, beta, k

    def forward(self, x):
        div = self.average(x.pow(2).unsqueeze(1)).squeeze(1)
        return x.div(div.mul(self.alpha).add(self.k).pow(self.beta))


def _fx_mod(module, shape):
    from tvm.relax.frontend.torch import from_fx

    return from_fx(torch.fx.symbolic_trace(module), [(shape, "float32")])


def test_fx_form():
    mod = _fx_mod(CaffeStyleLRN(5, 1e-4, 0.75, 2.0), (1, 10, 3, 3))
    assert "R.power" in mod.script() and "avg_pool3d" in mod.script()
    (match,) = find_lrn(mod)
    assert (match.params.lo, match.params.hi, match.size) == (2, 2, 5)
    fused = FuseLRN()(mod)
    assert len(_lrn_calls(fused)) == 1 and "avg_pool3d" not in fused.script()
    x = np.random.default_rng(1).standard_normal((1, 10, 3, 3)).astype("float32") * 1e25
    ref = lrn_reference(x, 5, 1e-4, 0.75, 2.0, convention="caffe")
    np.testing.assert_allclose(_run(fused, x), ref, rtol=2e-6)


def test_fx_form_functional_3d_commuted():
    class M(nn.Module):
        def forward(self, x):
            pooled = F.avg_pool2d((x * x).unsqueeze(1), (3, 1), stride=1, padding=(1, 0))
            return x / (1.0 + 1e-4 * pooled.squeeze(1)) ** 0.75

    mod = _fx_mod(M(), (2, 6, 7))
    fused = FuseLRN()(mod)
    assert len(_lrn_calls(fused)) == 1
    x = np.random.default_rng(2).standard_normal((2, 6, 7)).astype("float32")
    np.testing.assert_allclose(_run(fused, x), lrn_reference(x, 3, 1e-4, 0.75, 1.0), rtol=2e-6)


def test_fx_negative_pool_padding_not_counted():
    class M(nn.Module):
        def forward(self, x):
            s = F.avg_pool3d(
                x.pow(2).unsqueeze(1),
                (5, 1, 1),
                stride=1,
                padding=(2, 0, 0),
                count_include_pad=False,
            )
            return x / (1.0 + 1e-4 * s.squeeze(1)) ** 0.75

    mod = _fx_mod(M(), (1, 8, 2, 2))
    assert "count_include_pad=False" in mod.script()  # edge windows average fewer values
    _assert_unchanged(mod)


def test_fx_negative_window_that_changes_the_length():
    # padding 1 on a 5-wide pool: 2 channels fewer than x, so not an LRN of x.
    class M(nn.Module):
        def forward(self, x):
            s = F.avg_pool3d(x.pow(2).unsqueeze(1), (5, 1, 1), stride=1, padding=(1, 0, 0))
            return x[:, 1:-1] / (1.0 + s.squeeze(1)) ** 0.75

    _assert_unchanged(_fx_mod(M(), (1, 8, 2, 2)))


# --------------------------------------------------------------------------- ONNX importer


def _onnx_mod(size, opset, shape=(1, 9, 4, 4)):
    import onnx
    from onnx import TensorProto, helper
    from tvm.relax.frontend.onnx import from_onnx

    node = helper.make_node("LRN", ["x"], ["y"], size=size, alpha=2e-4, beta=0.8, bias=1.5)
    graph = helper.make_graph(
        [node],
        "g",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, shape)],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, shape)],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)])
    onnx.checker.check_model(model)
    return from_onnx(model)


@pytest.mark.parametrize("opset,shape", [(1, (1, 9, 4, 4)), (13, (2, 9, 5))])
def test_onnx_importer_form(opset, shape):
    mod = _onnx_mod(5, opset, shape)  # TVM's converter: padding inside the pool, no pad op
    assert "avg_pool" in mod.script() and "nn.pad" not in mod.script()
    (match,) = find_lrn(mod)
    assert (match.params.lo, match.params.hi) == (2, 2)
    assert match.params.alpha == pytest.approx(2e-4 / 5, rel=1e-7)
    fused = FuseLRN()(mod)
    assert len(_lrn_calls(fused)) == 1
    x = np.random.default_rng(3).standard_normal(shape).astype("float32") * 1e30
    ref = lrn_reference(x, 5, 2e-4, 0.8, 1.5, convention="onnx")
    np.testing.assert_allclose(_run(fused, x), ref, rtol=2e-6)


# --------------------------------------------------------------------------- TFLite (by hand)


def _tflite_like(shape, radius, alpha, beta, bias, layout="NHWC", square="square"):
    """What TVM 0.27's TFLite ``convert_lrn`` emits for an NHWC tensor (built by hand)."""
    size = 2 * radius + 1
    x = relax.Var("x", relax.TensorType(shape, "float32"))
    bb = relax.BlockBuilder()
    with bb.function("main", [x]):
        with bb.dataflow():
            sq = relax.op.square(x) if square == "square" else relax.op.multiply(x, x)
            sq = bb.emit(sq)
            sq2 = bb.emit(relax.op.reshape(sq, [-1, shape[3], 1, 1]))
            pooled = bb.emit(
                relax.op.nn.avg_pool2d(
                    sq2,
                    pool_size=[size, 1],
                    strides=[1, 1],
                    padding=[radius, 0, radius, 0],
                    layout=layout,
                    count_include_pad=True,
                )
            )
            pooled = bb.emit(relax.op.reshape(pooled, list(shape)))
            scaled = relax.op.multiply(relax.const(alpha * size, "float32"), pooled)
            den = bb.emit(
                relax.op.power(
                    relax.op.add(relax.const(bias, "float32"), scaled), relax.const(beta, "float32")
                )
            )
            out = bb.emit_output(relax.op.divide(x, den))
        bb.emit_func_output(out)
    return bb.get()


def test_tflite_form():
    shape = (2, 3, 4, 7)
    mod = _tflite_like(shape, radius=2, alpha=1e-3, beta=0.5, bias=1.0)
    (match,) = find_lrn(mod)
    p = match.params
    assert (p.lo, p.hi, p.axis) == (2, 2, 3)
    assert p.alpha == pytest.approx(1e-3, rel=1e-6)  # TensorFlow's alpha is not divided
    fused = FuseLRN()(mod)
    assert len(_lrn_calls(fused)) == 1
    x = np.random.default_rng(4).standard_normal(shape).astype("float32") * 1e22
    ref = lrn_reference(x, 5, 1e-3, 0.5, 1.0, axis=3, convention="tensorflow")
    np.testing.assert_allclose(_run(fused, x), ref, rtol=2e-6)


def test_tflite_negative_wrong_pool_layout():
    # NCHW pools over the unit dim 2 of (-1, C, 1, 1): zeros padded around one value.
    _assert_unchanged(_tflite_like((1, 3, 4, 7), 2, 1e-3, 0.5, 1.0, layout="NCHW"))


# --------------------------------------------------------------------------- lookalikes


@dataclass(frozen=True)
class _ChainParts:
    """The pieces of :func:`_chain`; None takes the torch.export one."""

    sq: object = None
    alpha: object = None
    bias: object = None
    beta: object = None
    op: str = "divide"
    view: list | None = None
    pad: tuple = (2, 2)
    pool: int = 5
    pool_pad: int = 0
    dilation: int = 1
    count_include_pad: bool = True


def _chain(shape=(1, 6, 3, 3), **parts):
    """The torch.export chain, built by hand so that one piece at a time can be wrong."""
    p = _ChainParts(**parts)
    n, c = shape[0], shape[1]
    view = p.view or [n, 1, c, shape[2], shape[3]]
    x = relax.Var("x", relax.TensorType(shape, "float32"))
    y = relax.Var("y", relax.TensorType(shape, "float32"))
    bb = relax.BlockBuilder()
    with bb.function("main", [x, y]):
        with bb.dataflow():
            s = bb.emit(p.sq(x, y) if p.sq else relax.op.multiply(x, x))
            s = bb.emit(relax.op.reshape(s, view))
            width = [0, 0, 0, 0, p.pad[0], p.pad[1], 0, 0, 0, 0]
            s = bb.emit(relax.op.nn.pad(s, width))
            s = bb.emit(
                relax.op.nn.avg_pool3d(
                    s,
                    (p.pool, 1, 1),
                    dilation=(p.dilation, 1, 1),
                    padding=(p.pool_pad, 0, 0),
                    count_include_pad=p.count_include_pad,
                )
            )
            s = bb.emit(relax.op.reshape(s, list(shape)))
            a = p.alpha if p.alpha is not None else relax.const(1e-4, "float32")
            b = p.bias if p.bias is not None else relax.const(1.0, "float32")
            e = p.beta if p.beta is not None else relax.const(0.75, "float32")
            d = bb.emit(relax.op.power(relax.op.add(relax.op.multiply(s, a), b), e))
            out = relax.op.divide(x, d) if p.op == "divide" else relax.op.multiply(x, d)
            out = bb.emit_output(out)
        bb.emit_func_output(out)
    return bb.get()


def test_hand_built_chain_is_matched():
    # Sanity check for the lookalikes below: the unmodified chain is an LRN.
    (match,) = find_lrn(_chain())
    assert (match.params.lo, match.params.hi, match.size) == (2, 2, 5)


def test_negative_beta_multiply_form_is_matched():
    mod = _chain(op="multiply", beta=relax.const(-0.75, "float32"))
    (match,) = find_lrn(mod)
    assert match.params.beta == 0.75
    x = np.random.default_rng(5).standard_normal((1, 6, 3, 3)).astype("float32")
    fused = FuseLRN()(mod)
    got = relax.VirtualMachine(tvm.compile(fused, "llvm"), tvm.cpu())["main"](
        tvm.runtime.tensor(x), tvm.runtime.tensor(x)
    )
    np.testing.assert_allclose(got.numpy(), lrn_reference(x, 5), rtol=2e-6)


LOOKALIKES = {
    # the pooled tensor is not the square of the divided tensor
    "square-of-other": {"sq": lambda x, y: relax.op.multiply(y, y)},
    "x-times-y": {"sq": lambda x, y: relax.op.multiply(x, y)},
    "cube": {"sq": lambda x, y: relax.op.power(x, relax.const(3.0, "float32"))},
    "abs": {"sq": lambda x, y: relax.op.abs(x)},
    # constants that do not form an LRN
    "alpha-per-channel": {"alpha": relax.const(np.full((1, 6, 1, 1), 1e-4, "float32"))},
    "negative-bias": {"bias": relax.const(-1.0, "float32")},
    "negative-beta": {"beta": relax.const(-0.75, "float32")},  # x * d**0.75
    "zero-denominator": {"alpha": relax.const(0.0, "float32"), "bias": relax.const(0.0, "float32")},
    # windows that are not a channel window of x
    "scrambled-view": {"view": [1, 1, 3, 6, 3], "pool": 3, "pad": (1, 1)},
    "padding-not-counted": {"pad": (0, 0), "pool_pad": 2, "count_include_pad": False},
    "dilated-pool": {"pad": (2, 2), "pool": 3, "dilation": 2},
}


@pytest.mark.parametrize("name", list(LOOKALIKES))
def test_lookalikes_are_left_alone(name):
    # Left alone, and the user is told which bindings look like LRN (the tail ``gv``
    # and the average pool ``lv3`` of _chain), since they stay unsafe.
    with pytest.warns(UserWarning, match=r"gv = x / \(lv3 \* alpha \+ bias\).*not one"):
        _assert_unchanged(_chain(**LOOKALIKES[name]))


def test_a_fused_chain_gives_no_lookalike_warning():
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        FuseLRN()(_chain())


def test_asymmetric_window_is_matched_as_custom():
    (match,) = find_lrn(_chain(pad=(3, 1)))
    assert (match.params.lo, match.params.hi, match.convention) == (3, 1, "custom")


def _pooled_square_lrn(shape, pool, alpha: float) -> tvm.IRModule:
    """``x / (1 + alpha * squeeze(pool(expand_dims(x * x))))**0.75``, built by hand."""
    x = relax.Var("x", relax.TensorType(shape, "float32"))
    bb = relax.BlockBuilder()
    with bb.function("main", [x]):
        with bb.dataflow():
            s = bb.emit(relax.op.expand_dims(relax.op.multiply(x, x), [1]))
            s = bb.emit(pool(s))
            s = bb.emit(relax.op.squeeze(s, [1]))
            d = relax.op.power(
                relax.op.add(
                    relax.op.multiply(s, relax.const(alpha, "float32")), relax.const(1.0, "float32")
                ),
                relax.const(0.75, "float32"),
            )
            out = bb.emit_output(relax.op.divide(x, d))
        bb.emit_func_output(out)
    return bb.get()


def test_max_pool_is_not_a_window_sum():
    def pool(s):
        return relax.op.nn.max_pool3d(s, (3, 1, 1), padding=(1, 0, 0))

    with warnings.catch_warnings():
        warnings.simplefilter("error")  # no average pool: nothing that looks like LRN
        _assert_unchanged(_pooled_square_lrn((1, 6, 3, 3), pool, 1e-4))


def test_pool_along_another_axis_is_lrn_along_that_axis():
    # A window over H of the (N, 1, C, H, W) view is an LRN over axis 2 of x.
    def pool(s):
        return relax.op.nn.avg_pool3d(
            s, (1, 3, 1), padding=(0, 1, 0, 0, 1, 0), count_include_pad=True
        )

    mod = _pooled_square_lrn((1, 3, 7, 2), pool, 3e-4)
    (match,) = find_lrn(mod)
    assert match.params.axis == 2
    data = np.random.default_rng(6).standard_normal((1, 3, 7, 2)).astype("float32")
    np.testing.assert_allclose(
        _run(FuseLRN()(mod), data), lrn_reference(data, 3, 3e-4, axis=2), rtol=2e-6
    )
