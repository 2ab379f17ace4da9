"""The README's results come from the committed result files, never from memory."""

from __future__ import annotations

import importlib.util
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def _publish():
    spec = importlib.util.spec_from_file_location("publish", REPO / "docs" / "results" / "publish.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_the_readme_results_table_is_generated_from_docs_results():
    publish = _publish()
    assert publish.readme_table() in (REPO / "README.md").read_text()


def test_every_figure_the_readme_shows_exists():
    text = (REPO / "README.md").read_text()
    for target in [part.split(")")[0] for part in text.split("](")[1:]]:
        if target.endswith(".png"):
            assert (REPO / target).is_file(), target
