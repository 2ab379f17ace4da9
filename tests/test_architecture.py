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


# The public keyword API's convenience functions: each builds the setting and options objects
# once and passes them on, so a user writes linpath.path(model, a, b, data, grid=50, bn=...).
KEYWORD_CONVENIENCES = {"api/lines.py:path", "api/planes.py:plane", "api/planes.py:random_plane"}
PUBLIC_CLASSES = {"train/keeper.py:__init__"}  # linpath.Keeper(run_dir, model, total_steps, keep=...)
MAX_PARAMETERS = 10


def wide_functions(source: str, where: str) -> list[str]:
    """Functions of `source` taking more than MAX_PARAMETERS parameters (self and cls not
    counted, *args and **kwargs counted once each), as where:name count."""
    found = []
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
            a = node.args
            names = [x.arg for x in a.posonlyargs + a.args + a.kwonlyargs]
            count = len(names) + bool(a.vararg) + bool(a.kwarg) - (names[:1] in (["self"], ["cls"]))
            if count > MAX_PARAMETERS:
                found.append(f"{where}:{node.name} {count}")
    return found


def test_no_function_takes_more_than_ten_parameters():
    planted = "def f(a, b, c, d, e, f, g, h, i, j, k): pass\nclass C:\n    def m(self, a, b, c, d, e, f, g, h, i, j): pass\n"
    assert wide_functions(planted, "x.py") == ["x.py:f 11"]
    allowed = KEYWORD_CONVENIENCES | PUBLIC_CLASSES
    found = []
    for file in source_modules().values():
        where = file.relative_to(SRC / "linpath").as_posix()
        found += [w for w in wide_functions(file.read_text(), where) if w.rpartition(" ")[0] not in allowed]
    assert found == []


# run-folder names written outside io/rundir.py on purpose: the report template shipped as
# package data, and the label a spec's reader puts in its messages
LAYOUT_EXCEPTIONS = {("report/html.py", "report.html"), ("config/spec.py", "spec.json"),
                     ("config/external.py", "spec.json")}  # fmt: skip


def docstrings(tree: ast.AST) -> set[int]:
    kinds = (ast.Module, ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)
    return {
        id(n.body[0].value)
        for n in ast.walk(tree)
        if isinstance(n, kinds) and n.body and isinstance(n.body[0], ast.Expr)
        and isinstance(n.body[0].value, ast.Constant)
    }  # fmt: skip


def layout_names() -> set[str]:
    """Every name RunDir and OutDir join onto a folder (the right side of `/` in io/rundir.py),
    f-strings' fixed text included: the run folder's files and folders."""
    names = set()
    for node in ast.walk(ast.parse((SRC / "linpath" / "io" / "rundir.py").read_text())):
        if isinstance(node, ast.BinOp) and isinstance(node.op, ast.Div):
            right = node.right
            parts = right.values if isinstance(right, ast.JoinedStr) else [right]
            names |= {p.value for p in parts if isinstance(p, ast.Constant) and isinstance(p.value, str)}
    return {n.strip("-/") for n in names if len(n.strip("-/")) > 2 and not n.startswith(".")}


def layout_uses(source: str, names: set[str]) -> list[str]:
    """String constants of `source` (docstrings left out) that name a run-folder file (a name
    with a dot: spec.json, metrics.csv) or join a run-folder name onto a path (`x / "figures"`)."""
    tree = ast.parse(source)
    skip = docstrings(tree)
    joined = {
        id(part)
        for n in ast.walk(tree)
        if isinstance(n, ast.BinOp) and isinstance(n.op, ast.Div)
        for part in ([n.right] if not isinstance(n.right, ast.JoinedStr) else n.right.values)
    }
    found = []
    for n in ast.walk(tree):
        if isinstance(n, ast.Constant) and isinstance(n.value, str) and id(n) not in skip:
            text = n.value.strip().strip("/")
            last = text.rpartition("/")[2]
            if last in names and ("." in last or id(n) in joined or "/" in text):
                found.append(text)
    return found


def test_only_rundir_names_the_files_of_a_run_folder():
    names = layout_names()
    assert {"spec.json", "metrics.csv", "figures", "report.html", "instability.csv", "DONE"} <= names
    planted = '"""writes metrics.csv"""\nx = root / "figures"\ny = "summary.csv"\nz = "figures"'
    assert sorted(layout_uses(planted, names)) == ["figures", "summary.csv"]
    found = []
    for file in source_modules().values():
        where = file.relative_to(SRC / "linpath").as_posix()
        if where != "io/rundir.py":
            found += [
                f"{where}: {n}"
                for n in layout_uses(file.read_text(), names)
                if (where, n) not in LAYOUT_EXCEPTIONS
            ]
    assert found == []
