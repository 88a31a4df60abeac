"""tvm-lrn: a numerically safe, fast LRN operator for Apache TVM."""

from .eager import run
from .spec import LRNParams, canonicalize

__all__ = ["LRNParams", "canonicalize", "run"]
__version__ = "0.1.0"
