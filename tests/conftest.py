"""Shared test setup."""

import contextlib
import os

import pytest

# TVM's CPU pool uses cores/2 threads unless told. A single pytest process uses every
# core; under pytest-xdist (the default, ``-n logical`` in pyproject.toml) each worker
# takes one core, since TVM's pool spins while it waits and more threads than cores
# slow every worker down.
_XDIST_WORKER = "PYTEST_XDIST_WORKER" in os.environ
os.environ.setdefault("TVM_NUM_THREADS", "1" if _XDIST_WORKER else str(os.cpu_count() or 1))


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
    """Make ``tvm_lrn.run`` and legalization build kernels in ``form`` (see SAFE_FORMS)."""
    from tvm_lrn import op

    saved = op.form_for
    op.form_for = lambda target, shape=None, axis=None: form
    try:
        yield
    finally:
        op.form_for = saved


@pytest.fixture(params=SAFE_FORMS)
def safe_form(request):
    """Run the test once per safe form (through ``tvm_lrn.run``)."""
    with forced_form(request.param):
        yield request.param


@pytest.hookimpl(tryfirst=True)  # before xdist's own hook reads the group marks
def pytest_collection_modifyitems(items):
    """Keep the tests of each module-scoped tuning run (fixtures named ``tuned...``) on
    one xdist worker (``--dist loadgroup``): spread over two, each worker would tune
    again."""
    for item in items:
        for name in getattr(item, "fixturenames", ()):
            if name.startswith("tuned"):
                item.add_marker(pytest.mark.xdist_group(name))
                break


def pytest_sessionfinish(session):
    """An xdist worker hands its worst ulp errors to the controller, which prints them."""
    workeroutput = getattr(session.config, "workeroutput", None)
    if workeroutput is not None:
        from accuracy import WORST_ULP

        workeroutput["worst_ulp"] = dict(WORST_ULP)


@pytest.hookimpl(optionalhook=True)  # an xdist hook: unknown when xdist is not installed
def pytest_testnodedown(node, error):
    """Merge a finished xdist worker's worst ulp errors into the controller's."""
    from accuracy import WORST_ULP

    for dtype, worst in getattr(node, "workeroutput", {}).get("worst_ulp", {}).items():
        WORST_ULP[dtype] = max(WORST_ULP.get(dtype, 0.0), worst)


def pytest_terminal_summary(terminalreporter):
    """Print the worst ulp error per dtype measured by the accuracy checks."""
    from accuracy import ULP_BOUND, WORST_ULP

    if WORST_ULP:
        terminalreporter.section("LRN accuracy (worst error over the normal range)")
        for dtype, worst in sorted(WORST_ULP.items()):
            terminalreporter.write_line(f"{dtype:9s} {worst:6.3f} ulp (bound {ULP_BOUND[dtype]})")
