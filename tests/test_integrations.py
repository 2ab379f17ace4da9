"""The Lightning and Hugging Face callbacks (linpath.integrations), each with a real Trainer on
a tiny model for a few dozen steps on the CPU (nothing downloaded, nothing logged): the kept
steps are the paper's grid, the kept states are the training's (t = 0 before the first update,
t = 1 after it), and `linpath sweep` and `report` on the folder give the numbers of a plain loop
over the same states. Also: only rank 0 writes, and examples/own_training.py runs."""

from __future__ import annotations

import importlib.util
import json
import logging
from pathlib import Path
from types import SimpleNamespace

import pytest
import torch
import torch.nn.functional as F

from linpath.io.rundir import RunDir
from tests.kept_runs import (
    BERT,
    MODEL,
    Logits,
    TinyMLP,
    check_against_oracle,
    sequences,
    sweep_and_report,
    tiny_bert,
    vectors,
)

pytestmark = pytest.mark.slow  # each trains with a framework's Trainer, and imports it
REPO = Path(__file__).resolve().parents[1]
PAPER_40 = [0, 1, 2, 4, 8, 16, 32, 40]
PAPER_30 = [0, 1, 2, 4, 8, 16, 30]


def lightning_module(lr: float = 0.2):
    import lightning.pytorch as pl

    class Module(pl.LightningModule):
        def __init__(self, lr: float):
            super().__init__()
            self.save_hyperparameters()
            self.net = TinyMLP()

        def forward(self, x):
            return self.net(x)

        def training_step(self, batch, index):
            x, y = batch
            return F.cross_entropy(self.net(x), y)

        def configure_optimizers(self):
            return torch.optim.SGD(self.parameters(), lr=self.hparams.lr)

    return Module(lr)


def test_lightning_keep_steps(tmp_path):
    pytest.importorskip("lightning")
    import lightning.pytorch as pl

    from linpath.integrations.lightning import KeepSteps

    logging.getLogger("lightning.pytorch").setLevel(logging.WARNING)
    x, y = vectors()
    loader = torch.utils.data.DataLoader(torch.utils.data.TensorDataset(x, y), batch_size=32)  # in order
    torch.manual_seed(0)
    module = lightning_module()
    trainer = pl.Trainer(
        max_steps=40,
        accelerator="cpu",
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        callbacks=[KeepSteps(tmp_path / "run")],  # the whole LightningModule: keys "net.net.0.weight", ...
    )
    trainer.fit(module, loader)
    run = RunDir(tmp_path / "run")
    assert run.saved_steps(0) == PAPER_40 and run.done_marker(0).read_text() == "40\n"
    spec = json.loads(run.spec_path.read_text())
    assert spec["external"]["hparams"] == {"lr": 0.2} and spec["kept_by"] == "lightning"
    # t counts optimizer updates: replayed by hand from the kept t = 0, batch after batch in order
    replay = TinyMLP()
    replay.load_state_dict(
        {k.removeprefix("net."): v for k, v in torch.load(run.checkpoint(0, 0), weights_only=True).items()}
    )
    optimizer = torch.optim.SGD(replay.parameters(), lr=0.2)
    for t in range(1, 9):
        i = (t - 1) % 8
        optimizer.zero_grad()
        F.cross_entropy(replay(x[32 * i : 32 * i + 32]), y[32 * i : 32 * i + 32]).backward()
        optimizer.step()
        if t in PAPER_40:
            kept = torch.load(run.checkpoint(0, t), weights_only=True)
            for k, v in replay.state_dict().items():
                assert torch.allclose(kept[f"net.{k}"], v, rtol=0, atol=1e-6), (t, k)
    # the sweep takes --model TinyMLP: the module's "net." prefix is fitted away
    inputs, labels = vectors(120, seed=1)
    sweep_and_report(run.root, MODEL, inputs, labels, tmp_path)
    paths = check_against_oracle(run.root, TinyMLP, inputs, labels, rename=lambda k: k.removeprefix("net."))
    assert paths == len(PAPER_40) - 1


class Sequences(torch.utils.data.Dataset):
    def __init__(self, ids, labels):
        self.ids, self.labels = ids, labels

    def __len__(self):
        return len(self.labels)

    def __getitem__(self, i):
        return {"input_ids": self.ids[i], "labels": self.labels[i]}


def test_hugging_face_keep_steps_callback(tmp_path):
    transformers = pytest.importorskip("transformers")
    pytest.importorskip("accelerate")
    from linpath.integrations.hf import KeepStepsCallback

    torch.manual_seed(0)
    model = tiny_bert()
    init = {k: v.clone() for k, v in model.state_dict().items()}
    args = transformers.TrainingArguments(
        output_dir=str(tmp_path / "trainer"),
        max_steps=30,
        per_device_train_batch_size=16,
        learning_rate=0.1,
        optim="sgd",
        lr_scheduler_type="constant",
        report_to=[],
        save_strategy="no",
        logging_strategy="no",
        use_cpu=True,
        disable_tqdm=True,
    )
    trainer = transformers.Trainer(
        model=model,
        args=args,
        train_dataset=Sequences(*sequences()),
        callbacks=[KeepStepsCallback(tmp_path / "run")],
    )
    trainer.train()
    run = RunDir(tmp_path / "run")
    assert run.saved_steps(0) == PAPER_30 and run.done_marker(0).read_text() == "30\n"
    first, last = (torch.load(run.checkpoint(0, t), weights_only=True) for t in (0, 30))
    assert all(torch.equal(first[k], init[k]) for k in init)  # t = 0: before the first update
    trained = trainer.model.state_dict()
    assert all(torch.equal(last[k], trained[k].cpu()) for k in trained)  # the end: the trained model
    one = torch.load(run.checkpoint(0, 1), weights_only=True)
    assert not torch.equal(one["classifier.weight"], first["classifier.weight"])  # t = 1: after one update
    spec = json.loads(run.spec_path.read_text())
    assert spec["external"]["hparams"]["learning_rate"] == 0.1 and spec["kept_by"] == "huggingface"
    inputs, labels = sequences(64, seed=1)
    sweep_and_report(run.root, BERT, inputs, labels, tmp_path)
    paths = check_against_oracle(
        run.root, lambda: Logits(tiny_bert()), inputs, labels, rename=lambda k: f"model.{k}"
    )
    assert paths == len(PAPER_30) - 1


def test_only_rank_zero_keeps(tmp_path):
    pytest.importorskip("lightning")
    pytest.importorskip("transformers")
    from linpath.integrations.hf import KeepStepsCallback
    from linpath.integrations.lightning import KeepSteps

    callback = KeepSteps(tmp_path / "lightning")
    trainer = SimpleNamespace(is_global_zero=False, global_step=0, max_steps=10, optimizers=[])
    callback.on_train_start(trainer, TinyMLP())
    callback.on_train_batch_end(trainer, None, None, None, 0)
    callback.on_train_end(trainer, None)
    hf = KeepStepsCallback(tmp_path / "hf")
    state = SimpleNamespace(is_world_process_zero=False, global_step=0, max_steps=10)
    hf.on_train_begin(None, state, None, model=TinyMLP())
    hf.on_step_end(None, state, None)
    hf.on_train_end(None, state, None)
    assert not (tmp_path / "lightning").exists() and not (tmp_path / "hf").exists()


def test_example_script(tmp_path):
    pytest.importorskip("lightning")
    pytest.importorskip("transformers")
    spec = importlib.util.spec_from_file_location("own_training", REPO / "examples" / "own_training.py")
    example = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(example)
    runs = example.main(["--out", str(tmp_path), "--steps", "20", "--points", "3"])
    for run in runs.values():
        assert RunDir(run).saved_steps(0) == [0, 1, 2, 4, 8, 16, 20]
        assert (run / "report.md").is_file() and (run / "paths.csv").is_file()
