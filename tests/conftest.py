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


#: The safe forms of tvm_lrn.compute.lrn (each falls back to the scaled form where it
#: does not apply): the guarded form (CPUs), the checked form (GPUs) and the scaled form.
#: All must meet the same contract.
SAFE_FORMS = ("guarded", "checked", "scaled")


@contextlib.contextmanager
def forced_form(form: str):
    """Make ``tvm_lrn.run`` build kernels in ``form`` (one of :data:`SAFE_FORMS`)."""
    from tvm_lrn import eager

    saved = eager._form_for
    eager._form_for = lambda target: form
    try:
        yield
    finally:
        eager._form_for = saved


@pytest.fixture(params=SAFE_FORMS)
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
