"""The model zoo: published output shapes, the LRNs each paper places, seeded weights."""

from __future__ import annotations

from pathlib import Path

import onnxruntime as ort
import pytest
import torch
from torch import nn
from tvm.tirx import PrimFunc

import tvm_lrn
from tvm_lrn import zoo
from tvm_lrn.build import lrn_pipeline
from tvm_lrn.target import resolve_target

# (LRN count, parameter count of the published single-tower network with 1000 classes)
PUBLISHED = {
    "alexnet": (2, 62_378_344),
    "caffenet": (2, 60_965_224),
    "zfnet": (2, 62_357_608),
    "googlenet": (2, 6_998_552),
}


@pytest.mark.parametrize("name", sorted(zoo.NETWORKS))
def test_network_runs_with_published_structure(name):
    model = zoo.build(name)
    lrn_count, param_count = PUBLISHED[name]
    assert sum(isinstance(m, nn.LocalResponseNorm) for m in model.modules()) == lrn_count
    assert sum(p.numel() for p in model.parameters()) == param_count
    with torch.no_grad():
        y = model(zoo.example_input(name, batch=2))
    assert y.shape == (2, 1000) and torch.isfinite(y).all()


def test_weights_are_seeded():
    a, b = zoo.build("alexnet", seed=3), zoo.build("alexnet", seed=3)
    assert all(torch.equal(p, q) for p, q in zip(a.parameters(), b.parameters(), strict=True))
    assert not torch.equal(next(a.parameters()), next(zoo.build("alexnet").parameters()))


def test_unknown_network_is_named():
    with pytest.raises(ValueError, match="unknown zoo network 'vgg'"):
        zoo.build("vgg")


def test_exports_reload_and_match_torch(tmp_path):
    """The .pt2 reloads through torch.export and the ONNX file runs in ONNX Runtime,
    both giving the PyTorch module's output (GoogLeNet: the smallest file)."""
    x = zoo.example_input("googlenet")
    with torch.no_grad():
        want = zoo.build("googlenet")(x).numpy()
    program = torch.export.load(str(zoo.export_pt2("googlenet", tmp_path / "g.pt2")))
    got_pt2 = program.module()(x).detach().numpy()
    session = ort.InferenceSession(str(zoo.export_onnx("googlenet", tmp_path / "g.onnx")))
    (got_onnx,) = session.run(None, {"input": x.numpy()})
    scale = abs(want).max()
    assert abs(got_pt2 - want).max() <= 1e-6 * scale
    assert abs(got_onnx - want).max() <= 1e-4 * scale


def _norm_error(got, truth) -> float:
    return float(abs(got - truth).max() / abs(truth).max())


def _errors_at_scales(compiled, name: str) -> list[float]:
    """The compiled network's error against float64 torch at input scales 1 and 1e20."""
    truth_model = zoo.build(name, dtype=torch.float64).eval()
    errors = []
    for scale in (1.0, 1e20):
        x = zoo.example_input(name, scale=scale)
        with torch.no_grad():
            truth = truth_model(x.double()).numpy()
        errors.append(_norm_error(compiled(x).numpy(), truth))
    return errors


@pytest.mark.parametrize("name", sorted(zoo.NETWORKS))
def test_untuned_network_is_scheduled_and_matches_float64_torch(name, tmp_path):
    """With no record (an empty database), every kernel of the network still gets a
    parallel schedule (never TVM's serial loops), and the result matches float64 torch
    at input scales 1 and 1e20 (the overflow test's rule: at most twice the error at
    scale 1). The networks' biases dominate their output at 1e20, so this is not where
    overflow shows; test_models.py checks that on bias-free networks."""
    empty = tmp_path / "empty"
    empty.mkdir()
    for file in ("database_workload.json", "database_tuning_record.json"):
        (empty / file).touch()
    mod = tvm_lrn.from_torch(zoo.build(name), (zoo.example_input(name),))
    with resolve_target("host"):
        lowered = lrn_pipeline(database=str(empty))(mod)
    kernels = {g.name_hint: f for g, f in lowered.functions_items() if isinstance(f, PrimFunc)}
    assert sum(kernel.startswith("lrn") for kernel in kernels) == 2
    assert [n for n, f in kernels.items() if "T.parallel" not in f.script()] == []

    compiled = tvm_lrn.compile(mod, database=str(empty))
    assert compiled.tuned_kernels == []
    errors = _errors_at_scales(compiled, name)
    assert errors[0] <= 1e-5
    assert errors[1] <= 2 * errors[0]


#: Zoo networks whose every kernel has a record in schedules/<target key>/ (README there).
SHIPPED_NETWORKS = {
    "llvm-znver4-avx512": ["alexnet", "caffenet", "zfnet"],
    "llvm-rocketlake-avx512": ["caffenet"],
}


def test_network_through_the_shipped_records():
    """The first network shipped for this CPU, with its records: every kernel has one."""
    key = tvm_lrn.tune.target_key(None)
    if key not in SHIPPED_NETWORKS:
        pytest.skip(f"no network's schedules are shipped for this CPU ({key})")
    name = SHIPPED_NETWORKS[key][0]
    compiled = tvm_lrn.compile(zoo.build(name), example_args=(zoo.example_input(name),))
    assert len(compiled.tuned_kernels) == 12
    shipped = Path(tvm_lrn.tune.shipped_database(None)).resolve()
    assert set(compiled.schedule_sources.values()) == {f"database:{shipped}"}
    errors = _errors_at_scales(compiled, name)
    assert errors[0] <= 1e-5
    assert errors[1] <= 2 * errors[0]
