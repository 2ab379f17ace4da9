"""Words that stay true: every file path and every `linpath` flag that the README, docs/,
benchmarks/README.md or a docstring of src/ names must exist, so a rename or a removed option
fails here instead of leaving a reader with a dead reference."""

from __future__ import annotations

import ast
import re
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
PACKAGE = REPO / "src" / "linpath"
PATH = re.compile(r"(?<![\w./<-])((?:[\w.-]+/)+[\w-]+\.(?:py|md|sh|ipynb|toml|txt|js|html))(?![\w/])")
FLAG = re.compile(r"(?<![\w-])(--[a-z][a-z0-9-]*)")
COMMAND = re.compile(r"\blinpath ([a-z][a-z-]+)\b((?:(?!linpath )[^`\n|;&#'])*)")  # a quote ends a command
SCRIPT = re.compile(r"\b((?:benchmarks|examples|docs/results|tests)/[\w/-]+\.(?:py|sh))\b([^`\n|;&]*)")
# flags of other tools that the pages quote (pip, pytest, torchrun, make, git)
OTHER_TOOLS = {
    "--nproc-per-node",
    "--nproc_per_node",
    "--no-cache",
    "--upgrade",
    "--index-url",
    "--extra-index-url",
}


def texts() -> dict[str, str]:
    """The pages and docstrings read, by where they are."""
    found = {str(f.relative_to(REPO)): f.read_text() for f in pages()}
    for file in sorted(PACKAGE.rglob("*.py")):
        tree = ast.parse(file.read_text())
        for node in ast.walk(tree):
            if isinstance(node, (ast.Module, ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
                if doc := ast.get_docstring(node):
                    found[f"{file.relative_to(REPO)}:{getattr(node, 'name', '')}"] = doc
    return found


def pages() -> list[Path]:
    return [REPO / "README.md", *sorted((REPO / "docs").glob("*.md")), REPO / "benchmarks" / "README.md"]


def exists(path: str, where: str) -> bool:
    """Whether `path` names a file: from the repository, the package, tests/, or the folder of
    the page or module that names it."""
    own = (REPO / where.split(":")[0]).parent
    bases = [REPO, PACKAGE, REPO / "tests", own, own.parent]
    return any((base / path).exists() for base in bases)


# files of other projects that benchmarks/README.md quotes (the peer library's sources)
ELSEWHERE = {"loss_landscapes/main.py", "metrics/sl_metrics.py"}


def dead_paths(text: str, where: str) -> list[str]:
    named = [p for p in PATH.findall(text) if not p.startswith("path/to/") and p not in ELSEWHERE]
    return [p for p in named if not exists(p, where)]


def parser_flags() -> dict[str, set[str]]:
    from linpath.cli import build_parser

    parser = build_parser()
    sub = next(a for a in parser._actions if a.__class__.__name__ == "_SubParsersAction")
    return {name: {o for a in p._actions for o in a.option_strings} for name, p in sub.choices.items()}


def dead_flags(text: str, commands: dict[str, set[str]]) -> list[str]:
    """Flags after `linpath CMD` that CMD does not take, flags after a script that the script does
    not define, and quoted flags (`--x`) that no command or script takes."""
    scripts = {p: (REPO / p).read_text() for p in SCRIPT_FILES}
    known = set().union(*commands.values()) | OTHER_TOOLS | {"--help"}
    dead = []
    for line in text.splitlines():
        for cmd, rest in COMMAND.findall(line):
            if cmd in commands:
                dead += [
                    f"linpath {cmd} {f}" for f in FLAG.findall(rest) if f not in commands[cmd] | {"--help"}
                ]
        for script, rest in SCRIPT.findall(line):
            source = scripts.get(script, "")
            dead += [f"{script} {f}" for f in FLAG.findall(rest) if f"{f}" not in source]
        for flag in re.findall(r"`(--[a-z][a-z0-9-]*)", line):
            if flag not in known and not any(flag in s for s in scripts.values()):
                dead.append(flag)
    return dead


SCRIPT_FILES = [
    str(p.relative_to(REPO))
    for folder in ("benchmarks", "examples", "tests", "docs/results")
    for p in sorted((REPO / folder).glob("*"))
    if p.suffix in (".py", ".sh") and p.name != Path(__file__).name
]


def test_the_checks_find_planted_dead_words():
    commands = {"sweep": {"--points", "--grid"}}
    assert dead_paths("see `src/linpath/api/nowhere.py` and `engine/evaluator.py`", "README.md") == [
        "src/linpath/api/nowhere.py"
    ]
    assert dead_flags("linpath sweep RUN --points 5 --precision bf16", commands) == [
        "linpath sweep --precision"
    ]
    assert dead_flags("use `--grid` or `--nonsense`", commands) == ["--nonsense"]


@pytest.fixture(scope="module")
def pages_and_docstrings() -> dict[str, str]:
    return texts()


BARE = re.compile(r"(?<![\w./<-])([\w-]+\.(?:py|sh|md|ipynb))(?![\w/])")
PLACEHOLDERS = {"file.py", "m.py", "pythia_tokenizer.py"}  # a user's own files in the help and docs


def dead_names(text: str, known: set[str]) -> list[str]:
    """Bare file names (`tables.py`) that name no file of the repository."""
    return [n for n in BARE.findall(text) if n not in known | PLACEHOLDERS]


def dead_dotted(text: str) -> list[str]:
    """Dotted names (`linpath.sweep.paths_tables.rebuild_tables`) that do not import."""
    import importlib

    dead = []
    for name in set(re.findall(r"\b(linpath(?:\.[A-Za-z_][A-Za-z0-9_]*)+)", text)):
        parts = name.split(".")
        for i in range(len(parts), 0, -1):
            try:
                obj = importlib.import_module(".".join(parts[:i]))
                for attr in parts[i:]:
                    obj = getattr(obj, attr)
                break
            except (ImportError, AttributeError):
                continue
        else:
            dead.append(name)
    return dead


def test_every_named_file_exists(pages_and_docstrings):
    known = {
        p.name for d in ("src", "tests", "benchmarks", "examples", "docs") for p in (REPO / d).rglob("*")
    }
    assert dead_names("see api.py and paths_tables.py", known) == ["api.py"]
    assert dead_dotted("linpath.sweep.paths_tables.rebuild_tables, linpath.sweep.merge.PATH_COLUMNS") == [
        "linpath.sweep.merge.PATH_COLUMNS"
    ]
    dead = []
    for where, text in pages_and_docstrings.items():
        dead += [
            f"{where}: {p}" for p in dead_paths(text, where) + dead_names(text, known) + dead_dotted(text)
        ]
    assert dead == []


def test_every_named_flag_exists(pages_and_docstrings):
    commands = parser_flags()
    dead = [
        f"{where}: {f}" for where, text in pages_and_docstrings.items() for f in dead_flags(text, commands)
    ]
    assert dead == []
