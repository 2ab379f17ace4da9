"""Your own model: train a small network, keep two checkpoints, analyze the path between them.

    python examples/own_model.py --out own-model-out

Trains a tiny MLP on a synthetic 3-class problem (seconds on a CPU), saves its state at
initialization and after training, then asks linpath for the loss and error along the line
between them, prints the path metrics and writes a figure. Replace the model, the data and the
two state files with your own.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

import linpath


class SmallMLP(nn.Module):
    """Any nn.Module works: linpath only needs its state dict and forward()."""

    def __init__(self, inputs: int = 20, hidden: int = 64, classes: int = 3):
        super().__init__()
        self.body = nn.Sequential(nn.Linear(inputs, hidden), nn.ReLU(), nn.Linear(hidden, hidden), nn.ReLU())
        self.head = nn.Linear(hidden, classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.body(x))


def make_data(centers: torch.Tensor, n: int, generator: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
    """Noisy points around three cluster centers in 20 dimensions, overlapping a little."""
    labels = torch.randint(0, len(centers), (n,), generator=generator)
    return centers[labels] + 2.0 * torch.randn(n, centers.shape[1], generator=generator), labels


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default="own-model-out", help="folder for the checkpoints and the figure")
    parser.add_argument("--steps", type=int, default=500, help="SGD steps")
    parser.add_argument("--points", type=int, default=30, help="points along the path")
    parser.add_argument("--examples", type=int, default=4000, help="training examples (test: a quarter)")
    args = parser.parse_args(argv)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)

    g = torch.Generator().manual_seed(0)
    centers = torch.randn(3, 20, generator=g)
    train_x, train_y = make_data(centers, args.examples, g)
    test_x, test_y = make_data(centers, args.examples // 4, g)
    torch.manual_seed(0)
    model = SmallMLP()
    torch.save(model.state_dict(), out / "init.pt")  # checkpoint 1: initialization

    optimizer = torch.optim.SGD(model.parameters(), lr=0.05, momentum=0.9)
    loader = DataLoader(TensorDataset(train_x, train_y), batch_size=64, shuffle=True, generator=g)
    step = 0
    while step < args.steps:
        for x, y in loader:
            loss = F.cross_entropy(model(x), y)
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
            step += 1
            if step == args.steps:
                break
    torch.save(model.state_dict(), out / "final.pt")  # checkpoint 2: the trained network

    # The analysis: any model, two states (files or dicts), data as tensors, a Dataset or a DataLoader.
    curve = linpath.path(SmallMLP(), out / "init.pt", out / "final.pt", (test_x, test_y), grid=args.points)
    metrics = curve.metrics()
    print(f"test error: {curve.error[0]:.3f} at initialization, {curve.error[-1]:.3f} after training")
    for quantity in ("loss", "error"):
        m = metrics[quantity]
        print(
            f"{quantity:5s} rise_over_start {m['rise_over_start']:.4f}  monotonicity_gap {m['monotonicity_gap']:.4f}"
            f"  convexity_gap {m['convexity_gap']:.4f}"
        )
    curve.plot(out / "path.png", title="SmallMLP: initialization to trained")
    curve.to_csv(out / "path.csv")
    print(f"wrote {out / 'path.png'} and {out / 'path.csv'}")
    return metrics


if __name__ == "__main__":
    main()
