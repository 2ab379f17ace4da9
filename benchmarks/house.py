"""The shape of the house, for the restructure's before-and-after: rooms (linpath's top-level
packages and modules), arrows (room -> room imports, those inside functions included), floors
(the longest chain of arrows, counted in rooms), lines of src/, the longest parameter lists
(self and cls not counted) and file names that occur more than once.

    python benchmarks/house.py [SRC]          # default src/linpath of this checkout
"""

from __future__ import annotations

import ast
import collections
import functools
import sys
from pathlib import Path

IGNORED = {"__init__", "__main__", "_version"}


def room_of(module: str) -> str | None:
    parts = module.split(".")
    if parts[0] != "linpath" or len(parts) < 2 or parts[1] in IGNORED:
        return None
    return parts[1]


def module_name(src: Path, file: Path) -> str:
    rel = file.relative_to(src.parent).with_suffix("")
    return ".".join(rel.parts[:-1] if rel.name == "__init__" else rel.parts)


def imports_of(tree: ast.AST, module: str, is_package: bool) -> set[str]:
    found = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found |= {a.name for a in node.names}
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = module.split(".")[: len(module.split(".")) - node.level + (1 if is_package else 0)]
                base = ".".join(anchor + ([base] if base else []))
            found |= {f"{base}.{a.name}" for a in node.names} | {base}
    return found


def parameters(node) -> int:
    a = node.args
    names = [x.arg for x in a.posonlyargs + a.args + a.kwonlyargs]
    count = len(names) + bool(a.vararg) + bool(a.kwarg)
    return count - (1 if names and names[0] in ("self", "cls") else 0)


def main(src: Path) -> None:
    arrows, lines, widths, names = collections.defaultdict(set), 0, [], collections.Counter()
    files = sorted(src.rglob("*.py"))
    for file in files:
        text = file.read_text()
        lines += len(text.splitlines())
        names[file.name] += file.name != "__init__.py"
        module = module_name(src, file)
        tree = ast.parse(text)
        here = room_of(module)
        for target in imports_of(tree, module, file.name == "__init__.py"):
            there = room_of(target)
            if here and there and there != here:
                arrows[here].add(there)
        for node in ast.walk(tree):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                widths.append((parameters(node), f"{file.relative_to(src)}:{node.name}"))
    rooms = sorted({room_of(module_name(src, f)) for f in files} - {None})

    @functools.cache
    def height(room: str) -> int:
        return 1 + max((height(r) for r in arrows[room]), default=0)

    print(f"rooms: {len(rooms)} ({', '.join(rooms)})")
    print(f"floors: {max(height(r) for r in rooms)}")
    print(f"arrows: {sum(len(v) for v in arrows.values())}")
    print(f"lines of src: {lines} in {len(files)} files")
    print("longest parameter lists: " + ", ".join(f"{n} {w}" for n, w in sorted(widths, reverse=True)[:8]))
    print(
        "file names occurring more than once: " + ", ".join(f"{n} ({c})" for n, c in names.items() if c > 1)
    )


if __name__ == "__main__":
    main(Path(sys.argv[1]) if len(sys.argv) > 1 else Path(__file__).resolve().parents[1] / "src" / "linpath")
