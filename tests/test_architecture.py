"""The package's layering (docs/architecture.md): imports point down the layers, never in a cycle,
and no module grows past what one reader can hold."""

from __future__ import annotations

import ast
from collections import defaultdict
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1] / "spinelesion"

#: Layers from the bottom; a package may import from its own layer and the layers below it.
LAYERS: tuple[tuple[str, ...], ...] = (
    ("spinelesion", "errors", "labels", "vocabulary", "runtime", "typed_yaml", "record_types"),
    ("io",),
    ("synthesis", "data", "measure"),
    ("network",),
    ("inference", "training"),
    ("report", "evaluation"),
    ("pipeline",),
    ("demo", "commands", "cli", "__main__"),
)
LAYER_OF = {name: i for i, names in enumerate(LAYERS) for name in names}
#: Longest module, in lines (issue 15: "no file over ~400 lines").
MAX_LINES = 440


def _modules() -> dict[str, Path]:
    out = {}
    for path in ROOT.rglob("*.py"):
        parts = path.relative_to(ROOT.parent).with_suffix("").parts
        name = ".".join(parts[:-1] if parts[-1] == "__init__" else parts)
        out[name] = path
    return out


def _imports(modules: dict[str, Path]) -> dict[str, set[str]]:
    """module -> spinelesion modules it imports (at any depth: module level or inside functions)."""
    def resolve(name: str) -> str | None:
        while name and name not in modules:
            name = name.rpartition(".")[0]
        return name or None

    edges: dict[str, set[str]] = defaultdict(set)
    for name, path in modules.items():
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Import):
                targets = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                targets = [f"{node.module}.{a.name}" for a in node.names]
            else:
                continue
            for target in targets:
                found = resolve(target) if target.startswith("spinelesion") else None
                if found and found != name:
                    edges[name].add(found)
    return edges


def _package(module: str) -> str:
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else parts[0]


def test_every_package_has_a_layer():
    packages = {_package(m) for m in _modules()}
    assert packages <= set(LAYER_OF), sorted(packages - set(LAYER_OF))


def test_imports_point_down_the_layers():
    edges = _imports(_modules())
    upward = sorted(f"{a} -> {b}" for a, bs in edges.items() for b in bs
                    if LAYER_OF.get(_package(b), 0) > LAYER_OF.get(_package(a), 0))
    assert not upward, upward


def test_no_import_cycle():
    edges = _imports(_modules())
    state: dict[str, int] = {}
    cycles: list[list[str]] = []

    def visit(node: str, stack: list[str]) -> None:
        state[node] = 1
        stack.append(node)
        for nxt in sorted(edges.get(node, ())):
            if state.get(nxt) == 1:
                cycles.append(stack[stack.index(nxt):] + [nxt])
            elif nxt not in state:
                visit(nxt, stack)
        stack.pop()
        state[node] = 2

    for module in sorted(_modules()):
        if module not in state:
            visit(module, [])
    assert not cycles, cycles[:3]


def test_modules_stay_readable():
    long = sorted(f"{p.relative_to(ROOT.parent)}: {n}" for p in ROOT.rglob("*.py")
                  if (n := len(p.read_text().splitlines())) > MAX_LINES)
    assert not long, long
