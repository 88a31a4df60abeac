"""The custom op torch.ops.tvm_lrn.local_response_norm, and torch.compile's default
mode (LRN as that op, the rest of the graph compiled by inductor)."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F

from tvm_lrn import zoo
from tvm_lrn.frontend import torch_op

OP = torch.ops.tvm_lrn.local_response_norm

# (shape, size): C=1, size > C, even size, N != C, 3-D and 5-D
CASES = [
    ((2, 7, 5, 4), 5),
    ((1, 1, 3, 3), 3),
    ((3, 4, 2, 2), 9),
    ((2, 6, 5), 4),
    ((1, 5, 2, 3, 4), 3),
]


def _norm_error(got, truth) -> float:
    got, truth = got.detach().double(), truth.detach()
    return float((got - truth).abs().max() / truth.abs().max())


@pytest.mark.parametrize(("shape", "size"), [CASES[0], CASES[3]])
def test_opcheck(shape, size):
    x = torch.randn(shape, requires_grad=True)
    torch.library.opcheck(OP, (x, size, 1e-3, 0.75, 2.0))


#: (shape, memory format): channels-last 4-D and 5-D, and C=1, which is also contiguous
#: (both formats describe its strides: there opcheck's comparison of the fake
#: implementation's strides with the kernel's is the check)
LAYOUTS = [
    ((2, 8, 5, 5), torch.channels_last),
    ((1, 5, 2, 3, 4), torch.channels_last_3d),
    ((2, 1, 3, 3), torch.channels_last),
]


@pytest.mark.parametrize(("shape", "memory_format"), LAYOUTS)
def test_channels_last_input_gives_channels_last_output(shape, memory_format):
    x = torch.randn(shape).to(memory_format=memory_format)
    want = F.local_response_norm(x.double(), 5, 1e-3, 0.75, 2.0)
    y = OP(x, 5, 1e-3, 0.75, 2.0)
    assert _norm_error(y, want) < 1e-6
    expected = torch.contiguous_format if x.is_contiguous() else memory_format
    assert y.is_contiguous(memory_format=expected)
    # opcheck compares the fake implementation's strides with the kernel's
    torch.library.opcheck(OP, (x.requires_grad_(), 5, 1e-3, 0.75, 2.0))


def test_inductor_passes_channels_last_buffers_as_they_are(monkeypatch):
    """A channels-last buffer of a compiled graph reaches the kernel as it is (read as
    NHWC), not copied to NCHW first."""
    from tvm_lrn import eager

    inputs = []

    def spy(x, **kwargs):
        inputs.append(x)
        return run(x, **kwargs)

    run = eager.run
    monkeypatch.setattr(eager, "run", spy)

    class Net(nn.Module):
        def forward(self, x):
            return F.local_response_norm(torch.relu(x), 5, 1e-3, 0.75, 2.0) * 2

    torch._dynamo.reset()
    x = torch.randn(2, 8, 5, 5).to(memory_format=torch.channels_last)
    with torch.no_grad():
        y = torch.compile(Net(), backend="tvm_lrn")(x)
    torch._dynamo.reset()
    want = F.local_response_norm(torch.relu(x).double(), 5, 1e-3, 0.75, 2.0) * 2
    assert _norm_error(y, want) < 1e-6
    (kernel_input,) = inputs[-1:]
    assert kernel_input.shape == (2, 5, 5, 8) and kernel_input.is_contiguous()


@pytest.mark.parametrize(("shape", "size"), CASES)
def test_forward_and_backward_match_torch_in_float64(shape, size):
    x = torch.randn(shape, dtype=torch.float64, requires_grad=True)
    y = OP(x, size, 1e-2, 0.75, 2.0)
    want = F.local_response_norm(x, size, 1e-2, 0.75, 2.0)
    grad = torch.randn_like(y)
    (got_dx,) = torch.autograd.grad(y, x, grad)
    (want_dx,) = torch.autograd.grad(want, x, grad)
    torch.testing.assert_close(y, want, rtol=1e-12, atol=0)
    torch.testing.assert_close(got_dx, want_dx, rtol=1e-10, atol=1e-14)


def test_large_inputs_stay_finite_forward_and_backward():
    """At 1e20, x * x overflows float32: torch's LRN gives 0 and NaN gradients."""
    x = (torch.randn(2, 8, 4, 4) * 1e20).requires_grad_()
    y = OP(x, 5, 1e-4, 0.75, 1.0)
    (dx,) = torch.autograd.grad(y.sum(), x)
    x64 = x.detach().double().requires_grad_()
    truth = F.local_response_norm(x64, 5, 1e-4, 0.75, 1.0)
    (truth_dx,) = torch.autograd.grad(truth.sum(), x64)
    assert _norm_error(y, truth) < 1e-6
    assert _norm_error(dx, truth_dx) < 1e-6
    assert F.local_response_norm(x.detach(), 5, 1e-4, 0.75, 1.0).abs().max() == 0


class _TwoCalls(nn.Module):
    def forward(self, x):
        y = F.local_response_norm(x, 4, 1e-3, 0.5, 2.0)
        return F.local_response_norm(y, size=3, k=1.5)


def test_replace_lrn_rewrites_calls_and_keeps_arguments():
    gm = torch.fx.symbolic_trace(_TwoCalls())
    assert torch_op.replace_lrn(gm) == 2
    nodes = [n for n in gm.graph.nodes if n.target is OP.default]
    assert [n.args[1:] for n in nodes] == [(4, 1e-3, 0.5, 2.0), (3, 1e-4, 0.75, 1.5)]
    x = torch.randn(1, 6, 3, 3)
    torch.testing.assert_close(gm(x), _TwoCalls()(x))


@pytest.fixture()
def inductor_graphs(monkeypatch):
    """The graphs the backend hands to inductor."""
    from torch._inductor import compile_fx

    seen = []
    real = compile_fx.compile_fx

    def spy(gm, example_inputs, **kwargs):
        seen.append(gm)
        return real(gm, example_inputs, **kwargs)

    monkeypatch.setattr(compile_fx, "compile_fx", spy)
    torch._dynamo.reset()
    yield seen
    torch._dynamo.reset()


def test_backend_hands_convolutions_to_inductor(inductor_graphs):
    """A zoo network (CaffeNet) through torch.compile: one graph for inductor with both
    LRNs as the custom op and the convolutions left to inductor; its error against
    float64 torch at input scale 1e20 at most twice that at scale 1."""
    net = zoo.build("caffenet")
    truth_net = zoo.build("caffenet", dtype=torch.float64)
    compiled = torch.compile(net, backend="tvm_lrn")
    errors = []
    with torch.no_grad():
        for scale in (1.0, 1e20):
            x = zoo.example_input("caffenet", scale=scale)
            errors.append(_norm_error(compiled(x), truth_net(x.double())))
    (gm,) = inductor_graphs
    targets = [n.target for n in gm.graph.nodes if n.op == "call_function"]
    assert targets.count(OP.default) == 2
    assert F.local_response_norm not in targets
    assert sum(t is torch.conv2d for t in targets) == 5
    assert errors[0] < 1e-5 and errors[1] <= 2 * errors[0]
    assert np.isfinite(errors).all()
