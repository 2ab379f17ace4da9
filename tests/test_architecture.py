"""The package's import graph: no cycles anywhere, and the layers of pyproject.toml hold.

The layer contracts themselves run as `lint-imports` in CI; this test checks what they cannot
(cycles inside a layer) with the same graph library, so a cycle fails the suite too."""

from __future__ import annotations

import grimp


def module_graph() -> dict[str, set[str]]:
    graph = grimp.build_graph("linpath")
    return {m: set(graph.find_modules_directly_imported_by(m)) for m in graph.modules}


def cycles(edges: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components with more than one module (Tarjan)."""
    index, low, stack, on_stack, found = {}, {}, [], set(), []

    def visit(v):
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in edges.get(v, ()):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for v in sorted(edges):
        if v not in index:
            visit(v)
    return found


def depth(edges: dict[str, set[str]]) -> int:
    """The longest chain of imports (modules on it), in an acyclic graph."""
    memo: dict[str, int] = {}

    def longest(v):
        if v not in memo:
            memo[v] = 1 + max((longest(w) for w in edges.get(v, ()) if w != "linpath"), default=0)
        return memo[v]

    return max(longest(v) for v in edges)


def test_cycle_finder_finds_a_planted_cycle():
    assert cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]
    assert depth({"a": {"b"}, "b": {"c"}, "c": set()}) == 3


def test_no_import_cycle():
    edges = module_graph()
    # the root package's lazy __getattr__ (linpath.path -> linpath.api) is not an import cycle
    edges = {m: {w for w in ws if w != "linpath"} for m, ws in edges.items()}
    assert cycles(edges) == []


def test_import_chain_is_shallow():
    # __main__ down to errors: no longer than one module per layer of pyproject.toml's 13
    assert depth(module_graph()) <= 14
