"""Whole-model tuning: every kernel of a zoo network through MetaSchedule's task
scheduler, and compile applying the records to every kernel."""

from __future__ import annotations

import logging

import numpy as np
import pytest
import torch

import tvm_lrn
from tvm_lrn import tune as T
from tvm_lrn import zoo
from tvm_lrn.target import resolve_target


def _relax(name: str):
    return tvm_lrn.from_torch(zoo.build(name), (zoo.example_input(name),))


def test_model_workloads_are_every_kernel_once():
    with resolve_target(None) as target:
        works = T.model_workloads(_relax("googlenet"), target)
    lrn = [w for w in works if w.is_lrn]
    assert [w.name for w in lrn] == ["lrn_float32_1x64x56x56_s5", "lrn_float32_1x192x56x56_s5"]
    assert len({w.name for w in works}) == len(works)
    # Nine inception blocks share some kernels: fewer workloads than kernel calls.
    assert sum(w.weight for w in works) > len(works)
    assert any(w.name.startswith("fused_conv2d") for w in works)


def test_model_tuning_rejects_bad_requests(tmp_path):
    mod = _relax("alexnet")
    with pytest.raises(ValueError, match="kernels must be 'all' or 'lrn'"):
        T.tune(mod, kernels="convs", work_dir=tmp_path)
    with pytest.raises(TypeError, match="kernels only goes with a model"):
        T.tune(shapes=[(1, 8, 4, 4)], kernels="all", work_dir=tmp_path)
    with pytest.raises(ValueError, match="no kernel to tune"):
        T.tune(tvm_lrn.from_torch(torch.nn.Identity(), (torch.ones(2),)), work_dir=tmp_path)


@pytest.fixture(scope="module")
def tuned_caffenet(tmp_path_factory):
    """CaffeNet, every kernel, one search trial each on top of its baseline."""
    work_dir = tmp_path_factory.mktemp("caffenet")
    mod = _relax("caffenet")
    result = T.tune(mod, work_dir=work_dir, trials=1, cost_model="random", seed=0, progress=False)
    return mod, result


def test_tuning_measures_every_kernel(tuned_caffenet):
    _, result = tuned_caffenet
    assert not result.interrupted
    names = [r.workload.name for r in result.workloads]
    assert sum(r.workload.is_lrn for r in result.workloads) == 2
    assert len(names) == 14 and any(n.startswith("fused_conv2d") for n in names)
    for res in result.workloads:
        assert np.isfinite(res.rule_seconds), res.workload.name  # its baseline ran
        assert res.best_seconds <= res.rule_seconds
    assert result.latency == pytest.approx(sum(r.best_seconds for r in result.workloads))


def test_compile_applies_the_records_to_every_kernel(tuned_caffenet, caplog):
    mod, result = tuned_caffenet
    with caplog.at_level(logging.INFO, logger="tvm_lrn"):
        compiled = tvm_lrn.compile(mod, database=result.work_dir)
    others = sorted(r.workload.name for r in result.workloads if not r.workload.is_lrn)
    assert compiled.tuned_kernels == others
    assert set(compiled.schedule_sources.values()) == {f"database:{result.work_dir}"}
    logged = [r.getMessage() for r in caplog.records if "kernels had a record" in r.getMessage()]
    assert logged == [f"12 of 12 kernels had a record in {result.work_dir}: {', '.join(others)}"]
    x = zoo.example_input("caffenet")
    with torch.no_grad():
        truth = zoo.build("caffenet", dtype=torch.float64)(x.double()).numpy()
    got = compiled(x).numpy()
    assert abs(got - truth).max() <= 1e-5 * abs(truth).max()
