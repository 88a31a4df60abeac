"""tvm-lrn: a numerically safe, fast LRN operator for Apache TVM."""

# tvm_lrn.tune is a callable module: tvm_lrn.tune(...) tunes and tvm_lrn.tune.query_database
# etc. stay reachable (`from .tune import tune` would shadow the module that build.py
# imports as `from . import tune`).
from . import tune
from .build import compile
from .eager import run
from .frontend import from_onnx, from_torch
from .interop import InputError
from .library import load_module
from .model import Model
from .op import local_response_norm
from .spec import LRNParams, canonicalize

__all__ = [
    "InputError",
    "LRNParams",
    "Model",
    "canonicalize",
    "compile",
    "from_onnx",
    "from_torch",
    "load_module",
    "local_response_norm",
    "run",
    "tune",
]
__version__ = "0.1.0"
