"""Shared by the tests of linpath.Keeper, the audit, `linpath import` and the integrations: a
tiny MLP, its data, a plain training loop that keeps states with a Keeper (and records, apart
from it, the states it should have kept), and the plain-loop oracle over a swept run."""

from __future__ import annotations

import csv
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

import linpath
from tests.oracle import plain_path

HERE = Path(__file__).resolve()
MODEL = f"{HERE}:TinyMLP"  # --model for the sweep: file.py:callable


class TinyMLP(nn.Module):
    def __init__(self):
        super().__init__()
        self.net = nn.Sequential(nn.Linear(10, 16), nn.ReLU(), nn.Linear(16, 3))

    def forward(self, x):
        return self.net(x)


def vectors(n: int = 256, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(n, 10, generator=g)
    return x, (x[:, 0] > 0).long() + (x[:, 1] > 0.5).long()


def train(run_dir, steps: int, keep="paper", record=(), seed: int = 0, **keeper_options) -> dict[int, dict]:
    """SGD on `vectors()` for `steps` updates with a Keeper, from the init of `seed`; returns the
    states at the steps in `record`, copied by this loop itself (not by the Keeper)."""
    x, y = vectors()
    torch.manual_seed(seed)
    model = TinyMLP()
    optimizer = torch.optim.SGD(model.parameters(), lr=0.2)
    seen = {0: {k: v.clone() for k, v in model.state_dict().items()}} if 0 in record else {}
    keeper = linpath.Keeper(run_dir, model, steps, keep, hparams={"lr": 0.2}, **keeper_options)
    for step in range(1, steps + 1):
        batch = torch.arange(step * 32, step * 32 + 32) % len(y)
        optimizer.zero_grad()
        F.cross_entropy(model(x[batch]), y[batch]).backward()
        optimizer.step()
        keeper.step(step)
        if step in record:
            seen[step] = {k: v.clone() for k, v in model.state_dict().items()}
    keeper.finish()
    return seen


def swept_rows(run_root: Path) -> dict[tuple[int, int], list[tuple[float, float, float]]]:
    """{(replicate, t): [(x, loss, error)]} from a run's paths.csv."""
    out: dict[tuple[int, int], list] = {}
    with open(Path(run_root) / "paths.csv", newline="") as f:
        for row in csv.DictReader(f):
            key = (int(row["replicate"]), int(row["t"]))
            out.setdefault(key, []).append((float(row["x"]), float(row["loss"]), float(row["error"])))
    return out


def sweep_and_report(run_root: Path, model: str, inputs, labels, folder: Path, points: int = 4) -> None:
    """`linpath sweep` of an external run on (inputs, labels) saved as folder/eval.pt, with
    --model, then `linpath report`; both must succeed."""
    from linpath.cli import main

    torch.save((inputs, labels), folder / "eval.pt")
    argv = [
        "sweep",
        str(run_root),
        "--model",
        model,
        "--data",
        str(folder / "eval.pt"),
        "--points",
        str(points),
    ]
    assert main([*argv, "--quiet"]) == 0 and main(["report", str(run_root)]) == 0


def check_against_oracle(run_root: Path, make_model, inputs, labels, rename=lambda k: k) -> int:
    """Every swept path of the run equals the plain loop over the same kept states (each θ(x)
    loaded with load_state_dict into a fresh model and evaluated); returns the paths checked."""
    rows = swept_rows(run_root)
    for (r, t), points in rows.items():
        folder = Path(run_root) / f"replicate-{r}" / "checkpoints"
        final = max(int(p.stem.split("-")[1]) for p in folder.glob("iter-*.pt"))
        start = torch.load(folder / f"iter-{t:07d}.pt", weights_only=True)
        end = torch.load(folder / f"iter-{final:07d}.pt", weights_only=True)
        xs = [x for x, _, _ in points]
        want = plain_path(make_model, start, end, inputs, labels, xs, rename=rename, batch_size=len(labels))
        for (x, loss, error), (want_loss, want_error) in zip(points, want):
            assert abs(loss - want_loss) < 1e-5 * max(1.0, want_loss), (r, t, x, loss, want_loss)
            assert abs(error - want_error) < 1e-9, (r, t, x, error, want_error)
    return len(rows)


def tiny_bert():
    """A one-layer BERT sequence classifier from a random config (no download)."""
    import transformers

    config = transformers.BertConfig(
        vocab_size=50, hidden_size=16, num_hidden_layers=1, num_attention_heads=2, intermediate_size=32
    )
    config.num_labels = 3
    return transformers.BertForSequenceClassification(config)


BERT = f"{HERE}:tiny_bert"


def sequences(n: int = 128, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    ids = torch.randint(0, 50, (n, 8), generator=g)
    return ids, ids[:, 0] % 3


class Logits(nn.Module):
    """A Hugging Face classifier's .logits, for the oracle (which takes a tensor of logits)."""

    def __init__(self, model: nn.Module):
        super().__init__()
        self.model = model

    def forward(self, x):
        return self.model(x).logits
