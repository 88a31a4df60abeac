"""Whole models with LRN: AlexNet (2012) and the GoogLeNet v1 stem, through from_torch.

Random weights, convolutions without bias, reduced widths and small images so that the
file runs in well under a minute. The truth is the same model run by torch in float64.
Errors are measured norm-wise, ``max|got - truth| / max|truth|``, because single outputs
near zero (ReLU, cancelling convolutions) carry large relative errors in any float32 run.

Scaling the input scales every conv/ReLU output (bias-free layers are positively
homogeneous), so a large factor drives the first LRN's input past the point where
``x * x`` overflows: 1.8e19 in float32, 256 in float16. There the tvm_lrn model must stay
finite and match float64 torch, and TVM's plain import and torch float32 eager must not.
"""

from __future__ import annotations

import copy

import numpy as np
import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F
import tvm
from accuracy import float32_bound, rel_err
from tvm import relax

import tvm_lrn
from tvm_lrn.build import compile as compile_model
from tvm_lrn.frontend.torch import from_torch


class AlexNet(nn.Module):
    """AlexNet (Krizhevsky, Sutskever, Hinton 2012) features, widths reduced 4-8x.

    LRN(size=5, alpha=1e-4, beta=0.75, k=2) after the ReLUs of conv1 and conv2, as in the
    paper; overlapping 3x3/2 max pooling.
    """

    def __init__(self, widths=(24, 32, 48, 48, 32)):
        super().__init__()
        w = widths
        self.features = nn.Sequential(
            nn.Conv2d(3, w[0], 11, stride=4, bias=False),
            nn.ReLU(),
            nn.LocalResponseNorm(5, alpha=1e-4, beta=0.75, k=2.0),
            nn.MaxPool2d(3, 2),
            nn.Conv2d(w[0], w[1], 5, padding=2, bias=False),
            nn.ReLU(),
            nn.LocalResponseNorm(5, alpha=1e-4, beta=0.75, k=2.0),
            nn.MaxPool2d(3, 2),
            nn.Conv2d(w[1], w[2], 3, padding=1, bias=False),
            nn.ReLU(),
            nn.Conv2d(w[2], w[3], 3, padding=1, bias=False),
            nn.ReLU(),
            nn.Conv2d(w[3], w[4], 3, padding=1, bias=False),
            nn.ReLU(),
            nn.MaxPool2d(3, 2),
        )

    def forward(self, x):
        return self.features(x)

    def first_lrn_input(self, x):
        return self.features[:2](x)


class GoogLeNetStem(nn.Module):
    """GoogLeNet v1 stem (Szegedy et al. 2015), widths 64/64/192 reduced to 16/16/24.

    Functional LRN; the second one has an even size (4), where PyTorch's window is
    ``[c-2, c+1]``.
    """

    def __init__(self):
        super().__init__()
        self.conv1 = nn.Conv2d(3, 16, 7, stride=2, padding=3, bias=False)
        self.conv2 = nn.Conv2d(16, 16, 1, bias=False)
        self.conv3 = nn.Conv2d(16, 24, 3, padding=1, bias=False)

    def forward(self, x):
        x = F.max_pool2d(F.relu(self.conv1(x)), 3, 2, ceil_mode=True)
        x = F.local_response_norm(x, 5, alpha=1e-4, beta=0.75, k=1.0)
        x = F.relu(self.conv3(F.relu(self.conv2(x))))
        x = F.local_response_norm(x, 4, alpha=1e-4, beta=0.75, k=1.0)
        return F.max_pool2d(x, 3, 2, ceil_mode=True)

    def first_lrn_input(self, x):
        return F.max_pool2d(F.relu(self.conv1(x)), 3, 2, ceil_mode=True)


NETS = {"alexnet": (AlexNet, (1, 3, 67, 67)), "googlenet_stem": (GoogLeNetStem, (1, 3, 64, 64))}


def _net(name):
    cls, shape = NETS[name]
    torch.manual_seed(2012)
    return cls().eval(), shape


class Compiled:
    """A model compiled three ways: tvm_lrn, TVM's plain import, and torch float64."""

    def __init__(self, name, dtype):
        net, shape = _net(name)
        self.name, self.shape, self.net = name, shape, net
        self.dtype = dtype
        model = copy.deepcopy(net).to(dtype)
        example = torch.rand(*shape).to(dtype)
        self.ours = compile_model(from_torch(model, example), "llvm")
        plain_mod = from_torch(model, example, fuse=False)
        self.plain = relax.VirtualMachine(tvm.compile(plain_mod, "llvm"), tvm.cpu())
        self.f64 = copy.deepcopy(net).double()
        self.f32 = copy.deepcopy(net).float()

    def truth(self, x):
        with torch.no_grad():
            return self.f64(x.double()).numpy()

    def run_ours(self, x):
        return self.ours(x.to(self.dtype)).float().numpy()

    def run_plain(self, x):
        arr = x.to(self.dtype).numpy()
        return self.plain["main"](tvm.runtime.tensor(arr)).numpy().astype(np.float64)

    def run_eager_f32(self, x):
        with torch.no_grad():
            return self.f32(x.float()).numpy()

    def lrn_input_max(self, x):
        with torch.no_grad():
            return float(self.f64.first_lrn_input(x.double()).max())


@pytest.fixture(scope="module", params=list(NETS))
def f32(request):
    return Compiled(request.param, torch.float32)


@pytest.fixture(scope="module", params=list(NETS))
def f16(request):
    return Compiled(request.param, torch.float16)


def test_lrn_became_the_op(f32):
    text = from_torch(copy.deepcopy(f32.net), torch.rand(*f32.shape)).script()
    assert text.count("R.tvm_lrn(") == 2
    assert "avg_pool" not in text and "R.power" not in text


def test_float32_ordinary_inputs_match_float64_torch(f32):
    torch.manual_seed(0)
    x = torch.rand(*f32.shape)
    err = rel_err(f32.run_ours(x), f32.truth(x))
    assert err < 1e-5, err


def test_float32_overflowing_inputs(f32):
    torch.manual_seed(1)
    x = torch.rand(*f32.shape)
    big = x * 1e21
    assert f32.lrn_input_max(big) > 1e19  # x*x overflows float32 (max 3.4e38)
    truth = f32.truth(big)
    ours = f32.run_ours(big)
    assert np.all(np.isfinite(ours))
    assert rel_err(ours, truth) < float32_bound(f32.net, x)
    # x*x -> inf, x / inf -> 0: both lose the whole activation.
    assert rel_err(f32.run_plain(big), truth) > 0.1
    assert rel_err(f32.run_eager_f32(big), truth) > 0.1


def test_float16_models(f16):
    # TVM's importer gives float16 convolutions out_dtype="float32", so in these nets the
    # LRNs (all behind a conv) run in float32: large inputs are harmless to both paths.
    # test_float16_lrn_on_float16_tensors covers LRN fed by float16 data.
    torch.manual_seed(2)
    x = torch.rand(*f16.shape)
    assert rel_err(f16.run_ours(x), f16.truth(x)) < 5e-3
    big = x * 2000.0
    assert 256 < f16.lrn_input_max(big) < 60000
    ours = f16.run_ours(big)
    assert np.all(np.isfinite(ours))
    assert rel_err(ours, f16.truth(big)) < 5e-3


class Float16Front(nn.Module):
    """max pool -> LRN(5) -> conv -> ReLU -> LRN(4): the first LRN sees float16 data."""

    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(8, 12, 3, padding=1, bias=False)

    def forward(self, x):
        x = F.local_response_norm(F.max_pool2d(x, 2), 5, alpha=1e-4, beta=0.75, k=2.0)
        return F.local_response_norm(F.relu(self.conv(x)), 4, alpha=1e-4, beta=0.75, k=1.0)


def test_float16_lrn_on_float16_tensors():
    torch.manual_seed(3)
    net = Float16Front().eval()
    model16 = copy.deepcopy(net).half()
    x = torch.rand(1, 8, 12, 12)
    ours = compile_model(from_torch(model16, x.half()), "llvm")
    plain = relax.VirtualMachine(
        tvm.compile(from_torch(model16, x.half(), fuse=False), "llvm"), tvm.cpu()
    )
    f64 = copy.deepcopy(net).double()
    for scale, plain_ok in ((1.0, True), (2000.0, False)):
        xs = (x * scale).half()  # max 2000 < 65504: representable, but x*x is not
        with torch.no_grad():
            truth = f64(xs.double()).numpy()
        got = ours(xs).float().numpy()
        assert np.all(np.isfinite(got))
        assert rel_err(got, truth) < 5e-3
        plain_err = rel_err(plain["main"](tvm.runtime.tensor(xs.numpy())).numpy(), truth)
        assert (plain_err < 5e-3) == plain_ok, plain_err


def test_dynamic_batch_compiles_once():
    net, shape = _net("alexnet")
    mod = tvm_lrn.frontend.from_torch(net, torch.rand(*shape), dynamic_batch=True)
    batch_dim = mod["main"].params[0].ty.shape[0]
    assert not isinstance(batch_dim, tvm.tirx.IntImm)  # symbolic
    model = compile_model(mod, "llvm")
    f64 = copy.deepcopy(net).double()
    torch.manual_seed(4)
    for batch in (1, 7):
        x = torch.rand(batch, *shape[1:])
        for scale in (1.0, 1e21):
            got = model(x * scale)
            assert tuple(got.shape)[0] == batch
            with torch.no_grad():
                truth = f64((x * scale).double()).numpy()
            bound = 1e-5 if scale == 1.0 else float32_bound(net, x)
            assert rel_err(got.numpy(), truth) < bound


def test_demo_runs(capsys):
    from tvm_lrn.demo import main

    assert main(["--scales", "1", "1e25"]) == 0
    out = capsys.readouterr().out
    assert "tvm_lrn" in out and "TVM plain" in out and "1e+25" in out
