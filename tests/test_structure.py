"""The package's shape: modules under 400 lines, the data flow without steps back (models/ never
imports training/), and no import cycle inside a subpackage (files/)."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parent.parent / "mfinfer"
MAX_LINES = 400


def _imports(path: Path) -> set[str]:
    """Every ``mfinfer...`` module a file imports, at any depth (lazy imports included)."""
    out = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            out.add(node.module)
        elif isinstance(node, ast.Import):
            out.update(alias.name for alias in node.names)
    return {m for m in out if m == "mfinfer" or m.startswith("mfinfer.")}


def test_no_module_is_over_400_lines():
    long = {str(p.relative_to(PACKAGE)): n for p in PACKAGE.rglob("*.py")
            if (n := len(p.read_text(encoding="utf-8").splitlines())) > MAX_LINES}
    assert not long, f"modules over {MAX_LINES} lines (split them by concept): {long}"


def test_models_do_not_import_training():
    bad = {p.name: sorted(m for m in _imports(p) if m.startswith("mfinfer.training"))
           for p in (PACKAGE / "models").glob("*.py")}
    assert not {k: v for k, v in bad.items() if v}, bad


@pytest.mark.parametrize("subpackage", ["files"])  # models/ and inference/ still have lazy cycles
def test_no_import_cycle_inside_a_subpackage(subpackage):
    prefix = f"mfinfer.{subpackage}."
    graph = {p.stem: {m[len(prefix):].split(".")[0] for m in _imports(p) if m.startswith(prefix)}
             for p in (PACKAGE / subpackage).glob("*.py") if p.stem != "__init__"}

    def visit(node: str, path: list[str]) -> None:
        for nxt in sorted(graph.get(node, ())):
            assert nxt not in path, f"import cycle in mfinfer/{subpackage}: {' -> '.join([*path, nxt])}"
            visit(nxt, [*path, nxt])

    for start in graph:
        visit(start, [start])
