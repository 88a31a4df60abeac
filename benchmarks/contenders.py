"""The registry of the LRN benchmark's contenders: tvm_lrn, its variants, its peers and the
copy roofline.

What each ``call`` includes is stated here (``what``) and in ``benchmarks/README.md``;
what a contender is, in ``contender.py``; the factories, in one module per framework.
"""

from __future__ import annotations

from contender import Contender
from contenders_copy import make_copy_numpy, make_copy_torch, make_copy_tvm, numpy_version
from contenders_onnx import make_ort, ort_version
from contenders_torch import make_torch, make_torch_compile, torch_version
from contenders_tvm import (
    make_topi,
    make_tvm_import,
    make_tvm_lrn,
    make_tvm_lrn_dynamic,
    make_tvm_lrn_tuned,
    make_tvm_lrn_unsafe,
    tvm_torch_version,
)
from contenders_user import (
    make_compiled_numpy,
    make_compiled_out,
    make_compiled_torch,
    make_run_numpy,
    make_two_outputs,
)
from tvm_kernels import tvm_lrn_version, tvm_version

__all__ = ["CONTENDERS", "copy_keys", "lrn_contenders", "peer_keys"]

_PRE = "preallocated output"
_GPU = ("cpu", "cuda")

CONTENDERS: dict[str, Contender] = {
    c.key: c
    for c in [
        Contender(
            "tvm_lrn",
            "tvm_lrn",
            "lrn",
            make_tvm_lrn,
            tvm_lrn_version,
            _GPU,
            what=f"static-shape kernel (as in a compiled model), strategy rule, {_PRE}",
        ),
        Contender(
            "tvm_lrn_tuned",
            "tvm_lrn (tuned)",
            "lrn",
            make_tvm_lrn_tuned,
            tvm_lrn_version,
            _GPU,
            what=f"best record of the shipped MetaSchedule database, {_PRE}",
        ),
        Contender(
            "tvm_lrn_dyn",
            "tvm_lrn (symbolic)",
            "lrn",
            make_tvm_lrn_dynamic,
            tvm_lrn_version,
            _GPU,
            what=f"symbolic-shape kernel of tvm_lrn.run, strategy rule, {_PRE}",
        ),
        Contender(
            "tvm_lrn_unsafe",
            "tvm_lrn (unguarded)",
            "lrn",
            make_tvm_lrn_unsafe,
            tvm_lrn_version,
            _GPU,
            what=f"the fast path alone, no check and no fallback (benchmark only), {_PRE}",
        ),
        Contender(
            "compiled_numpy",
            "compiled(x), numpy",
            "lrn",
            make_compiled_numpy,
            tvm_lrn_version,
            what="tvm_lrn.compile of a one-LRN model called on a numpy array, output returned",
        ),
        Contender(
            "compiled_torch",
            "compiled(x), torch",
            "lrn",
            make_compiled_torch,
            tvm_lrn_version,
            what="the same model on torch.from_numpy of the array, torch output returned",
        ),
        Contender(
            "compiled_out",
            "compiled(x, out=y)",
            "lrn",
            make_compiled_out,
            tvm_lrn_version,
            what="the same model on the numpy array, writing into one preallocated out=",
        ),
        Contender(
            "run_numpy",
            "tvm_lrn.run(x)",
            "lrn",
            make_run_numpy,
            tvm_lrn_version,
            what="tvm_lrn.run on a numpy array, output returned",
        ),
        Contender(
            "two_outputs",
            "kernel, 2 outputs",
            "lrn",
            make_two_outputs,
            tvm_lrn_version,
            what="tvm_lrn's kernel into two preallocated outputs in turn (fresh-output floor)",
        ),
        Contender(
            "topi",
            "topi.nn.lrn",
            "lrn",
            make_topi,
            tvm_version,
            peer=True,
            what=f"tvm.topi.nn.lrn, no schedule, {_PRE}",
        ),
        Contender(
            "tvm_import",
            "TVM plain import",
            "lrn",
            make_tvm_import,
            tvm_torch_version,
            peer=True,
            what="from_exported_program + tvm.compile, Relax VM call (VM allocates)",
        ),
        Contender(
            "torch",
            "torch eager",
            "lrn",
            make_torch,
            torch_version,
            _GPU,
            peer=True,
            what="F.local_response_norm, allocates its output per call",
        ),
        Contender(
            "torch_compile",
            "torch.compile",
            "lrn",
            make_torch_compile,
            torch_version,
            _GPU,
            peer=True,
            what=f"inductor, static shapes, {_PRE} (out.copy_ fused)",
        ),
        Contender(
            "ort",
            "ONNX Runtime",
            "lrn",
            make_ort,
            ort_version,
            peer=True,
            what=f"LRN node, CPU EP, intra_op_num_threads=threads, io_binding, {_PRE}",
        ),
        Contender(
            "copy_numpy",
            "copy (numpy)",
            "copy",
            make_copy_numpy,
            numpy_version,
            what="np.copyto, memcpy on one thread",
        ),
        Contender(
            "copy_torch",
            "copy (torch)",
            "copy",
            make_copy_torch,
            torch_version,
            _GPU,
            what="Tensor.copy_, multi-threaded",
        ),
        Contender(
            "copy_tvm",
            "copy (TVM)",
            "copy",
            make_copy_tvm,
            tvm_version,
            what="TVM kernel, parallel, 64-byte vectors",
        ),
    ]
}


def lrn_contenders() -> list[str]:
    """Keys of the contenders that compute LRN (not the copies)."""
    return [k for k, c in CONTENDERS.items() if c.op == "lrn"]


def peer_keys() -> list[str]:
    """Keys of the peers (implementations other than tvm_lrn)."""
    return [k for k, c in CONTENDERS.items() if c.peer]


def copy_keys() -> list[str]:
    """Keys of the copies (the roofline)."""
    return [k for k, c in CONTENDERS.items() if c.op == "copy"]
