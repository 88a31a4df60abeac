"""tvm-lrn: a numerically safe, fast LRN operator for Apache TVM."""

from .eager import run
from .op import local_response_norm
from .spec import LRNParams, canonicalize

__all__ = ["LRNParams", "canonicalize", "local_response_norm", "run"]
__version__ = "0.1.0"
