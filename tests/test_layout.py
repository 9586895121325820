"""The architecture as a test: floors import only downward, and no module imports in a cycle.

DESIGN.md's floors: shared_data (numpy only) at the bottom; jaxpath and torchpath on it and
never on each other; comparisons on all three, with the CLI on top. Imports are read from
the source (module level and inside functions alike), so a lazy import counts too.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("shared_data", "jaxpath", "torchpath", "comparisons")
# What each floor may not import (third-party frameworks included).
FORBIDDEN = {
    "shared_data": ("jax", "flax", "optax", "orbax", "torch", "torchvision", *PACKAGES[1:]),
    "jaxpath": ("torch", "torchvision", "torchpath", "comparisons"),
    "torchpath": ("jax", "flax", "optax", "orbax", "jaxpath", "comparisons"),
    "comparisons": (),
}


def _modules() -> dict[str, Path]:
    out = {}
    for package in PACKAGES:
        for path in (ROOT / package).rglob("*.py"):
            parts = path.relative_to(ROOT).with_suffix("").parts
            name = ".".join(parts[:-1] if parts[-1] == "__init__" else parts)
            out[name] = path
    return out


MODULES = _modules()


def _imports(name: str, path: Path) -> set[str]:
    """Every module `name` imports, absolute names (relative imports resolved)."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found = set()
    # A `python -m` entry point (`if __name__ == "__main__":`) may call the CLI: skip it.
    tree.body = [n for n in tree.body if not _is_main_guard(n)]
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join([*anchor, base] if base else anchor)
            found.add(base)
            # `from pkg import module` imports a module too.
            found.update(f"{base}.{alias.name}" for alias in node.names)
    return {m for m in found if m}


def _is_main_guard(node: ast.stmt) -> bool:
    return (
        isinstance(node, ast.If)
        and isinstance(node.test, ast.Compare)
        and isinstance(node.test.left, ast.Name)
        and node.test.left.id == "__name__"
    )


def _ours(imported: set[str]) -> set[str]:
    return {m for m in imported if m in MODULES}


@pytest.mark.parametrize("name", sorted(MODULES))
def test_floors_import_only_downward(name):
    floor = name.split(".")[0]
    bad = sorted(m for m in _imports(name, MODULES[name]) if m.split(".")[0] in FORBIDDEN[floor])
    assert not bad, f"{name} ({floor}) imports {bad}"
    if floor == "comparisons" and name != "comparisons.cli":
        assert "comparisons.cli" not in _imports(name, MODULES[name]), "the CLI is the top floor"


def test_no_import_cycles():
    graph = {name: _ours(_imports(name, path)) - {name} for name, path in MODULES.items()}
    # A package importing its own submodules (re-exports in __init__) is not a cycle.
    for name in graph:
        graph[name] = {m for m in graph[name] if not m.startswith(name + ".")}
    state: dict[str, int] = {}
    stack: list[str] = []

    def visit(node: str) -> None:
        state[node] = 1
        stack.append(node)
        for nxt in sorted(graph[node]):
            if state.get(nxt) == 1:
                cycle = stack[stack.index(nxt) :] + [nxt]
                raise AssertionError("import cycle: " + " -> ".join(cycle))
            if nxt not in state:
                visit(nxt)
        stack.pop()
        state[node] = 2

    for node in sorted(graph):
        if node not in state:
            visit(node)
