"""The committed run on a local mirror of a checkpoint grid (docs/checkpoint_grids.md): the
tables, figures, report and audit of docs/results/grid_mirror/, no weights.

    PYTHONPATH=src python docs/results/grid_mirror/make.py          # about 5 minutes on 2 CPU cores

examples/tiny_pythia_grid.py trains its two seeds (a 190,000-parameter GPT-NeoX, 600 steps each,
saved at the paper's grid as revisions step0 ... step600) and plants three defects (--plant);
then the command line, as a user runs it:
    linpath import MIRROR --replicate-pattern 'MIRROR-seed{r}' --out RUNS
    linpath audit RUN                                                   (audit.txt)
    linpath sweep RUN --task causal-lm --data valid.txt --tokenizer bytes --seq-len 64 --allow-findings
    linpath report RUN
The work folder's path is written MIRROR in the published files.
"""

from __future__ import annotations

import argparse
import importlib.util
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

HERE = Path(__file__).resolve().parent
REPO = HERE.parents[2]


def example():
    spec = importlib.util.spec_from_file_location(
        "tiny_pythia_grid", REPO / "examples" / "tiny_pythia_grid.py"
    )
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def linpath(*argv: str) -> str:
    """One linpath command, run as a user runs it; its output (exit codes 0 and 1 of the audit)."""
    done = subprocess.run([sys.executable, "-m", "linpath", *argv], capture_output=True, text=True)
    if done.returncode not in (0, 1):
        raise SystemExit(f"linpath {' '.join(argv)} failed: {done.stderr.strip()}")
    return done.stdout


def run_all(work: Path, points: int) -> Path:
    base, seed1 = example().build(work / "mirror", steps=600, seeds=2)
    example().plant(base, seed1)
    linpath("import", str(base), "--replicate-pattern", f"{base}-seed{{r}}", "--out", str(work / "runs"))
    run = next((work / "runs").glob("grid-*"))
    (work / "audit.txt").write_text(linpath("audit", str(run)))
    text = work / "mirror" / "valid.txt"
    linpath("sweep", str(run), "--task", "causal-lm", "--data", str(text), "--tokenizer", "bytes", "--seq-len", "64",
            "--points", str(points), "--allow-findings", "--quiet")  # fmt: skip
    linpath("report", str(run))
    return run


def publish(run: Path, work: Path) -> None:
    """report.md, report.html, grid.json, audit.txt and results/ (no PDFs), MIRROR for the work folder."""
    if HERE.joinpath("results").exists():
        shutil.rmtree(HERE / "results")
    shutil.copytree(run / "results", HERE / "results", ignore=shutil.ignore_patterns("*.pdf"))
    for src, name in ((run / "report.md", "report.md"), (run / "report.html", "report.html"),
                      (run / "grid.json", "grid.json"), (work / "audit.txt", "audit.txt")):  # fmt: skip
        text = src.read_text().replace(str((work / "mirror").resolve()), "MIRROR").replace(str(work), "WORK")
        (HERE / name).write_text(text)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--points", type=int, default=100, help="points per path (default 100, the paper's)")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        publish(run_all(work, args.points), work)
    print(f"published into {HERE}")


if __name__ == "__main__":
    main()
