"""The project's size and layering rules, checked on the source tree itself.

Modules of the package and the benchmarks stay under 450 lines and functions under 60;
no module imports another module's private name (tests included). ruff checks the
argument and statement counts (PLR0913, PLR0915 in pyproject.toml).
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
MAX_MODULE_LINES = 450
MAX_FUNCTION_LINES = 60
SIZED = sorted([*ROOT.glob("tvm_lrn/**/*.py"), *ROOT.glob("benchmarks/*.py")])
ALL_SOURCES = sorted([*SIZED, *ROOT.glob("tests/*.py"), *ROOT.glob("scripts/*.py")])


def _rel(path: Path) -> str:
    return str(path.relative_to(ROOT))


def _functions(tree: ast.AST):
    for node in ast.walk(tree):
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
            yield node


#: The project's own modules: the package and the modules of the script folders.
OWN = {"tvm_lrn"} | {p.stem for p in ALL_SOURCES if p.parent.parent == ROOT}


def _is_own(module: str | None, level: int = 0) -> bool:
    return level > 0 or (module or "").split(".")[0] in OWN


def _private(name: str) -> bool:
    return name.startswith("_") and not name.startswith("__")


def _private_imports(tree: ast.AST):
    """``from x import _name`` and ``x._name`` for the project's own modules ``x``."""
    modules = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and _is_own(node.module, node.level):
            for alias in node.names:
                if _private(alias.name):
                    yield f"from {node.module} import {alias.name}"
                modules.add(alias.asname or alias.name)
        elif isinstance(node, ast.Import):
            for alias in node.names:
                if _is_own(alias.name):
                    modules.add(alias.asname or alias.name.split(".")[0])
    for node in ast.walk(tree):
        if (
            isinstance(node, ast.Attribute)
            and isinstance(node.value, ast.Name)
            and node.value.id in modules
            and _private(node.attr)
        ):
            yield f"{node.value.id}.{node.attr}"


@pytest.mark.parametrize("path", SIZED, ids=_rel)
def test_module_and_function_sizes(path):
    text = path.read_text()
    lines = len(text.splitlines())
    assert lines <= MAX_MODULE_LINES, f"{_rel(path)} has {lines} lines"
    long = [
        f"{f.name} ({f.end_lineno - f.lineno + 1} lines)"
        for f in _functions(ast.parse(text))
        if f.end_lineno - f.lineno + 1 > MAX_FUNCTION_LINES
    ]
    assert not long, f"{_rel(path)}: functions over {MAX_FUNCTION_LINES} lines: {long}"


@pytest.mark.parametrize("path", ALL_SOURCES, ids=_rel)
def test_no_private_imports(path):
    found = sorted(set(_private_imports(ast.parse(path.read_text()))))
    assert not found, f"{_rel(path)} uses private names of other modules: {found}"


def test_the_rules_catch_what_they_name():
    tree = ast.parse(
        "import tvm_lrn.tune as a\nfrom .b import _c\nimport torch\n"
        "x = a._d\ny = self._e\nz = torch._dynamo\n"
    )
    assert sorted(_private_imports(tree)) == ["a._d", "from b import _c"]
    long = ast.parse("def f():\n" + "    x = 1\n" * MAX_FUNCTION_LINES)
    assert [f.end_lineno - f.lineno + 1 for f in _functions(long)] == [MAX_FUNCTION_LINES + 1]
