"""tvm_lrn.from_torch: nn.LocalResponseNorm / F.local_response_norm become R.tvm_lrn.

References: torch in float64 for ordinary inputs, tvm_lrn.reference (exact) for inputs
whose squares overflow the model dtype.
"""

from __future__ import annotations

import warnings

import ml_dtypes
import numpy as np
import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F
import tvm
from tvm import relax

import tvm_lrn
from tvm_lrn.build import compile as compile_model
from tvm_lrn.frontend.torch import exact_scalars_of, export, from_torch, to_irmodule_if_torch
from tvm_lrn.reference import lrn as lrn_reference

warnings.filterwarnings("ignore", category=FutureWarning)


class Functional(nn.Module):
    def __init__(self, size, alpha, beta, k):
        super().__init__()
        self.args = (size, alpha, beta, k)

    def forward(self, x):
        return F.local_response_norm(x, *self.args)


def _np(t: torch.Tensor) -> np.ndarray:
    if t.dtype == torch.bfloat16:
        return t.float().numpy().astype(ml_dtypes.bfloat16)
    return t.numpy()


def _rel(got, ref):
    got = np.asarray(got, np.float64)
    ref = np.asarray(ref, np.float64)
    return float(np.max(np.abs(got - ref) / np.maximum(np.abs(ref), 1e-30)))


def test_exported_by_the_package():
    assert tvm_lrn.from_torch is tvm_lrn.frontend.from_torch
    assert "from_torch" in tvm_lrn.__all__


@pytest.mark.parametrize(
    "module,shape",
    [
        (nn.LocalResponseNorm(5, alpha=1e-4, beta=0.75, k=2.0), (2, 10, 4, 4)),
        (nn.LocalResponseNorm(2, alpha=1e-2, beta=0.5, k=1.0), (1, 7, 9)),  # 3-D, even
        (Functional(4, 3e-3, 0.9, 0.5), (1, 6, 2, 3, 4)),  # 5-D, even
        (Functional(7, 1.0, 0.3, 3.0), (1, 12, 5, 5)),  # large alpha
        (Functional(3, 1e-4, 0.75, 0.0), (1, 6, 3, 3)),  # k = 0
    ],
)
def test_float32_matches_torch_float64(module, shape):
    torch.manual_seed(0)
    x = torch.randn(*shape) * 3
    mod = from_torch(module, x)
    assert mod.script().count("R.tvm_lrn(") == 1
    got = compile_model(mod, "llvm")(x).numpy()
    with torch.no_grad():
        ref = module(x.double()).numpy()
    assert _rel(got, ref) < 1e-6


@pytest.mark.parametrize("size", [4, 5])
def test_float32_overflowing_inputs(size):
    module = Functional(size, 1e-4, 0.75, 2.0)
    x = torch.randn(2, 8, 3, 3) * 1e25
    got = compile_model(from_torch(module, x), "llvm")(x).numpy()
    ref = lrn_reference(x.numpy(), size, 1e-4, 0.75, 2.0, convention="torch")
    assert np.all(np.isfinite(got))
    assert _rel(got, ref) < 1e-6  # a few float32 ulp
    with torch.no_grad():
        eager = module(x).numpy()
    assert _rel(eager, ref) > 0.5  # torch float32: x*x overflows, result 0


@pytest.mark.parametrize("dtype,scale", [(torch.float16, 1e3), (torch.bfloat16, 1e25)])
@pytest.mark.parametrize("size,beta", [(5, 0.75), (4, 0.6)])
def test_16_bit_models(dtype, scale, size, beta):
    module = Functional(size, 2e-4, beta, 1.5)
    x = (torch.randn(1, 9, 4, 4) * scale).to(dtype)
    mod = from_torch(module, x)
    (line,) = [s for s in mod.script().splitlines() if "R.tvm_lrn(" in s]
    # The exported graph's own scalars, not the importer's constants rounded to the dtype.
    assert f"beta={beta}" in line.replace("0.59999999999999998", "0.6")
    got = compile_model(mod, "llvm")(x)
    assert got.dtype == dtype
    ref = lrn_reference(_np(x), size, 2e-4, beta, 1.5, convention="torch")
    got64 = got.float().numpy().astype(np.float64)
    ref64 = ref.astype(np.float64)
    assert np.all(np.isfinite(got64))
    # Rounded once to the 16-bit dtype: within one ulp (2**-10 resp. 2**-7 relative).
    tol = 2.0**-10 if dtype == torch.float16 else 2.0**-7
    assert _rel(got64, ref64) <= tol


def test_plain_tvm_import_fails_on_bfloat16_lrn():
    # TVM's importer alone: R.power on bfloat16 is refused when the module is compiled.
    module = Functional(5, 1e-4, 0.75, 1.0)
    x = torch.randn(1, 8, 3, 3).to(torch.bfloat16)
    plain = from_torch(module, x, fuse=False)
    with pytest.raises(Exception, match="power only applies to float"):
        tvm.compile(plain, "llvm")
    ours = compile_model(from_torch(module, x), "llvm")(x)
    ref = lrn_reference(_np(x), 5, 1e-4, 0.75, 1.0)
    assert _rel(ours.float().numpy(), ref.astype(np.float64)) <= 2.0**-7


def test_plain_tvm_import_overflows_float16():
    module = nn.LocalResponseNorm(5, 1e-4, 0.75, 2.0)
    x = (torch.rand(1, 8, 3, 3) * 1000 + 300).half()
    plain = relax.VirtualMachine(tvm.compile(from_torch(module, x, fuse=False), "llvm"), tvm.cpu())
    out = plain["main"](tvm.runtime.tensor(x.numpy())).numpy()
    assert np.all(out == 0)  # x*x = inf in float16, x / inf = 0
    ours = compile_model(from_torch(module, x), "llvm")(x).float().numpy()
    ref = lrn_reference(x.numpy(), 5, 1e-4, 0.75, 2.0)
    assert _rel(ours, ref.astype(np.float64)) <= 2.0**-10


def test_dynamic_batch():
    module = Functional(4, 1e-4, 0.75, 1.0)
    mod = from_torch(module, torch.randn(1, 6, 3, 3), dynamic_batch=True)
    model = compile_model(mod, "llvm")
    for batch in (1, 7):
        x = torch.randn(batch, 6, 3, 3) * 1e22
        ref = lrn_reference(x.numpy(), 4, 1e-4, 0.75, 1.0)
        assert _rel(model(x).numpy(), ref) < 1e-6


def test_lrn_inside_a_model_with_two_inputs():
    class TwoInputs(nn.Module):
        def __init__(self):
            super().__init__()
            self.lrn = nn.LocalResponseNorm(3)

        def forward(self, a, b):
            return self.lrn(a) + F.local_response_norm(b * 2, 2)

    gen = torch.Generator().manual_seed(0)
    a, b = torch.randn(1, 5, 2, 2, generator=gen), torch.randn(1, 5, 2, 2, generator=gen)
    mod = from_torch(TwoInputs(), (a, b))
    assert mod.script().count("R.tvm_lrn(") == 2
    with torch.no_grad():
        ref = TwoInputs().double()(a.double(), b.double()).numpy()
    got = compile_model(mod, "llvm")(a, b).numpy()
    # Relative to the largest output: the sum of the two LRNs can cancel elementwise.
    assert np.max(np.abs(got - ref)) < 1e-6 * np.max(np.abs(ref))


def test_exact_scalars_of_graph():
    ep = export(Functional(3, 2e-4, 0.6, 1.5), torch.randn(1, 4, 2, 2))
    table = exact_scalars_of(ep.graph_module)
    assert table[("bfloat16", 0.6015625)] == 0.6
    assert table[("float32", float(np.float32(2e-4)))] == 2e-4


def test_to_irmodule_if_torch():
    mod = tvm.IRModule()
    assert to_irmodule_if_torch(mod) is mod
    assert to_irmodule_if_torch("not a model") == "not a model"
    module = nn.LocalResponseNorm(3)
    converted = to_irmodule_if_torch(module, torch.randn(1, 4, 2, 2))
    assert isinstance(converted, tvm.IRModule) and "R.tvm_lrn(" in converted.script()
    with pytest.raises(ValueError, match="example_args"):
        to_irmodule_if_torch(module)


def test_from_fx_converts_lrn_modules_and_calls():
    # TVM's FX importer alone refuses both forms ("Unsupported module type" / function).
    from tvm_lrn.frontend.torch import from_fx

    class M(nn.Module):
        def __init__(self):
            super().__init__()
            self.lrn = nn.LocalResponseNorm(4, 1e-3, 0.6, 1.5)

        def forward(self, x):
            return self.lrn(x) + F.local_response_norm(x, 3, k=2.0)

    gm = torch.fx.symbolic_trace(M())
    before = gm.code
    x = torch.randn(2, 7, 3, 3) * 1e25
    mod = from_fx(gm, [x])
    assert gm.code == before  # the caller's graph is not modified
    assert mod.script().count("R.tvm_lrn(") == 2
    with torch.no_grad():
        ref = M()(x.double()).numpy()
    got = compile_model(mod, "llvm")(x).numpy()
    assert np.max(np.abs(got - ref)) / np.max(np.abs(ref)) < 1e-6
