#!/usr/bin/env bash
# The GPU check: one command on a machine with an NVIDIA GPU, no network needed (docs/gpu.md).
#
#   benchmarks/gpu_check.sh [--dry-run] OUTDIR DATA_ROOT      (or: make gpu-check OUT=gpu-out DATA=DIR)
#
# Stages, one line each as they finish:
#   env          GPU name, torch, CUDA and cuDNN versions (env.json, nvidia-smi.txt)
#   cuda_tests   the tests marked `cuda` (tests/test_cuda.py): CUDA engine and training vs the CPU,
#                nccl/gloo under torchrun, the compiled engine
#   sweep_bench  benchmarks/sweep_throughput.py on the GPU, with its plain loop in the same run
#   train_bench  benchmarks/train_throughput.py on the GPU (bf16, then fp32), with its plain loop
#   train        linpath train cifar_resnet_20 --replicates 1   (62,560 iterations, the preset's fp32)
#   sweep        linpath sweep RUN  (every kept t, 100 points, the whole test set; $SWEEP_PRECISION)
#   report       linpath report RUN
#   collect      copies the run's small files into OUTDIR/run/ (no checkpoints), checks OUTDIR < 10 MB
# A failing stage is reported and the script goes on (train failing skips sweep and report);
# timings.json (rewritten after every stage) records each stage's exit code and seconds. The
# exit code is 0 only if every stage passed.
#
# --dry-run: the same stages on the CPU with a tiny configuration (fp32; the cuda tests skip).
# Environment: GPU_CHECK_PYTHON (default .venv/bin/python if present, else python3),
#   SWEEP_PRECISION (default bf16 on the GPU, fp32 in the dry run),
#   GPU_CHECK_WORK (folder for the run's checkpoints; default a temporary folder, removed at the end).
set -euo pipefail

DRY=0
if [[ "${1:-}" == "--dry-run" ]]; then
    DRY=1
    shift
fi
if [[ $# -ne 2 ]]; then
    echo "usage: $0 [--dry-run] OUTDIR DATA_ROOT" >&2
    exit 2
fi
REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
if [[ ! -d "$2/cifar10" ]]; then
    echo "gpu-check: no cifar10/ under the data root $2" >&2
    exit 2
fi
mkdir -p "$1"
OUT=$(cd "$1" && pwd)
DATA=$(cd "$2" && pwd)
if [[ -z "${GPU_CHECK_PYTHON:-}" ]]; then
    if [[ -x "$REPO/.venv/bin/python" ]]; then GPU_CHECK_PYTHON=$REPO/.venv/bin/python; else GPU_CHECK_PYTHON=python3; fi
fi
PY=$GPU_CHECK_PYTHON
if [[ -n "${GPU_CHECK_WORK:-}" ]]; then
    WORK=$GPU_CHECK_WORK
    mkdir -p "$WORK"
else
    WORK=$(mktemp -d "${TMPDIR:-/tmp}/gpu-check.XXXXXX")
    trap 'rm -rf "$WORK"' EXIT
fi
cd "$REPO"
export LINPATH_TEST_DATA=$DATA

if ((DRY)); then
    DEV=cpu
    SWEEP_PRECISION=${SWEEP_PRECISION:-fp32}
    TRAIN_ARGS=(--training-steps 20it --batch-size 32)
    SWEEP_ARGS=(--points 3 --from-steps 0,16 --eval-examples 500)
    SWEEP_BENCH=(--models cifar_resnet_20 --examples 64 --points 2 --repeats 1 --precisions fp32 --peak-size 256)
    TRAIN_BENCH=(--models cifar_resnet_20 --iterations 2 --warmup 1 --workers 0)
    TRAIN_BENCH_PRECISIONS=(fp32)
else
    DEV=cuda
    SWEEP_PRECISION=${SWEEP_PRECISION:-bf16}
    TRAIN_ARGS=()
    SWEEP_ARGS=(--points 100)
    SWEEP_BENCH=(--models cifar_resnet_20,cifar_vgg_16 --examples 10000 --points 10 --repeats 2)
    TRAIN_BENCH=(--models cifar_resnet_20,cifar_vgg_16 --iterations 200 --warmup 10 --workers 8)
    TRAIN_BENCH_PRECISIONS=(bf16 fp32)
fi

STAGES=() # "name rc seconds log", rc "skip" for a stage that did not run
FAILED=0
STARTED=$(date +%s.%N)

write_timings() {
    "$PY" - "$OUT" "$DRY" "$DEV" "$SWEEP_PRECISION" "$STARTED" "${STAGES[@]}" <<'EOF'
import json, os, sys, time
out, dry, dev, sweep_precision, started, *stages = sys.argv[1:]
env_file = os.path.join(out, "env.json")
env = json.load(open(env_file)) if os.path.exists(env_file) else {}
rows = {}
for line in stages:
    name, rc, seconds, log = line.split(" ", 3)
    rows[name] = {"rc": None if rc == "skip" else int(rc), "seconds": float(seconds), "log": log}
size = sum(os.path.getsize(os.path.join(d, f)) for d, _, fs in os.walk(out) for f in fs)
doc = {
    "dry_run": dry == "1",
    "device": dev,
    **env,
    "protocol": "cifar_resnet_20, 1 replicate, every kept t, 100 points, full test set"
    if dry == "0"
    else "dry run: cifar_resnet_20, 20 iterations at batch 32, t in {0, 16}, 3 points, 500 test examples",
    "sweep_precision": sweep_precision,
    "seconds": {k: v["seconds"] for k, v in rows.items()},
    "exit_codes": {k: v["rc"] for k, v in rows.items()},
    "stages": rows,
    "total_seconds": round(time.time() - float(started), 1),
    "all_passed": all(v["rc"] == 0 for v in rows.values()),
    "outdir_bytes": size,
}
tmp = os.path.join(out, ".timings.json.tmp")
with open(tmp, "w") as f:
    json.dump(doc, f, indent=2)
    f.write("\n")
os.replace(tmp, os.path.join(out, "timings.json"))
EOF
}

record() { # NAME RC SECONDS LOG
    STAGES+=("$1 $2 $3 $4")
    local status=ok
    if [[ "$2" == skip ]]; then
        status="SKIPPED"
    elif [[ "$2" != 0 ]]; then
        status="FAILED (exit $2)"
        FAILED=1
    fi
    printf '[gpu-check] %-12s %-16s %8.1f s   %s\n' "$1" "$status" "$3" "$4"
    write_timings
}

stage() { # NAME LOG COMMAND...: runs COMMAND with its output in OUTDIR/LOG, records its exit code and time
    local name=$1 log=$2 rc t0 t1
    shift 2
    t0=$(date +%s.%N)
    if "$@" >"$OUT/$log" 2>&1; then rc=0; else rc=$?; fi
    t1=$(date +%s.%N)
    record "$name" "$rc" "$(awk -v a="$t0" -v b="$t1" 'BEGIN { printf "%.1f", b - a }')" "$log"
}

env_info() {
    if command -v nvidia-smi >/dev/null; then nvidia-smi >"$OUT/nvidia-smi.txt" 2>&1 || true; fi
    "$PY" - "$OUT/env.json" <<'EOF' || return
import json, platform, socket, sys
import torch
cuda = torch.cuda.is_available()
info = {
    "gpu": torch.cuda.get_device_name(0) if cuda else None,
    "gpu_count": torch.cuda.device_count() if cuda else 0,
    "torch": torch.__version__,
    "cuda": torch.version.cuda,
    "cudnn": torch.backends.cudnn.version() if cuda else None,
    "python": platform.python_version(),
    "host": socket.gethostname(),
    "cpu_threads": torch.get_num_threads(),
}
json.dump(info, open(sys.argv[1], "w"), indent=2)
print(json.dumps(info))
EOF
    if [[ $DEV == cuda ]]; then "$PY" -c "import torch, sys; sys.exit(0 if torch.cuda.is_available() else 'CUDA is not available to torch')"; fi
}

cuda_tests() {
    "$PY" -m pytest -q -m cuda -rs -p no:cacheprovider --junitxml="$OUT/cuda_tests.xml" tests
}

train_bench() {
    local p
    for p in "${TRAIN_BENCH_PRECISIONS[@]}"; do
        "$PY" benchmarks/train_throughput.py --device "$DEV" --data-root "$DATA" --precision "$p" "${TRAIN_BENCH[@]}" || return
    done
}

collect() { # the run's small files only: no checkpoints, no resume files
    local dest=$OUT/run f
    mkdir -p "$dest"
    for f in spec.json paths.csv report.md; do
        if [[ -f "$RUN/$f" ]]; then cp "$RUN/$f" "$dest/" || return; fi
    done
    # each sweep setting's tables and figures (results/<setting>/), without the PDFs
    if [[ -d "$RUN/results" ]]; then
        (cd "$RUN" && find results -type f ! -name '*.pdf' -exec cp --parents {} "$dest/" \;) || return
    fi
    for f in "$RUN"/replicate-*/train_log.csv; do
        if [[ -f "$f" ]]; then
            mkdir -p "$dest/$(basename "$(dirname "$f")")"
            cp "$f" "$dest/$(basename "$(dirname "$f")")/" || return
        fi
    done
    find "$dest" -type f | sort
    if [[ -n "$(find "$OUT" -name '*.pt' -print -quit)" ]]; then
        echo "OUTDIR holds checkpoints (*.pt): $(find "$OUT" -name '*.pt' | head -n 5)" >&2
        return 1
    fi
    local bytes
    bytes=$(du -sb "$OUT" | cut -f1)
    echo "OUTDIR holds $bytes bytes"
    if ((bytes > 10 * 1024 * 1024)); then
        echo "OUTDIR is over 10 MB: too large to commit" >&2
        return 1
    fi
}

echo "[gpu-check] $( ((DRY)) && echo 'DRY RUN on the CPU' || echo 'on the GPU'): out $OUT, data $DATA, python $PY, work $WORK"
stage env env.log env_info
stage cuda_tests cuda_tests.log cuda_tests
stage sweep_bench sweep_throughput.log "$PY" benchmarks/sweep_throughput.py --device "$DEV" "${SWEEP_BENCH[@]}"
stage train_bench train_throughput.log train_bench

RUNS=$WORK/runs
stage train train.log "$PY" -m linpath train cifar_resnet_20 --replicates 1 --data-root "$DATA" --out "$RUNS" \
    --device "$DEV" --quiet "${TRAIN_ARGS[@]}"
RUN=$(find "$RUNS" -mindepth 1 -maxdepth 1 -type d -name 'cifar_resnet_20-*' 2>/dev/null | head -n 1 || true)
if [[ -n "$RUN" && "${STAGES[-1]}" == "train 0 "* ]]; then
    stage sweep sweep.log "$PY" -m linpath sweep "$RUN" --data-root "$DATA" --device "$DEV" --quiet \
        --eval-precision "$SWEEP_PRECISION" "${SWEEP_ARGS[@]}"
    if [[ "${STAGES[-1]}" == "sweep 0 "* ]]; then
        stage report report.log "$PY" -m linpath report "$RUN"
    else
        record report skip 0 report.log
    fi
else
    record sweep skip 0 sweep.log
    record report skip 0 report.log
fi
if [[ -n "$RUN" ]]; then
    stage collect collect.log collect
else
    record collect skip 0 collect.log
fi

write_timings
if ((FAILED)); then
    echo "[gpu-check] FAILED: see the logs in $OUT and $OUT/timings.json" >&2
    exit 1
fi
echo "[gpu-check] all stages passed; results in $OUT (timings.json, report.md under run/)"
