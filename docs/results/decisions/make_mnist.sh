#!/usr/bin/env bash
# The MNIST results of issue 33 (docs/results/decisions/README.md), from the command line only:
#   docs/results/decisions/make_mnist.sh RUN WORK [DATA]
# RUN: the MNIST run of `make mnist` (runs/mnist_lenet_300_100-<hash>); WORK: a scratch folder.
#  1. curvature along the path from init, each replicate: slope and d²L/dx² at the 100 points,
#     Hessian spectra and traces at x = 0, 0.5, 1 (linpath path --curvature-at);
#  2. instability on a 5-epoch MNIST run (3 replicates; children from T trained to its end):
#     SGD-noise children and children from a perturbed θ_T (EPS = 1e-3), each pair also aligned.
# Then summarize.py writes the committed tables beside this script.
set -euo pipefail
run=$(realpath "$1")
work=$(realpath -m "$2")
data=$(realpath "${3:-../shared/data}")
here=$(dirname "$(realpath "$0")")
linpath() { python -m linpath "$@"; }
mkdir -p "$work"
final=$(ls "$run/replicate-0/checkpoints" | sort | tail -1)
for r in 0 1 2; do
  linpath path "$run/replicate-$r/checkpoints/iter-0000000.pt" "$run/replicate-$r/checkpoints/$final" \
    --data-root "$data" --curvature --curvature-at 0,0.5,1 --out "$work/curvature/r$r" --quiet
done
linpath train mnist_lenet_300_100 --training-steps 5ep --data-root "$data" --out "$work/short" --quiet
short=$(ls -d "$work"/short/mnist_lenet_300_100-*)
for r in 0 1 2; do
  linpath spawn "$short" --at 0,16,128,512,1024,2000 --replicate "$r" --children 2 --points 25 --align \
    --data-root "$data" --quiet
  linpath spawn "$short" --at 0,16,128,512,1024,2000 --replicate "$r" --children 2 --points 25 --align \
    --perturb 0.001 --data-root "$data" --quiet
done
python "$here/summarize.py" "$work" "$short" "$here"
