"""The paper's experiment inside your own training: keep the states at t = 0, 1, 2, 4, ..., and
the end from a plain loop (linpath.Keeper), a PyTorch Lightning Trainer (KeepSteps) and a Hugging
Face Trainer (KeepStepsCallback); then audit, sweep and report each run folder as the command
line does (`linpath audit`, `linpath sweep RUN --model ... --data ...`, `linpath report`).

    python examples/own_training.py --out own-training-out   # needs pip install -e ".[lightning,hf]"

Tiny models on random data, a few dozen steps each: it runs in seconds and downloads nothing.
"""

from __future__ import annotations

import argparse
import logging
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

import linpath
from linpath.cli import main as linpath_cli

HERE = Path(__file__).resolve()


class MLP(nn.Module):
    """The network the plain loop and the Lightning module train (built with no arguments, so
    `--model examples/own_training.py:MLP` builds it for the sweep)."""

    def __init__(self):
        super().__init__()
        self.net = nn.Sequential(nn.Linear(10, 32), nn.ReLU(), nn.Linear(32, 3))

    def forward(self, x):
        return self.net(x)


def tiny_bert():
    """A one-layer BERT sequence classifier from a random config (no download)."""
    import transformers

    config = transformers.BertConfig(
        vocab_size=100, hidden_size=32, num_hidden_layers=1, num_attention_heads=2, intermediate_size=64
    )
    config.num_labels = 4
    return transformers.BertForSequenceClassification(config)


def vectors(n: int = 512, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(n, 10, generator=g)
    return x, (x[:, 0] > 0).long() + (x[:, 1] > 0.5).long()


def sequences(n: int = 256, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    ids = torch.randint(0, 100, (n, 12), generator=g)
    return ids, ids[:, 0] % 4


def plain_loop(run_dir: Path, steps: int) -> None:
    """Your loop, with three added lines."""
    x, y = vectors()
    torch.manual_seed(0)
    model = MLP()
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
    keeper = linpath.Keeper(run_dir, model, total_steps=steps, hparams={"lr": 0.1, "batch": 32})  # keeps t=0
    for step in range(1, steps + 1):
        batch = torch.arange(step * 32, step * 32 + 32) % len(y)
        loss = F.cross_entropy(model(x[batch]), y[batch])
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        keeper.step(step)
    keeper.finish()


def lightning_trainer(run_dir: Path, steps: int) -> None:
    import lightning.pytorch as pl

    from linpath.integrations.lightning import KeepSteps

    class Module(pl.LightningModule):
        def __init__(self, lr: float = 0.1):
            super().__init__()
            self.save_hyperparameters()  # these enter spec.json
            self.net = MLP()

        def training_step(self, batch, index):
            x, y = batch
            return F.cross_entropy(self.net(x), y)

        def configure_optimizers(self):
            return torch.optim.SGD(self.parameters(), lr=self.hparams.lr)

    torch.manual_seed(0)
    loader = torch.utils.data.DataLoader(torch.utils.data.TensorDataset(*vectors()), batch_size=32)
    trainer = pl.Trainer(
        max_steps=steps,
        accelerator="cpu",
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        callbacks=[KeepSteps(run_dir, module="net")],  # keep the MLP inside the module
    )
    trainer.fit(Module(), loader)


class Sequences(torch.utils.data.Dataset):
    def __init__(self, ids, labels):
        self.ids, self.labels = ids, labels

    def __len__(self):
        return len(self.labels)

    def __getitem__(self, i):
        return {"input_ids": self.ids[i], "labels": self.labels[i]}


def hugging_face_trainer(run_dir: Path, steps: int, scratch: Path) -> None:
    import transformers

    from linpath.integrations.hf import KeepStepsCallback

    torch.manual_seed(0)
    args = transformers.TrainingArguments(
        output_dir=str(scratch),
        max_steps=steps,
        per_device_train_batch_size=32,
        learning_rate=0.05,
        optim="sgd",
        lr_scheduler_type="constant",
        report_to=[],  # no logging to the network
        save_strategy="no",
        logging_strategy="no",
        use_cpu=True,
        disable_tqdm=True,
    )
    trainer = transformers.Trainer(
        model=tiny_bert(),
        args=args,
        train_dataset=Sequences(*sequences()),
        callbacks=[KeepStepsCallback(run_dir)],
    )
    trainer.train()


def analyse(run_dir: Path, model: str, data: Path, points: int) -> int:
    """The command line on the folder: audit, sweep with --model and --data, report."""
    codes = [
        linpath_cli(["audit", str(run_dir)]),
        linpath_cli(
            ["sweep", str(run_dir), "--model", model, "--data", str(data), "--points", str(points), "--quiet"]
        ),
        linpath_cli(["report", str(run_dir)]),
    ]
    return max(codes)


def main(argv: list[str] | None = None) -> dict[str, Path]:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--out", default="own-training-out", help="folder for the three run folders")
    p.add_argument("--steps", type=int, default=40, help="optimizer steps of each training")
    p.add_argument("--points", type=int, default=5, help="points on each path")
    args = p.parse_args(argv)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    logging.getLogger("lightning.pytorch").setLevel(logging.WARNING)
    torch.save(vectors(seed=1), out / "vectors.pt")  # the evaluation data: held-out examples
    torch.save(sequences(seed=1), out / "sequences.pt")
    runs = {"plain": out / "plain", "lightning": out / "lightning", "huggingface": out / "huggingface"}
    plain_loop(runs["plain"], args.steps)
    lightning_trainer(runs["lightning"], args.steps)
    hugging_face_trainer(runs["huggingface"], args.steps, out / "hf-scratch")
    for name, data in (("plain", "vectors.pt"), ("lightning", "vectors.pt"), ("huggingface", "sequences.pt")):
        model = f"{HERE}:{'tiny_bert' if name == 'huggingface' else 'MLP'}"
        if analyse(runs[name], model, out / data, args.points) != 0:
            raise SystemExit(f"{name}: a command failed")
        print(f"{name}: {runs[name] / 'report.md'}")
    return runs


if __name__ == "__main__":
    main()
