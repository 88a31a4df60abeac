"""Shared test setup."""

import os

import pytest

# TVM's CPU pool uses cores/2 threads unless told; the tests use both cores.
os.environ.setdefault("TVM_NUM_THREADS", str(os.cpu_count() or 1))


@pytest.fixture(autouse=True)
def _seed_torch():
    """Every test starts from the same torch RNG state: runs are reproducible."""
    import torch

    torch.manual_seed(0)


def pytest_terminal_summary(terminalreporter):
    """Print the worst ulp error per dtype measured by the accuracy checks."""
    from accuracy import ULP_BOUND, WORST_ULP

    if WORST_ULP:
        terminalreporter.section("LRN accuracy (worst error over the normal range)")
        for dtype, worst in sorted(WORST_ULP.items()):
            terminalreporter.write_line(f"{dtype:9s} {worst:6.3f} ulp (bound {ULP_BOUND[dtype]})")
