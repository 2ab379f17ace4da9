"""benchmarks/gpu_study.sh, the one command per GPU lease: its dry run on the CPU end to end (the
replicate it picks, timings.json, the packed run folder without checkpoints, the size limits),
and bad arguments refused with one line."""

from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys
import tarfile

import pytest

from .conftest import REPO

SCRIPT = REPO / "benchmarks" / "gpu_study.sh"
STAGES = ["env", "floor", "train", "sweep", "report", "pack"]


def helper():
    spec = importlib.util.spec_from_file_location("gpu_study", REPO / "benchmarks" / "gpu_study.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def study(*args, env=None, timeout=900):
    return subprocess.run(
        ["bash", str(SCRIPT), *map(str, args)],
        env={**os.environ, "GPU_STUDY_PYTHON": sys.executable, **(env or {})},
        capture_output=True,
        text=True,
        timeout=timeout,
    )


@pytest.mark.slow
def test_the_dry_run_trains_the_next_replicate_and_packs_the_run(tmp_path, data_root):
    results, out, work = tmp_path / "results", tmp_path / "out", tmp_path / "work"
    (results / "cifar_resnet_20" / "replicate-0").mkdir(parents=True)  # replicate 0 is committed
    done = study(
        out, data_root, "--dry-run", env={"GPU_STUDY_RESULTS": str(results), "GPU_STUDY_WORK": str(work)}
    )
    assert done.returncode == 0, (done.stdout[-3000:], done.stderr[-3000:])
    lines = [line.split()[1] for line in done.stdout.splitlines() if line.startswith("[gpu-study] ")]
    assert lines[1:-1] == STAGES
    assert "cifar_resnet_20 replicate 1" in done.stdout
    timings = json.loads((out / "timings.json").read_text())
    assert (timings["dry_run"], timings["replicate"], timings["all_passed"]) == (True, 1, True)
    assert timings["exit_codes"] == dict.fromkeys(STAGES, 0) and {"gpu", "torch", "cuda"} <= set(timings)
    assert timings["floor"]["forward_multiply_adds_per_image"] == 40_813_184  # ResNet-20: ~41 M
    train, sweep = timings["measured"]["train"], timings["measured"]["sweep"]
    assert train["steps"] == 20 and train["floor_ms_per_step"] > 0 and train["x_floor_ms_per_step"] > 0
    assert sweep["networks"] == 2 * 3 and sweep["floor_ms_per_network"] > 0
    files = sorted(p.name for p in out.iterdir())
    assert files == ["floor.json", "logs.txt", "run.tar.gz", "timings.json"]
    assert all((out / f).stat().st_size < 16 * 2**20 for f in files)
    with tarfile.open(out / "run.tar.gz") as tar:
        names = tar.getnames()
    run = timings["run"]
    for name in ["spec.json", "replicate-1/train_log.csv", "replicate-1/DONE", "report.md", "paths.csv"]:
        assert f"{run}/{name}" in names, name
    items = [n for n in names if n.startswith(f"{run}/sweep/") and n.endswith(".csv")]
    assert len(items) == 2 and sum(n.endswith(".sha256") for n in names) == 2  # t = 0 and 16, with digests
    assert not [n for n in names if n.endswith(".pt") or "checkpoints" in n or "lock" in n]
    assert list(work.rglob("replicate-1/checkpoints/*.pt"))  # the run had them; the tar does not


def test_bad_arguments_fail_with_one_line(tmp_path, data_root):
    cases = {
        (): "expected OUTDIR DATA_ROOT",
        (tmp_path / "o", data_root, "--replicate", "one"): "--replicate takes a replicate number",
        (tmp_path / "o", data_root, "--budget", "9m"): "--budget takes whole seconds",
        (tmp_path / "o", data_root, "--colour"): "unknown option --colour",
        (tmp_path / "o", data_root, "--preset"): "--preset needs a value",
        (tmp_path / "o", tmp_path): "no cifar10/ under the data root",
    }
    for args, message in cases.items():
        done = study(*args, timeout=60)
        assert done.returncode == 2, args
        assert done.stderr.count("\n") == 1 and message in done.stderr, (args, done.stderr)
    assert not (tmp_path / "o").exists()


@pytest.mark.slow  # starts Python and imports torch
def test_an_unknown_preset_and_a_full_outdir_are_refused(tmp_path, data_root):
    done = study(tmp_path / "o", data_root, "--preset", "cifar_resnet_2000", timeout=120)
    assert (
        done.returncode == 2
        and done.stderr.count("\n") == 1
        and "unknown preset 'cifar_resnet_2000'" in done.stderr
    )
    done = study(tmp_path / "o", data_root, "--preset", "mnist_lenet_300_100", timeout=120)
    assert done.returncode == 2 and "the study trains the CIFAR-10 presets" in done.stderr
    (tmp_path / "full").mkdir()
    (tmp_path / "full" / "old.txt").write_text("x")
    done = study(tmp_path / "full", data_root, timeout=120)
    assert done.returncode == 2 and done.stderr.count("\n") == 1 and "is not empty" in done.stderr


def test_the_next_replicate_is_the_first_not_committed(tmp_path):
    gpu_study = helper()
    assert gpu_study.next_replicate(tmp_path, "cifar_vgg_16") == 0
    for r in (0, 1, 3):
        (tmp_path / "cifar_vgg_16" / f"replicate-{r}").mkdir(parents=True)
    assert gpu_study.next_replicate(tmp_path, "cifar_vgg_16") == 2


def test_pack_leaves_checkpoints_out_and_checks_the_limits(tmp_path):
    gpu_study = helper()
    run = tmp_path / "runs" / "cifar_resnet_20-0123456789"
    for name in ["spec.json", "replicate-0/train_log.csv", "replicate-0/DONE", "sweep/s/r0-t0000000.csv"]:
        (run / name).parent.mkdir(parents=True, exist_ok=True)
        (run / name).write_text("x")
    for name in [
        "replicate-0/checkpoints/iter-0000000.pt",
        "replicate-0/resume.pt",
        ".train-rank0.lock",
        "a.csv.tmp",
    ]:
        (run / name).parent.mkdir(parents=True, exist_ok=True)
        (run / name).write_bytes(b"\0" * 10)
    out = tmp_path / "out"
    out.mkdir()
    names = gpu_study.pack(run, out)
    assert sorted(names) == sorted(
        f"cifar_resnet_20-0123456789/{n}"
        for n in ["spec.json", "replicate-0/train_log.csv", "replicate-0/DONE", "sweep/s/r0-t0000000.csv"]
    )
    for i in range(8):
        (out / f"extra{i}.txt").write_text("x")
    with pytest.raises(gpu_study.Refused, match="9 files, more than 8"):
        gpu_study.check_outdir(out)


def test_the_figures_docs_gpu_quotes_are_the_counted_and_committed_ones():
    """docs/gpu.md's multiply-adds per image are FlopCounterMode's, and its CPU stand-in ratio
    is the committed benchmark output's."""
    import re

    sys.path.insert(0, str(REPO / "benchmarks"))
    try:
        from gpu_floor import forward_flops_per_image
    finally:
        sys.path.pop(0)
    doc = (REPO / "docs" / "gpu.md").read_text().replace("\n", " ")
    for name in ("cifar_resnet_20", "cifar_vgg_16"):
        macs = forward_flops_per_image(name, (3, 32, 32)) // 2
        assert f"{macs / 1e6:.1f} M multiply-adds = {2 * macs / 1e6:.1f} MFLOP" in doc, name
    output = (REPO / "docs" / "results" / "benchmarks" / "train_loop_ab.txt").read_text()
    ratio = re.search(r"median ratio device loop / per-replicate loop: ([\d.]+)", output)[1]
    assert f"median ratio of ms per step {ratio}" in doc
