"""`linpath merge`: one study from run folders whose replicates were trained apart.

End to end (slow): three one-replicate runs, each trained and swept in its own folder, merged,
give byte for byte the tables of one three-replicate run trained and swept normally, and the
merged study reports with no checkpoint anywhere, saying where each replicate was made. Fast:
the refusals (each one line naming the problem), nothing overwritten, re-merging, provenance
in the report, on run folders written by hand (no data, no training)."""

from __future__ import annotations

import datetime
import json
import shutil
from pathlib import Path

import pytest
import torch

from linpath.analysis.audit import audit_notes
from linpath.cli import main
from linpath.config.presets import preset
from linpath.config.spec import read_spec, write_spec
from linpath.errors import LinpathError
from linpath.io.rundir import RunDir
from linpath.io.tables import write_csv
from linpath.report.origins import origin_lines, origin_text
from linpath.runs import stages
from linpath.runs.merge import merge_runs
from linpath.sweep.grids import Grid
from linpath.sweep.items import format_rows
from linpath.sweep.run import SweepOptions
from linpath.sweep.setting import SweepSetting
from linpath.train.log import LOG_COLUMNS

from .synthetic_run import curve

SPEC = preset("mnist_lenet_300_100").with_overrides({"training_steps": "40it"})
PAPER_LIKE = "test-interpolate-uniform5-fp32-n500"
OTHER = "test-interpolate-uniform3-fp32-n500"
STEPS = (0, 4, 32)


# --- run folders written by hand ------------------------------------------------------------


def fake_run(parent: Path, replicates, settings=(PAPER_LIKE,), spec=SPEC, seconds: float = 1.0) -> RunDir:
    """A finished run folder holding `replicates` (DONE, log, a checkpoint and a resume file) and
    item files of `settings` (made-up curves), as a machine would send it back, plus its
    checkpoints (which merge must not copy)."""
    run = RunDir(Path(parent) / spec.run_name)
    write_spec(run, spec)
    for r in replicates:
        write_csv(run.train_log(r), LOG_COLUMNS, [[40, 0, 0.1, 0.5, 0.4, 0.9 - 0.01 * r, seconds]])
        run.done_marker(r).write_text("40\n")
        run.checkpoint(r, 40).parent.mkdir(parents=True)
        run.checkpoint(r, 40).write_bytes(b"not a real checkpoint")
        run.resume_file(r).write_bytes(b"not a real resume file")
        for key in settings:
            points = int(key.split("-")[2].removeprefix("uniform"))
            for t in STEPS:
                rows = [
                    [r, t, x, "test", "interpolate", 500, "fp32", *curve(r, t, x), 0.01, 0.01]
                    for x in Grid("uniform", points).xs()
                ]
                path = run.sweep_dir / key / f"r{r}-t{t:07d}.csv"
                path.parent.mkdir(parents=True, exist_ok=True)
                path.write_text(format_rows(rows))
    return run


def snapshot(folder: Path) -> dict[str, bytes]:
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


def refusal(study, sources, settings=None) -> str:
    with pytest.raises(LinpathError) as e:
        merge_runs(study, sources, settings)
    message = str(e.value)
    assert "\n" not in message
    return message


def test_merge_copies_logs_marks_and_items_but_no_checkpoint(tmp_path):
    a, b = fake_run(tmp_path / "a", [0]), fake_run(tmp_path / "b", [1, 2])
    merged = merge_runs(tmp_path / "study", [a.root, b.root])
    study = RunDir(tmp_path / "study")
    assert (merged.replicates, merged.added, merged.settings) == ([0, 1, 2], [0, 1, 2], [PAPER_LIKE])
    assert study.replicates() == [0, 1, 2] and read_spec(study).hash == SPEC.hash
    for r, source in ((0, a), (1, b), (2, b)):
        assert study.train_log(r).read_bytes() == source.train_log(r).read_bytes()
        for t in STEPS:
            name = f"{PAPER_LIKE}/r{r}-t{t:07d}.csv"
            assert (study.sweep_dir / name).read_bytes() == (source.sweep_dir / name).read_bytes()
    assert not list(study.root.rglob("*.pt")) and not list(study.root.rglob("checkpoints"))
    rows = (study.results_dir(PAPER_LIKE) / "paths.csv").read_text().splitlines()
    assert len(rows) == 1 + 3 * len(STEPS) * 5 and study.paths_csv.exists()
    record = json.loads(study.merged_record.read_text())
    assert record["hash"] == SPEC.hash
    assert [(s["path"], s["replicates"]) for s in record["sources"]] == [
        (str(a.root.resolve()), [0]),
        (str(b.root.resolve()), [1, 2]),
    ]


def test_runs_of_another_hash_are_refused_naming_both(tmp_path):
    other = SPEC.with_overrides({"lr": 0.05})
    a, b = fake_run(tmp_path / "a", [0]), fake_run(tmp_path / "b", [1], spec=other)
    message = refusal(tmp_path / "study", [a.root, b.root])
    assert "different specs" in message and str(a.root) in message and str(b.root) in message
    assert SPEC.hash in message and other.hash in message
    assert not (tmp_path / "study").exists()


def test_the_cli_refuses_in_one_line_and_exits_2(tmp_path, capsys):
    a, b = (
        fake_run(tmp_path / "a", [0]),
        fake_run(tmp_path / "b", [1], spec=SPEC.with_overrides({"lr": 0.05})),
    )
    assert main(["merge", str(tmp_path / "study"), str(a.root), str(b.root)]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("linpath: error: runs of different specs")


def test_the_cli_merges_and_says_what(tmp_path, capsys):
    a, b = fake_run(tmp_path / "a", [0]), fake_run(tmp_path / "b", [1])
    assert main(["merge", str(tmp_path / "study"), str(a.root), str(b.root)]) == 0
    out = capsys.readouterr().out
    assert "replicates 0, 1 (new: 0, 1)" in out and PAPER_LIKE in out and "linpath report" in out


def test_a_replicate_with_different_numbers_is_refused(tmp_path):
    a, b = fake_run(tmp_path / "a", [0, 1]), fake_run(tmp_path / "b", [1])
    item = b.sweep_dir / PAPER_LIKE / "r1-t0000004.csv"
    item.write_text(item.read_text().replace(",0.01,0.01\n", ",0.01,0.02\n", 1))
    message = refusal(tmp_path / "study", [a.root, b.root])
    assert message.startswith("replicate 1 is in") and str(a.root) in message and str(b.root) in message
    assert "r1-t0000004.csv" in message
    c = fake_run(tmp_path / "c", [1])
    c.done_marker(1).write_text("39\n")
    assert "DONE" in refusal(tmp_path / "study", [a.root, c.root])
    d = fake_run(tmp_path / "d", [1])
    d.train_log(1).write_text(d.train_log(1).read_text().replace(",0.5,", ",0.6,"))
    assert "train_log.csv" in refusal(tmp_path / "study", [a.root, d.root])
    assert not (tmp_path / "study").exists()


def test_identical_copies_of_a_replicate_are_fine(tmp_path):
    """The same run given twice, and the same replicate trained twice (only the seconds differ)."""
    a, b = fake_run(tmp_path / "a", [0, 1]), fake_run(tmp_path / "b", [1, 2], seconds=7.5)
    merged = merge_runs(tmp_path / "study", [a.root, a.root, b.root])
    assert merged.replicates == [0, 1, 2]
    assert RunDir(merged.study.root).train_log(1).read_bytes() == a.train_log(1).read_bytes()  # the first's


def test_a_setting_held_by_some_runs_only_is_refused_per_setting_then_merged_with_setting(tmp_path):
    a = fake_run(tmp_path / "a", [0], settings=(PAPER_LIKE, OTHER))
    b = fake_run(tmp_path / "b", [1, 2], settings=(PAPER_LIKE,))
    message = refusal(tmp_path / "study", [a.root, b.root])
    assert message.startswith(
        f"sweep settings not every replicate has finished: {OTHER}: {b.root}: replicate 1 holds none of "
        f"its paths, {b.root}: replicate 2 holds none of its paths; "
    )
    assert "--setting" in message and PAPER_LIKE not in message
    merged = merge_runs(tmp_path / "study", [a.root, b.root], [PAPER_LIKE])
    assert merged.settings == [PAPER_LIKE] and not (merged.study.root / "sweep" / OTHER).exists()
    assert "--setting nope: no run holds" in refusal(tmp_path / "other", [a.root, b.root], ["nope"])


def test_sources_that_are_no_run_or_the_study_itself_are_refused(tmp_path):
    a = fake_run(tmp_path / "a", [0])
    (tmp_path / "empty").mkdir()
    message = refusal(tmp_path / "study", [a.root, tmp_path / "empty"])
    assert message == f"{tmp_path / 'empty'} is not a linpath run folder (no spec.json)"
    assert (
        refusal(tmp_path / "study", [a.root, tmp_path / "nowhere"])
        == f"no run folder at {tmp_path / 'nowhere'}"
    )
    merge_runs(tmp_path / "study", [a.root])
    assert "is the study itself" in refusal(tmp_path / "study", [a.root, tmp_path / "study"])


def test_a_damaged_item_is_refused_naming_the_file(tmp_path):
    a, b = fake_run(tmp_path / "a", [0]), fake_run(tmp_path / "b", [1])
    item = b.sweep_dir / PAPER_LIKE / "r1-t0000032.csv"
    item.write_text(item.read_text()[:-20])
    message = refusal(tmp_path / "study", [a.root, b.root])
    assert message.startswith(f"{item}: cut short") and "delete the file" in message


def test_an_existing_folder_not_made_by_merge_is_refused_and_left_byte_for_byte(tmp_path):
    a, b = fake_run(tmp_path / "a", [0]), fake_run(tmp_path / "b", [1])
    mine = tmp_path / "mine"
    (mine / "notes").mkdir(parents=True)
    (mine / "notes" / "plan.txt").write_text("my own work\n")
    ordinary = fake_run(tmp_path / "runs", [0])  # an ordinary run folder of the same hash
    for folder in (mine, ordinary.root):
        before = snapshot(folder)
        assert "was not made by 'linpath merge'" in refusal(folder, [a.root, b.root])
        assert snapshot(folder) == before and not list(folder.glob(".*lock"))


def test_a_remerge_adds_replicates_and_records_every_source(tmp_path):
    a, b, c = (fake_run(tmp_path / name, [r]) for name, r in (("a", 0), ("b", 1), ("c", 2)))
    study = tmp_path / "study"
    merge_runs(study, [a.root, b.root])
    made = {k: v for k, v in snapshot(study).items() if k.startswith(("replicate-", "sweep/", "spec.json"))}
    merged = merge_runs(study, [c.root, b.root])
    assert (merged.replicates, merged.added) == ([0, 1, 2], [2])
    after = snapshot(study)
    assert {k: after[k] for k in made} == made  # the first merge's files are as they were
    assert (
        after["sweep/" + PAPER_LIKE + "/r2-t0000004.csv"]
        == (c.sweep_dir / PAPER_LIKE / "r2-t0000004.csv").read_bytes()
    )
    record = json.loads((study / "merged.json").read_text())
    assert sorted(s["replicates"][0] for s in record["sources"]) == [0, 1, 2]
    d = fake_run(tmp_path / "d", [0])
    d.train_log(0).write_text(d.train_log(0).read_text().replace(",0.5,", ",0.6,"))
    assert refusal(study, [d.root]).startswith(f"replicate 0 is in {study} and {d.root}")
    other = fake_run(tmp_path / "e", [3], spec=SPEC.with_overrides({"lr": 0.05}))
    assert "is a merged study of hash" in refusal(study, [other.root])


def test_missing_checkpoint_notes_are_kept_for_runs_and_left_out_for_merged_studies(tmp_path):
    run = fake_run(tmp_path / "a", [0])  # holds the final checkpoint only
    note = audit_notes(run)[0]  # (the fake final checkpoint is also named as unreadable)
    assert note.startswith("replicate 0 has no checkpoint at kept t = 0, 1, 2, 4, 8, 16, 32 ")
    study = merge_runs(tmp_path / "study", [run.root]).study
    assert audit_notes(study) == []


def test_origins_say_where_each_replicate_was_made_or_not_recorded(tmp_path):
    """provenance.json's facts; for a replicate without it, the torch version of its source's
    spec.json (recorded in merged.json), or none."""
    a, b = fake_run(tmp_path / "a", [0]), fake_run(tmp_path / "b", [1])
    facts = {"device": "NVIDIA H200", "device_type": "cuda", "processes": 1, "torch": "2.13.0"}
    a.provenance(0).write_text(json.dumps({**facts, "cuda": "12.8", "date": "2026-12-01T10:00:00+00:00"}))
    spec_json = json.loads(b.spec_path.read_text())
    b.spec_path.write_text(json.dumps({**spec_json, "versions": {"torch": "2.9.1"}}))
    study = merge_runs(tmp_path / "study", [a.root, b.root]).study
    assert origin_text(study, 0) == "NVIDIA H200 (cuda), torch 2.13.0, CUDA 12.8, trained 2026-12-01"
    assert origin_text(study, 1) == "where: not recorded (torch 2.9.1, from spec.json)"
    assert origin_lines(study, [0, 1])[0] == "Replicates: 2; where each was made:"
    del spec_json["versions"]
    b.spec_path.write_text(json.dumps(spec_json))
    assert origin_text(b, 1) == "where: not recorded"


# --- end to end on MNIST (slow) -------------------------------------------------------------

SETTING = SweepSetting(grid=Grid(points=5), eval_examples=500)


@pytest.fixture(scope="module")
def machines(tmp_path_factory, data_root):
    """Replicates 0, 1 and 2 each trained and swept alone in its own folder ("machine")."""
    runs = []
    for k in range(3):
        run = stages.train(SPEC, tmp_path_factory.mktemp(f"machine{k}"), data_root, progress=False, only=[k])
        runs.append(stages.sweep(run.root, SETTING, SweepOptions(data_root=data_root, progress=False)))
    return runs


@pytest.fixture(scope="module")
def together(tmp_path_factory, data_root):
    run = stages.train(SPEC, tmp_path_factory.mktemp("together"), data_root, progress=False)
    stages.sweep(run.root, SETTING, SweepOptions(data_root=data_root, progress=False))
    stages.report(run.root)
    return run


@pytest.fixture(scope="module")
def merged(machines, tmp_path_factory):
    """The three runs shipped back without checkpoints, merged, the copies deleted, reported."""
    shipped = tmp_path_factory.mktemp("shipped")
    copies = []
    for k, run in enumerate(machines):
        copy = shipped / f"m{k}" / run.root.name
        shutil.copytree(run.root, copy, ignore=shutil.ignore_patterns("checkpoints", "resume.pt", ".*lock"))
        copies.append(copy)
    study = merge_runs(tmp_path_factory.mktemp("studies") / "study", copies).study
    shutil.rmtree(shipped)
    stages.report(study.root)
    return study


@pytest.mark.slow
def test_three_merged_runs_give_the_tables_of_one_run_byte_for_byte(merged, together):
    tables = [merged.paths_csv.relative_to(merged.root)]
    tables += [Path("results") / SETTING.key / name for name in ("paths.csv", "metrics.csv", "summary.csv")]
    for table in tables:
        assert (merged.root / table).read_bytes() == (together.root / table).read_bytes(), table
    assert merged.replicates() == together.replicates() == [0, 1, 2]


@pytest.mark.slow
def test_the_merged_study_reports_without_checkpoints_and_says_where(merged, machines):
    assert not list(merged.root.rglob("*.pt"))
    report = merged.report.read_text()
    assert "no checkpoint" not in report and "- Note:" not in report
    assert "Replicates: 3; where each was made:" in report
    cpu = cpu_model_name()
    for r in range(3):
        assert merged.provenance(r).read_bytes() == machines[r].provenance(r).read_bytes()
        line = next(line for line in report.splitlines() if line.startswith(f"| {r} | "))
        assert line.startswith(f"| {r} | {cpu} (cpu), torch {torch.__version__}, trained 20"), line
    assert f"replicate 2: {cpu} (cpu)" in merged.report.with_suffix(".html").read_text()


def cpu_model_name() -> str:
    with open("/proc/cpuinfo") as f:
        return next(line.split(":", 1)[1].strip() for line in f if line.startswith("model name"))


@pytest.mark.slow
def test_training_records_provenance_only_for_replicates_it_finished(machines, data_root):
    run = machines[1]
    facts = json.loads(run.provenance(1).read_text())
    assert (facts["device"], facts["device_type"], facts["cuda"]) == (cpu_model_name(), "cpu", None)
    assert (facts["torch"], facts["processes"]) == (torch.__version__, 1)
    age = datetime.datetime.now(datetime.timezone.utc) - datetime.datetime.fromisoformat(facts["date"])
    assert datetime.timedelta(0) <= age < datetime.timedelta(hours=1)
    assert not run.provenance(0).exists()  # not trained there
    recorded = run.provenance(1).read_bytes()
    run.provenance(1).unlink()
    try:
        stages.train(SPEC, run.root.parent, data_root, progress=False, only=[1])  # finished before
        assert not run.provenance(1).exists()  # it may have been made elsewhere: nothing is claimed
    finally:
        run.provenance(1).write_bytes(recorded)


def test_unfinished_replicates_are_left_out_with_a_note_and_their_items_refused(tmp_path):
    a, b = fake_run(tmp_path / "a", [0]), fake_run(tmp_path / "b", [1])
    (b.replicate_dir(4) / "checkpoints").mkdir(parents=True)  # replicate 4 still training there
    merged = merge_runs(tmp_path / "study", [a.root, b.root])
    assert merged.replicates == [0, 1] and not (merged.study.root / "replicate-4").exists()
    assert merged.notes == [f"{b.root}: replicate 4 has not finished (no DONE mark), left out"]
    b.done_marker(1).unlink()
    item = b.sweep_dir / PAPER_LIKE / "r1-t0000000.csv"
    assert refusal(tmp_path / "other", [a.root, b.root]).startswith(
        f"{item}: it is of replicate 1, which has not finished in {b.root}"
    )
    c = fake_run(tmp_path / "c", [])
    assert (
        refusal(tmp_path / "other", [c.root])
        == f"{c.root} has no finished replicate to merge (no replicate-<r>/DONE)"
    )


def test_provenance_facts_on_a_cuda_device_and_the_cpu_name_fallbacks(monkeypatch):
    """No GPU here: torch's CUDA queries are stood in for, to check what is recorded on one."""
    from linpath.runtime import provenance

    monkeypatch.setattr(torch.cuda, "get_device_name", lambda device=None: "NVIDIA H200")
    monkeypatch.setattr(torch.version, "cuda", "12.8")
    facts = provenance.device_facts(torch.device("cuda"), processes=4)
    assert {k: facts[k] for k in ("device", "device_type", "processes", "cuda", "torch")} == {
        "device": "NVIDIA H200",
        "device_type": "cuda",
        "processes": 4,
        "cuda": "12.8",
        "torch": torch.__version__,
    }
    assert provenance.device_facts(torch.device("cpu"))["cuda"] is None
    monkeypatch.setattr("builtins.open", lambda *a, **k: (_ for _ in ()).throw(OSError("no /proc")))
    monkeypatch.setattr(provenance.platform, "processor", lambda: "x86_64")
    assert provenance.cpu_name() == "x86_64"
    monkeypatch.setattr(provenance.platform, "processor", lambda: "")
    assert provenance.cpu_name() == "cpu"


def test_training_records_provenance_for_what_it_finished_even_when_interrupted(tmp_path, monkeypatch):
    """stages.train with training stood in for: replicate 0 finishes, then a Ctrl-C."""

    def train_then_interrupt(spec, run, replicates, source, **options):
        run.replicate_dir(0).mkdir(parents=True)
        run.done_marker(0).write_text("40\n")
        raise KeyboardInterrupt

    monkeypatch.setattr(stages.datasets, "load", lambda *a, **k: None)
    monkeypatch.setattr(stages, "train_replicates", train_then_interrupt)
    with pytest.raises(KeyboardInterrupt):
        stages.train(SPEC, tmp_path, progress=False, only=[0, 1])
    run = RunDir(tmp_path / SPEC.run_name)
    assert json.loads(run.provenance(0).read_text())["device_type"] == "cpu"
    assert not run.provenance(1).exists()
