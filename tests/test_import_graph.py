"""The import graph of vae_core and explorer has no cycle, imports inside functions included.

An import hidden inside a function still ties two modules together: each needs the other to work, neither can
be read, tested or moved alone. The graph is read from the source with ast, so a cycle fails here even where
Python would never notice at import time.
"""
import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
PACKAGES = ("vae_core", "explorer")


def module_name(path: Path) -> str:
    parts = path.relative_to(ROOT).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def resolve(node: ast.ImportFrom, module: str, is_package: bool) -> str:
    if not node.level:
        return node.module or ""
    base = module.split(".") if is_package else module.split(".")[:-1]
    base = base[:len(base) - (node.level - 1)]
    return ".".join(base + ([node.module] if node.module else []))


def imports_of(path: Path, modules: set[str]) -> set[str]:
    """The modules of ``modules`` that ``path`` imports anywhere in its source."""
    me, is_package = module_name(path), path.name == "__init__.py"
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            targets = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = resolve(node, me, is_package)
            # "from pkg import mod" imports the module; "from pkg import name" what pkg/__init__ binds.
            targets = [f"{base}.{a.name}" for a in node.names]
        else:
            continue
        for target in targets:
            # The longest known module the name falls in: "pkg.mod.func" is an import of "pkg.mod".
            parts = target.split(".")
            for i in range(len(parts), 0, -1):
                candidate = ".".join(parts[:i])
                if candidate in modules:
                    if candidate != me:
                        found.add(candidate)
                    break
    return found


def import_graph(root: Path = ROOT) -> dict[str, set[str]]:
    paths = [p for pkg in PACKAGES for p in (root / pkg).rglob("*.py")]
    modules = {module_name(p) for p in paths}
    return {module_name(p): imports_of(p, modules) for p in paths}


def find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    """One cycle of ``graph`` as a list of modules (first == last), or None."""
    state: dict[str, int] = {}            # 1: on the current path, 2: done
    stack: list[str] = []

    def visit(node: str) -> list[str] | None:
        state[node] = 1
        stack.append(node)
        for nxt in sorted(graph.get(node, ())):
            if state.get(nxt) == 1:
                return stack[stack.index(nxt):] + [nxt]
            if nxt not in state and (found := visit(nxt)):
                return found
        stack.pop()
        state[node] = 2
        return None

    for start in sorted(graph):
        if start not in state and (found := visit(start)):
            return found
    return None


def test_the_graph_is_read_from_every_module():
    graph = import_graph()
    assert {"vae_core.io.loading", "vae_core.training.loop", "explorer.session"} <= set(graph)
    assert "vae_core.io.hub" in graph["vae_core.io.loading"]
    assert "vae_core.models" in graph["vae_core.io.loading"]


def test_a_cycle_hidden_in_a_function_is_found():
    graph = {"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}
    assert find_cycle(graph) == ["a", "b", "c", "a"]
    assert find_cycle({"a": {"b"}, "b": set()}) is None


@pytest.mark.parametrize("package", PACKAGES)
def test_no_import_cycle(package):
    graph = import_graph()
    sub = {m: {n for n in deps if n.split(".")[0] == package} for m, deps in graph.items()
           if m.split(".")[0] == package}
    cycle = find_cycle(sub)
    assert cycle is None, " -> ".join(cycle)
