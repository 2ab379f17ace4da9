"""Paths for the models and checkpoints researchers have: a Hugging Face classifier (its forward
returns an output object with .logits) and PyTorch Lightning .ckpt files (the weights under
"state_dict", prefixed by the LightningModule's attribute name).

    python examples/hf_and_lightning.py        # needs transformers (pip install 'linpath[hf]')

Everything is built here from random configs and a few SGD steps on random data, so nothing is
downloaded; with your own, pass your model and your checkpoint files the same way.
"""

from __future__ import annotations

import tempfile
from pathlib import Path

import torch
import torch.nn.functional as F

import linpath


def tiny_bert(seed: int):
    """A one-layer BERT sequence classifier from a random config (no download)."""
    import transformers

    config = transformers.BertConfig(
        vocab_size=100, hidden_size=32, num_hidden_layers=1, num_attention_heads=2, intermediate_size=64
    )
    config.num_labels = 4
    torch.manual_seed(seed)
    return transformers.BertForSequenceClassification(config)


def trained(model, inputs, labels, steps: int = 60, lr: float = 0.05):
    """The model after a few steps of SGD on (inputs, labels); the Hugging Face output's .logits."""
    opt = torch.optim.SGD(model.parameters(), lr=lr, momentum=0.9)
    model.train()
    for _ in range(steps):
        opt.zero_grad()
        out = model(inputs)
        F.cross_entropy(getattr(out, "logits", out), labels).backward()
        opt.step()
    return model.eval()


def hugging_face_path() -> linpath.PathCurve:
    g = torch.Generator().manual_seed(0)
    ids, labels = torch.randint(0, 100, (256, 12), generator=g), torch.randint(0, 4, (256,), generator=g)
    init = tiny_bert(0)
    start = {k: v.clone() for k, v in init.state_dict().items()}
    end = trained(init, ids, labels).state_dict()
    return linpath.path(tiny_bert(1), start, end, (ids, labels), grid=11)


def lightning_checkpoint(state: dict, path: Path, epoch: int) -> Path:
    """What Lightning's Trainer.save_checkpoint writes for a LightningModule holding `self.net`."""
    torch.save(
        {
            "epoch": epoch,
            "global_step": 100 * epoch,
            "pytorch-lightning_version": "2.4.0",
            "state_dict": {f"net.{k}": v for k, v in state.items()},
            "optimizer_states": [],
            "lr_schedulers": [],
        },
        path,
    )
    return path


def lightning_path(folder: Path) -> linpath.PathCurve:
    g = torch.Generator().manual_seed(1)
    x, y = torch.randn(512, 20, generator=g), torch.randint(0, 3, (512,), generator=g)
    torch.manual_seed(0)
    net = torch.nn.Sequential(torch.nn.Linear(20, 64), torch.nn.ReLU(), torch.nn.Linear(64, 3))
    first = lightning_checkpoint(net.state_dict(), folder / "epoch=0.ckpt", 0)
    last = lightning_checkpoint(trained(net, x, y, steps=200).state_dict(), folder / "epoch=9.ckpt", 9)
    return linpath.path(net, first, last, (x, y), grid=11)


def show(name: str, curve: linpath.PathCurve) -> None:
    print(name)
    for x, loss, error in zip(curve.x, curve.loss, curve.error):
        print(f"  x = {x:.1f}  loss {loss:.4f}  error {error:.4f}")


def main() -> None:
    show("Hugging Face BertForSequenceClassification, init -> trained:", hugging_face_path())
    with tempfile.TemporaryDirectory() as folder:
        show("PyTorch Lightning checkpoints epoch=0.ckpt -> epoch=9.ckpt:", lightning_path(Path(folder)))


if __name__ == "__main__":
    main()
