"""The package structure: no import cycles among the project's modules (module-level imports, the ones that run
when a module is imported), and `flows/` the only package that imports Prefect (at any level)."""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("lacgan", "pipelines", "detectors", "manifests", "flows")


def _modules() -> dict[str, Path]:
    out = {}
    for pkg in PACKAGES:
        for path in (ROOT / pkg).rglob("*.py"):
            parts = path.relative_to(ROOT).with_suffix("").parts
            out[".".join(parts[:-1] if parts[-1] == "__init__" else parts)] = path
    return out


def _imports(path: Path, module: str, top_level_only: bool) -> set[str]:
    tree = ast.parse(path.read_text())
    nodes = tree.body if top_level_only else list(ast.walk(tree))
    if top_level_only:  # module level, including inside if/try blocks there, not inside functions or classes
        stack, nodes = list(tree.body), []
        while stack:
            node = stack.pop()
            nodes.append(node)
            if isinstance(node, (ast.If, ast.Try)):
                stack.extend(node.body + node.orelse + getattr(node, "finalbody", []) +
                             [h for handler in getattr(node, "handlers", []) for h in handler.body])
    found = set()
    for node in nodes:
        if isinstance(node, ast.Import):
            found |= {a.name for a in node.names}
        elif isinstance(node, ast.ImportFrom):
            if node.level:  # relative import
                base = module.split(".")[: -node.level] if not path.name == "__init__.py" else module.split(".")
                name = ".".join(base + ([node.module] if node.module else []))
            else:
                name = node.module or ""
            found.add(name)
            found |= {f"{name}.{a.name}" for a in node.names}
    return found


def _graph() -> dict[str, set[str]]:
    mods = _modules()
    # a module's own parent packages are imported before it by the import system itself, not by its code
    # (`from . import x` names the parent only to reach its submodule x): not edges
    return {m: {i for i in _imports(p, m, True) if i in mods and i != m and not m.startswith(i + ".")}
            for m, p in mods.items()}


def _cycle(graph: dict[str, set[str]]) -> list[str] | None:
    state: dict[str, int] = {}  # 1: on the stack, 2: done
    path: list[str] = []

    def visit(m: str) -> list[str] | None:
        state[m] = 1
        path.append(m)
        for n in sorted(graph[m]):
            if state.get(n) == 1:
                return path[path.index(n):] + [n]
            if n not in state:
                found = visit(n)
                if found:
                    return found
        path.pop()
        state[m] = 2
        return None

    for m in sorted(graph):
        if m not in state:
            found = visit(m)
            if found:
                return found
    return None


def test_the_cycle_finder_finds_a_cycle():
    assert _cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]
    assert _cycle({"a": {"b"}, "b": set()}) is None


def test_no_import_cycles():
    graph = _graph()
    assert "detectors.jaanet.train" in graph and "detectors.jaanet.config" in graph["detectors.jaanet.train"]
    assert _cycle(graph) is None, " -> ".join(_cycle(graph))


def test_only_flows_imports_prefect():
    offenders = [str(p.relative_to(ROOT)) for m, p in _modules().items()
                 if not m.startswith("flows") and any(i.split(".")[0] == "prefect" for i in _imports(p, m, False))]
    assert offenders == []
    assert any(i.startswith("prefect") for i in _imports(ROOT / "flows" / "augment.py", "flows.augment", False))
