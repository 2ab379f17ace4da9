"""The walk of a sweep setting: which files of src/linpath hold the SweepSetting object, in the
order a `linpath sweep` visits them, for the restructure's before-and-after (issue 29).

    python benchmarks/setting_walk.py [SRC]      # default: this checkout's src/ (about 20 s)

Trains a 20-step MNIST run and sweeps it (3 points, t = 0) with a tracer that records every
Python frame of linpath whose locals hold the SweepSetting; consecutive frames of one file count
once. Prints the files entered, the folders, the climbs back up (a step to a file of a higher
layer than the one before) and the returns (entering a file already left), and the walk."""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
from pathlib import Path

LAYERS = ["cli", "commands", "pipeline", "runs", "integrations", "api", "report", "analysis", "sweep",
          "train", "engine", "config", "data", "models", "runtime", "io", "errors"]  # fmt: skip

TRACER = r"""
import sys
from linpath.cli import main
walk = []
def tracer(frame, event, arg):
    name = frame.f_code.co_filename
    if event == "call" and "/linpath/" in name and any(type(v).__name__ == "SweepSetting" for v in frame.f_locals.values()):
        rel = name.split("/linpath/", 1)[1]
        if not walk or walk[-1] != rel:
            walk.append(rel)
    return None
sys.setprofile(None)
sys.settrace(tracer)
code = main(["sweep", sys.argv[1], "--points", "3", "--from-steps", "0", "--data-root", sys.argv[2], "--quiet"])
sys.settrace(None)
print("WALK " + " ".join(walk))
"""


def layer(path: str) -> int:
    head = path.split("/")[0].removesuffix(".py")
    return LAYERS.index(head) if head in LAYERS else len(LAYERS)


def main(src: Path, data: Path) -> None:
    env = {**os.environ, "PYTHONPATH": str(src), "OMP_NUM_THREADS": "1"}
    with tempfile.TemporaryDirectory() as tmp:
        train = [sys.executable, "-m", "linpath", "train", "mnist_lenet_300_100", "--training-steps", "20it",
                 "--replicates", "1", "--data-root", str(data), "--out", tmp, "--quiet"]  # fmt: skip
        subprocess.run(train, env=env, check=True)
        run = next(Path(tmp).glob("mnist_lenet_300_100-*"))
        out = subprocess.run([sys.executable, "-c", TRACER, str(run), str(data)], env=env, check=True,
                             capture_output=True, text=True).stdout  # fmt: skip
    walk = next(line for line in out.splitlines() if line.startswith("WALK ")).split()[1:]
    climbs = sum(layer(b) < layer(a) for a, b in zip(walk, walk[1:]))
    returns = sum(f in walk[:i] for i, f in enumerate(walk))
    folders = {f.split("/")[0] for f in walk}
    print(f"files entered: {len(set(walk))} in {len(folders)} folders ({', '.join(sorted(folders))})")
    print(f"steps: {len(walk)}, climbs back up: {climbs}, returns to a file already left: {returns}")
    print("walk: " + " > ".join(walk))


if __name__ == "__main__":
    root = Path(__file__).resolve().parents[1]
    main(Path(sys.argv[1]) if len(sys.argv) > 1 else root / "src", root.parent / "shared" / "data")
