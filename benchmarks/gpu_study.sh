#!/usr/bin/env bash
# One replicate of the paper's protocol in one GPU lease, no network (docs/gpu.md):
#
#   benchmarks/gpu_study.sh OUTDIR DATA_ROOT [--preset cifar_resnet_20] [--replicate R]
#                           [--budget SECONDS] [--cuda-tests] [--dry-run]
#   (or: make gpu-study OUT=gpu-out DATA=DIR [PRESET=...] [REPLICATE=R])
#
# Stages, one line each as they finish; every stage's output is appended to OUTDIR/logs.txt:
#   env         GPU, torch, CUDA, cuDNN (nvidia-smi.txt); fails without a GPU unless --dry-run
#   cuda_tests  with --cuda-tests: pytest -m cuda tests/test_cuda.py (CUDA against CPU and float64)
#   floor       benchmarks/gpu_floor.py for the preset's model: FLOPs, peak, kernels, launch cost (floor.json)
#   train       linpath train PRESET --replicate R --device cuda: the preset's protocol (fp32, 62,560 steps)
#   sweep       linpath sweep RUN --points 100 --eval-precision bf16: every kept t, the whole test set
#   report      linpath report RUN
#   pack        OUTDIR/run.tar.gz: the run folder without checkpoints, resume files or locks; checks that
#               OUTDIR holds at most 8 files, each under 16 MiB, and no checkpoint
# timings.json (rewritten after every stage) holds the environment, each stage's exit code and seconds,
# the floor's figures and, beside them, the measured ms per step and per swept network.
#
# R defaults to the smallest replicate without a folder docs/results/gpu/<preset>/replicate-<R>/
# ($GPU_STUDY_RESULTS instead of docs/results/gpu), so that successive leases complete the study.
# --budget (default 540 s, 9 minutes): every stage runs with what is left of it and is stopped at the
# end (exit 124); a failed or stopped stage skips those that need it (train -> sweep -> report), and
# pack still returns what exists. The exit code is 0 only if every stage passed.
# --dry-run: the same stages on the CPU with a tiny configuration (20 iterations at batch 32, t in
# {0, 16}, 3 points, 500 test examples; the device loop's CPU stand-in), a few minutes.
# Environment: GPU_STUDY_PYTHON (default .venv/bin/python if present, else python3), GPU_STUDY_WORK
# (folder for the run and its checkpoints; default a temporary folder, removed at the end),
# GPU_STUDY_RESULTS (see above).
set -euo pipefail

die() { # one line, exit 2
    echo "gpu-study: $*" >&2
    exit 2
}

DRY=0 CUDA_TESTS=0 PRESET=cifar_resnet_20 REPLICATE="" BUDGET="" POSITIONAL=()
while [[ $# -gt 0 ]]; do
    case "$1" in
    --dry-run) DRY=1 ;;
    --cuda-tests) CUDA_TESTS=1 ;;
    --preset | --replicate | --budget)
        [[ $# -ge 2 && -n "$2" ]] || die "$1 needs a value"
        case "$1" in --preset) PRESET=$2 ;; --replicate) REPLICATE=$2 ;; --budget) BUDGET=$2 ;; esac
        shift
        ;;
    -*) die "unknown option $1 (usage: $0 OUTDIR DATA_ROOT [--preset P] [--replicate R] [--budget S] [--cuda-tests] [--dry-run])" ;;
    *) POSITIONAL+=("$1") ;;
    esac
    shift
done
[[ ${#POSITIONAL[@]} -eq 2 ]] || die "expected OUTDIR DATA_ROOT, got ${#POSITIONAL[@]} arguments (usage: $0 OUTDIR DATA_ROOT [options])"
[[ "$PRESET" =~ ^[a-z0-9_]+$ ]] || die "--preset $PRESET is not a preset name"
[[ -z "$REPLICATE" || "$REPLICATE" =~ ^[0-9]+$ ]] || die "--replicate takes a replicate number >= 0, got $REPLICATE"
[[ -z "$BUDGET" || "$BUDGET" =~ ^[0-9]+$ ]] || die "--budget takes whole seconds, got $BUDGET"
[[ -d "${POSITIONAL[1]}/cifar10" ]] || die "no cifar10/ under the data root ${POSITIONAL[1]}"

REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
if [[ -z "${GPU_STUDY_PYTHON:-}" ]]; then
    if [[ -x "$REPO/.venv/bin/python" ]]; then GPU_STUDY_PYTHON=$REPO/.venv/bin/python; else GPU_STUDY_PYTHON=python3; fi
fi
PY=$GPU_STUDY_PYTHON
export PYTHONPATH="$REPO/src${PYTHONPATH:+:$PYTHONPATH}"
HELPER=$REPO/benchmarks/gpu_study.py
MODEL=$("$PY" "$HELPER" check "$PRESET") || exit 2
RESULTS=${GPU_STUDY_RESULTS:-$REPO/docs/results/gpu}
if [[ -z "$REPLICATE" ]]; then REPLICATE=$("$PY" "$HELPER" next-replicate "$RESULTS" "$PRESET"); fi

mkdir -p "${POSITIONAL[0]}"
OUT=$(cd "${POSITIONAL[0]}" && pwd)
DATA=$(cd "${POSITIONAL[1]}" && pwd)
[[ -z "$(ls -A "$OUT")" ]] || die "OUTDIR $OUT is not empty (what a lease brings back must be this run's alone)"
if [[ -n "${GPU_STUDY_WORK:-}" ]]; then
    WORK=$GPU_STUDY_WORK
    mkdir -p "$WORK"
else
    WORK=$(mktemp -d "${TMPDIR:-/tmp}/gpu-study.XXXXXX")
    trap 'rm -rf "$WORK"' EXIT
fi
cd "$REPO"
LOG=$OUT/logs.txt

if ((DRY)); then
    DEV=cpu BUDGET=${BUDGET:-1200}
    export LINPATH_DEVICE_LOOP=1 # the device loop's CPU stand-in
    TRAIN_ARGS=(--training-steps 20it --batch-size 32)
    SWEEP_ARGS=(--points 3 --from-steps 0,16 --eval-examples 500 --eval-precision bf16)
    FLOOR_ARGS=(--batch 32 --eval-examples 500 --peak-size 512 --repeats 2 --steps 20 --networks 6)
    PROTOCOL="dry run on the CPU: $PRESET, 20 iterations at batch 32, t in {0, 16}, 3 points, 500 test examples, bf16 sweep"
else
    DEV=cuda BUDGET=${BUDGET:-540}
    TRAIN_ARGS=()
    SWEEP_ARGS=(--points 100 --eval-precision bf16)
    FLOOR_ARGS=()
    PROTOCOL="$PRESET replicate $REPLICATE: the preset's training (fp32), every kept t, 100 points, the full test set, bf16 sweep"
fi
STARTED=$(date +%s)
DEADLINE=$((STARTED + BUDGET))
printf '{"dry_run": %s, "preset": "%s", "model": "%s", "replicate": %s, "device": "%s", "budget_s": %s, "started": %s, "protocol": "%s"}\n' \
    "$([[ $DRY == 1 ]] && echo true || echo false)" "$PRESET" "$MODEL" "$REPLICATE" "$DEV" "$BUDGET" "$STARTED" "$PROTOCOL" >"$WORK/meta.json"
: >"$WORK/stages.tsv"
FAILED=0

record() { # NAME RC SECONDS
    printf '%s\t%s\t%s\n' "$1" "$2" "$3" >>"$WORK/stages.tsv"
    local status=ok
    case "$2" in
    skip) status=SKIPPED ;;
    0) ;;
    124 | 137) status="STOPPED (budget)" FAILED=1 ;;
    *) status="FAILED (exit $2)" FAILED=1 ;;
    esac
    printf '[gpu-study] %-11s %-17s %8.1f s\n' "$1" "$status" "$3"
    "$PY" "$HELPER" timings "$OUT" "$WORK" || true
}

stage() { # NAME COMMAND...: runs COMMAND with what is left of the budget, output appended to logs.txt
    local name=$1 rc t0 t1 left
    shift
    left=$((DEADLINE - $(date +%s)))
    if ((left <= 0)); then
        record "$name" skip 0
        return
    fi
    printf '\n===== %s: %s\n' "$name" "$*" >>"$LOG"
    t0=$(date +%s.%N)
    if declare -F "$1" >/dev/null; then # a function of this script (quick): no timeout
        if "$@" >>"$LOG" 2>&1; then rc=0; else rc=$?; fi
    elif timeout --kill-after=15 "$left" "$@" >>"$LOG" 2>&1; then rc=0; else rc=$?; fi
    t1=$(date +%s.%N)
    record "$name" "$rc" "$(awk -v a="$t0" -v b="$t1" 'BEGIN { printf "%.1f", b - a }')"
}

passed() { [[ "$(tail -n 1 "$WORK/stages.tsv" | cut -f1,2)" == "$1"$'\t'0 ]]; }

env_info() {
    if command -v nvidia-smi >/dev/null; then nvidia-smi >"$OUT/nvidia-smi.txt" 2>&1 || true; fi
    "$PY" - "$WORK/env.json" "$DEV" <<'EOF'
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
if sys.argv[2] == "cuda" and not cuda:
    sys.exit(f"CUDA is not available to torch {torch.__version__} ({sys.executable}); --dry-run runs on the CPU")
EOF
}

echo "[gpu-study] $( ((DRY)) && echo 'DRY RUN on the CPU' || echo 'on the GPU'): $PRESET replicate $REPLICATE, budget ${BUDGET} s, out $OUT, data $DATA, python $PY, work $WORK"
stage env env_info
if ! passed env; then
    echo "[gpu-study] no usable device: see $LOG" >&2
    exit 1
fi
if ((CUDA_TESTS)); then
    stage cuda_tests "$PY" -m pytest -q -m cuda -rs -p no:cacheprovider tests/test_cuda.py
fi
stage floor "$PY" benchmarks/gpu_floor.py --device "$DEV" --models "$MODEL" --out "$OUT/floor.json" "${FLOOR_ARGS[@]}"

RUNS=$WORK/runs
stage train "$PY" -m linpath train "$PRESET" --replicate "$REPLICATE" --data-root "$DATA" --out "$RUNS" \
    --device "$DEV" "${TRAIN_ARGS[@]}"
RUN=$(find "$RUNS" -mindepth 1 -maxdepth 1 -type d -name "${PRESET}-*" 2>/dev/null | head -n 1 || true)
if passed train; then
    stage sweep "$PY" -m linpath sweep "$RUN" --data-root "$DATA" --device "$DEV" --quiet "${SWEEP_ARGS[@]}"
    if passed sweep; then stage report "$PY" -m linpath report "$RUN"; else record report skip 0; fi
else
    record sweep skip 0
    record report skip 0
fi
if [[ -n "$RUN" ]]; then
    stage pack "$PY" "$HELPER" pack "$RUN" "$OUT"
else
    record pack skip 0
fi

if ((FAILED)); then
    echo "[gpu-study] FAILED: see $LOG and $OUT/timings.json" >&2
    exit 1
fi
echo "[gpu-study] all stages passed: $OUT (run.tar.gz, timings.json); commit it as $RESULTS/$PRESET/replicate-$REPLICATE/"
