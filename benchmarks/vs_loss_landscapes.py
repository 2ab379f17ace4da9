"""linpath against the peer library loss-landscapes (PyPI `loss-landscapes`), same job, same run.

    python benchmarks/vs_loss_landscapes.py RUN_DIR          # RUN_DIR: a trained MNIST LeNet run
    python benchmarks/vs_loss_landscapes.py RUN_DIR --repeats 3 --conv-examples 1000 --conv-points 20

The peer is installed into a throwaway folder (--peer-dir, default /tmp/linpath-peer) with
`pip install --no-deps --target` when it cannot be imported (it needs only numpy and torch, which
are here); it never enters linpath's dependencies.

Both libraries get the same model object class, the same two states and the same data tensors,
already in memory, in eval mode; the loss is the mean cross-entropy over all examples:
  (a) LeNet-300-100 from RUN_DIR (replicate 0: the state at t = 0 and the final one), written
      as a user would (a plain nn.Module with no linpath conventions), on the 10,000 MNIST test
      images normalized as in training, at 100 points;
  (b) a small convnet with BatchNorm, on random CIFAR-shaped inputs (time does not depend on
      what the images show), between two random states that share their BatchNorm statistics.
The peer's linear_interpolation(start, end, Loss(cross_entropy, inputs, targets), steps=N)
evaluates x = 1/N, 2/N, ..., 1 (never x = 0), each on the whole tensor in one forward pass, and
moves only parameters (not buffers: hence the shared BatchNorm statistics in (b), so both
libraries evaluate the same networks). linpath evaluates the same x as a values grid: through
linpath.path (the API; it also computes the error and its tallies, and the stem is found by
tracing the user's model) and through `linpath path`'s function (path_between_files: the states
and data read from files, paths.csv, setting.json, metrics.json and the figure written: the
whole command but Python's start-up). Printed: the best of --repeats wall times of each (after
one untimed warm-up), the ratios, and the largest |Δ loss| between the peer and linpath.path.
"""

from __future__ import annotations

import argparse
import importlib
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

import linpath
from linpath.api.path_folder import path_between_files
from linpath.data import load as load_data
from linpath.io.rundir import RunDir
from linpath.sweep.grids import Grid
from linpath.sweep.setting import SweepSetting


class UserLeNet(nn.Module):
    """LeNet-300-100 as a user writes it: its keys match linpath's checkpoints, nothing else."""

    def __init__(self):
        super().__init__()
        self.fc_layers = nn.ModuleList([nn.Linear(784, 300), nn.Linear(300, 100)])
        self.fc = nn.Linear(100, 10)

    def forward(self, x):
        x = x.flatten(1)
        for layer in self.fc_layers:
            x = torch.relu(layer(x))
        return self.fc(x)


class UserBNConvNet(nn.Module):
    """A small CIFAR-sized convnet with BatchNorm after every convolution."""

    def __init__(self):
        super().__init__()

        def block(a, b, stride):
            return nn.Sequential(nn.Conv2d(a, b, 3, stride, 1, bias=False), nn.BatchNorm2d(b), nn.ReLU())

        self.features = nn.Sequential(block(3, 32, 1), block(32, 64, 2), block(64, 64, 2))
        self.head = nn.Linear(64, 10)

    def forward(self, x):
        return self.head(self.features(x).mean((2, 3)))


def peer(peer_dir: Path):
    """The loss_landscapes module, installed into peer_dir first when it is not importable."""
    try:
        return importlib.import_module("loss_landscapes")
    except ImportError:
        pass
    if not (peer_dir / "loss_landscapes").is_dir():
        print(f"installing loss-landscapes into {peer_dir} ...", file=sys.stderr)
        subprocess.run(
            [sys.executable, "-m", "pip", "install", "--quiet", "--no-deps", "--target", str(peer_dir)]
            + ["loss-landscapes"],
            check=True,
        )
    sys.path.insert(0, str(peer_dir))
    return importlib.import_module("loss_landscapes")


def best_of(fn, repeats: int):
    """(the best wall time of `repeats` calls after one warm-up, the last call's value)."""
    value = fn()
    times = []
    for _ in range(repeats):
        t = time.perf_counter()
        value = fn()
        times.append(time.perf_counter() - t)
    return min(times), value


def measure(ll, make, start: dict, end: dict, inputs, labels, points: int, repeats: int, folder: Path):
    """Times and the loss difference of the peer, linpath.path and `linpath path` on one job."""
    xs = [i / points for i in range(1, points + 1)]  # the peer's grid

    def run_peer():
        a, b = make(), make()
        a.load_state_dict(start), b.load_state_dict(end)
        a.eval(), b.eval()
        metric = ll.metrics.Loss(F.cross_entropy, inputs, labels)
        return ll.linear_interpolation(a, b, metric, steps=points, deepcopy_model=True)

    def run_api():
        return linpath.path(make(), start, end, (inputs, labels), grid=xs, device="cpu")

    torch.save(start, folder / "start.pt"), torch.save(end, folder / "end.pt")
    torch.save((inputs, labels), folder / "data.pt")
    model_text = f"{Path(__file__).resolve()}:{make.__name__}"
    setting = SweepSetting(grid=Grid(kind="values", values=tuple(xs)))

    def run_cli():
        return path_between_files(
            folder / "start.pt",
            folder / "end.pt",
            model_text,
            str(folder / "data.pt"),
            folder / "out",
            setting,
            device="cpu",
        )[0]

    t_peer, peer_loss = best_of(run_peer, repeats)
    t_api, curve = best_of(run_api, repeats)
    t_cli, cli_curve = best_of(run_cli, repeats)
    delta = float(abs(curve.loss - peer_loss).max())
    assert float(abs(cli_curve.loss - curve.loss).max()) < 1e-6, "linpath path and linpath.path disagree"
    return t_peer, t_api, t_cli, delta


def lenet_job(run_dir: Path, data_root: str | None):
    run = RunDir(run_dir)
    steps = run.saved_steps(0)
    start = torch.load(run.checkpoint(0, steps[0]), weights_only=True)
    end = torch.load(run.checkpoint(0, steps[-1]), weights_only=True)
    test = load_data("mnist", data_root).eval_set("test")
    return start, end, test.inputs, test.labels


def conv_job(examples: int):
    torch.manual_seed(0)
    a, b = UserBNConvNet(), UserBNConvNet()
    with torch.no_grad():
        for p in b.parameters():
            p.add_(torch.randn_like(p) * 0.05)
        for m in a.modules():
            if isinstance(m, nn.BatchNorm2d):
                m.running_mean.uniform_(-0.2, 0.2), m.running_var.uniform_(0.5, 2.0)
    start, end = a.state_dict(), dict(b.state_dict())
    for k, v in start.items():  # shared statistics: the peer does not move buffers
        if "running_" in k or "num_batches" in k:
            end[k] = v.clone()
    g = torch.Generator().manual_seed(1)
    return (
        start,
        end,
        torch.randn(examples, 3, 32, 32, generator=g),
        torch.randint(0, 10, (examples,), generator=g),
    )


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("run_dir", help="a trained mnist_lenet_300_100 run folder (read only)")
    p.add_argument("--data-root", default=None, help="folder holding mnist/ (default $LINPATH_DATA)")
    p.add_argument("--points", type=int, default=100, help="points of the LeNet path (default 100)")
    p.add_argument("--conv-examples", type=int, default=1000, help="convnet: random images (default 1000)")
    p.add_argument("--conv-points", type=int, default=20, help="convnet: points (default 20)")
    p.add_argument("--repeats", type=int, default=3, help="timed runs of each; the best is kept (default 3)")
    p.add_argument("--threads", type=int, default=0, help="torch threads (default: torch's choice)")
    p.add_argument("--peer-dir", default="/tmp/linpath-peer", help="where the peer is installed if missing")
    args = p.parse_args()
    ll = peer(Path(args.peer_dir))
    if args.threads:
        torch.set_num_threads(args.threads)
    jobs = {
        f"LeNet-300-100, MNIST test 10,000 x {args.points} points": (
            UserLeNet,
            *lenet_job(Path(args.run_dir), args.data_root),
            args.points,
        ),
        f"BN convnet, {args.conv_examples} images x {args.conv_points} points": (
            UserBNConvNet,
            *conv_job(args.conv_examples),
            args.conv_points,
        ),
    }
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads; best of {args.repeats}")
    print("| job | loss-landscapes s | linpath.path s (×) | linpath path s (×) | max abs Δ loss |")
    print("|---|---|---|---|---|")
    with tempfile.TemporaryDirectory() as tmp:
        for name, (make, start, end, inputs, labels, points) in jobs.items():
            folder = Path(tmp) / make.__name__
            folder.mkdir()
            t_peer, t_api, t_cli, delta = measure(
                ll, make, start, end, inputs, labels, points, args.repeats, folder
            )
            print(
                f"| {name} | {t_peer:.2f} | {t_api:.2f} ({t_peer / t_api:.1f}×) | "
                f"{t_cli:.2f} ({t_peer / t_cli:.1f}×) | {delta:.1e} |",
                flush=True,
            )


if __name__ == "__main__":
    main()
