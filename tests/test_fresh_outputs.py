"""``compiled(x)`` of a one-kernel model returns memory the caller owns (issue 20, point
1): each output is exact against the reference, outputs still held (directly, through a
numpy view, a memoryview, a torch tensor or view of one) are never written again, and
the memory of dropped ones is reused; over numpy and torch, from several threads, and
past the pool's capacity (tvm_lrn.output_pool)."""

from __future__ import annotations

import threading
import weakref

import ml_dtypes
import numpy as np
import pytest
import torch
from accuracy import check_against_exact
from tvm import relax

import tvm_lrn
from tvm_lrn import InputError, reference
from tvm_lrn.output_pool import OutputPool
from tvm_lrn.spec import canonicalize

SIZE, ALPHA, BETA, BIAS = 5, 1e-2, 0.75, 2.0
SHAPE = (2, 16, 5, 7)


@pytest.fixture(scope="module", params=["float32", "float16", "float64"])
def model(request):
    x = relax.Var("x", relax.TensorType(SHAPE, request.param))
    bb = relax.BlockBuilder()
    with bb.function("main", [x]):
        with bb.dataflow():
            out = bb.emit_output(tvm_lrn.local_response_norm(x, SIZE, ALPHA, BETA, BIAS))
        bb.emit_func_output(out)
    return tvm_lrn.compile(bb.get(), "llvm")


def _inputs(dtype, count):
    rng = np.random.default_rng(7)
    return [(rng.standard_normal(SHAPE) * 3).astype(dtype) for _ in range(count)]


def _check(y, x):
    y = y.numpy() if isinstance(y, torch.Tensor) else y
    assert y.dtype == x.dtype and y.shape == x.shape
    params = canonicalize(SIZE, ALPHA, BETA, BIAS, ndim=x.ndim)
    check_against_exact(y, reference.lrn_exact(x.astype(np.float64), params), x.dtype.name)


def _address(y) -> int:
    return y.data_ptr() if isinstance(y, torch.Tensor) else y.ctypes.data


@pytest.mark.parametrize("kind", ["numpy", "torch"])
def test_held_outputs_stay_and_dropped_ones_are_reused(model, kind):
    xs = _inputs(model.signatures["main"][0]["dtype"], 6)
    wrap = torch.from_numpy if kind == "torch" else (lambda a: a)
    held = [model(wrap(x)) for x in xs]  # more than the pool keeps
    assert len({_address(y) for y in held}) == len(held)
    for y, x in zip(held, xs, strict=True):
        assert isinstance(y, torch.Tensor if kind == "torch" else np.ndarray)
        _check(y, x)
    first = _address(held[0])
    del held
    again = model(wrap(xs[1]))  # the first dropped output's memory, written anew
    _check(again, xs[1])
    assert _address(again) == first
    del again
    assert {_address(model(wrap(xs[2]))) for _ in range(3)} == {first}


#: Ways a caller keeps an output's memory without keeping the array itself.
HOLDERS = {
    "numpy view": lambda y: y[1:],
    "view of a view": lambda y: y[1:][0, 2:],
    "reshape": lambda y: y.reshape(-1),
    "the array's base": lambda y: y.base,
    "memoryview": memoryview,
    "torch.from_numpy": torch.from_numpy,
    "np.from_dlpack": np.from_dlpack,
}


@pytest.mark.parametrize("how", HOLDERS)
def test_an_output_reachable_another_way_is_not_overwritten(model, how):
    a, b = _inputs(model.signatures["main"][0]["dtype"], 2)
    keep = HOLDERS[how](model(a))  # the output itself is dropped here
    expected = np.array(np.asarray(keep), copy=True)
    for _ in range(6):
        _check(model(b), b)
    assert np.array_equal(np.asarray(keep), expected)


@pytest.mark.parametrize("kind", ["numpy", "torch"])
def test_outputs_are_aligned_as_tvm_aligns_its_own(model, kind):
    # unaligned outputs cost a streaming kernel its vector stores' speed
    (x,) = _inputs(model.signatures["main"][0]["dtype"], 1)
    wrap = torch.from_numpy if kind == "torch" else (lambda a: a)
    held = [model(wrap(x)) for _ in range(6)]
    assert [_address(y) % 64 for y in held] == [0] * 6


def test_a_torch_view_keeps_its_output(model):
    a, b = _inputs(model.signatures["main"][0]["dtype"], 2)
    view = model(torch.from_numpy(a))[0, 3:]
    expected = view.clone()
    for _ in range(6):
        _check(model(torch.from_numpy(b)), b)
    assert torch.equal(view, expected)


def test_calls_from_several_threads_get_their_own_outputs(model):
    xs = _inputs(model.signatures["main"][0]["dtype"], 4)
    errors = []

    def work(x):
        try:
            for _ in range(40):
                y = model(x)
                _check(y, x)
        except Exception as err:  # noqa: BLE001 (reported by the main thread)
            errors.append(err)

    threads = [threading.Thread(target=work, args=(x,)) for x in xs]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors


def test_pool_keeps_no_more_than_its_capacity():
    def copy_kernel(x, out):
        np.from_dlpack(out)[...] = np.from_dlpack(x)

    pool = OutputPool(copy_kernel, np.dtype("float32"), (3,), capacity=2)
    x = np.arange(3, dtype=np.float32)
    held = [pool.numpy(x + i) for i in range(5)]
    assert [list(y) for y in held] == [[i, i + 1, i + 2] for i in range(5)]
    assert len({y.ctypes.data for y in held}) == 5
    kept = {y.ctypes.data for y in held[:2]}
    alive = [weakref.ref(y) for y in held]
    del held
    assert [ref() is not None for ref in alive] == [True, True, False, False, False]
    assert {pool.numpy(x).ctypes.data for _ in range(2)} <= kept


def test_a_bfloat16_input_of_a_one_kernel_model_is_copied_not_refused():
    x = relax.Var("x", relax.TensorType((2, 3), "bfloat16"))
    bb = relax.BlockBuilder()
    with bb.function("main", [x]):
        with bb.dataflow():
            out = bb.emit_output(relax.op.astype(x, "float32"))
        bb.emit_func_output(out)
    model = tvm_lrn.compile(bb.get(), "llvm")
    a = (np.arange(6, dtype=np.float32).reshape(2, 3) / 4).astype(ml_dtypes.bfloat16)
    for _ in range(2):
        y = model(a)
        assert y.dtype == np.float32
        assert np.array_equal(y, a.astype(np.float32))


def test_torch_inputs_the_kernel_refuses_take_the_general_path(model):
    x = _inputs(model.signatures["main"][0]["dtype"], 1)[0]
    t = torch.from_numpy(x)
    for layout in (t.contiguous(memory_format=torch.channels_last), t.mT.contiguous().mT):
        assert not layout.is_contiguous()
        _check(model(layout), x)  # copied, then computed
    other = t.float() if t.dtype == torch.float64 else t.double()
    with pytest.raises(InputError, match="expected dtype"):
        model(other)
    with pytest.raises(InputError, match="meta"):
        model(torch.empty(SHAPE, dtype=t.dtype, device="meta"))
    with pytest.raises(InputError, match=r"expected shape"):
        model(t[:1])
