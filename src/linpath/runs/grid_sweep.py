"""`linpath sweep RUN --task causal-lm --data TEXT` on a checkpoint grid: the audit first, then the
items (sweep/grid_sweep.py), then the tables.

The grid is audited before anything is evaluated (analysis/grid_audit.py: the recorded hashes,
and the tensors of the revisions already local, or of every revision with fetch_audit): a grid
with findings is refused in one line naming the first, unless allow_findings (then each is a
warning, and the report lists them all). Under torchrun rank 0 audits and every rank learns the
verdict; rank 0 merges the tables once every rank is done.
"""

from __future__ import annotations

import dataclasses
import sys
from pathlib import Path

from linpath.analysis.grid_audit import GridAudit, grid_audit, unread_note
from linpath.errors import LinpathError
from linpath.io.rundir import RunDir
from linpath.sweep.grid_sweep import GridData, check_same_data, sweep_grid
from linpath.sweep.run import SweepOptions
from linpath.sweep.setting import SweepSetting
from linpath.sweep.tables import rebuild_tables


def _warn(message: str) -> None:
    print(f"linpath: warning: {message}", file=sys.stderr, flush=True)


def audit_gate(run: RunDir, audit: GridAudit, allow_findings: bool) -> str | None:
    """The sweep's one-line refusal of a grid with findings (None: none, or allowed: warnings)."""
    if note := unread_note(audit):
        _warn(note)
    if not audit.findings:
        return None
    if allow_findings:
        for finding in audit.findings:
            _warn(f"{finding.kind}: {finding.message}")
        return None
    first, n = audit.findings[0], len(audit.findings)
    more = f" (and {n - 1} more finding{'s' * (n > 2)})" if n > 1 else ""
    return (
        f"the audit of {run.root} found {first.kind}: {first.message}{more}; 'linpath audit {run.root}' "
        "lists every finding; pass --allow-findings to sweep anyway"
    )


def sweep_grid_run(run_dir: str | Path, setting: SweepSetting, options: SweepOptions) -> RunDir:
    """Audit, sweep and rebuild the tables of a grid run: options.inputs is its GridData (the
    text and tokenizer), options.allow_findings sweeps despite the audit's findings (each then
    a warning), options.fetch_audit downloads every revision to audit its tensors first."""
    run, world, data = RunDir(run_dir), options.world, options.inputs
    if not run.is_grid:
        raise LinpathError(
            f"{run.root} is not a checkpoint grid imported by revision (no {run.grid_record.name})"
        )
    if not isinstance(data, GridData):
        raise LinpathError(f"{run.root} is a checkpoint grid: give its evaluation text (--data, --tokenizer)")
    refusal, audit = None, None
    if world.is_main:
        audit = grid_audit(run, fetch=options.fetch_audit, save=False, **options.hub)
        refusal = audit_gate(run, audit, options.allow_findings)
    refusal = world.broadcast(refusal)
    if refusal:
        raise LinpathError(refusal)
    with run.lock(f"sweep-rank{world.rank}"):
        if world.is_main:
            run.remove_stale_temporaries(run.setting_dir(setting.key))
            check_same_data(run, setting.key, data)
        world.barrier()
        sweep_grid(run, setting, data, dataclasses.replace(options, device=world.device(options.device)))
    world.barrier()
    if world.is_main:
        rebuild_tables(run)
        audit.cache.save()  # only now: a refused sweep writes nothing
    return run
