#!/usr/bin/env bash
# The MNIST job (what `make mnist` runs) for two commits, one right after the other on this
# machine, so that their times compare like with like on a VM whose speed drifts.
#
#   benchmarks/make_mnist_ab.sh OLD NEW [DATA]   (from the repository root; about 11 minutes)
#
# Each commit is checked out in one throwaway clone and run with this checkout's .venv (its src
# first on PYTHONPATH). Prints each run's wall time, training time (train_log seconds at the last
# iteration) and sweep time, then whether the two runs' paths.csv, the setting's tables and the
# final checkpoints are byte-identical, and their train logs equal but for the seconds column.
set -euo pipefail
old=$1
new=$2
data=$(realpath "${3:-../shared/data}")
python="$PWD/.venv/bin/python"  # not realpath: that would leave the venv
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
git clone -q . "$work/clone"
cd "$work/clone"
for commit in "$old" "$new"; do
  git checkout -q "$commit"
  start=$(date +%s.%N)
  if ! PYTHONPATH=src "$python" -m linpath run mnist_lenet_300_100 --data-root "$data" --out "$work/$commit" \
    >"$work/$commit.log" 2>&1; then
    echo "$commit: the job failed; the end of its output:" >&2
    tail -20 "$work/$commit.log" >&2
    exit 1
  fi
  seconds=$(echo "$(date +%s.%N) - $start" | bc)
  run=$(ls -d "$work/$commit"/mnist_lenet_300_100-*)
  training=$(for r in 0 1 2; do tail -1 "$run/replicate-$r/train_log.csv" | cut -d, -f7; done | sort -n | tail -1)
  sweep=$(grep -o 'sweep 87/87: .*' "$work/$commit.log" | grep -o '([0-9]* s)')
  printf '%s: job %.2f s, training %s s, sweep %s\n' "$commit" "$seconds" "$training" "$sweep"
done
a=$(ls -d "$work/$old"/mnist_lenet_300_100-*)
b=$(ls -d "$work/$new"/mnist_lenet_300_100-*)
setting=results/test-interpolate-uniform100-fp32
for f in paths.csv $setting/paths.csv $setting/metrics.csv $setting/summary.csv \
  replicate-{0,1,2}/checkpoints/iter-0018760.pt; do
  cmp -s "$a/$f" "$b/$f" && echo "byte-identical: $f" || echo "DIFFERENT: $f"
done
for r in 0 1 2; do
  if cmp -s <(cut -d, -f1-6 "$a/replicate-$r/train_log.csv") <(cut -d, -f1-6 "$b/replicate-$r/train_log.csv"); then
    echo "train_log $r: equal but for the seconds"
  else
    echo "train_log $r: DIFFERENT"
  fi
done
