"""Shared test setup."""

import contextlib
import os

import pytest

# TVM's CPU pool uses cores/2 threads unless told; the tests use both cores.
os.environ.setdefault("TVM_NUM_THREADS", str(os.cpu_count() or 1))


@pytest.fixture(autouse=True)
def _seed_torch():
    """Every test starts from the same torch RNG state: runs are reproducible."""
    import torch

    torch.manual_seed(0)


#: The two safe forms of tvm_lrn.compute.lrn: ``None`` lets the compute pick (the
#: guarded form wherever it applies, as on CPUs), ``False`` forces the scaled form (what
#: GPU targets get). Both must meet the same contract.
SAFE_FORMS = {"guarded": None, "scaled": False}


@contextlib.contextmanager
def forced_form(form: str):
    """Make ``tvm_lrn.run`` build kernels in ``form`` ("guarded" or "scaled")."""
    from tvm_lrn import eager

    saved = eager._guarded_for
    eager._guarded_for = lambda target: SAFE_FORMS[form]
    try:
        yield
    finally:
        eager._guarded_for = saved


@pytest.fixture(params=sorted(SAFE_FORMS))
def safe_form(request):
    """Run the test once per safe form (through ``tvm_lrn.run``)."""
    with forced_form(request.param):
        yield request.param


def pytest_terminal_summary(terminalreporter):
    """Print the worst ulp error per dtype measured by the accuracy checks."""
    from accuracy import ULP_BOUND, WORST_ULP

    if WORST_ULP:
        terminalreporter.section("LRN accuracy (worst error over the normal range)")
        for dtype, worst in sorted(WORST_ULP.items()):
            terminalreporter.write_line(f"{dtype:9s} {worst:6.3f} ulp (bound {ULP_BOUND[dtype]})")
