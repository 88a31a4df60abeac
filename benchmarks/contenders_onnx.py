"""The ONNX Runtime contender: a one-node ``LRN`` model on the CPU execution provider."""

from __future__ import annotations

from contender import Bench, LRNArgs, Unsupported, host_buffers

__all__ = ["make_ort", "ort_version"]


def ort_version() -> str:
    import onnxruntime

    return f"onnxruntime {onnxruntime.__version__}"


def _lrn_model(lrn: LRNArgs, dtype, shape):
    """A one-node ``LRN`` ONNX model (opset 13) of ``lrn`` for inputs ``x`` of ``shape``."""
    import onnx
    from onnx import helper

    elem = onnx.helper.np_dtype_to_tensor_dtype(dtype)
    node = helper.make_node(
        "LRN", ["x"], ["y"], size=lrn.size, alpha=lrn.alpha, beta=lrn.beta, bias=lrn.k
    )
    graph = helper.make_graph(
        [node],
        "lrn",
        [helper.make_tensor_value_info("x", elem, list(shape))],
        [helper.make_tensor_value_info("y", elem, list(shape))],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])
    model.ir_version = 8
    return model


def make_ort(x, lrn: LRNArgs, threads: int, device: str) -> Bench:
    """ONNX Runtime's ``LRN`` kernel (CPU execution provider), IO-bound to preallocated
    numpy buffers."""
    if device != "cpu":
        raise Unsupported("CPU execution provider only")
    if lrn.axis != 1:
        raise Unsupported("ONNX LRN normalizes axis 1 only")
    import onnxruntime as ort

    opts = ort.SessionOptions()
    opts.intra_op_num_threads = threads
    opts.inter_op_num_threads = 1
    opts.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    opts.log_severity_level = 3
    model = _lrn_model(lrn, x.dtype, x.shape).SerializeToString()
    try:
        sess = ort.InferenceSession(model, opts, providers=["CPUExecutionProvider"])
    except Exception as err:  # ORT raises its own exception types for missing kernels
        if "NOT_IMPLEMENTED" in str(err) or "Could not find an implementation" in str(err):
            raise Unsupported(f"no {x.dtype.name} LRN kernel in ONNX Runtime") from None
        raise
    xa, ya = host_buffers(x)
    binding = sess.io_binding()
    binding.bind_cpu_input("x", xa)
    binding.bind_output("y", "cpu", 0, x.dtype, list(x.shape), ya.ctypes.data)
    return Bench(lambda: sess.run_with_iobinding(binding), lambda: ya.copy(), "io_binding")
