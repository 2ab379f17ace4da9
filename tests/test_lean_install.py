"""`make mnist` installs linpath without the test extras (`pip install -e .`): the main job must
run without any of them. A short `linpath run` in a fresh interpreter in which every test
extra fails to import, as if not installed."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]

# the test extras of pyproject.toml -> the modules they install
MODULES = {
    "pytest": "pytest",
    "hypothesis": "hypothesis",
    "ruff": "ruff",
    "import-linter": "importlinter",
    "pandas": "pandas",
    "playwright": "playwright",
    "nbclient": "nbclient",
    "nbformat": "nbformat",
    "ipykernel": "ipykernel",
    "transformers": "transformers",
    "huggingface_hub": "huggingface_hub",
    "tensorboard": "tensorboard",
    "lightning": "lightning",
    "accelerate": "accelerate",
}


def extras_of_pyproject() -> list[str]:
    """Every test extra of pyproject.toml, by its distribution name."""
    tomllib = pytest.importorskip("tomllib")  # Python 3.11 on
    extras = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["optional-dependencies"]["test"]
    names = [e.split(";")[0].split("[")[0].split(">")[0].split("=")[0].split("<")[0].strip() for e in extras]
    return names


def test_every_test_extra_is_mapped_to_its_module():
    assert sorted(extras_of_pyproject()) == sorted(MODULES), "map each test extra to its module in MODULES"


@pytest.mark.slow
def test_the_main_job_runs_without_the_test_extras(tmp_path, data_root):
    blocked = sorted({MODULES[n] for n in extras_of_pyproject()} | {"lightning_fabric", "pytorch_lightning"})
    argv = ["run", "mnist_lenet_300_100", "--training-steps", "20it", "--points", "3", "--quiet"]
    argv += ["--data-root", str(data_root), "--out", str(tmp_path)]
    code = (
        f"import sys\nfor m in {blocked!r}: sys.modules[m] = None\n"
        f"from linpath.cli import main\nsys.exit(main({argv!r}))"
    )
    env = {**os.environ, "PYTHONPATH": str(REPO / "src"), "OMP_NUM_THREADS": "1"}
    done = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-2000:]
    (run,) = tmp_path.iterdir()
    assert (run / "report.md").is_file() and (run / "paths.csv").is_file()
