"""`linpath path`'s folder: the path job of resolved inputs (api/resolve.py) run once, and
written as paths.csv (the sweep's columns), setting.json (what decided the numbers and what was
read), metrics.json and path.png/.pdf. The same record serves the preloaded and the streamed
job; it is read off the curve, not decided again."""

from __future__ import annotations

import dataclasses
import json
import os
from pathlib import Path

from linpath.api.curve import PathCurve
from linpath.api.lines import evaluate_path
from linpath.api.resolve import PathArgs, PathInputs, describe_file, path_inputs
from linpath.errors import LinpathError
from linpath.io.files import atomic_write_text
from linpath.io.rundir import OutDir
from linpath.runtime.progress import Progress
from linpath.sweep.grids import Grid
from linpath.sweep.setting import SweepSetting

UNITS = {"causal-lm": "sequence", "classification": "example"}  # what a standard error is over


def write_path_folder(
    inputs: PathInputs, out: str | os.PathLike, write: bool = True
) -> tuple[PathCurve, list]:
    """Evaluate the path of `inputs` and write its folder `out` (not with write=False: a torchrun
    rank other than 0). Returns the curve and the files written."""
    folder = OutDir(out)
    if folder.root.exists() and not folder.root.is_dir():
        raise LinpathError(f"--out {folder.root} is a file, not a folder")
    grid = inputs.setting.grid
    report, close = points_progress(inputs.progress, None if grid.kind == "adaptive" else len(grid.xs()))
    options = dataclasses.replace(inputs.options, on_points=report)
    try:
        curve = evaluate_path(inputs.model, inputs.start, inputs.end, inputs.data, inputs.setting, options)
    finally:
        close()
    if not write:
        return curve, []
    record = path_record(inputs, curve)
    title = (
        f"start: {describe_file(inputs.start, inputs.end)}\nend: {describe_file(inputs.end, inputs.start)}\n"
    )
    title += f"{record['model']}, {record['setting']}"
    return curve, write_outputs(folder, curve, record, title)


def points_progress(enabled: bool, total: int | None):
    """A callback counting evaluated points (runtime/progress.py); `total` None for adaptive
    grids. Returns (callback, close)."""
    if not enabled:
        return None, lambda: None
    bar = Progress("path", total, "net")
    of = f"/{total}" if total else ""
    return lambda n: bar.update(n, f"path: {bar.done + n}{of} points"), bar.close


def path_record(inputs: PathInputs, curve: PathCurve) -> dict:
    """setting.json: what decided the numbers (the setting, whole), what the inputs were, and
    how much was read."""
    s, names = inputs.setting, inputs.names
    seq = f"-seq{names['seq_len']}" if names["seq_len"] else ""
    read = curve.point_examples if curve.point_examples is not None else [curve.examples]
    population = curve.population
    if population is None and s.se_target is None:
        population = int(max(read))
    return {
        "setting": s.key_with_split(curve.split + seq),
        "start": str(inputs.start),
        "end": str(inputs.end),
        "model": names["model"],
        "data": names["data"],
        "split": curve.split,
        "normalization": names["normalization"],
        "task": curve.task,
        "grid": s.grid.key,
        "points": len(curve.x),
        "precision": s.precision,
        "eval_examples": curve.examples,
        "population": population,
        "bn": s.bn,
        "bn_batches": s.bn_batches if s.bn == "recompute" else None,
        "bn_data": names["bn_data"],
        "aligned": inputs.options.align_end,
        "params": s.params or None,
        "hold": s.hold if s.params else None,
        "seq_len": names["seq_len"],
        "tokenizer": names["tokenizer"],
        "se_target": s.se_target,
        "min_examples": s.min_examples if s.se_target is not None else None,
        "se_unit": UNITS.get(curve.task, "batch"),
        "examples_min": int(min(read)),
        "examples_max": int(max(read)),
        "tokens": int(curve.quantities["tokens"].sum()) if "tokens" in (curve.quantities or {}) else None,
        "sweep_setting": s.as_record(),
        "curvature": dataclasses.asdict(inputs.options.curvature) if inputs.options.curvature else None,
    }


def write_outputs(folder: OutDir, curve: PathCurve, record: dict, title: str) -> list[Path]:
    """The folder's files, each written atomically."""
    files = [curve.to_csv(folder.paths_csv)]
    atomic_write_text(folder.setting_json, json.dumps(record, indent=2) + "\n")
    metrics = {**record, "examples": curve.examples, **curve.metrics()}
    if curve.spectra:
        metrics["spectra"] = {repr(x): values for x, values in curve.spectra.items()}
    atomic_write_text(folder.metrics_json, json.dumps(metrics, indent=2) + "\n")
    files += [folder.setting_json, folder.metrics_json]
    fig = curve.plot(title=title)
    for figure in folder.path_figures:
        fig.savefig(figure, dpi=150, bbox_inches="tight")
        files.append(figure)
    return files


def summary_lines(curve: PathCurve, record: dict) -> list[str]:
    """What `linpath path` prints: the setting, what was read, the normalization, the metrics."""
    lo, hi = record["examples_min"], record["examples_max"]
    read = f"{lo}" if lo == hi else f"{lo} to {hi}"
    of = f" of {record['population']}" if record["population"] is not None else ""
    lines = [
        f"setting: {record['setting']} ({record['points']} points on {read}{of} {record['split']} "
        f"{record['se_unit']}s)",
        f"normalization: {record['normalization']}",
    ]
    if record["bn_data"]:
        lines.append(f"BatchNorm statistics recomputed from: {record['bn_data']}")
    subset = curve.point_examples is None and (record["population"] or 0) > record["eval_examples"]
    lines += curve.summary_lines(with_se=subset if curve.point_examples is None else None)
    for quantity, values in (curve.quantities or {}).items():
        if quantity != "tokens":
            lines.append(f"{quantity}: start {values[0]:.4f}, end {values[-1]:.4f}, max {values.max():.4f}")
    if curve.quantities and "curvature" in curve.quantities:
        lines.append(convexity_line(curve.x, curve.quantities["curvature"]))
    for x, s in (curve.spectra or {}).items():
        top = ", ".join(f"{v:.4g}" for v in s["eigenvalues"])
        lines.append(
            f"Hessian at x = {x:g}: top eigenvalues {top}; trace {s['trace']:.4g} ± {s['trace_se']:.2g}"
        )
    return lines


def convexity_line(x, curvature) -> str:
    """Where the loss is convex along the path (d²L/dx² ≥ 0) and where it is not."""
    concave = [float(v) for v, c in zip(x, curvature) if c < 0]
    if not concave:
        return f"convex along the whole path: d²L/dx² ≥ 0 at all {len(x)} points (min {min(curvature):.4g})"
    return (
        f"not convex at {len(concave)} of {len(x)} points: d²L/dx² < 0 from x = {concave[0]:g} to {concave[-1]:g} "
        f"(min {min(curvature):.4g})"
    )


def path_between_files(start, end, model=None, data=None, out="path-out", setting=None, points=None, **args):
    """`linpath path` from Python, for a user holding file names: `args` are PathArgs' fields
    (num_classes, key, output, data_root, device, bn_data, align, tokenizer, ...); `setting`
    a SweepSetting (default: `points` evenly spaced, 100). Returns (curve, files written)."""
    setting = setting or SweepSetting(grid=Grid(points=points or 100))
    inputs = path_inputs(PathArgs(str(start), str(end), model, data, **args), setting)
    return write_path_folder(inputs, out)
