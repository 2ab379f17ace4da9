"""A hostile user against the newest commands (issue 30, items 13, 16 and 17, and new cases of
the same classes): absurd options refused in one line before any work, killed imports that
leave nothing behind for ever, hand edits of tables and item files, commands at once.

Each case is recorded for docs/reliability.md (tests/_reliability.record)."""

from __future__ import annotations

import errno
import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

import linpath
from linpath.analysis.curves import load_curves
from linpath.data.source import EvalSet
from linpath.errors import LinpathError
from linpath.io.rundir import RunDir
from linpath.io.scratch import remove_stale_scratch
from linpath.io.tensors import save_tensors
from linpath.report.notes import running_notes
from linpath.runs.import_dir import IMPORT_KINDS, import_folders
from linpath.runs.merge import merge_runs
from linpath.runs.spawn import MAX_CHILDREN, SpawnOptions, spawn, spawn_dir, spawn_steps, write_summary
from linpath.sweep.engine_entry import evaluation_subset
from linpath.sweep.grids import Grid
from linpath.sweep.items import item_problem
from linpath.sweep.run import SweepOptions, run_sweep
from linpath.sweep.setting import SweepSetting

from . import kept_runs
from ._reliability import record
from .hostile_runs import untrained_run
from .test_cli import one_line_error
from .test_concurrency import Holder, files_of
from .test_merge import PAPER_LIKE, fake_run
from .test_openlth import openlth_run  # noqa: F401 (a fixture)

# --- item 17: --eval-examples 0 and more than the split holds ---------------------------------


def test_eval_examples_zero_is_refused_before_anything(tmp_path, capsys, data_root):
    run = untrained_run(tmp_path)
    before = files_of(run.root)
    line = one_line_error(
        capsys, ["sweep", str(run.root), "--eval-examples", "0", "--data-root", str(data_root)]
    )
    assert line == (
        "linpath: error: --eval-examples 0 would evaluate no example: give a positive number, or leave the "
        "flag out to evaluate the whole split"
    )
    assert files_of(run.root) == before
    assert SweepSetting().eval_examples == 0 and SweepSetting().key.endswith(
        "-fp32"
    )  # the default: whole split
    record("bad-input", "sweep --eval-examples 0 (issue 30.17)", f"exit 2: {line}")


def test_eval_examples_beyond_the_split_is_refused_naming_its_size(tmp_path, mnist):
    run = untrained_run(tmp_path, replicates=(0,))
    setting = SweepSetting(grid=Grid(points=3), eval_examples=20000)
    with pytest.raises(LinpathError) as e:
        run_sweep(run, setting, mnist, SweepOptions(from_steps=[0], progress=False))
    message = str(e.value)
    assert message == (
        "--eval-examples 20000 is more than the split holds (10000 examples); leave the flag out to evaluate "
        "the whole split"
    )
    assert not run.item_files(setting.key)
    whole, population = evaluation_subset(mnist.eval_set("test"), 10000)  # exactly the split: all of it
    assert len(whole) == 10000 and population is None
    record(
        "bad-input",
        "sweep --eval-examples 20000 on a 10,000-example split (issue 30.17)",
        f"refused: {message}",
    )


def test_the_api_refuses_more_examples_than_the_data_holds():
    inputs, labels = kept_runs.vectors(64)
    model = kept_runs.TinyMLP()
    state = model.state_dict()
    with pytest.raises(
        LinpathError, match=r"--eval-examples 65 is more than the split holds \(64 examples\)"
    ):
        linpath.path(model, state, state, (inputs, labels), grid=3, eval_examples=65)


# --- item 13: spawn --children bounded ----------------------------------------------------------


def test_spawn_children_are_bounded_before_any_training(tmp_path, capsys, data_root, mnist):
    run = untrained_run(tmp_path, replicates=(0,))
    argv = [
        "spawn",
        str(run.root),
        "--at",
        "16",
        "--children",
        "100000",
        "--data-root",
        str(data_root),
        "--quiet",
    ]
    line = one_line_error(capsys, argv)
    assert line == (
        f"linpath: error: --children 100000 is more than {MAX_CHILDREN}: each child is a full training to the "
        "end of the schedule and every pair a path (4999950000 of them)"
    )
    assert not run.spawn_root.exists()
    with pytest.raises(LinpathError, match="at least 2"):
        spawn(run.root, 16, mnist, options=SpawnOptions(children=True, progress=False))
    record(
        "bad-input", "spawn --at 16 --children 100000 (issue 30.13)", f"exit 2 before any training: {line}"
    )


# --- item 16: a killed import leaves nothing for ever ------------------------------------------


def dead_pid() -> int:
    child = subprocess.Popen([sys.executable, "-c", "pass"])
    child.wait()
    return child.pid


def checkpoint_folder(folder: Path) -> Path:
    folder.mkdir(parents=True)
    torch.manual_seed(0)
    for t in (0, 10):
        torch.save(kept_runs.TinyMLP().state_dict(), folder / f"step-{t}.pt")
    return folder


def test_a_killed_imports_scratch_folder_is_removed_by_the_next_import(tmp_path):
    out = tmp_path / "runs"
    stale = out / f".import-ckpts-0123456789.{dead_pid()}.tmp"
    (stale / "replicate-0" / "checkpoints").mkdir(parents=True)
    (stale / "replicate-0" / "checkpoints" / "iter-0000000.pt").write_bytes(b"x" * 1000)
    theirs = out / ".my-own.123.tmp"  # a user's folder of that shape: not an import's, kept
    theirs.mkdir()
    run, _ = import_folders([checkpoint_folder(tmp_path / "ckpts")], out, pattern="step-{t}.pt")
    assert not stale.exists() and theirs.is_dir() and run.spec_path.is_file()
    assert sorted(p.name for p in out.iterdir()) == sorted([run.root.name, theirs.name])
    record(
        "fault",
        "a killed import's .import-*.<pid>.tmp/ left behind (issue 30.16)",
        "removed by the next import",
    )


def test_a_live_imports_scratch_folder_is_kept(tmp_path):
    out = tmp_path / "runs"
    live = out / ".import-ckpts-0123456789.1.tmp"
    live.mkdir(parents=True)
    with Holder(live, "scratch") as other:
        renamed = live.with_name(f".import-ckpts-0123456789.{other.pid}.tmp")
        live.rename(renamed)
        assert remove_stale_scratch(out, IMPORT_KINDS) == 0 and renamed.is_dir()
    assert remove_stale_scratch(out, IMPORT_KINDS) == 1 and not renamed.exists()


@pytest.mark.slow
def test_an_import_killed_by_sigkill_mid_write_leaves_nothing_after_the_next(tmp_path):
    from .test_faults import start, wait_for

    source = checkpoint_folder(tmp_path / "ckpts")
    out = tmp_path / "runs"
    marker = tmp_path / "stalled"
    child = start(["import", str(source), "--pattern", "step-{t}.pt", "--out", str(out)], "iter-|2", marker)
    try:
        assert wait_for(marker.exists, child), child.communicate()[1][-2000:]
        assert [p.name for p in out.iterdir() if p.name.endswith(".tmp")]
    finally:
        child.kill()
        child.wait()
    run, _ = import_folders([source], out, pattern="step-{t}.pt")
    assert [p.name for p in out.iterdir()] == [run.root.name]
    assert run.saved_steps(0) == [0, 10]
    record(
        "fault",
        "kill -9 of linpath import inside its second checkpoint write",
        "the rerun removed its scratch folder and imported whole",
    )


@pytest.mark.slow
def test_a_killed_openlth_import_leaves_no_half_run(tmp_path, openlth_run):  # noqa: F811
    from linpath.runs.openlth import import_run

    from .test_faults import start, wait_for

    out = tmp_path / "runs"
    marker = tmp_path / "stalled"
    child = start(["import-openlth", str(openlth_run), "--out", str(out)], "iter-|2", marker)
    try:
        assert wait_for(marker.exists, child), child.communicate()[1][-2000:]
    finally:
        child.kill()
        child.wait()
    assert all(p.name.startswith(".") for p in out.iterdir())  # no visible half run
    run, _ = import_run(openlth_run, out)
    assert [p.name for p in out.iterdir()] == [run.root.name] and run.replicates()
    record(
        "fault",
        "kill -9 of linpath import-openlth mid-write",
        "no half run visible; the rerun removed the scratch and imported",
    )


# --- new cases: merge -------------------------------------------------------------------------


def merge_refusal(study, sources, case: str, **options) -> str:
    """merge_runs' one-line refusal, recorded."""
    with pytest.raises(LinpathError) as e:
        merge_runs(study, [Path(s) for s in sources], **options)
    message = str(e.value)
    assert "\n" not in message
    record("bad-input", case, f"exit 2: {message}")
    return message


@pytest.mark.parametrize(
    "case,text,words",
    [
        ("merged.json nested 100,000 deep", "[" * 100000 + "]" * 100000, "nested too deeply"),
        ("merged.json a list", "[]", "is not a merge record"),
        (
            "merged.json sources naming no folder",
            '{"hash": "x", "sources": [1, {"path": [2]}]}',
            "is not a merge record",
        ),
    ],
)
def test_a_hand_edited_merged_json_is_one_line_and_changes_nothing(tmp_path, case, text, words):
    a, b = fake_run(tmp_path / "a", [0]), fake_run(tmp_path / "b", [1])
    study = merge_runs(tmp_path / "study", [a.root]).study
    study.merged_record.write_text(text)
    before = files_of(study.root)
    assert words in merge_refusal(study.root, [b.root], f"merge into a study whose {case}")
    assert files_of(study.root) == before


def test_a_done_mark_edited_by_hand_is_refused(tmp_path):
    a, b = fake_run(tmp_path / "a", [0]), fake_run(tmp_path / "b", [1])
    b.done_marker(1).write_text("abc\n")
    message = merge_refusal(
        tmp_path / "study", [a.root, b.root], "merge of a source whose DONE mark says 'abc'"
    )
    assert message.startswith(f"{b.done_marker(1)} does not hold the step replicate 1 finished at")


@pytest.mark.parametrize("how", ["a folder", "a link to another replicate's item", "a UTF-8 BOM (Excel)"])
def test_an_item_file_made_odd_by_hand_is_refused_naming_it(tmp_path, how):
    a, b = fake_run(tmp_path / "a", [0]), fake_run(tmp_path / "b", [1])
    item = b.item_file(PAPER_LIKE, 1, 4)
    if how == "a folder":
        item.unlink()
        item.mkdir()
    elif how.startswith("a link"):
        item.unlink()
        os.symlink(a.item_file(PAPER_LIKE, 0, 4), item)
    else:
        item.write_bytes(b"\xef\xbb\xbf" + item.read_bytes())
    message = merge_refusal(
        tmp_path / "study", [a.root, b.root], f"merge of a source whose item file is {how}"
    )
    assert message.startswith(f"{item}: ")


def test_an_item_with_crlf_line_ends_reads_the_same_numbers(tmp_path):
    """Saved again by a spreadsheet (CRLF), without its digest: the same numbers are read."""
    a, b = fake_run(tmp_path / "a", [0]), fake_run(tmp_path / "b", [0])
    item = b.item_file(PAPER_LIKE, 0, 4)
    item.write_bytes(item.read_bytes().replace(b"\n", b"\r\n"))
    assert item_problem(item) is None
    got, want = load_curves(b, PAPER_LIKE).by_item[(0, 4)], load_curves(a, PAPER_LIKE).by_item[(0, 4)]
    assert all((got[k] == want[k]).all() for k in want)
    record("bad-input", "an item file saved with CRLF line ends", "read: the same numbers as the LF file")


def test_a_huge_item_file_is_refused_without_reading_it(tmp_path):
    a = fake_run(tmp_path / "a", [0])
    item = a.item_file(PAPER_LIKE, 0, 4)
    with open(item, "r+b") as f:
        f.truncate(3 << 30)  # 3 GB, sparse: read whole, it took 6 GB of memory and a minute
    start = time.monotonic()
    problem = item_problem(item)
    assert problem.startswith("it is 3221225472 bytes, more than an item of 10000 points can hold")
    assert time.monotonic() - start < 5
    record("bad-input", "a 3 GB (sparse) item file", f"refused without reading it: {problem}")


def test_a_digest_replaced_by_a_folder_is_named(tmp_path):
    a = fake_run(tmp_path / "a", [0])
    item = a.item_file(PAPER_LIKE, 0, 4)
    RunDir.item_digest(item).mkdir(parents=True)
    problem = item_problem(item)
    assert problem == f"its digest {RunDir.item_digest(item)} is unreadable (Is a directory)"
    record("bad-input", "an item's digest file replaced by a folder", f"the item is not used: {problem}")


def test_a_merged_study_merges_into_another_as_its_runs_would(tmp_path):
    runs = [fake_run(tmp_path / f"m{r}", [r]) for r in range(3)]
    first = merge_runs(tmp_path / "s01", [runs[0].root, runs[1].root]).study
    combined = merge_runs(tmp_path / "combined", [first.root, runs[2].root]).study
    direct = merge_runs(tmp_path / "direct", [r.root for r in runs]).study
    for table in ("paths.csv", f"results/{PAPER_LIKE}/paths.csv"):
        assert (combined.root / table).read_bytes() == (direct.root / table).read_bytes()
    record(
        "bad-input",
        "a merged study given as a source of another merge",
        "merged: tables equal to merging its runs",
    )


def test_a_link_to_the_study_is_the_study(tmp_path):
    a = fake_run(tmp_path / "a", [0])
    study = merge_runs(tmp_path / "study", [a.root]).study
    os.symlink(study.root, tmp_path / "link")
    message = merge_refusal(study.root, [tmp_path / "link"], "merge naming the study itself through a link")
    assert message.endswith("is the study itself; name the run folders to merge into it")


def test_two_merges_into_one_study_at_once(tmp_path):
    a = fake_run(tmp_path / "a", [0])
    with Holder(tmp_path / "study", "merge") as other:
        message = merge_refusal(tmp_path / "study", [a.root], "two merges into one study at once")
    assert (
        message
        == f"{tmp_path / 'study'} is in use by another linpath process (pid {other.pid}); wait for it or stop it"
    )


def test_a_source_being_merged_into_is_refused(tmp_path):
    a, b = fake_run(tmp_path / "a", [0]), fake_run(tmp_path / "b", [1])
    study = merge_runs(tmp_path / "study", [a.root]).study
    with Holder(study.root, "merge") as other:
        message = merge_refusal(
            tmp_path / "s2", [study.root, b.root], "merge of a study another merge is writing"
        )
    assert (
        message == f"{study.root} is being merged into now (pid {other.pid}): merge it when that has finished"
    )


def test_a_full_disk_during_merge_is_one_line_and_the_rerun_completes(tmp_path, monkeypatch):
    runs = [fake_run(tmp_path / f"m{r}", [r]) for r in range(2)]
    reference = merge_runs(tmp_path / "reference", [r.root for r in runs]).study
    real, calls = os.fsync, [0]

    def full(fd):
        calls[0] += 1
        if calls[0] == 7:
            raise OSError(errno.ENOSPC, "No space left on device")
        real(fd)

    monkeypatch.setattr(os, "fsync", full)
    message = merge_refusal(
        tmp_path / "study", [r.root for r in runs], "disk full at the 7th write of a merge"
    )
    assert message.startswith("cannot write ") and message.endswith(": No space left on device")
    monkeypatch.setattr(os, "fsync", real)
    merge_runs(tmp_path / "study", [r.root for r in runs])
    for table in ("paths.csv", f"results/{PAPER_LIKE}/paths.csv", "replicate-1/DONE"):
        assert (tmp_path / "study" / table).read_bytes() == (reference.root / table).read_bytes()


def test_an_edited_spec_in_a_source_is_refused(tmp_path):
    a, b = fake_run(tmp_path / "a", [0]), fake_run(tmp_path / "b", [1])
    spec = json.loads(b.spec_path.read_text())
    spec["train"]["lr"] = 0.5
    b.spec_path.write_text(json.dumps(spec))
    assert "was edited" in merge_refusal(
        tmp_path / "study", [a.root, b.root], "merge of a source whose spec.json was edited"
    )


def test_a_report_during_a_merge_says_so(tmp_path):
    a = fake_run(tmp_path / "a", [0])
    study = merge_runs(tmp_path / "study", [a.root]).study
    with Holder(study.root, "merge") as other:
        notes = running_notes(study)
    assert notes == [
        f"a merge into this study is still running (pid {other.pid}): the numbers below are those of the "
        "files it had copied; report again when it is done"
    ]
    record("fault", "report while a merge into the study is running", f"note: {notes[0]}")


# --- new cases: import ------------------------------------------------------------------------


def test_one_folder_named_twice_is_refused(tmp_path):
    ckpts = checkpoint_folder(tmp_path / "ckpts")
    os.symlink(ckpts, tmp_path / "again")
    for second, case in ((ckpts, "the same folder twice"), (tmp_path / "again", "a folder and a link to it")):
        with pytest.raises(LinpathError) as e:
            import_folders([ckpts, second], tmp_path / "out", pattern="step-{t}.pt")
        assert str(e.value).startswith(f"{second} is named twice: each folder is one replicate")
        record("bad-input", f"linpath import of {case} (two replicates that are one)", f"exit 2: {e.value}")
    assert not (tmp_path / "out").exists() or not any((tmp_path / "out").iterdir())


def test_a_pipe_matching_the_pattern_is_one_line_and_no_hang(tmp_path):
    ckpts = checkpoint_folder(tmp_path / "ckpts")
    os.mkfifo(ckpts / "step-5.pt")
    with pytest.raises(LinpathError) as e:
        import_folders([ckpts], tmp_path / "out", pattern="step-{t}.pt")
    assert (
        str(e.value)
        == f"{ckpts / 'step-5.pt'} is neither a file nor a folder (a pipe, a socket or a broken link?)"
    )
    record("bad-input", "linpath import with a named pipe matching --pattern", f"exit 2, no hang: {e.value}")


def test_out_being_a_file_is_one_line(tmp_path):
    ckpts = checkpoint_folder(tmp_path / "ckpts")
    (tmp_path / "out").write_text("mine\n")
    with pytest.raises(LinpathError) as e:
        import_folders([ckpts], tmp_path / "out", pattern="step-{t}.pt")
    assert "Not a directory" in str(e.value) and (tmp_path / "out").read_text() == "mine\n"
    record("bad-input", "linpath import --out naming a file", f"exit 2, the file untouched: {e.value}")


def test_two_imports_racing_keep_the_first(tmp_path, monkeypatch):
    from linpath.runs import import_dir

    ckpts = checkpoint_folder(tmp_path / "ckpts")
    first, _ = import_folders([ckpts], tmp_path / "first", pattern="step-{t}.pt")
    real = import_dir._write

    def racing(run, *args):
        real(run, *args)
        shutil.copytree(first.root, tmp_path / "out" / first.root.name)  # the other import finished meanwhile

    monkeypatch.setattr(import_dir, "_write", racing)
    run, notes = import_folders([ckpts], tmp_path / "out", pattern="step-{t}.pt")
    assert notes == [f"already imported: {run.root} (by another process, meanwhile)"]
    assert [p.name for p in (tmp_path / "out").iterdir()] == [run.root.name]
    record(
        "fault",
        "two imports of the same folders racing",
        "the first kept, the second's scratch removed, a note",
    )


# --- new cases: spawn -------------------------------------------------------------------------


def faked_spawn(run: RunDir) -> tuple:
    """A spawn at T = 16 whose two children have finished (their final states are the run's
    t = 40 and t = 32 states), so that only the evaluation of their path runs."""
    sdir = spawn_dir(run, 0, 16)
    sdir.root.mkdir(parents=True)
    save_tensors(
        sdir.parent_file, {"model": torch.load(run.checkpoint(0, 16)), "optimizer": None, "step": 16}
    )
    sdir.info_file.write_text("{}")
    for k, t in ((0, 40), (1, 32)):
        sdir.checkpoint_dir(k).mkdir(parents=True)
        shutil.copy(run.checkpoint(0, t), sdir.checkpoint(k, 40))
        sdir.done_marker(k).write_text("40\n")
    return sdir, SweepSetting(grid=Grid(points=3), eval_examples=100)


def test_spawn_at_a_step_not_kept_is_refused_before_the_first_spawn_trains(tmp_path, mnist):
    run = untrained_run(tmp_path, replicates=(0,))
    with pytest.raises(LinpathError) as e:
        spawn_steps(run, "0,5,16", mnist)
    assert str(e.value) == (
        "--at 5 is not a kept step before the end of training (40); spawns start from a kept state: "
        "0, 1, 2, 4, 8, 16, 32"
    )
    assert not run.spawn_root.exists()
    record(
        "bad-input", "spawn --at 0,5,16 (5 not kept)", f"exit 2 before T = 0's children trained: {e.value}"
    )


def test_a_damaged_spawn_json_is_one_line(tmp_path, mnist):
    run = untrained_run(tmp_path, replicates=(0,))
    sdir, setting = faked_spawn(run)
    for text in ("{not json", "[]"):
        sdir.info_file.write_text(text)
        with pytest.raises(LinpathError) as e:
            spawn(run.root, 16, mnist, setting, SpawnOptions(children=2, progress=False))
        assert str(sdir.info_file) in str(e.value) and str(e.value).endswith("to spawn again")
    record("bad-input", "spawn with its spawn.json damaged by hand", f"exit 2: {e.value}")


@pytest.mark.slow
def test_spawn_rows_edited_or_damaged_are_evaluated_again(tmp_path, mnist, capsys):
    run = untrained_run(tmp_path, replicates=(0,))
    sdir, setting = faked_spawn(run)
    rows = spawn(run.root, 16, mnist, setting, SpawnOptions(children=2, progress=False))
    table = sdir.instability(setting.key)
    good = table.read_text()
    for case, text in (
        ("a non-number", good.replace(repr(rows[0]["error_barrier"]), "oops")),
        ("a barrier edited by hand", good.replace(repr(rows[0]["error_barrier"]), "0.99")),
    ):
        table.write_text(text)
        capsys.readouterr()
        assert spawn(run.root, 16, mnist, setting, SpawnOptions(children=2, progress=False)) == rows
        assert f"{table}: " in capsys.readouterr().err and table.read_text() == good
        record(
            "bad-input",
            f"spawn's instability.csv holding {case}",
            "found (digest), evaluated again: the same rows",
        )


@pytest.mark.slow
def test_a_foreign_instability_table_is_left_out_of_the_summary(tmp_path, mnist, capsys):
    run = untrained_run(tmp_path, replicates=(0,))
    sdir, setting = faked_spawn(run)
    spawn(run.root, 16, mnist, setting, SpawnOptions(children=2, progress=False))
    (sdir.root / "notes").mkdir()
    (sdir.root / "notes" / "instability.csv").write_text("a,b\n1,2\n")
    assert write_summary(run) == run.spawn_root / "instability.csv"
    assert len((run.spawn_root / "instability.csv").read_text().splitlines()) == 2
    assert "its columns are not instability.csv's" in capsys.readouterr().err
    record(
        "bad-input",
        "a foreign instability.csv inside a spawn folder",
        "left out of the summary with a warning",
    )


# --- new cases: reports over partial sweeps and edited records ----------------------------------


def test_an_external_settings_data_record_edited_to_a_list_is_one_line(tmp_path):
    from linpath.sweep.external import ExternalInputs, check_same_data

    run = RunDir(tmp_path)
    run.setting_data("test-interpolate-uniform3-fp32").parent.mkdir(parents=True)
    run.setting_data("test-interpolate-uniform3-fp32").write_text("[]")
    inputs, labels = kept_runs.vectors(16)
    given = ExternalInputs(kept_runs.TinyMLP, EvalSet(inputs, labels), 3, "x.pt")
    with pytest.raises(LinpathError) as e:
        check_same_data(run, "test-interpolate-uniform3-fp32", given)
    assert "data.json: not a JSON object (it holds a list)" in str(e.value)
    record("bad-input", "sweep of an external run whose data.json was edited to []", f"exit 2: {e.value}")


def test_a_setting_whose_every_item_is_damaged_is_one_line(tmp_path, capsys):
    a = fake_run(tmp_path / "a", [0])
    for path in a.item_files(PAPER_LIKE):
        path.write_text(path.read_text()[:-3])
    with pytest.raises(LinpathError) as e:
        load_curves(a, PAPER_LIKE)
    assert (
        str(e.value) == f"{a.root} has no finished paths for the sweep setting {PAPER_LIKE!r}; sweep it first"
    )
    record("bad-input", "report of a setting whose every item file is cut short", f"one line: {e.value}")
