"""Where each replicate of a sweep setting was made, in words, for report.md and report.html.

The facts come from each replicate's provenance.json (runtime/provenance.py); a replicate made
before those were recorded reads "where: not recorded", with the torch version its spec.json
names when it names one.
"""

from __future__ import annotations

from linpath.errors import LinpathError
from linpath.io.grid_record import GridRecord
from linpath.io.rundir import RunDir
from linpath.runtime.provenance import read_provenance, recorded_versions


def grid_origin(run: RunDir, r: int) -> str:
    """Where a checkpoint grid's replicate comes from: its source and its revisions."""
    try:
        grid = GridRecord.read(run.grid_record).replicates.get(r)
    except LinpathError as e:
        return f"revisions: {e}"
    if grid is None:
        return "revisions: not in grid.json"
    missing = f", {len(grid.missing)} missing" if grid.missing else ""
    return f"{len(grid.revisions)} revisions of {grid.source}{missing} (commits and sha256 in grid.json)"


def grid_sentence(run: RunDir) -> str:
    """The report's first words on a checkpoint grid: its source and selection."""
    try:
        record = GridRecord.read(run.grid_record)
    except LinpathError as e:
        return f"a checkpoint grid ({e})"
    first = record.replicates[min(record.replicates)]
    where = "Hub" if record.kind == "hub" else "local mirror"
    return f"the checkpoint grid {first.source} ({where} revisions, selection `{record.selection}`)"


def origin_text(run: RunDir, r: int) -> str:
    """e.g. "NVIDIA H200 (cuda), torch 2.13.0, CUDA 12.8, trained 2026-12-02"."""
    if run.is_grid:
        return grid_origin(run, r)
    facts = read_provenance(run, r)
    if facts is None:
        torch_version = recorded_versions(run, r).get("torch")
        return "where: not recorded" + (f" (torch {torch_version}, from spec.json)" if torch_version else "")
    parts = [f"{facts.get('device', 'unknown device')} ({facts.get('device_type', '?')})"]
    if (facts.get("processes") or 1) > 1:
        parts[0] += f" × {facts['processes']} processes"
    parts.append(f"torch {facts.get('torch', '?')}")
    if facts.get("cuda"):
        parts.append(f"CUDA {facts['cuda']}")
    if facts.get("date"):
        parts.append(f"trained {str(facts['date'])[:10]}")
    return ", ".join(parts)


def origin_lines(run: RunDir, replicates: list[int]) -> list[str]:
    """report.md's lines: how many replicates, then a table row per replicate."""
    lines = [
        f"Replicates: {len(replicates)}; where each was made:",
        "",
        "| replicate | where |",
        "|---:|---|",
    ]
    lines += [f"| {r} | {origin_text(run, r).replace('|', '/')} |" for r in replicates]
    return [*lines, ""]


def origins_sentence(run: RunDir, replicates: list[int]) -> str:
    """The same in one sentence (report.html's setting description)."""
    return "made on: " + "; ".join(f"replicate {r}: {origin_text(run, r)}" for r in replicates)
