"""The stages as functions: create/open a run, train its replicates, sweep, report.

The CLI is a thin layer over these; each stage reads what the previous one left on disk, so
each can be run alone, re-run, or resumed.
"""

from __future__ import annotations

import contextlib
import math
import sys
from dataclasses import replace
from pathlib import Path

import linpath.data as datasets
from linpath.analysis.audit import AuditCache, audit_notes, audit_run, duplicates_refusal
from linpath.analysis.coverage import incomplete_text
from linpath.analysis.curves import REPLICATE_COLUMNS, SUMMARY_COLUMNS, load_curves, metric_rows, settings_of
from linpath.analysis.decisions import (
    DEFAULT_DELTA,
    decision_lines,
    decision_rows,
    heights_from_curves,
    write_decisions,
)
from linpath.analysis.figures import all_figures
from linpath.analysis.grid_audit import GridAudit, grid_audit, unread_note
from linpath.analysis.intervals import summary_rows
from linpath.analysis.layers import LAYER_COLUMNS, layer_figure, layer_rows
from linpath.analysis.verdicts import verdicts
from linpath.config.external import is_external
from linpath.config.presets import claims_of, figure2_steps_of
from linpath.config.schedule import Schedule
from linpath.config.spec import Spec, build_model, read_spec, write_spec
from linpath.engine.params import layer_specs
from linpath.errors import LinpathError
from linpath.io.rundir import RunDir
from linpath.io.tables import write_csv
from linpath.models import has_batchnorm
from linpath.report.html import setting_data, write_html
from linpath.report.markdown import Section, describe, run_line, write_report
from linpath.report.origins import origins_sentence
from linpath.runtime import tensorboard as tb
from linpath.runtime.device import resolve_device
from linpath.runtime.distributed import World
from linpath.runtime.provenance import device_facts, write_provenance
from linpath.sweep.external import check_same_data, external_source
from linpath.sweep.grid_sweep import GridData, sweep_grid
from linpath.sweep.grid_sweep import check_same_data as check_same_text
from linpath.sweep.paths_tables import rebuild_tables
from linpath.sweep.run import SweepOptions, run_sweep
from linpath.sweep.setting import SweepSetting, parse_key
from linpath.train.log import read_log
from linpath.train.together import train_replicates


def open_run(spec: Spec, out: str | Path = "runs") -> RunDir:
    """The run folder for `spec`, created if new; an existing one is reused (and its
    replicate count raised if more are asked for). The spec's schedule is checked first, so a
    spec that cannot train leaves no folder behind."""
    Schedule.of(spec, datasets.info(spec.data.dataset).num_train_examples)
    run = RunDir(Path(out) / spec.run_name)
    if run.spec_path.exists():
        existing = read_spec(run)
        if existing.replicates >= spec.replicates:
            return run
    write_spec(run, spec)
    return run


def train(
    spec: Spec,
    out: str | Path = "runs",
    data_root=None,
    device: str = "cpu",
    progress: bool = True,
    world: World = World(),
    tensorboard: bool = False,
    only: list[int] | None = None,
) -> RunDir:
    """Train every replicate not yet finished: together, as batched matrix products, where the
    model is small (train/together.py); else, and under torchrun, one replicate at a time.
    `tensorboard` switches the run's TensorBoard scalars on (runtime/tensorboard.py). `only`
    trains just those replicates (one per machine, say, combined later by `linpath merge`); the
    spec's replicate count is raised to cover them."""
    if only:
        _check_replicate_ids(only)
        spec = replace(spec, replicates=max(spec.replicates, max(only) + 1))
    if tensorboard and world.is_main:
        tb.require()  # before anything is written
    run = open_run(spec, out) if world.is_main else RunDir(Path(out) / spec.run_name)
    if tensorboard and world.is_main:
        tb.enable(run.root)
    world.barrier()  # the run folder exists before any rank reads it
    replicates = sorted(set(only)) if only else range(spec.replicates)
    if world.broadcast(all(run.done_marker(r).exists() for r in replicates)):
        return run
    source = datasets.load(spec.data.dataset, data_root, image_size=spec.data.image_size)
    with run.lock(f"train-rank{world.rank}"):
        if world.is_main:
            for r in replicates:
                run.remove_stale_temporaries(run.replicate_dir(r))
        unfinished = [r for r in replicates if not run.done_marker(r).exists()]
        try:
            train_replicates(
                spec, run, replicates, source, device=world.device(device), progress=progress, world=world
            )
        except BaseException:
            if world.is_main:  # the replicates that finished before the failure; never masking it
                with contextlib.suppress(Exception):
                    record_provenance(run, unfinished, world.device(device), world.size)
            raise
        if world.is_main:
            record_provenance(run, unfinished, world.device(device), world.size)
    return run


def record_provenance(run: RunDir, replicates: list[int], device: str, processes: int = 1) -> None:
    """provenance.json (where it was trained) for each of `replicates` that has finished and has
    none yet; replicates finished by an earlier call are left alone (they may have been made
    elsewhere)."""
    todo = [r for r in replicates if run.done_marker(r).exists() and not run.provenance(r).exists()]
    if todo:
        facts = device_facts(resolve_device(device), processes)
        for r in todo:
            write_provenance(run, r, facts)


def _check_replicate_ids(only: list[int]) -> None:
    bad = [r for r in only if isinstance(r, bool) or not isinstance(r, int) or r < 0]
    if bad:
        raise LinpathError(f"--replicate takes replicate numbers >= 0, got {bad[0]!r}")


def sweep(run_dir: str | Path, setting: SweepSetting, options: SweepOptions = SweepOptions()) -> RunDir:
    """Evaluate every unfinished path; under torchrun the items are shared among the ranks
    and rank 0 rebuilds the tables once all are done. The run's kept states are audited first
    (analysis/audit.py): duplicate states are refused unless options.allow_duplicates. An
    external run is evaluated with options.inputs (--model and --data, sweep/external.py)."""
    run, world, inputs = RunDir(run_dir), options.world, options.inputs
    if run.is_grid:  # revisions of a checkpoint grid: the streamed evaluator, its own audit
        return sweep_grid_run(run_dir, setting, options)
    if setting.streamed:
        raise LinpathError(
            f"{setting.key}: a run of kept checkpoints is swept preloaded, for classification; "
            "--task and --se-target are for checkpoint grids ('linpath import hf://...') and 'linpath path'"
        )
    spec = read_spec(run, external_ok=inputs is not None)
    if inputs is not None:
        source = external_source(run, spec, setting, inputs)
    else:
        source = datasets.load(spec.data.dataset, options.data_root, image_size=spec.data.image_size)
    cache = AuditCache(run)
    refusal = world.broadcast(_audit_gate(run, cache, options.allow_duplicates) if world.is_main else None)
    if refusal:
        raise LinpathError(refusal)
    with run.lock(f"sweep-rank{world.rank}"):
        if world.is_main:  # other ranks write nothing before rank 0 has listed the work
            run.remove_stale_temporaries(run.setting_dir(setting.key))
            if inputs is not None:
                check_same_data(run, setting.key, inputs)
        run_sweep(run, setting, source, replace(options, device=world.device(options.device)))
    world.barrier()
    if world.is_main:
        rebuild_tables(run)
        cache.save()  # only now: a refused sweep writes nothing
    return run


def _audit_gate(run: RunDir, cache: AuditCache, allow_duplicates: bool) -> str | None:
    """The sweep's refusal of duplicate states (None: none, or allowed with a warning)."""
    refusal = duplicates_refusal(run, audit_run(run, cache=cache, save=False))
    if refusal and allow_duplicates:
        print(f"linpath: warning: {refusal.split('; pass --allow-duplicates')[0]}", file=sys.stderr)
        return None
    return refusal


# --- a checkpoint grid's sweep (`linpath import hf://...`): its own audit, the streamed evaluator


def _say_warning(message: str) -> None:
    print(f"linpath: warning: {message}", file=sys.stderr, flush=True)


def grid_audit_gate(run: RunDir, audit: GridAudit, allow_findings: bool) -> str | None:
    """The sweep's one-line refusal of a grid with findings (None: none, or allowed: warnings)."""
    if note := unread_note(audit):
        _say_warning(note)
    if not audit.findings:
        return None
    if allow_findings:
        for finding in audit.findings:
            _say_warning(f"{finding.kind}: {finding.message}")
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
        refusal = grid_audit_gate(run, audit, options.allow_findings)
    refusal = world.broadcast(refusal)
    if refusal:
        raise LinpathError(refusal)
    with run.lock(f"sweep-rank{world.rank}"):
        if world.is_main:
            run.remove_stale_temporaries(run.setting_dir(setting.key))
            check_same_text(run, setting.key, data)
        world.barrier()
        sweep_grid(run, setting, data, replace(options, device=world.device(options.device)))
    world.barrier()
    if world.is_main:
        rebuild_tables(run)
        audit.cache.save()  # only now: a refused sweep writes nothing
    return run


def layer_settings(run_dir: str | Path, setting: SweepSetting, hold: str = "end") -> dict[str, SweepSetting]:
    """The per-layer mode's settings: `setting` with each layer's parameter subset (see
    engine.params.layer_specs), keyed by the layer's name."""
    if setting.params:
        raise LinpathError("--per-layer chooses the parameters itself; leave out --params")
    spec = read_spec(RunDir(run_dir))
    model = build_model(spec, datasets.info(spec.data.dataset).num_classes, seed=0)
    return {layer: replace(setting, params=p, hold=hold) for layer, p in layer_specs(model).items()}


def sweep_layers(
    run_dir: str | Path, setting: SweepSetting, hold: str = "end", options: SweepOptions = SweepOptions()
) -> Path | None:
    """The per-layer mode: one sweep per layer (each its own setting), then layers.csv
    (mean ± std over replicates per layer, t, x) and a figure per starting t in
    layers/<setting>-hold<end|start>/ (rank 0's; other ranks return None)."""
    run = RunDir(run_dir)
    by_layer = layer_settings(run_dir, setting, hold)
    for layer_setting in by_layer.values():
        sweep(run_dir, layer_setting, options)
    if not options.world.is_main:
        return None
    curves = {layer: load_curves(run, s.key) for layer, s in by_layer.items()}
    write_csv(run.layers_csv(setting.key, hold), LAYER_COLUMNS, layer_rows(curves))
    spec = read_spec(run)
    claims = claims_of(spec.preset)
    title = claims.setting if claims else spec.preset
    steps = sorted({t for c in curves.values() for t in c.steps})
    for t in steps:
        layer_figure(curves, t, title, run.layers_figures(setting.key, hold), hold)
    return run.layers_dir(setting.key, hold)


def final_accuracies(run: RunDir, replicates: list[int]) -> list[float]:
    """Each replicate's last logged test accuracy."""
    logs = [read_log(run, r) for r in replicates]
    return [float(log[-1]["test_accuracy"]) for log in logs if log]


def other_split(run: RunDir, setting: str):
    """The same sweep setting on the other split (test <-> train), when it was swept."""
    fields = parse_key(setting)
    twin = {"test": "train", "train": "test"}.get(fields.split) if fields else None
    if twin is None:
        return None
    key = twin + setting[len(fields.split) :]
    return load_curves(run, key) if key in settings_of(run) else None


def report_setting(
    run: RunDir, spec: Spec, setting: str, metric: str = "rise_over_start", delta: float = DEFAULT_DELTA
) -> Section:
    """One sweep setting's tables, figures, verdicts and barrier decisions (equivalence margin
    `delta`), in results/<setting>/."""
    curves = load_curves(run, setting)
    rows = metric_rows(curves)
    summary = summary_rows(curves, rows)
    write_csv(run.metrics_csv(setting), REPLICATE_COLUMNS, rows)
    write_csv(run.summary_csv(setting), SUMMARY_COLUMNS, summary)
    claims = claims_of(spec.preset)
    title = claims.setting if claims else spec.preset
    other = other_split(run, setting)
    batchnorm = None if is_external(spec) else has_batchnorm(spec.model.model)  # for the titles
    figures = all_figures(
        curves,
        summary,
        title,
        run.figures_dir(setting),
        figure2_steps_of(spec.preset),
        metric,
        other,
        batchnorm,
    )
    accuracies = final_accuracies(run, curves.replicates)
    steps = f"{spec.total_steps}it" if is_external(spec) else spec.train.training_steps
    judged = verdicts(curves, summary, claims, accuracies, steps)
    return Section(curves, summary, judged, figures, barrier_decisions(run, curves, delta))


def barrier_decisions(run: RunDir, curves, delta: float) -> list[str]:
    """decisions.csv of a setting (analysis/decisions.py) and its lines for the report; withheld,
    and the table removed, where the setting is incomplete or has no t every replicate holds."""
    table = run.decisions_csv(curves.setting)
    missing = incomplete_text(curves)
    try:
        if missing:
            raise LinpathError(f"the setting is incomplete ({missing})")
        rows = decision_rows(heights_from_curves(curves), delta=delta)
    except LinpathError as e:
        table.unlink(missing_ok=True)
        return [f"- Barrier decisions withheld: {e}."]
    write_decisions(table, rows)
    return decision_lines(rows)


def report(
    run_dir: str | Path,
    metric: str = "rise_over_start",
    settings: list[str] | None = None,
    tensorboard: bool = False,
    delta: float | None = None,
) -> Path:
    """report.md with one section per sweep setting (the paper's first), and report.html, the
    same numbers interactive; each setting's tables and figures in results/<setting>/, so no
    setting's report overwrites another's. With `tensorboard` (or a run that asked for it in
    training) the path metrics also go to TensorBoard. The audit's findings (analysis/audit.py:
    missing, duplicate, non-finite states, ...) are the report's notes. `delta` is the barrier
    decisions' equivalence margin ("no barrier larger than delta", in error units; default
    analysis.decisions.DEFAULT_DELTA)."""
    delta = DEFAULT_DELTA if delta is None else _check_delta(delta)
    run = RunDir(run_dir)
    spec = read_spec(run, external_ok=True)
    if tensorboard:
        tb.enable(run.root)
    rebuild_tables(run)
    settings = settings_of(run) if settings is None else settings
    if not settings:
        raise LinpathError(
            f"{run.root} has no finished sweep to report; run 'linpath sweep {run.root}' first"
        )
    sections = [report_setting(run, spec, s, metric, delta) for s in settings]
    claims = claims_of(spec.preset)
    title, notes = claims.setting if claims else spec.preset, audit_notes(run)
    path = write_report(run, spec, title, sections, notes)
    pages = [
        setting_data(
            s.curves, s.summary, s.verdicts + s.decisions, describe_with_origins(run, s.curves), metric
        )
        for s in sections
    ]
    write_html(run, title, run_line(run, spec, sections), pages, notes)
    for section in sections:
        board_path_metrics(run, section)
    return path


def _check_delta(delta: float) -> float:
    if not (isinstance(delta, (int, float)) and math.isfinite(delta) and delta > 0):
        raise LinpathError(f"--delta must be a positive number (error units), got {delta}")
    return float(delta)


def describe_with_origins(run: RunDir, curves) -> str:
    """report.html's description of a setting: report.md's, and where each replicate was made."""
    return f"{describe(curves)}; {origins_sentence(run, curves.replicates)}"


def board_path_metrics(run: RunDir, section: Section) -> None:
    """The setting's path metrics (replicate means) against t on TensorBoard, if the run asked."""
    if folder := tb.board(run.root, f"paths-{section.curves.setting}"):
        series = [(f"{row['quantity']}/{row['metric']}", row["t"], row["mean"]) for row in section.summary]
        tb.replace_board(folder, series)


__all__ = ["open_run", "train", "sweep", "report", "LinpathError"]
