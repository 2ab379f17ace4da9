"""benchmarks/gpu_check.sh --dry-run: the whole GPU check, on the CPU with a tiny configuration
(about 2.5 minutes on a 2-core CPU), so that it is known to run end to end before a GPU sees it."""

import json
import os
import subprocess
import sys

import pytest

from .conftest import REPO

STAGES = ["env", "cuda_tests", "sweep_bench", "train_bench", "train", "sweep", "report", "collect"]
FILES = [
    "timings.json",
    "env.json",
    "cuda_tests.log",
    "sweep_throughput.log",
    "train_throughput.log",
    "train.log",
    "sweep.log",
    "report.log",
    "run/spec.json",
    "run/paths.csv",
    "run/report.md",
    "run/replicate-0/train_log.csv",
    "run/results/test-interpolate-uniform3-fp32-n500/metrics.csv",
    "run/results/test-interpolate-uniform3-fp32-n500/summary.csv",
    "run/results/test-interpolate-uniform3-fp32-n500/figures/figure1.png",
]


@pytest.mark.slow
def test_gpu_check_dry_run_runs_end_to_end(tmp_path, data_root):
    out = tmp_path / "gpu-out"
    env = {**os.environ, "GPU_CHECK_PYTHON": sys.executable, "GPU_CHECK_WORK": str(tmp_path / "work")}
    done = subprocess.run(
        ["bash", str(REPO / "benchmarks" / "gpu_check.sh"), "--dry-run", str(out), str(data_root)],
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert done.returncode == 0, (done.stdout[-3000:], done.stderr[-3000:])
    assert [line.split()[1] for line in done.stdout.splitlines() if line.startswith("[gpu-check] ")][
        1:-1
    ] == STAGES
    for name in FILES:
        assert (out / name).is_file(), name
    timings = json.loads((out / "timings.json").read_text())
    assert timings["dry_run"] is True and timings["all_passed"] is True
    assert timings["exit_codes"] == dict.fromkeys(STAGES, 0)
    assert set(timings["seconds"]) == set(STAGES) and all(s >= 0 for s in timings["seconds"].values())
    assert {"gpu", "torch", "cuda"} <= set(timings)
    assert not list(out.rglob("*.pt"))  # no checkpoint was copied ...
    assert list((tmp_path / "work").rglob("*.pt"))  # ... although the run has them
    assert sum(f.stat().st_size for f in out.rglob("*") if f.is_file()) < 10 * 1024 * 1024
