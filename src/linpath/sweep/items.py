"""Checking a finished sweep item file before it is used (by the sweep, to decide what is done,
by the report and by the merge, before its rows enter paths.csv), and writing one.

An item file sweep/<key>/r<r>-t<t>.csv is valid when it parses as a table with the sweep's
columns, has at least one row, every row names its (r, t), its split, BN policy and precision
agree with the setting (given, or read from the folder's key: setting.parse_key), every number
parses and lies in its range (error in [0, 1], loss >= 0: a cross-entropy; +inf and NaN are what
a diverging path records; standard errors >= 0), its `examples` are the setting's (N for a
subset -nN, every row the same; a whole split's item has no standard error, a subset's has), its
x values are the grid's: for a fixed grid exactly its positions (no row missing or extra); for
an adaptive grid (whose further x depend on the data) every x within the grid's range and its
initial uniform points included; and its bytes are those recorded in its digest
(sweep/<key>/digests/r<r>-t<t>.sha256, written with it), so an edit by hand is found. A file
without a digest (written by an older linpath, or by hand on purpose) is checked on its numbers.
"""

from __future__ import annotations

import csv
import hashlib
import json
import math
from pathlib import Path

from linpath.io.files import atomic_write, atomic_write_text
from linpath.io.rundir import RunDir
from linpath.io.tables import csv_text
from linpath.sweep.grids import MAX_POINTS, Grid
from linpath.sweep.setting import KeyFields, SweepSetting, parse_key

PATH_COLUMNS = [
    "replicate",
    "t",
    "x",
    "split",
    "bn",
    "examples",
    "precision",
    "loss",
    "error",
    "loss_se",
    "error_se",
]
OLD_COLUMNS = PATH_COLUMNS[:9]  # item files written before standard errors were recorded
# a causal language model's further quantities (sweep/grid_sweep.py), after the sweep's columns
LM_COLUMNS = ["perplexity", "bits_per_byte", "tokens"]
LM_PATH_COLUMNS = PATH_COLUMNS + LM_COLUMNS
HEADERS = (PATH_COLUMNS, OLD_COLUMNS, LM_PATH_COLUMNS)
MAX_ITEM_BYTES = 512 * MAX_POINTS  # a row of 11 numbers and names is under 300 bytes


def format_rows(rows: list[list], columns: list[str] = PATH_COLUMNS) -> str:
    """An item file's (or a setting table's) text."""
    return csv_text(columns, rows)


def digest(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def write_item(run: RunDir, setting: str, r: int, t: int, rows: list[list]) -> Path:
    """Write the item file of (r, t) under the sweep setting `setting`, with its digest."""
    path = run.item_file(setting, r, t)
    write_item_bytes(path, format_rows(rows).encode())
    return path


def write_item_bytes(path: Path, data: bytes) -> None:
    """An item file (or another table kept for reuse, e.g. a spawn's instability.csv) and its
    digest, each written atomically, the digest first: a kill between the two leaves a file its
    digest does not match (or none at all), never a trusted one."""
    atomic_write_text(RunDir.item_digest(path), digest(data) + "\n")
    atomic_write(path, lambda f: f.write(data))


def item_problem(path: Path, setting: SweepSetting | None = None) -> str | None:
    """Why the item file at `path` cannot be used (None when it can), checked against
    `setting`, else against what its folder's key says of the setting; its numbers first, then
    its digest (a hand edit that broke a number is named by what it broke)."""
    path = Path(path)
    item = RunDir.item_of(path)
    if item is None:
        return "its name is not r<replicate>-t<step>.csv"
    try:
        if path.stat().st_size > MAX_ITEM_BYTES:  # read nothing of a file no sweep could write
            return f"it is {path.stat().st_size} bytes, more than an item of {MAX_POINTS} points can hold"
        data = path.read_bytes()
    except OSError as e:
        return f"unreadable ({e.strerror or e})"
    rows = _read_rows(data)
    if isinstance(rows, str):
        return rows
    return _rows_problem(rows, item, _expected(setting, path.parent.name)) or digest_problem(path, data)


def _rows_problem(rows: list[dict], item: tuple[int, int], expected: KeyFields | None) -> str | None:
    """Why an item table's rows are not one finished path of the setting `expected`."""
    xs = []
    for number, d in enumerate(rows, 2):
        problem = _row_problem(d, number, item, expected) or _range_problem(d, number, expected)
        if problem:
            return problem
        xs.append(float(d["x"]))
    if len({d["examples"] for d in rows}) > 1 and not _stopped(expected):
        return "its rows hold different numbers of examples"
    if any(b <= a for a, b in zip(xs, xs[1:])):
        return "its x values are not strictly increasing (a row repeated or out of order)"
    if expected is None or expected.grid is None:
        return None
    return _grid_problem(xs, expected.grid, expected.grid_exact)


def _expected(setting: SweepSetting | None, key: str) -> KeyFields | None:
    """What the rows must agree with: the given setting exactly, else the key's reading."""
    return parse_key(key) if setting is None else KeyFields.of(setting)


def _read_rows(data: bytes) -> list[dict] | str:
    """The file's rows as dicts, or why it cannot be read as an item table."""
    try:
        text = data.decode()
    except UnicodeDecodeError as e:
        return f"unreadable ({e})"
    if not text.strip():
        return "empty"
    if not text.endswith("\n"):
        return "cut short (no newline at its end)"
    rows = list(csv.reader(text.splitlines()))
    if rows[0] not in HEADERS:
        return "its header is not the sweep's columns"
    if len(rows) < 2:
        return "no rows"
    for number, row in enumerate(rows[1:], 2):
        if len(row) != len(rows[0]):
            return f"line {number} has {len(row)} fields, expected {len(rows[0])}"
    return [dict(zip(rows[0], row)) for row in rows[1:]]


def digest_problem(path: Path, data: bytes) -> str | None:
    """Why the file's bytes are not those recorded when it was written (write_item_bytes; None:
    they are, or no digest was recorded)."""
    record = RunDir.item_digest(path)
    try:
        recorded = record.read_text().strip()
    except FileNotFoundError:
        return None
    except (OSError, UnicodeDecodeError) as e:
        return f"its digest {record} is unreadable ({getattr(e, 'strerror', None) or e})"
    if recorded != digest(data):
        return f"it was changed after it was written (its sha256 is not the one in {record})"
    return None


def _row_problem(d: dict, number: int, item: tuple[int, int], expected: KeyFields | None) -> str | None:
    """Why one row cannot be used: another item's, a non-number, another setting's."""
    r, t = item
    try:
        if (int(d["replicate"]), int(d["t"])) != (r, t):
            return f"line {number} is for replicate {d['replicate']}, t={d['t']}, not r{r}, t={t}"
        int(d["examples"])
        values = [float(d[c]) for c in ("x", "loss", "error", "loss_se", "error_se", *LM_COLUMNS) if c in d]
    except ValueError:
        return f"line {number} holds a non-number"
    if not math.isfinite(values[0]):
        return f"line {number} has x = {d['x']}"
    for column in ("split", "bn", "precision"):
        wanted = getattr(expected, column) if expected is not None else None
        if wanted is not None and d[column] != wanted:
            return f"line {number} has {column} {d[column]!r}, the folder's setting {wanted!r}"
    return None


def _range_problem(d: dict, number: int, expected: KeyFields | None) -> str | None:
    """Why a row's numbers cannot be an evaluation's: an error outside [0, 1], a negative loss (a
    cross-entropy; +inf and NaN are what a diverging path records), a negative standard error,
    examples other than the setting's."""
    loss, error = float(d["loss"]), float(d["error"])
    if not (loss >= 0 or math.isnan(loss)):
        return f"line {number} has loss {d['loss']} (a cross-entropy is >= 0)"
    if not (0 <= error <= 1 or (math.isnan(error) and math.isnan(loss))):
        return f"line {number} has error {d['error']} (a fraction of the examples, in [0, 1])"
    ses = [(c, float(d[c])) for c in ("loss_se", "error_se") if d.get(c)]
    bad = next((c for c, v in ses if not (v >= 0 or math.isnan(v)) or math.isinf(v)), None)
    if bad:
        return f"line {number} has {bad} {d[bad]} (a standard error is finite and >= 0)"
    examples = int(d["examples"])
    wanted = expected.eval_examples if expected is not None else None
    if examples < 1 or (wanted and examples != wanted):
        said = f", the setting's subset -n{wanted}" if wanted else ""
        return f"line {number} has examples {examples}{said}"
    if wanted == 0 and any(v > 0 for _, v in ses) and not _streamed(expected):
        return (
            f"line {number} has a standard error ({d['loss_se']}): a subset's item, and this setting "
            "evaluates the whole split"
        )
    return None


def _stopped(expected: KeyFields | None) -> bool:
    """Whether the setting stops each point by a standard-error target (its points' examples vary)."""
    return expected is not None and expected.se_target is not None


def _streamed(expected: KeyFields | None) -> bool:
    """Whether the setting is the streamed evaluator's, whose whole-split points carry standard errors."""
    return _stopped(expected) or (expected is not None and expected.task != "classification")


def item_examples(path: Path) -> int:
    """The examples a valid item file's paths were evaluated on (its first row's)."""
    with open(path, newline="") as f:
        return int(next(csv.DictReader(f))["examples"])


def recorded_examples(run: RunDir, setting: str) -> int | None:
    """The examples of a whole-split setting as its data record says (an external run's
    sweep/<key>/data.json); None for a subset's key, or without a readable record."""
    fields = parse_key(setting)
    if fields is None or fields.eval_examples:
        return None
    try:
        examples = json.loads(run.setting_data(setting).read_text()).get("examples")
    except (OSError, ValueError, AttributeError):
        return None
    return examples if isinstance(examples, int) and not isinstance(examples, bool) else None


def odd_examples(items: list[Path], recorded: int | None = None) -> dict[Path, str]:
    """The valid item files of one setting whose examples differ from the setting's, and why:
    the setting's are `recorded` (an external run's data.json) where known, else the largest
    the items hold (a subset never holds more examples than the whole split)."""
    held = {path: item_examples(path) for path in items}
    if not held or any(_stopped(parse_key(path.parent.name)) for path in held):
        return {}  # a stopping rule: each point read as many examples as it needed
    expected = recorded if recorded is not None else max(held.values())
    return {
        path: f"it holds {n} examples, the setting's other items {expected}"
        for path, n in held.items()
        if n != expected
    }


def _close(a: float, b: float, exact: bool) -> bool:
    return a == b if exact else math.isclose(a, b, rel_tol=1e-5, abs_tol=1e-9)


def _grid_problem(xs: list[float], grid: Grid, exact: bool) -> str | None:
    """Why the rows' x are not the grid's (fixed grids: its positions exactly; adaptive: its range
    and its initial points)."""
    expected = grid.xs()
    if grid.kind == "adaptive":
        low, high = grid.start, grid.stop
        slack = 0.0 if exact else 1e-5 * (high - low)
        if not all(low - slack <= x <= high + slack for x in xs):
            return f"an x lies outside the grid's range [{low:g}, {high:g}]"
        missing = [x for x in expected if not any(_close(x, y, exact) for y in xs)]
        if missing:
            return f"{len(missing)} of the grid's initial points are missing (first: x = {missing[0]!r})"
        return None
    if len(xs) != len(expected):
        return f"{len(xs)} rows, the grid has {len(expected)} points"
    bad = next((i for i, (x, y) in enumerate(zip(xs, expected)) if not _close(x, y, exact)), None)
    if bad is not None:
        return f"x = {xs[bad]!r} at row {bad + 1} is not the grid's {expected[bad]!r}"
    return None


def result_rows(r: int, t: int, setting, xs, results, extra: tuple[str, ...] = ()) -> list[list]:
    """An item file's rows: the sweep's columns (PATH_COLUMNS) from the engine's results at xs,
    then the attributes `extra` of each result (a language model's perplexity, bits_per_byte and
    token count: LM_COLUMNS)."""
    rows = []
    for x, res in zip(xs, results):
        row = [r, t, repr(float(x)), setting.split, setting.bn, res.examples, setting.precision]
        row += [repr(res.loss), repr(res.error), repr(res.loss_se), repr(res.error_se)]
        rows.append(row + [_cell(getattr(res, name)) for name in extra])
    return rows


def _cell(value):
    return repr(float(value)) if isinstance(value, float) else value
