"""The committed run on a local mirror of a checkpoint grid (docs/checkpoint_grids.md): the
tables, figures, report and audit of docs/results/grid_mirror/, no weights.

    PYTHONPATH=src python docs/results/grid_mirror/make.py          # about 5 minutes on 2 CPU cores

examples/tiny_pythia_grid.py trains its two seeds (a 190,000-parameter GPT-NeoX, 600 steps each,
saved at the paper's grid as revisions step0 ... step600) and plants three defects (--plant);
then, through linpath's own functions (the command line is `linpath import MIRROR
--replicate-pattern 'MIRROR-seed{r}'`, `linpath audit`, `linpath sweep RUN --task causal-lm
--data valid.txt --tokenizer bytes --seq-len 64 --allow-findings`, `linpath report`): import,
audit (audit.txt), sweep on the paper's 100 points, report. The work folder's path is written
MIRROR in the published files.
"""

from __future__ import annotations

import argparse
import importlib.util
import shutil
import tempfile
from pathlib import Path

import torch

HERE = Path(__file__).resolve().parent
REPO = HERE.parents[2]


def example():
    spec = importlib.util.spec_from_file_location(
        "tiny_pythia_grid", REPO / "examples" / "tiny_pythia_grid.py"
    )
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def run_all(work: Path, points: int) -> Path:
    from linpath.analysis.audit import audit_run
    from linpath.data.stream import TextBlocks, bytes_tokenizer
    from linpath.runs import stages
    from linpath.runs.grid_sweep import sweep_grid_run
    from linpath.runs.import_grid import import_grid
    from linpath.sweep.grid_sweep import GridData
    from linpath.sweep.grids import Grid
    from linpath.sweep.setting import SweepSetting

    base, seed1 = example().build(work / "mirror", steps=600, seeds=2)
    example().plant(base, seed1)
    run, notes = import_grid(base, work / "runs", replicate_pattern=str(base) + "-seed{r}")
    findings = audit_run(run)
    lines = [f"{f.kind}: {f.message}" for f in findings] + [f"audit: {len(findings)} findings"]
    (work / "audit.txt").write_text("\n".join(lines) + "\n")
    data = GridData(
        TextBlocks(work / "mirror" / "valid.txt", bytes_tokenizer, seq_len=64, batch_size=8), "bytes"
    )
    sweep_grid_run(
        run.root, SweepSetting(grid=Grid(points=points)), data, allow_findings=True, progress=False
    )
    stages.report(run.root)
    return run.root


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
    torch.set_num_threads(1)
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        publish(run_all(work, args.points), work)
    print(f"published into {HERE}")


if __name__ == "__main__":
    main()
