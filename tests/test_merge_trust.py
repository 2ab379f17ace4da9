"""`linpath merge` under a hostile user (issue 30, items 2, 10, 15 and 17): a source whose sweep
is unfinished, killed or still running; a merge interrupted at every write and resumed; a
merged study taking a new setting; Keeper and `linpath import` runs from several machines.

Fast cases use run folders written by hand (tests/test_merge.fake_run); the Keeper and import
cases sweep real tiny models and check the study's paths against the plain loop over the
sources' own checkpoints (tests/oracle.py)."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
import torch

import linpath
from linpath.analysis.coverage import count_text
from linpath.analysis.curves import load_curves
from linpath.io.rundir import RunDir
from linpath.runs import merge as merge_module
from linpath.runs.import_dir import import_folders
from linpath.runs.merge import merge_runs
from linpath.sweep import items as items_module
from linpath.sweep.items import item_problem

from . import kept_runs
from ._reliability import record
from .oracle import plain_path
from .test_concurrency import Holder
from .test_merge import OTHER, PAPER_LIKE, STEPS, fake_run, refusal, snapshot

# --- item 2: a source whose sweep is unfinished, killed or running -----------------------------


def test_a_source_whose_sweep_was_killed_is_refused_naming_folder_setting_and_items(tmp_path):
    a, b = fake_run(tmp_path / "a", [0]), fake_run(tmp_path / "b", [1])
    for t in (4, 32):  # b's sweep was killed after t = 0
        b.item_file(PAPER_LIKE, 1, t).unlink()
    message = refusal(tmp_path / "study", [a.root, b.root])
    assert message.startswith(
        f"sweep settings not every replicate has finished: {PAPER_LIKE}: {b.root}: replicate 1 lacks t = 4, 32; "
        "finish those sweeps ('linpath sweep' resumes), merge only the other settings (--setting KEY), "
        "or pass --allow-incomplete"
    )
    assert not (tmp_path / "study").exists()
    record("fault", "merge of a source whose sweep was killed (issue 30.2)", f"exit 2: {message}")


def test_allow_incomplete_merges_and_the_report_states_the_counts(tmp_path):
    a, b = fake_run(tmp_path / "a", [0]), fake_run(tmp_path / "b", [1])
    b.item_file(PAPER_LIKE, 1, 32).unlink()
    merged = merge_runs(tmp_path / "study", [a.root, b.root], allow_incomplete=True)
    assert merged.notes == [f"merged incomplete: {PAPER_LIKE}: {b.root}: replicate 1 lacks t = 32"]
    curves = load_curves(merged.study, PAPER_LIKE)
    assert count_text(curves, 32) == "1 of 2 replicates" and count_text(curves, 4) == ""


def test_a_source_being_swept_is_refused(tmp_path):
    a, b = fake_run(tmp_path / "a", [0]), fake_run(tmp_path / "b", [1])
    with Holder(b.root, "sweep-rank0") as sweep:
        message = refusal(tmp_path / "study", [a.root, b.root])
    assert message == f"{b.root} is being swept now (pid {sweep.pid}): merge it when that has finished"
    assert not (tmp_path / "study").exists()
    merge_runs(tmp_path / "study", [a.root, b.root])  # once it has finished
    record("fault", "merge while a source's sweep is running (issue 30.2)", f"exit 2: {message}")


def test_a_replicate_with_no_path_of_a_setting_is_named(tmp_path):
    a, b = fake_run(tmp_path / "a", [0, 1]), fake_run(tmp_path / "b", [2])
    shutil.rmtree(a.sweep_dir / PAPER_LIKE)
    (a.sweep_dir / PAPER_LIKE).mkdir()
    for t in STEPS:  # replicate 0 swept again, replicate 1 not (yet)
        shutil.copy(b.item_file(PAPER_LIKE, 2, t), a.item_file(PAPER_LIKE, 0, t))
        text = a.item_file(PAPER_LIKE, 0, t).read_text().replace("\n2,", "\n0,")
        a.item_file(PAPER_LIKE, 0, t).write_text(text)
    assert "replicate 1 holds none of its paths" in refusal(tmp_path / "study", [a.root, b.root])


# --- item 10: an interrupted merge is resumed -------------------------------------------------


def three_sources(tmp_path: Path) -> list[RunDir]:
    return [
        fake_run(tmp_path / name, [r], settings=(PAPER_LIKE, OTHER))
        for name, r in (("a", 0), ("b", 1), ("c", 2))
    ]


def comparable(folder: Path) -> dict[str, bytes]:
    """The study's files, merged.json without its timestamps."""
    files = {k: v for k, v in snapshot(folder).items() if not k.endswith(".lock")}
    record_ = json.loads(files.pop("merged.json"))
    for source in record_["sources"]:
        source.pop("merged")
    files["merged.json"] = json.dumps(record_, sort_keys=True).encode()
    return files


def count_writes(tmp_path: Path, sources) -> int:
    calls = [0]
    real = merge_module.atomic_write

    def counting(*args, **kwargs):
        calls[0] += 1
        return real(*args, **kwargs)

    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(merge_module, "atomic_write", counting)
        mp.setattr(items_module, "atomic_write", counting)
        merge_runs(tmp_path / "reference", [s.root for s in sources])
    return calls[0]


@pytest.mark.parametrize("every", [False, pytest.param(True, marks=pytest.mark.slow)])
def test_a_merge_killed_at_every_write_resumes_to_the_uninterrupted_study(tmp_path, every):
    """The merge is stopped (KeyboardInterrupt, as a kill) before each of its file writes in
    turn (the fast tier: the first, second, middle and last), then run again: each time the
    study is the uninterrupted merge's, byte for byte."""
    sources = three_sources(tmp_path)
    writes = count_writes(tmp_path, sources)
    reference = comparable(tmp_path / "reference")
    for stop in range(writes) if every else sorted({0, 1, writes // 2, writes - 1}):
        study = tmp_path / f"study{stop}"
        calls = [0]
        real_merge, real_items = merge_module.atomic_write, items_module.atomic_write

        def killed(*args, real=None, **kwargs):
            calls[0] += 1
            if calls[0] > stop:
                raise KeyboardInterrupt
            return real(*args, **kwargs)

        with pytest.MonkeyPatch.context() as mp:
            mp.setattr(merge_module, "atomic_write", lambda *a, **k: killed(*a, real=real_merge, **k))
            mp.setattr(items_module, "atomic_write", lambda *a, **k: killed(*a, real=real_items, **k))
            with pytest.raises(KeyboardInterrupt):
                merge_runs(study, [s.root for s in sources])
        for r in RunDir(study).replicates():  # what a report trusts: only replicates copied whole
            for key in (PAPER_LIKE, OTHER):
                assert all(RunDir(study).item_file(key, r, t).is_file() for t in STEPS), (stop, r)
        merge_runs(study, [s.root for s in sources])
        assert comparable(study) == reference, stop
    record(
        "fault",
        f"merge stopped before {'each' if every else 'four'} of its {writes} writes, then run again (issue 30.10)",
        "every rerun resumed to the uninterrupted study byte for byte; no replicate trusted before its files",
    )


def test_a_study_interrupted_by_an_older_merge_resumes(tmp_path):
    """The issue's case: DONE marks copied, item files not yet (an older linpath copied the
    marks first); every rerun was refused."""
    sources = three_sources(tmp_path)
    merge_runs(tmp_path / "study", [s.root for s in sources])
    study = RunDir(tmp_path / "study")
    shutil.rmtree(study.sweep_dir)
    merged = merge_runs(study.root, [s.root for s in sources])
    assert merged.settings == [OTHER, PAPER_LIKE] and len(study.item_files(PAPER_LIKE)) == 9


@pytest.mark.slow
def test_a_merge_killed_by_sigkill_at_a_random_moment_resumes(tmp_path):
    """A real kill -9 inside a write (the test_faults bootstrap), then `linpath merge` again."""
    import random

    from .test_faults import SEED, start, wait_for

    sources = three_sources(tmp_path)
    merge_runs(tmp_path / "reference", [s.root for s in sources])
    n = random.Random(SEED).randint(1, 12)
    marker = tmp_path / "stalled"
    child = start(["merge", str(tmp_path / "study"), *(str(s.root) for s in sources)], f"csv|{n}", marker)
    try:
        assert wait_for(marker.exists, child), child.communicate()[1][-2000:]
    finally:
        child.kill()
        child.wait()
    merge_runs(tmp_path / "study", [s.root for s in sources])
    assert comparable(tmp_path / "study") == comparable(tmp_path / "reference")
    record(
        "fault",
        f"kill -9 of merge inside its {n}-th csv write",
        "rerun: the uninterrupted study byte for byte",
    )


# --- item 15: a merged study takes a new setting ---------------------------------------------


def test_a_merged_study_takes_a_setting_swept_later(tmp_path):
    a, b = (fake_run(tmp_path / name, [r]) for name, r in (("a", 0), ("b", 1)))
    merge_runs(tmp_path / "study", [a.root, b.root])
    before = snapshot(tmp_path / "study")
    for run, r in ((a, 0), (b, 1)):  # the new setting, swept later on each machine
        other = fake_run(tmp_path / f"later{r}", [r], settings=(OTHER,))
        shutil.copytree(other.sweep_dir / OTHER, run.sweep_dir / OTHER)
    merged = merge_runs(tmp_path / "study", [a.root, b.root])
    assert merged.settings == [OTHER, PAPER_LIKE] and merged.added == []
    after = snapshot(tmp_path / "study")
    assert all(after[k] == v for k, v in before.items() if k.startswith(("sweep/", "replicate-")))
    assert load_curves(merged.study, OTHER).replicates == [0, 1]
    record(
        "bad-input",
        "a merged study given a setting swept later (issue 30.15)",
        "taken: the study holds both settings",
    )


def test_a_study_refuses_new_replicates_without_its_settings(tmp_path):
    a, b = (
        fake_run(tmp_path / "a", [0], settings=(PAPER_LIKE, OTHER)),
        fake_run(tmp_path / "b", [1], settings=(PAPER_LIKE, OTHER)),
    )
    merge_runs(tmp_path / "study", [a.root, b.root])
    c = fake_run(tmp_path / "c", [2], settings=(PAPER_LIKE,))
    message = refusal(tmp_path / "study", [c.root], [PAPER_LIKE])
    assert f"{OTHER} (the study's, not merged): replicates 2 would have none" in message
    merged = merge_runs(tmp_path / "study", [c.root], [PAPER_LIKE], allow_incomplete=True)
    assert merged.replicates == [0, 1, 2] and load_curves(merged.study, OTHER).replicates == [0, 1]


# --- item 17: Keeper and import runs ----------------------------------------------------------


def keeper_machine(folder: Path, r: int, lr_seed: int = 0) -> Path:
    """One Keeper replicate trained and swept on its own machine (a folder of its own)."""
    run_dir = folder / "kept"
    kept_runs.train(run_dir, 40, replicate=r, seed=r + lr_seed)
    inputs, labels = kept_runs.vectors(128, seed=9)
    kept_runs.sweep_and_report(run_dir, kept_runs.MODEL, inputs, labels, folder, points=3)
    return run_dir


@pytest.mark.slow
def test_keeper_runs_of_two_machines_merge_to_the_plain_loop(tmp_path):
    machines = [keeper_machine(tmp_path / f"m{r}", r) for r in (0, 1)]
    merged = merge_runs(tmp_path / "study", machines)
    study = merged.study
    assert merged.replicates == [0, 1] and not list(study.root.rglob("*.pt"))
    key = merged.settings[0]
    assert study.setting_data(key).read_bytes() == RunDir(machines[0]).setting_data(key).read_bytes()
    inputs, labels = kept_runs.vectors(128, seed=9)
    rows = kept_runs.swept_rows(study.root)
    for (r, t), points in rows.items():
        source = RunDir(machines[r])
        start = torch.load(source.checkpoint(r, t), weights_only=True)
        end = torch.load(source.checkpoint(r, 40), weights_only=True)
        want = plain_path(kept_runs.TinyMLP, start, end, inputs, labels, [x for x, _, _ in points])
        for (_, loss, error), (want_loss, want_error) in zip(points, want):
            assert abs(loss - want_loss) < 1e-5 * max(1, want_loss) and abs(error - want_error) < 1e-9
    assert len(rows) == 2 * 7
    record(
        "bad-input",
        "merge of Keeper runs kept on two machines (issue 30.17)",
        "merged; paths equal the plain loop",
    )


@pytest.mark.slow
def test_keeper_runs_of_other_hparams_or_data_are_refused(tmp_path):
    a = keeper_machine(tmp_path / "m0", 0)
    other = tmp_path / "m1" / "kept"
    (tmp_path / "m1").mkdir()
    model = kept_runs.TinyMLP()
    keeper = linpath.Keeper(other, model, 40, hparams={"lr": 0.3}, replicate=1)
    for step in range(1, 41):
        keeper.step(step)
    keeper.finish()
    message = refusal(tmp_path / "study", [a, other])
    assert (
        message.startswith("runs of different specs cannot be merged")
        and "hparams['lr'] 0.2 vs 0.3" in message
    )
    b = keeper_machine(tmp_path / "m2", 1)
    record_path = RunDir(b).setting_data(RunDir(b).swept_settings()[0])
    data = json.loads(record_path.read_text())
    record_path.write_text(json.dumps({**data, "sha256": "0" * 64}))
    message = refusal(tmp_path / "study2", [a, b])
    assert "was evaluated on other data in" in message


@pytest.mark.slow
def test_imported_runs_swept_apart_merge(tmp_path):
    """One `linpath import`, copied to a second machine: each copy swept in another setting,
    the two merged (the same spec hash) into one study holding both."""
    ckpts = tmp_path / "ckpts"
    ckpts.mkdir()
    torch.manual_seed(0)
    for t in (0, 10, 20):
        torch.save(kept_runs.TinyMLP().state_dict(), ckpts / f"step-{t}.pt")
    run, _ = import_folders([ckpts], tmp_path / "machine1", pattern="step-{t}.pt")
    copy = tmp_path / "machine2" / run.root.name
    shutil.copytree(run.root, copy)
    inputs, labels = kept_runs.vectors(64, seed=3)
    kept_runs.sweep_and_report(run.root, kept_runs.MODEL, inputs, labels, tmp_path / "machine1", points=3)
    kept_runs.sweep_and_report(copy, kept_runs.MODEL, inputs, labels, tmp_path / "machine2", points=5)
    merged = merge_runs(tmp_path / "study", [run.root, copy])
    assert len(merged.settings) == 2 and merged.replicates == [0]
    for key in merged.settings:
        for path in merged.study.item_files(key):
            assert item_problem(path) is None


def test_items_an_interrupted_merge_left_of_a_replicate_never_finished_are_not_reported(tmp_path, capsys):
    """Killed after replicate 2's items, before its DONE mark, then never run again with its
    source: the study's tables and report leave replicate 2 out, and say why."""
    sources = three_sources(tmp_path)
    merge_runs(tmp_path / "study", [s.root for s in sources])
    study = RunDir(tmp_path / "study")
    study.done_marker(2).unlink()
    curves = load_curves(study, PAPER_LIKE)
    assert curves.replicates == [0, 1]
    assert (
        "its replicate has no DONE mark in this study (an interrupted merge: run it again)"
        in capsys.readouterr().err
    )
