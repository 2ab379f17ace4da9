"""The package's shape: no import cycles anywhere (imports inside functions counted), the root
package imported by no module of its own, the layers of pyproject.toml, no function over 60 lines.

The layer contracts themselves run as `lint-imports` in CI; this test checks what they cannot
(cycles inside a layer, function-level imports read from the source itself), so a cycle fails
the suite too."""

from __future__ import annotations

import ast
from pathlib import Path

import grimp

SRC = Path(__file__).resolve().parents[1] / "src"
MAX_FUNCTION_LINES = 60


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


def source_modules() -> dict[str, Path]:
    """Every module of the package: dotted name -> file."""
    out = {}
    for file in sorted((SRC / "linpath").rglob("*.py")):
        parts = file.relative_to(SRC).with_suffix("").parts
        out[".".join(parts[:-1] if parts[-1] == "__init__" else parts)] = file
    return out


def imports_of(name: str, file: Path, known: set[str]) -> set[str]:
    """The package's modules that `name` imports anywhere in its source, functions included:
    `from a import b` is an import of a.b when that is a module, else of a (so `from linpath
    import x` of a non-module x counts as importing the root package)."""
    found = set()
    package = name if file.name == "__init__.py" else name.rpartition(".")[0]
    for node in ast.walk(ast.parse(file.read_text())):
        if isinstance(node, ast.Import):
            found |= {a.name for a in node.names}
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                base = ".".join(
                    package.split(".")[: len(package.split(".")) - node.level + 1] + ([base] if base else [])
                )
            found |= {f"{base}.{a.name}" if f"{base}.{a.name}" in known else base for a in node.names}
    return {m for m in found if m in known and m != name}


def source_graph() -> dict[str, set[str]]:
    modules = source_modules()
    return {name: imports_of(name, file, set(modules)) for name, file in modules.items()}


def test_the_source_graph_sees_function_level_imports():
    edges = source_graph()
    assert "linpath.runs.stages" in edges["linpath.cli.train"]  # imported inside run()
    assert "linpath.api" in edges["linpath"]  # the root's lazy __getattr__


def test_no_import_cycle():
    edges = source_graph()
    assert cycles(edges) == []
    assert cycles({m: w - {"linpath"} for m, w in module_graph().items()}) == []  # grimp agrees


def test_no_module_imports_the_root_package():
    """`from linpath import x` (x not a module) or `import linpath` inside the package would import
    the root, whose lazy API imports api: a cycle by a count that includes function-level imports."""
    importers = sorted(m for m, w in source_graph().items() if "linpath" in w and m != "linpath.__main__")
    assert importers == []


def private_imports(file: Path) -> list[str]:
    """`from linpath.x import _name`: one module reaching into another's private names."""
    found = []
    for node in ast.walk(ast.parse(file.read_text())):
        if isinstance(node, ast.ImportFrom) and (node.module or "").startswith("linpath"):
            found += [
                f"{file.name}: {node.module}.{a.name}"
                for a in node.names
                if a.name[:1] == "_" and a.name[:2] != "__"
            ]
    return found


def test_no_module_imports_another_modules_private_names():
    assert [f for file in source_modules().values() for f in private_imports(file)] == []


def long_functions(file: Path) -> list[str]:
    tree = ast.parse(file.read_text())
    return [
        f"{file.name}:{node.name} {node.end_lineno - node.lineno + 1}"
        for node in ast.walk(tree)
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef))
        and node.end_lineno - node.lineno + 1 > MAX_FUNCTION_LINES
    ]


def test_no_function_is_over_60_lines():
    assert [f for file in source_modules().values() for f in long_functions(file)] == []


def test_import_chain_is_shallow():
    # __main__ down to errors: no longer than one module per layer of pyproject.toml's 13
    assert depth(module_graph()) <= 14
