"""The Python half of benchmarks/gpu_study.sh: argument checks, the replicate to train next,
the packed run folder and timings.json. Each subcommand prints one line on failure and exits 2.

    gpu_study.py check PRESET                 the preset's model (a CIFAR-10 preset), or one line why not
    gpu_study.py next-replicate RESULTS PRESET
    gpu_study.py pack RUN OUTDIR              OUTDIR/run.tar.gz: the run folder without checkpoints
    gpu_study.py timings OUTDIR WORK          timings.json from WORK/meta.json, WORK/stages.tsv and what the stages left
"""

from __future__ import annotations

import csv
import json
import os
import sys
import tarfile
import time
from pathlib import Path

MAX_FILES = 8  # what one lease may bring back
MAX_BYTES = 16 * 1024 * 1024  # per file
TAR_NAME = "run.tar.gz"
LEFT_OUT = (".pt", ".tmp", ".lock")  # checkpoints, resume files, half-written files, locks


class Refused(Exception):
    pass


def check_preset(name: str) -> str:
    from linpath.config.presets import preset
    from linpath.errors import LinpathError

    try:
        spec = preset(name)
    except LinpathError as e:
        raise Refused(str(e)) from None
    if spec.data.dataset != "cifar10":
        raise Refused(
            f"--preset {name}: the study trains the CIFAR-10 presets (cifar_resnet_20, cifar_vgg_16)"
        )
    return spec.model.model


def next_replicate(results: Path, preset: str) -> int:
    """The smallest R without a committed docs/results/gpu/<preset>/replicate-<R>/."""
    r = 0
    while (results / preset / f"replicate-{r}").exists():
        r += 1
    return r


def left_out(name: str) -> bool:
    base = os.path.basename(name)
    return base.endswith(LEFT_OUT) or ".tmp" in base or base.startswith(".") and base.endswith(".lock")


def pack(run: Path, out: Path) -> list[str]:
    """The run folder, without checkpoints, resume files or locks, as OUTDIR/run.tar.gz; checked."""
    target = out / TAR_NAME
    with tarfile.open(target, "w:gz") as tar:
        for path in sorted(run.rglob("*")):
            rel = path.relative_to(run.parent)
            if (
                path.is_file()
                and not left_out(path.name)
                and "checkpoints" not in path.relative_to(run).parts
            ):
                tar.add(path, arcname=str(rel), recursive=False)
    with tarfile.open(target) as tar:
        names = tar.getnames()
    bad = [n for n in names if n.endswith(".pt")]
    if bad:
        raise Refused(f"{target} holds checkpoints: {', '.join(bad[:3])}")
    check_outdir(out)
    return names


def check_outdir(out: Path) -> None:
    files = [p for p in out.rglob("*") if p.is_file()]
    if len(files) > MAX_FILES:
        raise Refused(f"{out} holds {len(files)} files, more than {MAX_FILES}")
    big = [p for p in files if p.stat().st_size >= MAX_BYTES]
    if big:
        raise Refused(
            f"{big[0]} is {big[0].stat().st_size / 2**20:.1f} MiB, not under {MAX_BYTES // 2**20} MiB"
        )


def _read_json(path: Path) -> dict:
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return {}


def _train_measured(run: Path | None, seconds: float | None) -> dict:
    """The training loop's own time (the log's last `seconds`: from the first step to the last
    epoch end, evaluations and saves included) and steps; start-up is the rest of the stage."""
    logs = sorted(run.glob("replicate-*/train_log.csv")) if run else []
    if not logs:
        return {}
    with open(logs[0], newline="") as f:
        rows = list(csv.DictReader(f))
    if not rows:
        return {}
    steps, loop = int(rows[-1]["iteration"]), float(rows[-1]["seconds"])
    out = {"steps": steps, "loop_s": loop, "ms_per_step": 1000 * loop / steps if steps else None}
    out["final_test_accuracy"] = float(rows[-1]["test_accuracy"])
    if seconds is not None:
        out["startup_s"] = round(seconds - loop, 1)
    return out


def _sweep_measured(run: Path | None, seconds: float | None) -> dict:
    rows = 0
    for path in run.glob("sweep/*/r*-t*.csv") if run else []:
        with open(path) as f:
            rows += max(0, sum(1 for _ in f) - 1)
    if not rows:
        return {}
    return {"networks": rows, "ms_per_network": 1000 * seconds / rows if seconds else None}


def _beside(measured: dict, floor: dict, key: str, floor_key: str) -> None:
    if measured.get(key) and floor.get(floor_key):
        measured[f"floor_{key}"] = floor[floor_key]
        measured[f"x_floor_{key}"] = round(measured[key] / floor[floor_key], 2)


def floor_summary(floor: dict, model: str) -> dict:
    """The floor figures of the study's model, in ms, beside which the stages are read."""
    m = floor.get("models", {}).get(model)
    if not m:
        return {}
    ms = lambda s: None if s is None else round(1000 * s, 4)  # noqa: E731
    step, net = m["train_step"], m["sweep_network"]
    return {
        "peak_tflops": {k: round(v / 1e12, 2) for k, v in floor["peak_flops"].items()},
        "launch_us": {
            k.removesuffix("_s"): None if v is None else round(1e6 * v, 2) for k, v in floor["launch"].items()
        },
        "forward_multiply_adds_per_image": m["forward_multiply_adds_per_image"],
        "train_step_kernels": m["train_step_kernels"],
        "train_ms_per_step": {
            "compute": ms(step["compute_s"]),
            "launch_eager": ms(step["launch_eager_s"]),
            "launch_graph": ms(step["launch_graph_s"]),
            "floor_graph": ms(step["floor_graph_s"]),
            "floor_eager": ms(step["floor_eager_s"]),
        },
        "sweep_network_kernels": m["sweep_network_kernels"],
        "sweep_ms_per_network": {
            "compute_bf16": ms(net["compute_s"]),
            "launch_eager": ms(net["launch_eager_s"]),
            "floor": ms(net["floor_s"]),
        },
        "train_protocol_floor_s": {k: round(v, 1) for k, v in m["train_protocol_floor_s"].items()},
        "sweep_protocol_floor_s": round(m["sweep_protocol_floor_s"], 1),
    }


def read_stages(path: Path) -> dict:
    """WORK/stages.tsv: one line per finished stage, name, exit code (or skip) and seconds."""
    stages = {}
    lines = path.read_text().splitlines() if path.exists() else []
    for line in lines:
        name, rc, seconds = line.split("\t")
        stages[name] = {
            "rc": None if rc == "skip" else int(rc),
            "seconds": float(seconds),
            "timed_out": rc in ("124", "137"),
        }
    return stages


def timings(out: Path, work: Path) -> dict:
    """timings.json: the environment, each stage's exit code and seconds, the floor, and the
    measured per-step and per-network figures beside the floor's."""
    meta = _read_json(work / "meta.json")
    stages = read_stages(work / "stages.tsv")
    seconds = {k: v["seconds"] for k, v in stages.items()}
    runs = sorted(p for p in (work / "runs").glob("*-*") if p.is_dir()) if (work / "runs").is_dir() else []
    run = runs[0] if runs else None
    floor = floor_summary(_read_json(out / "floor.json"), meta.get("model", ""))
    train = _train_measured(run, seconds.get("train"))
    sweep = _sweep_measured(run, seconds.get("sweep"))
    _beside(train, floor.get("train_ms_per_step", {}), "ms_per_step", "floor_graph")
    _beside(sweep, floor.get("sweep_ms_per_network", {}), "ms_per_network", "floor")
    doc = {
        **meta,
        **_read_json(work / "env.json"),
        "seconds": seconds,
        "exit_codes": {k: v["rc"] for k, v in stages.items()},
        "stages": stages,
        "all_passed": bool(stages) and all(v["rc"] == 0 for v in stages.values()),
        "skipped": [k for k, v in stages.items() if v["rc"] is None],
        "total_seconds": round(time.time() - meta.get("started", time.time()), 1),
        "floor": floor,
        "measured": {"train": train, "sweep": sweep},
        "run": run.name if run else None,
    }
    tmp = out / ".timings.json.tmp"
    tmp.write_text(json.dumps(doc, indent=2) + "\n")
    os.replace(tmp, out / "timings.json")
    return doc


def main(argv: list[str]) -> int:
    try:
        if argv[:1] == ["check"] and len(argv) == 2:
            print(check_preset(argv[1]))
        elif argv[:1] == ["next-replicate"] and len(argv) == 3:
            print(next_replicate(Path(argv[1]), argv[2]))
        elif argv[:1] == ["pack"] and len(argv) == 3:
            print("\n".join(pack(Path(argv[1]), Path(argv[2]))))
        elif argv[:1] == ["timings"] and len(argv) == 3:
            timings(Path(argv[1]), Path(argv[2]))
        else:
            raise Refused(f"usage: {__doc__.splitlines()[3].strip()} (and the other subcommands)")
    except Refused as e:
        print(f"gpu-study: {e}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
