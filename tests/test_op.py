"""The relax.tvm_lrn operator: builder validation, type inference, TVMScript, legalization.

Nothing here compiles a kernel (see test_build.py for that), so the file runs in seconds.
"""

from __future__ import annotations

import math
import re

import pytest
import tvm
from tvm import relax

import tvm_lrn
from tvm_lrn import op
from tvm_lrn.spec import canonicalize

PRIMFUNC_KEYS = {f"tvm_lrn.{k}" for k in ("lo", "hi", "alpha", "beta", "bias", "axis")}


def tensor(shape, dtype="float32", name="x"):
    """A relax.Var of a tensor type; string dims become int64 symbolic variables."""
    dims = [tvm.tirx.Var(d, "int64") if isinstance(d, str) else d for d in shape]
    return relax.Var(name, relax.TensorType(dims, dtype))


def module(x, *calls_of):
    """``main(x)`` returning ``f(x)`` for each builder ``f`` in ``calls_of`` (chained)."""
    bb = relax.BlockBuilder()
    with bb.function("main", [x]):
        with bb.dataflow():
            value = x
            for make in calls_of:
                value = bb.emit(make(value))
            out = bb.emit_output(value)
        bb.emit_func_output(out)
    return bb.get()


def lrn_of(**kw):
    return lambda v: tvm_lrn.local_response_norm(v, **kw)


# ------------------------------------------------------------------- builder


CONVENTION_SIZES = [
    (c, s)
    for c in ("torch", "onnx", "tensorflow", "caffe")
    for s in (1, 3, 4, 5)
    if s % 2 or c in ("torch", "onnx")  # even sizes are invalid under tensorflow/caffe
]


@pytest.mark.parametrize(("convention", "size"), CONVENTION_SIZES)
def test_builder_attrs_are_canonical(convention, size):
    x = tensor((2, 16, 4, 4))
    call = tvm_lrn.local_response_norm(x, size, 2e-4, 0.6, 1.5, axis=1, convention=convention)
    assert isinstance(call, relax.Call)
    assert call.op.name == "relax.tvm_lrn"
    want = canonicalize(size, 2e-4, 0.6, 1.5, 1, convention, ndim=4)
    assert op.params_from_call(call) == want
    # ints are int32 IntImm (what TVMScript parses a literal back to), floats exact
    for key in ("lo", "hi", "axis"):
        assert isinstance(call.attrs[key], tvm.tirx.IntImm)
        assert str(call.attrs[key].ty) == "int32"
    assert float(call.attrs["alpha"]) == want.alpha


def test_builder_negative_axis_is_normalized():
    call = tvm_lrn.local_response_norm(tensor((2, 3, 7)), 3, axis=-1)
    assert int(call.attrs["axis"]) == 2
    call = tvm_lrn.local_response_norm(tensor((2, 3, 7)), 3, axis=-3)
    assert int(call.attrs["axis"]) == 0


def test_canonical_builder_matches_public_builder():
    x = tensor((1, 8, 2))
    a = tvm_lrn.local_response_norm(x, 4, 1e-3, 0.5, 2.0, axis=1, convention="onnx")
    p = op.params_from_call(a)
    b = op.tvm_lrn(x, p.lo, p.hi, p.alpha, p.beta, p.bias, -2)
    tvm.ir.assert_structural_equal(a, b)


INVALID = [
    # (shape, dtype, kwargs, exception, message)
    ((1, 4), "int8", {}, TypeError, "floating-point input.*int8"),
    ((1, 4), "int32", {}, TypeError, "floating-point input.*int32"),
    ((1, 4), "bool", {}, TypeError, "floating-point input.*bool"),
    ((1, 4), "uint8", {}, TypeError, "floating-point input.*uint8"),
    ((), "float32", {}, ValueError, "rank >= 1, got rank 0"),
    ((1, 4), "float32", {"axis": 2}, ValueError, "axis 2 is out of range.*rank 2"),
    ((1, 4), "float32", {"axis": -3}, ValueError, "axis -3 is out of range.*rank 2"),
    ((1, 4), "float32", {"size": 0}, ValueError, "size must be >= 1, got 0"),
    ((1, 4), "float32", {"size": -2}, ValueError, "size must be >= 1"),
    ((1, 4), "float32", {"size": 2.5}, TypeError, "size must be an integer"),
    ((1, 4), "float32", {"alpha": -1e-4}, ValueError, "alpha must be >= 0"),
    ((1, 4), "float32", {"beta": -0.75}, ValueError, "beta must be >= 0"),
    ((1, 4), "float32", {"bias": -1.0}, ValueError, "bias must be >= 0"),
    ((1, 4), "float32", {"alpha": math.inf}, ValueError, "alpha must be finite"),
    ((1, 4), "float32", {"beta": math.nan}, ValueError, "beta must be finite"),
    ((1, 4), "float32", {"bias": -math.inf}, ValueError, "bias must be finite"),
    ((1, 4), "float32", {"alpha": 0.0, "bias": 0.0}, ValueError, "alpha and bias are both 0"),
    ((1, 4), "float32", {"size": 4, "convention": "tensorflow"}, ValueError, "size must be odd"),
    ((1, 4), "float32", {"size": 2, "convention": "caffe"}, ValueError, "size must be odd"),
    ((1, 4), "float32", {"convention": "mxnet"}, ValueError, "convention must be one of"),
    ((1, 4), "float32", {"axis": 1.0}, TypeError, "axis must be an integer"),
]


@pytest.mark.parametrize(("shape", "dtype", "kwargs", "exc", "match"), INVALID)
def test_builder_rejects_invalid(shape, dtype, kwargs, exc, match):
    kwargs = {"size": 3, **kwargs}
    with pytest.raises(exc, match=match):
        tvm_lrn.local_response_norm(tensor(shape, dtype), **kwargs)


def test_builder_rejects_unknown_rank_and_non_tensors():
    x = relax.Var("x", relax.TensorType(ndim=-1, dtype="float32"))
    with pytest.raises(ValueError, match="known rank"):
        tvm_lrn.local_response_norm(x, 3)
    s = relax.Var("s", relax.ShapeType(ndim=2))
    with pytest.raises(TypeError, match="needs a tensor input"):
        tvm_lrn.local_response_norm(s, 3)


@pytest.mark.parametrize(
    ("attrs", "match"),
    [
        ({"axis": 5}, "axis 5 is out of range"),
        ({"lo": -1}, "lo must be >= 0"),
        ({"alpha": -1.0}, "alpha must be >= 0"),
        ({"alpha": 0.0, "bias": 0.0}, "alpha and bias are both 0"),
    ],
)
def test_hand_built_call_rejected_by_type_inference(attrs, match):
    """A call made without the builder (e.g. by another pass) is still checked."""
    x = tensor((1, 4))
    good = {"lo": 1, "hi": 1, "alpha": 1e-4, "beta": 0.75, "bias": 1.0, "axis": 1}
    call = relax.Call(tvm.ir.Op.get(op.OP_NAME), [x], attrs={**good, **attrs})
    bb = relax.BlockBuilder()
    with bb.function("main", [x]):
        with pytest.raises(ValueError, match=match):
            bb.normalize(call)
        bb.emit_func_output(x)


def test_missing_attribute_is_named():
    x = tensor((1, 4))
    call = relax.Call(tvm.ir.Op.get(op.OP_NAME), [x], attrs={"lo": 1, "hi": 1})
    with pytest.raises(ValueError, match="missing: alpha, beta, bias, axis"):
        op.params_from_call(call)


# ------------------------------------------------------------------- type inference


@pytest.mark.parametrize("dtype", ["float16", "bfloat16", "float32", "float64"])
def test_infer_type_static(dtype):
    mod = module(tensor((2, 16, 8, 8), dtype), lrn_of(size=5))
    ty = mod["main"].ret_ty
    assert ty.dtype == dtype
    tvm.ir.assert_structural_equal(ty.shape, relax.ShapeExpr([2, 16, 8, 8]))


def test_infer_type_symbolic_passes_through():
    x = tensor(("n", 16, "h", "w"))
    mod = module(x, lrn_of(size=5))
    out_shape = mod["main"].ret_ty.shape.values
    in_shape = x.ty.shape.values
    assert all(a.same_as(b) for a, b in zip(out_shape, in_shape, strict=True))


def test_infer_type_unknown_shape_known_rank():
    x = relax.Var("x", relax.TensorType(ndim=4, dtype="float16"))
    mod = module(x, lrn_of(size=3))
    ty = mod["main"].ret_ty
    assert ty.shape is None
    assert ty.ndim == 4
    assert ty.dtype == "float16"


def test_op_is_pure_and_registered():
    o = tvm.ir.Op.get(op.OP_NAME)
    assert o.get_attr("FPurity")
    assert o.get_attr("FLegalize") is not None
    # a dataflow block with the op is well formed (needs purity)
    relax.analysis.well_formed(module(tensor((1, 4, 2)), lrn_of(size=3)))  # raises if not


# ------------------------------------------------------------------- TVMScript


@pytest.mark.parametrize(
    "shape", [(2, 16, 8, 8), ("n", 16, 8, 8), (7,)], ids=["static", "symbolic", "rank1"]
)
def test_tvmscript_round_trip(shape):
    mod = module(
        tensor(shape),
        lrn_of(size=5, alpha=1e-4, beta=0.75, bias=2.0, axis=0 if len(shape) == 1 else 1),
        relax.op.nn.relu,
    )
    text = mod.script()
    assert "R.tvm_lrn(" in text
    parsed = tvm.script.from_source(text)
    tvm.ir.assert_structural_equal(mod, parsed)


@pytest.mark.parametrize("alpha", [2e-05, 1e-4 / 3, 0.1 + 0.2, 5e-324, 1.7976931348623157e308])
def test_tvmscript_floats_round_trip_exactly(alpha):
    x = tensor((1, 3, 4))
    p = canonicalize(3, 1.0, 0.75, 1.0, 1, "tensorflow", ndim=3)
    mod = module(x, lambda v: op.tvm_lrn(v, p.lo, p.hi, alpha, 1 / 3, 0.1, 1))
    parsed = tvm.script.from_source(mod.script())
    tvm.ir.assert_structural_equal(mod, parsed)
    call = parsed["main"].body.blocks[0].bindings[0].value
    assert op.params_from_call(call).alpha == alpha  # bit-exact
    assert op.params_from_call(call).beta == 1 / 3


def test_tvmscript_parses_hand_written_text():
    text = """
@I.ir_module
class Module:
    @R.function
    def main(x: R.Tensor((1, 6, 3), dtype="float16")) -> R.Tensor((1, 6, 3), dtype="float16"):
        y = R.tvm_lrn(x, lo=2, hi=1, alpha=2.5e-05, beta=0.75, bias=1.0, axis=-2)
        return y
"""
    mod = tvm.script.from_source(text)
    call = mod["main"].body.blocks[0].bindings[0].value
    assert op.params_from_call(call) == canonicalize(4, 1e-4, 0.75, 1.0, 1, "torch", ndim=3)


# ------------------------------------------------------------------- legalization


def _lrn_primfuncs(mod):
    return {gv.name_hint: f for gv, f in mod.functions_items() if op.is_lrn_primfunc(f)}


@pytest.mark.parametrize("convention", ["torch", "onnx"])
def test_legalize_produces_tagged_primfunc(convention):
    mod = module(
        tensor((2, 6, 5)),
        lrn_of(size=4, alpha=3e-4, beta=0.6, bias=1.5, axis=-2, convention=convention),
    )
    legal = relax.transform.LegalizeOps()(mod)
    funcs = _lrn_primfuncs(legal)
    assert list(funcs) == ["lrn"]
    attrs = funcs["lrn"].attrs
    assert PRIMFUNC_KEYS <= set(attrs.keys())
    assert {k for k in attrs.keys() if k.startswith("tvm_lrn.")} == PRIMFUNC_KEYS
    want = canonicalize(4, 3e-4, 0.6, 1.5, 1, convention, ndim=3)
    assert op.params_from_attrs(attrs) == want
    assert int(attrs["op_pattern"]) == op.OP_PATTERN_OPAQUE
    assert "R.tvm_lrn" not in legal.script()
    assert "call_tir" in legal.script()


@pytest.mark.parametrize(
    "target, shape, form",
    [
        (None, (2, 6, 5, 5), {"lrn"}),
        ({"kind": "llvm"}, (2, 6, 5, 5), {"lrn"}),
        ({"kind": "llvm"}, (2, 6, "h", 5), {"lrn_range", "lrn"}),
        ({"kind": "cuda", "arch": "sm_80"}, (2, 6, 5, 5), {"lrn"}),
    ],
    ids=["no-target", "llvm", "llvm-symbolic-plane", "cuda"],
)
def test_legalize_picks_the_safe_form_for_the_target(target, shape, form):
    """CPUs get the checked form for static planes (their schedule speculates per task)
    and the guarded form otherwise; GPU targets (which tvm.compile makes current while it
    legalizes) the checked form, whose threads check their own windows."""
    mod = module(tensor(shape), lrn_of(size=5))
    if target is None:
        legal = relax.transform.LegalizeOps()(mod)
    else:
        with tvm.target.Target(target):
            legal = relax.transform.LegalizeOps()(mod)
    script = _lrn_primfuncs(legal)["lrn"].script()
    assert set(re.findall(r'T\.sblock\("(\w+)"\)', script)) - {"root"} == form


def test_legalize_symbolic_shape_uses_int64():
    legal = relax.transform.LegalizeOps()(module(tensor(("n", 16, 8, 8)), lrn_of(size=5)))
    func = _lrn_primfuncs(legal)["lrn"]
    shape = func.params[0].ty.shape  # the input buffer's type
    assert not isinstance(shape[0], tvm.tirx.IntImm)
    assert all(str(d.ty) == "int64" for d in shape)


def test_legalize_rank_only_input_binds_dims():
    """An input of known rank but unknown shape is match_cast to fresh symbolic dims."""
    x = relax.Var("x", relax.TensorType(ndim=4, dtype="float32"))
    legal = relax.transform.LegalizeOps()(module(x, lrn_of(size=3)))
    text = legal.script()
    assert "R.tvm_lrn(" not in text
    assert "R.match_cast(" in text and "call_tir" in text
    assert list(_lrn_primfuncs(legal)) == ["lrn"]


def test_distinct_parameters_give_distinct_primfuncs():
    mod = module(tensor((1, 8, 3)), lrn_of(size=3), lrn_of(size=5), lrn_of(size=3))
    legal = relax.transform.LegalizeOps()(mod)
    funcs = _lrn_primfuncs(legal)
    # the two size-3 calls share one deduplicated kernel
    assert len(funcs) == 2
    assert sorted(op.params_from_attrs(f.attrs).size for f in funcs.values()) == [3, 5]


def test_attrs_survive_fuse_ops_and_fuse_tir():
    """lrn -> add -> relu: FuseOps fuses add and relu but must leave the LRN kernel whole."""
    x = tensor((2, 16, 8, 8))
    one = relax.const(1.0, "float32")
    mod = module(x, lrn_of(size=5), lambda v: relax.op.add(v, one), relax.op.nn.relu)
    seq = tvm.transform.Sequential(
        [
            relax.transform.LegalizeOps(),
            relax.transform.AnnotateTIROpPattern(),
            relax.transform.FoldConstant(),
            relax.transform.FuseOps(),
            relax.transform.FuseTIR(),
        ]
    )
    fused = seq(mod)
    funcs = _lrn_primfuncs(fused)
    assert list(funcs) == ["lrn"]
    assert op.params_from_attrs(funcs["lrn"].attrs) == canonicalize(5, ndim=4)
    names = sorted(gv.name_hint for gv, _ in fused.functions_items())
    assert "fused_add_relu" in names, names
    assert not any("lrn" in n and n != "lrn" for n in names), names
