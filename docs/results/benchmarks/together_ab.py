"""Together against alone only, 469 steps of 3 replicates, 4 alternating rounds, at 2 then 1 threads.

    cd benchmarks && PYTHONPATH=../src:. python ../docs/results/benchmarks/together_ab.py DATA_ROOT
"""

import sys

import torch
from mnist_floor import source_of, time_linpath

src = source_of(sys.argv[1] if len(sys.argv) > 1 else None)
for t in (2, 1):
    torch.set_num_threads(t)
    a, b = [], []
    for _ in range(4):
        a.append(time_linpath(src, 469, 3, batched=False) / 469 * 1e3)
        b.append(time_linpath(src, 469, 3, batched=True) / 469 * 1e3)
    print(
        f"threads {t}: alone {[round(x, 2) for x in a]} together {[round(x, 2) for x in b]} "
        f"ratio of bests {min(a) / min(b):.2f}, per round {[round(x / y, 2) for x, y in zip(a, b)]}",
        flush=True,
    )
