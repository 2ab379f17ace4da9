"""Where a replicate was trained: replicate-<r>/provenance.json, written when it finishes.

Replicates of one run can be trained on different machines (one per GPU lease, one per cluster
job) and combined by `linpath merge`; the report then says where each was made. The file holds
the device's name and type, the torch, CUDA, linpath and Python versions and the date. Runs made
before it existed have none: their origin reads "not recorded", with the torch version of the
run's spec.json (or, in a merged study, of the source run's, recorded in merged.json).
"""

from __future__ import annotations

import datetime
import json
import platform

import torch

from linpath._version import __version__
from linpath.errors import LinpathError
from linpath.io.files import atomic_write_text
from linpath.io.jsonfile import read_json
from linpath.io.rundir import RunDir


def cpu_name() -> str:
    """The CPU's model name (/proc/cpuinfo, else platform.processor()), or "cpu"."""
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    name = line.partition(":")[2].strip()
                    if name:
                        return name
    except OSError:
        pass
    return platform.processor().strip() or "cpu"


def device_facts(device: torch.device, processes: int = 1) -> dict:
    """The facts provenance.json records for training on `device` (by `processes` ranks)."""
    cuda = device.type == "cuda"
    return {
        "device": torch.cuda.get_device_name(device) if cuda else cpu_name(),
        "device_type": device.type,
        "processes": processes,
        "torch": torch.__version__,
        "cuda": torch.version.cuda if cuda else None,
        "linpath": __version__,
        "python": platform.python_version(),
        "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
    }


def write_provenance(run: RunDir, r: int, facts: dict) -> None:
    atomic_write_text(run.provenance(r), json.dumps(facts, indent=2) + "\n")


def _json_object(path) -> dict | None:
    """The JSON object in `path`, or None when it is absent or not one (a damaged file is not
    worth failing a report over: its replicate reads as "not recorded")."""
    try:
        d = read_json(path) if path.is_file() else None
    except LinpathError:
        return None
    return d if isinstance(d, dict) else None


def read_provenance(run: RunDir, r: int) -> dict | None:
    """Replicate r's provenance.json, or None when it has none (made before it was recorded)."""
    return _json_object(run.provenance(r))


def recorded_versions(run: RunDir, r: int) -> dict:
    """For a replicate without provenance.json: the versions block of the spec.json it was
    trained under: in a merged study its source's (merged.json), else the run's own ({} if none)."""
    merged = _json_object(run.merged_record)
    if merged is not None:
        sources = merged.get("sources")
        for source in sources if isinstance(sources, list) else []:
            held = source.get("replicates") if isinstance(source, dict) else None
            if isinstance(held, list) and r in held:
                versions = source.get("versions")
                return versions if isinstance(versions, dict) else {}
        return {}
    return spec_versions(run) or {}


def spec_versions(run: RunDir) -> dict | None:
    """The versions block of the run's spec.json (what it was set up with), or None."""
    versions = (_json_object(run.spec_path) or {}).get("versions")
    return versions if isinstance(versions, dict) else None
