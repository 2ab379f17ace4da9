"""CSV tables with a header; floats written with repr, which reads back to the same number."""

from __future__ import annotations

import csv
import io
from pathlib import Path

import numpy as np

from linpath.errors import LinpathError
from linpath.io.files import atomic_write_text


def csv_text(columns: list[str], rows) -> str:
    """A CSV table with a header; rows are lists (in column order) or dicts."""
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(columns)
    for row in rows:
        cells = [row.get(c, "") for c in columns] if isinstance(row, dict) else row
        writer.writerow([repr(float(v)) if isinstance(v, (float, np.floating)) else v for v in cells])
    return out.getvalue()


def write_csv(path: Path, columns: list[str], rows) -> None:
    atomic_write_text(path, csv_text(columns, rows))


def import_pandas():
    """pandas, an optional dependency: imported only by the functions that return DataFrames."""
    try:
        import pandas
    except ImportError:
        raise LinpathError("DataFrames need pandas: pip install 'linpath[pandas]' (pandas>=1.5)") from None
    return pandas


def csv_frame(text: str, **columns):
    """A DataFrame of CSV text, its types inferred as pandas.read_csv does for a file; `columns`
    are inserted first (e.g. setting="...")."""
    pd = import_pandas()
    frame = pd.read_csv(io.StringIO(text))
    for i, (name, value) in enumerate(columns.items()):
        if name not in frame.columns:
            frame.insert(i, name, value)
    return frame


def read_csv_rows(path: Path) -> list[dict]:
    with open(path, newline="") as f:
        return list(csv.DictReader(f))
