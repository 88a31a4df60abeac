"""tvm-lrn: a numerically safe, fast LRN operator for Apache TVM."""

from .build import compile, load_module
from .eager import run
from .frontend import from_onnx, from_torch
from .op import local_response_norm
from .spec import LRNParams, canonicalize

__all__ = [
    "LRNParams",
    "canonicalize",
    "compile",
    "from_onnx",
    "from_torch",
    "load_module",
    "local_response_norm",
    "run",
]
__version__ = "0.1.0"
