"""tvm_lrn.from_onnx: ONNX LRN (opsets 1 and 13) becomes R.tvm_lrn, convention "onnx".

Models are built with onnx.helper; the reference is the ONNX formula as implemented by
tvm_lrn.reference (convention="onnx": window [c - (size-1)//2, c + size//2]).
"""

from __future__ import annotations

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

import tvm_lrn
from tvm_lrn.build import compile as compile_model
from tvm_lrn.frontend.onnx import from_onnx
from tvm_lrn.reference import lrn as lrn_reference

ELEM = {"float32": TensorProto.FLOAT, "float16": TensorProto.FLOAT16}
PARAMS = {"alpha": 3e-4, "beta": 0.6, "bias": 1.5}
# ONNX stores float attributes as float32: that is the model's beta (0.6000000238...),
# and at a denominator of 1e45 the difference to 0.6 is 2.5e-6 of the output.
PARAMS32 = {k: float(np.float32(v)) for k, v in PARAMS.items()}


def lrn_model(size, dtype="float32", opset=13, shape=(1, 10, 3, 4), attrs=None):
    attrs = dict(PARAMS if attrs is None else attrs)
    node = helper.make_node("LRN", ["x"], ["y"], size=size, **attrs)
    graph = helper.make_graph(
        [node],
        "lrn",
        [helper.make_tensor_value_info("x", ELEM[dtype], shape)],
        [helper.make_tensor_value_info("y", ELEM[dtype], shape)],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)])
    onnx.checker.check_model(model)
    return model


def _rel(got, ref):
    got = np.asarray(got, np.float64)
    ref = np.asarray(ref, np.float64)
    return float(np.max(np.abs(got - ref) / np.maximum(np.abs(ref), 1e-30)))


@pytest.mark.parametrize("opset", [1, 13])
@pytest.mark.parametrize("dtype", ["float32", "float16"])
@pytest.mark.parametrize("size", [4, 5])
def test_lrn_matches_onnx_formula(opset, dtype, size):
    mod = from_onnx(lrn_model(size, dtype, opset))
    text = mod.script()
    assert text.count("R.tvm_lrn(") == 1 and "avg_pool" not in text
    lo = (size - 1) // 2
    assert f"lo={lo}" in text and f"hi={size - 1 - lo}" in text
    model = compile_model(mod, "llvm")
    rng = np.random.default_rng(size + opset)
    # Ordinary inputs and inputs whose squares overflow the dtype.
    for scale in (2.0, 1e3 if dtype == "float16" else 1e25):
        x = (rng.standard_normal((1, 10, 3, 4)) * scale).astype(dtype)
        got = model(x)
        assert got.dtype == np.dtype(dtype)
        ref = lrn_reference(x, size, convention="onnx", **PARAMS32)
        assert np.all(np.isfinite(got))
        # Rounded once to the dtype: float32 to a few ulp, float16 within one ulp.
        assert _rel(got, ref) <= (1e-6 if dtype == "float32" else 2.0**-10)


@pytest.mark.parametrize("dtype,size", [("float16", 5), ("float32", 4)])
def test_tvm_own_converter_fails_where_ours_works(dtype, size):
    from tvm.relax.frontend.onnx import from_onnx as tvm_from_onnx

    model = lrn_model(size, dtype)
    with pytest.raises(Exception):  # noqa: B017 (G14: dtype mismatch; even size: shapes)
        tvm_from_onnx(model)
    assert "R.tvm_lrn(" in from_onnx(model).script()


def test_convert_map_is_restored_also_after_a_failure():
    from tvm.relax.frontend.onnx import onnx_frontend

    original = onnx_frontend._get_convert_map
    from_onnx(lrn_model(3))
    assert onnx_frontend._get_convert_map is original
    bad = helper.make_model(
        helper.make_graph(
            [helper.make_node("NoSuchOp", ["x"], ["y"])],
            "bad",
            [helper.make_tensor_value_info("x", TensorProto.FLOAT, (1, 2))],
            [helper.make_tensor_value_info("y", TensorProto.FLOAT, (1, 2))],
        )
    )
    with pytest.raises(Exception):  # noqa: B017
        from_onnx(bad)
    assert onnx_frontend._get_convert_map is original
    # and TVM's plain importer still decomposes LRN afterwards
    from tvm.relax.frontend.onnx import from_onnx as tvm_from_onnx

    assert "avg_pool" in tvm_from_onnx(lrn_model(3)).script()


def test_defaults_and_3d_input():
    model = lrn_model(3, shape=(2, 7, 5), attrs={})  # alpha, beta, bias take ONNX defaults
    got = compile_model(from_onnx(model), "llvm")(
        x := np.random.default_rng(0).standard_normal((2, 7, 5)).astype("float32")
    )
    ref = lrn_reference(x, 3, 1e-4, 0.75, 1.0, convention="onnx")
    assert _rel(got, ref) < 1e-6


def test_conv_lrn_relu_graph_against_onnxruntime():
    # Other nodes go through TVM's converters; onnxruntime is an independent check on
    # ordinary inputs (it overflows on large ones like everybody else, and refuses even
    # sizes: "size_ % 2 == 1 was false").
    ort = pytest.importorskip("onnxruntime")
    rng = np.random.default_rng(1)
    w = rng.standard_normal((8, 3, 3, 3)).astype("float32") * 0.3
    nodes = [
        helper.make_node("Conv", ["x", "w"], ["c"], pads=[1, 1, 1, 1]),
        helper.make_node("LRN", ["c"], ["l"], size=5, alpha=1e-3, beta=0.75, bias=2.0),
        helper.make_node("Relu", ["l"], ["y"]),
    ]
    graph = helper.make_graph(
        nodes,
        "g",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, (1, 3, 6, 6))],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, (1, 8, 6, 6))],
        initializer=[numpy_helper.from_array(w, "w")],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])
    x = rng.standard_normal((1, 3, 6, 6)).astype("float32")
    got = tvm_lrn.compile(tvm_lrn.from_onnx(model), "llvm")(x)
    sess = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    (want,) = sess.run(None, {"x": x})
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-6)


def test_model_from_file(tmp_path):
    path = tmp_path / "lrn.onnx"
    onnx.save(lrn_model(5), path)
    assert "R.tvm_lrn(" in from_onnx(str(path)).script()
