"""The ``tvm-lrn`` command: help, error paths (one line, no traceback), compile, bench, demo.

Tuning through the command is covered by tests/test_tune.py (the Ctrl-C test runs
``python -m tvm_lrn.cli tune``).
"""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest

from tvm_lrn import cli


def _run(capsys, *argv):
    rc = cli.main(list(argv))
    out, err = capsys.readouterr()
    return rc, out, err


def _one_line_error(err: str) -> str:
    lines = [ln for ln in err.splitlines() if ln.strip()]
    assert len(lines) == 1, err
    assert "Traceback" not in err
    assert "error" in lines[0]
    return lines[0]


@pytest.mark.parametrize("command", [[], ["tune"], ["compile"], ["bench"]])
def test_help(capsys, command):
    rc, out, _ = _run(capsys, *command, "--help")
    assert rc == 0
    assert "usage: tvm-lrn" in out


def test_no_command_prints_help(capsys):
    rc, _, err = _run(capsys)
    assert rc == 2 and "COMMAND" in err


def test_version(capsys):
    rc, out, _ = _run(capsys, "--version")
    assert rc == 0 and out.startswith("tvm-lrn ")


@pytest.mark.parametrize(
    ("argv", "rc", "message"),
    [
        (["frobnicate"], 2, "invalid choice"),
        (["tune"], 2, "nothing to tune"),
        (["tune", "--shape", "1,a"], 2, "invalid shape"),
        (["tune", "--shape", "1,0,3"], 2, "invalid shape"),
        (["tune", "--shape", "1,8,4,4", "--dtype", "int8"], 2, "invalid dtype"),
        (["tune", "--shape", "1,8,4,4", "--target", "nosuchkind"], 2, "nosuchkind"),
        (["tune", "--shape", "1,8,4,4", "--target", '{"kind": "llvm"'], 2, "target JSON"),
        (["tune", "--preset", "vgg"], 2, "unknown preset"),
        (["tune", "--shape", "1,8,4,4", "--model", "m.onnx"], 2, "not both"),
        (["tune", "--shape", "1,8,4,4", "--trials", "0"], 2, "positive integer"),
        (["tune", "--shape", "1,8,4,4", "--size", "0"], 2, "positive integer"),
        (["tune", "--shape", "1,8,4,4", "--beta", "-1"], 1, "beta"),
        (["tune", "--model", "/no/such/model.pt2"], 1, "no such file"),
        (["tune", "--model", "m.pt2", "--kernels", "convs"], 2, "invalid choice"),
        (["tune", "--shape", "1,8,4,4", "--trials", "+3"], 2, "positive integer"),
        (["compile", "/no/such/model.onnx"], 1, "no such file"),
        (["bench", "--dtype", "int8"], 2, "invalid choice"),
        (["bench", "--shape", "1,8,4,4", "--axis", "7"], 1, "axis"),
        (["bench", "--shape", "1,8,4,4", "--target", "cuda"], 1, "host CPU"),
    ],
)
def test_errors_are_one_line(capsys, argv, rc, message):
    got, _, err = _run(capsys, *argv)
    assert got == rc, err
    assert message in _one_line_error(err)


def test_unsupported_model_file(capsys, tmp_path):
    path = tmp_path / "model.txt"
    path.write_text("not a model")
    rc, _, err = _run(capsys, "compile", str(path))
    assert rc == 1 and "expected .pt2" in _one_line_error(err)


def test_bad_database_folder(capsys, tmp_path):
    onnx_path = _onnx_model(tmp_path)
    rc, _, err = _run(capsys, "compile", str(onnx_path), "--database", str(tmp_path / "nodb"))
    assert rc == 1 and "no tuning database" in _one_line_error(err)


def test_console_script_errors_in_a_subprocess(tmp_path):
    """The real entry point: exit status and a single stderr line."""
    proc = subprocess.run(
        [sys.executable, "-m", "tvm_lrn.cli", "compile", str(tmp_path / "missing.pt2")],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 1
    assert proc.stderr.strip().splitlines() == [
        f"tvm-lrn: error: no such file: {tmp_path / 'missing.pt2'}"
    ]


def _torch_lrn_module():
    torch = pytest.importorskip("torch")

    class Net(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.lrn = torch.nn.LocalResponseNorm(5, alpha=1e-4, beta=0.75, k=1.0)

        def forward(self, x):
            return self.lrn(x) * 2.0

    return torch, Net().eval()


def test_compile_pt2(capsys, tmp_path):
    torch, net = _torch_lrn_module()
    x = torch.randn(1, 16, 8, 8)
    path = tmp_path / "net.pt2"
    torch.export.save(torch.export.export(net, (x,)), str(path))
    out_lib = tmp_path / "net.so"
    rc, out, err = _run(capsys, "compile", str(path), "-o", str(out_lib))
    assert rc == 0, err
    assert out_lib.is_file()
    assert "wrote" in out and "lrn" in out  # the LRN PrimFunc and its schedule source
    import tvm_lrn

    model = tvm_lrn.load_module(str(out_lib))
    got = np.asarray(model(x.numpy()))
    np.testing.assert_allclose(got, net(x).numpy(), rtol=1e-5, atol=1e-6)


def _onnx_model(tmp_path):
    onnx = pytest.importorskip("onnx")
    from onnx import TensorProto, helper

    node = helper.make_node("LRN", ["x"], ["y"], size=5, alpha=1e-4, beta=0.75, bias=1.0)
    graph = helper.make_graph(
        [node],
        "g",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 16, 8, 8])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 16, 8, 8])],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])
    path = tmp_path / "lrn.onnx"
    onnx.save(model, str(path))
    return path


def test_compile_onnx_default_output(capsys, tmp_path):
    path = _onnx_model(tmp_path)
    rc, out, err = _run(capsys, "compile", str(path), "--target", "llvm")
    assert rc == 0, err
    assert (tmp_path / "lrn.so").is_file()
    assert "rule:cpu" in out or "database:" in out


def test_bench_prints_a_table(capsys):
    rc, out, err = _run(capsys, "bench", "--shape", "1,16,8,8", "--repeat", "2")
    assert rc == 0, err
    assert "tvm_lrn (" in out
    assert "copy of the same bytes" in out
    assert "torch eager" in out
    assert "median us" in out


def test_demo_passes_arguments(capsys, monkeypatch):
    demo = pytest.importorskip("tvm_lrn.demo")
    seen = []
    monkeypatch.setattr(demo, "main", lambda argv: seen.append(argv) or 0)
    rc, _, _ = _run(capsys, "demo", "--fast", "x")
    assert rc == 0 and seen == [["--fast", "x"]]


def test_demo_error_is_one_line(capsys, monkeypatch):
    demo = pytest.importorskip("tvm_lrn.demo")

    def broken(argv):
        raise ValueError("demo needs torch")

    monkeypatch.setattr(demo, "main", broken)
    rc, _, err = _run(capsys, "demo")
    assert rc == 1 and "demo needs torch" in _one_line_error(err)
