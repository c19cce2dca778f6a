"""nbsim's modules import one way: no cycle among them.

Every ``import`` statement counts, also those inside functions (a lazy import is still a
dependency, and a cycle of lazy imports is a layering error waiting to fire), and importing
``a.b.c`` counts as importing the packages ``a.b`` (their ``__init__`` runs first).  The
graph is read from the sources with :mod:`ast`; nothing is imported.
"""
from __future__ import annotations

import ast
from pathlib import Path

PKG = "nbsim"
ROOT = Path(__file__).resolve().parents[1]


def _modules():
    mods = {}
    for path in sorted((ROOT / PKG).rglob("*.py")):
        name = ".".join(path.relative_to(ROOT).with_suffix("").parts)
        if name.endswith(".__init__"):
            name = name[: -len(".__init__")]
        mods[name] = path
    return mods


def _known(name, mods):
    """The longest prefix of ``name`` that is one of nbsim's modules (or None)."""
    while name and name not in mods:
        name = name.rpartition(".")[0]
    return name or None


def import_graph():
    """{module: set of nbsim modules it imports}."""
    mods = _modules()
    graph = {m: set() for m in mods}
    for mod, path in mods.items():
        is_pkg = path.name == "__init__.py"
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            targets = []
            if isinstance(node, ast.Import):
                targets = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom):
                if node.level:
                    parts = mod.split(".")[: len(mod.split(".")) - (node.level - int(is_pkg))]
                    base = ".".join(parts + ([node.module] if node.module else []))
                else:
                    base = node.module or ""
                targets = [f"{base}.{a.name}" for a in node.names]
            for t in targets:
                t = _known(t, mods) if t.split(".")[0] == PKG else None
                if t and t != mod:
                    graph[mod].add(t)
    # importing a.b.c runs a.b's __init__ first (the root package's is lazy: PEP 562)
    for mod, deps in graph.items():
        for t in list(deps):
            parent = t.rpartition(".")[0]
            while parent and parent != PKG:
                if parent != mod and not mod.startswith(parent + "."):
                    deps.add(parent)
                parent = parent.rpartition(".")[0]
    return graph


def cycles(graph):
    """The strongly connected components of more than one module (Tarjan, iterative)."""
    index, low, on_stack, stack, out = {}, {}, set(), [], []
    counter = 0
    for root in graph:
        if root in index:
            continue
        work = [(root, iter(sorted(graph[root])))]
        index[root] = low[root] = counter
        counter += 1
        stack.append(root)
        on_stack.add(root)
        while work:
            v, it = work[-1]
            w = next(it, None)
            if w is not None:
                if w not in index:
                    index[w] = low[w] = counter
                    counter += 1
                    stack.append(w)
                    on_stack.add(w)
                    work.append((w, iter(sorted(graph[w]))))
                elif w in on_stack:
                    low[v] = min(low[v], index[w])
                continue
            work.pop()
            if work:
                low[work[-1][0]] = min(low[work[-1][0]], low[v])
            if low[v] == index[v]:
                comp = []
                while True:
                    w = stack.pop()
                    on_stack.discard(w)
                    comp.append(w)
                    if w == v:
                        break
                if len(comp) > 1:
                    out.append(sorted(comp))
    return out


def test_the_checker_sees_a_cycle():
    g = {"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}
    assert cycles(g) == [["a", "b", "c"]]
    assert cycles({"a": {"b"}, "b": set()}) == []


def test_the_graph_reads_lazy_and_relative_imports():
    g = import_graph()
    # nbsim.cli.main dispatches to the dataset front end inside a function
    assert "nbsim.cli.dataset" in g["nbsim.cli.main"]
    # "from ..errors import ConfigError" in a subpackage
    assert "nbsim.errors" in g["nbsim.geometry.crystal"]
    assert "nbsim.config" in g["nbsim.plan"]


def test_no_import_cycle():
    found = cycles(import_graph())
    assert not found, "import cycles among nbsim's modules: " + "; ".join(
        " <-> ".join(c) for c in found)
