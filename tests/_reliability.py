"""Recording the outcome of each fault and bad-input case, for docs/reliability.md.

When LINPATH_RELIABILITY_OUT names a file, record() appends one JSON line per case to it;
otherwise it does nothing. tests/reliability_report.py runs the suite with it set and turns
the lines into docs/reliability.md.
"""

from __future__ import annotations

import json
import os


def record(kind: str, case: str, outcome: str, **numbers) -> None:
    """kind: 'fault', 'bad-input', 'fuzz' or 'security'; outcome: what the tool did. The test
    file holding the case is recorded too (from pytest's PYTEST_CURRENT_TEST)."""
    out = os.environ.get("LINPATH_RELIABILITY_OUT")
    if not out:
        return
    test = os.environ.get("PYTEST_CURRENT_TEST", "").split("::")[0]
    fields = {"kind": kind, "case": case, "outcome": " ".join(str(outcome).split()), "file": test}
    line = json.dumps({**fields, **numbers})
    with open(out, "a") as f:
        f.write(line + "\n")
