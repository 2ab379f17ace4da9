"""linpath.Keeper: the kept steps are the paper's grid (or the one asked for), each file is the
state the training loop itself recorded at that step, the folder is a linpath run (external
spec) that resumes, refuses in one line what it must, and sweeps and reports through the command
line to the numbers of a plain loop over the same states."""

from __future__ import annotations

import json
import random
import re

import numpy as np
import pytest
import torch
import torch.nn.functional as F

import linpath
from linpath.cli import main
from linpath.config.external import ExternalSpec
from linpath.config.spec import read_spec
from linpath.errors import LinpathError
from linpath.io.rundir import RunDir
from linpath.train.keeper import Keeper, resolve_grid, restore_state
from tests.kept_runs import MODEL, TinyMLP, check_against_oracle, train, vectors
from tests.test_api import one_line_error

PAPER_40 = [0, 1, 2, 4, 8, 16, 32, 40]  # {0} ∪ {2^k < 40} ∪ {40}, written out by hand
PAPER_3000 = [0, 1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1024, 2000, 3000]


def test_grids():
    assert list(resolve_grid("paper", 40)) == PAPER_40
    assert list(resolve_grid("paper", 3000)) == PAPER_3000
    assert list(resolve_grid([5, 10], 40)) == [0, 5, 10, 40]
    assert list(resolve_grid("10,20", 40)) == sorted(
        {*PAPER_40, 10, 20}
    )  # --keep-steps: the paper's and these
    assert list(resolve_grid("1ep,2ep5it", 40, steps_per_epoch=10)) == sorted({*PAPER_40, 10, 25})
    with pytest.raises(LinpathError, match="past the end of training"):
        resolve_grid([50], 40)
    with pytest.raises(LinpathError, match="give steps_per_epoch"):
        resolve_grid("2ep", 40)
    with pytest.raises(LinpathError, match="not a step"):
        resolve_grid("ten", 40)


@pytest.mark.parametrize("keep,grid", [("paper", PAPER_40), ([3, 7, 20], [0, 3, 7, 20, 40])])
def test_kept_files_are_the_grid_and_the_loops_states(tmp_path, keep, grid):
    seen = train(tmp_path / "run", 40, keep, record=range(41))
    run = RunDir(tmp_path / "run")
    assert run.saved_steps(0) == grid
    for t in grid:
        saved = torch.load(run.checkpoint(0, t), weights_only=True)
        assert saved.keys() == seen[t].keys()
        assert all(torch.equal(saved[k], seen[t][k]) for k in saved), t
    assert run.done_marker(0).read_text() == "40\n"
    spec = json.loads(run.spec_path.read_text())
    assert spec["external"] == {"model_class": "tests.kept_runs.TinyMLP", "hparams": {"lr": 0.2}}
    assert spec["kept_steps"] == grid and spec["total_steps"] == 40 and spec["kept_by"] == "keeper"
    assert read_spec(run, external_ok=True).hash == spec["hash"]


def test_resumes_the_same_spec_and_refuses_others(tmp_path):
    folder = tmp_path / "run"
    model = TinyMLP()
    keeper = Keeper(folder, model, 40, hparams={"lr": 0.2})
    for step in range(1, 9):
        keeper.step(step)
    keeper.close()  # a training killed at step 8
    again = Keeper(
        folder, model, 40, hparams={"lr": 0.2}, start_step=8
    )  # resumed from the user's own checkpoint
    for step in range(9, 41):
        again.step(step)
    again.finish()
    assert RunDir(folder).saved_steps(0) == PAPER_40
    refusals = [
        (lambda: Keeper(folder, model, 40, hparams={"lr": 0.3}), "hparams['lr'] 0.2 vs 0.3"),
        (lambda: Keeper(folder, model, 50, hparams={"lr": 0.2}), "total_steps 40 vs 50"),
        (lambda: Keeper(folder, model, 40, hparams={"lr": 0.2}), "is finished (DONE)"),
    ]
    for make, message in refusals:
        with pytest.raises(LinpathError, match=re.escape(message)) as e:
            make()
        assert "\n" not in str(e.value)
    second = Keeper(folder, model, 40, hparams={"lr": 0.2}, replicate=1)  # another seed of the same spec
    second.close()
    assert json.loads((folder / "spec.json").read_text())["replicates"] == 2
    (tmp_path / "other").mkdir()
    (tmp_path / "other" / "notes.txt").write_text("mine")
    with pytest.raises(LinpathError, match="not empty and not a linpath run folder"):
        Keeper(tmp_path / "other", model, 40)


def test_bad_use_is_one_line(tmp_path):
    model = TinyMLP()
    with pytest.raises(LinpathError, match="positive whole number"):
        Keeper(tmp_path / "a", model, 0)
    with pytest.raises(LinpathError, match="must be a torch.nn.Module"):
        Keeper(tmp_path / "a", "model", 10)
    keeper = Keeper(tmp_path / "b", model, 10)
    with pytest.raises(LinpathError, match="outside 0..10"):
        keeper.step(11)
    with pytest.warns(UserWarning, match="past the kept steps"):
        keeper.step(5)
    with pytest.raises(LinpathError, match="training ended at step 5, not at total_steps 10"):
        keeper.finish()
    assert not RunDir(tmp_path / "b").done_marker(0).exists()


def test_jumping_over_kept_steps_warns(tmp_path):
    keeper = Keeper(tmp_path / "run", TinyMLP(), 40)
    with pytest.warns(UserWarning, match="past the kept steps 1, 2, 4"):
        keeper.step(5)
    with pytest.warns(UserWarning, match="no state was kept at steps 1, 2, 4"):
        keeper.finish(40)


def test_only_rank_zero_writes(tmp_path, monkeypatch):
    monkeypatch.setenv("RANK", "1")
    keeper = Keeper(tmp_path / "run", TinyMLP(), 4)
    for step in range(1, 5):
        keeper.step(step)
    keeper.finish()
    assert not (tmp_path / "run").exists()


def test_optimizer_and_rng_state_spawn_exactly(tmp_path):
    """restore_state at a kept step, then the same loop, gives bitwise the parent's continuation:
    the optimizer's momentum and the random generators (which draw the batches here) come back."""
    x, y = vectors()

    def run_steps(model, optimizer, steps):
        for _ in steps:
            batch = torch.randint(0, len(y), (32,))
            _ = random.random() + np.random.rand()  # the generators a user's loop might draw from
            optimizer.zero_grad()
            F.cross_entropy(model(x[batch]), y[batch]).backward()
            optimizer.step()

    torch.manual_seed(0)
    model = TinyMLP()
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
    keeper = Keeper(tmp_path / "run", model, 20, [8], optimizer=optimizer, rng=True)
    for step in range(1, 21):
        run_steps(model, optimizer, [step])
        keeper.step(step)
    keeper.finish()
    child = TinyMLP()
    child_optimizer = torch.optim.SGD(child.parameters(), lr=0.1, momentum=0.9)
    assert restore_state(tmp_path / "run", 8, child, child_optimizer) == 8
    run_steps(child, child_optimizer, range(9, 21))
    final = torch.load(RunDir(tmp_path / "run").checkpoint(0, 20), weights_only=True)
    assert all(torch.equal(child.state_dict()[k], final[k]) for k in final)


def test_external_run_needs_model_and_data(tmp_path, capsys):
    train(tmp_path / "run", 8)
    with pytest.raises(LinpathError, match="--model module:callable and --data") as e:
        read_spec(RunDir(tmp_path / "run"))
    assert "\n" not in str(e.value)
    assert isinstance(read_spec(RunDir(tmp_path / "run"), external_ok=True), ExternalSpec)
    for argv in (["spawn", str(tmp_path / "run"), "--at", "4"], ["sweep", str(tmp_path / "run")]):
        assert "is an external run" in one_line_error(capsys, argv)
    line = one_line_error(capsys, ["sweep", str(tmp_path / "run"), "--model", MODEL])
    assert "--model and --data go together" in line


def test_keeper_is_exported_lazily():
    assert linpath.Keeper is Keeper and "Keeper" in linpath.__all__


@pytest.mark.slow
def test_sweep_report_and_load_equal_a_plain_loop(tmp_path, capsys):
    """Keeper → `linpath sweep --model --data` → `linpath report`; every path equals the plain
    loop over the same kept states; linpath.load, `trajectory` read the folder as any run."""
    run = tmp_path / "run"
    train(run, 40, keep=[3, 12])
    inputs, labels = vectors(200, seed=1)
    torch.save((inputs, labels), tmp_path / "eval.pt")
    argv = ["sweep", str(run), "--model", MODEL, "--data", str(tmp_path / "eval.pt"), "--points", "5"]
    assert main([*argv, "--quiet"]) == 0
    assert check_against_oracle(run, TinyMLP, inputs, labels) == 3  # t = 0, 3, 12 (40 is the end)
    assert main(["report", str(run)]) == 0
    report = (run / "report.md").read_text()
    assert "states kept from your own training of `tests.kept_runs.TinyMLP`, 40 steps" in report
    tables = linpath.load(run)
    assert sorted(tables.paths["t"].unique()) == [0, 3, 12] and isinstance(tables.spec, ExternalSpec)
    assert main(["trajectory", str(run)]) == 0
    data = ["--model", MODEL, "--data", str(tmp_path / "eval.pt")]
    assert main(["plane", str(run), "--at", "12", "--grid", "3", *data, "--quiet"]) == 0
    start, end = (str(run / "replicate-0" / "checkpoints" / f"iter-{t:07d}.pt") for t in (0, 40))
    assert main(["path", start, end, "--points", "5", "--out", str(tmp_path / "path"), *data, "--quiet"]) == 0
    capsys.readouterr()
    assert "is an external run" in one_line_error(capsys, ["path", start, end])
    # other data for the same setting is refused, never mixed into its results
    torch.save(vectors(200, seed=2), tmp_path / "other.pt")
    other = [*argv[:5], str(tmp_path / "other.pt"), *argv[6:]]
    assert "was evaluated on other data" in one_line_error(capsys, other)
