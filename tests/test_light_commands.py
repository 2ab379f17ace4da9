"""Commands that do no tensor work import no torch: `linpath presets`, `linpath --help` and every
`linpath CMD --help` (importing torch is most of their start-up time: 1.4 s of 1.7 s on the
2-core test machine). Checked in a fresh interpreter, by the modules loaded, not by a timing.
Before the light registries (config, data, models, engine/choices.py, runtime) every one of
these command lines imported torch, through linpath.config.spec."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

SRC = Path(__file__).resolve().parents[1] / "src"

# Runs each command line through linpath's main in one fresh interpreter and prints, per
# command line, its exit status and whether torch had been imported by then.
PROBE = """
import contextlib, io, json, sys
from linpath.cli import main
from linpath.cli.registry import commands
lines = [["presets"], ["--help"]] + [[c.name, "--help"] for c in commands()]
seen = []
for argv in lines:
    with contextlib.redirect_stdout(io.StringIO()):
        try:
            status = main(argv)
        except SystemExit as e:
            status = e.code
    seen.append({"argv": argv, "status": status, "torch": "torch" in sys.modules})
print(json.dumps(seen))
"""


def probe(code: str) -> list[dict]:
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(SRC), os.environ.get("PYTHONPATH", "")])}
    done = subprocess.run(
        [sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=120, check=True
    )
    return json.loads(done.stdout.strip().splitlines()[-1])


@pytest.mark.slow
def test_presets_and_every_help_import_no_torch():
    seen = probe(PROBE)
    assert len(seen) > 10  # presets, --help and each command's --help
    assert [s["argv"] for s in seen if s["status"] not in (0, None)] == []
    assert [s["argv"] for s in seen if s["torch"]] == []
