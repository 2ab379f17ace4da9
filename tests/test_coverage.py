"""The number of replicates behind each t of a report (issue 30, item 3): each row of
summary.csv, each figure point, each verdict, report.md and report.html state what was actually
averaged, the count where it is short of the setting's replicates, and verdicts over an
incomplete setting are withheld.

The oracle is the set of item files the test left untouched: a property test (hypothesis)
deletes and truncates random item files of a run and of a merged study, and the report may
never state more replicates at a t than the untouched files there."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import tempfile
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from linpath.analysis import figures
from linpath.analysis.coverage import count_text, incomplete_text, is_complete, replicates_at
from linpath.analysis.curves import load_curves, metric_rows
from linpath.analysis.intervals import summary_rows
from linpath.analysis.verdicts import verdicts
from linpath.config.presets import claims_of
from linpath.io.rundir import RunDir
from linpath.io.tables import read_csv_rows
from linpath.report.html import setting_data
from linpath.report.markdown import Section, describe, section_lines
from linpath.runs import stages
from linpath.runs.merge import merge_runs
from linpath.sweep.grids import Grid
from linpath.sweep.items import write_item
from linpath.sweep.paths_tables import rebuild_tables

from ._reliability import record
from .synthetic_run import curve
from .test_merge import PAPER_LIKE, SPEC, STEPS, fake_run

REPLICATES = (0, 1, 2)


def swept_run(folder: Path) -> RunDir:
    """A finished three-replicate run (DONE marks, logs) whose setting PAPER_LIKE holds every
    (r, t), written as the sweep writes items (with digests); no checkpoints are needed to report."""
    run = fake_run(folder, REPLICATES)
    for r in REPLICATES:
        for t in STEPS:
            rows = [
                [r, t, x, "test", "interpolate", 500, "fp32", *curve(r, t, x), 0.01, 0.01]
                for x in Grid("uniform", 5).xs()
            ]
            write_item(run, PAPER_LIKE, r, t, rows)
    return run


def merged_study(folder: Path) -> RunDir:
    sources = [fake_run(Path(folder) / f"m{r}", [r]) for r in REPLICATES]
    return merge_runs(Path(folder) / "study", [s.root for s in sources]).study


def rendered(run: RunDir) -> tuple[list[dict], str, dict, list[str]]:
    """What the report states of the setting: summary.csv's rows, report.md's section,
    report.html's data and the verdicts (the paper's claims for LeNet on MNIST)."""
    curves = load_curves(run, PAPER_LIKE)
    summary = summary_rows(curves, metric_rows(curves))
    lines = verdicts(curves, summary, claims_of(SPEC.preset), [0.9], SPEC.train.training_steps)
    text = "\n".join(section_lines(run, Section(curves, summary, lines, [])))
    return summary, text, setting_data(curves, summary, lines, describe(curves), "rise_over_start"), lines


def stated_counts(text: str, expected: int) -> dict[int, int]:
    """Per t, the replicates report.md's metrics table says it averaged ('| 4 (1 of 3 replicates) |'
    or '| 4 |' for all of them)."""
    out = {}
    table = text[text.index("### Path metrics") :]
    for m in re.finditer(r"^\| (\d+)(?: \((\d+) of (\d+) replicates\))? \|", table, re.M):
        assert m.group(3) in (None, str(expected)), m.group(0)
        out[int(m.group(1))] = int(m.group(2)) if m.group(2) else expected
    return out


def damage(path: Path, how: str, cut: float) -> None:
    if how == "delete":
        path.unlink()
    elif how == "truncate":
        data = path.read_bytes()
        path.write_bytes(data[: int(cut * (len(data) - 1))])
    else:  # the last row removed, and its digest too, as a careful hand would
        path.write_text("".join(path.read_text().splitlines(keepends=True)[:-1]))
        RunDir.item_digest(path).unlink()


DAMAGE = st.lists(
    st.tuples(
        st.sampled_from(REPLICATES),
        st.sampled_from(STEPS),
        st.sampled_from(("delete", "truncate", "drop a row")),
        st.floats(0, 1),
    ),
    max_size=6,
)


def check_never_more_than_averaged(run: RunDir, damaged: list) -> None:
    hit = set()
    for r, t, how, cut in damaged:
        if (r, t) not in hit:
            damage(run.item_file(PAPER_LIKE, r, t), how, cut)
            hit.add((r, t))
    intact = {t: sorted(r for r in REPLICATES if (r, t) not in hit) for t in STEPS}
    if not any(intact.values()):
        return
    summary, text, data, lines = rendered(run)
    shown = [t for t in STEPS if intact[t]]
    assert data["steps"] == shown and data["counts"] == [len(intact[t]) for t in shown]
    assert data["replicates"] == len(REPLICATES)
    for row in summary:
        assert row["replicates"] == len(intact[row["t"]]), row
    assert stated_counts(text, len(REPLICATES)) == {t: len(intact[t]) for t in shown}
    complete = all(len(intact[t]) == len(REPLICATES) for t in shown)
    withheld = any("**Verdicts withheld**" in line for line in lines)
    assert withheld == (not complete) and ("incomplete:" in text) == (not complete)
    assert not any("CONFIRMED" in line for line in lines[1:]) or complete
    assert rebuild_tables(run) == 5 * sum(len(v) for v in intact.values())


EXAMPLES = 25


@pytest.mark.slow
@pytest.mark.parametrize("kind", ["run", "merged study"])
def test_the_report_never_states_more_replicates_than_it_averaged(kind):
    make = swept_run if kind == "run" else merged_study

    @settings(max_examples=EXAMPLES, deadline=None, suppress_health_check=[HealthCheck.too_slow])
    @given(damaged=DAMAGE)
    def check(damaged):
        with tempfile.TemporaryDirectory() as tmp:
            check_never_more_than_averaged(make(Path(tmp)), damaged)

    check()
    record(
        "fuzz",
        f"report of a {kind} after random deletions and truncations of item files",
        "every t stated with the replicates its untouched item files hold, never more",
        examples=EXAMPLES,
    )


# --- the case, and each place the count is stated ---------------------------------------


def test_one_deleted_item_is_stated_at_its_t_and_the_verdicts_withheld(tmp_path):
    run = swept_run(tmp_path)
    run.item_file(PAPER_LIKE, 1, 32).unlink()
    curves = load_curves(run, PAPER_LIKE)
    assert replicates_at(curves, 32) == [0, 2] and not is_complete(curves)
    assert count_text(curves, 32) == "2 of 3 replicates" and count_text(curves, 4) == ""
    assert incomplete_text(curves) == "at t = 32 replicate 1 is missing (2 of 3 averaged)"
    summary, text, data, lines = rendered(run)
    assert "| 32 (2 of 3 replicates) |" in text and "| 4 |" in text
    assert "3 replicates (incomplete: at t = 32 replicate 1 is missing (2 of 3 averaged))" in text
    assert lines[1].startswith("- **Verdicts withheld**: this setting is incomplete (at t = 32")
    assert all("CONFIRMED" not in line for line in lines[1:]) and data["counts"] == [3, 3, 2]
    record(
        "fault",
        "one item file deleted, then report (issue 30.3)",
        "t = 32 stated as 2 of 3 replicates; verdicts withheld",
    )


def test_a_finished_replicate_without_any_path_is_missing_everywhere(tmp_path):
    run = swept_run(tmp_path)
    shutil.rmtree(run.sweep_dir / PAPER_LIKE)
    for r in (0, 2):
        for t in STEPS:
            rows = [
                [r, t, x, "test", "interpolate", 500, "fp32", 0.5, 0.1, 0.01, 0.01]
                for x in Grid("uniform", 5).xs()
            ]
            write_item(run, PAPER_LIKE, r, t, rows)
    curves = load_curves(run, PAPER_LIKE)
    assert incomplete_text(curves) == "at t = 0, 4, 32 replicate 1 is missing (2 of 3 averaged)"


def test_figures_state_the_count_where_it_is_short(tmp_path, monkeypatch):
    run = swept_run(tmp_path)
    run.item_file(PAPER_LIKE, 2, 4).unlink()
    run.item_file(PAPER_LIKE, 1, 0).unlink()
    curves = load_curves(run, PAPER_LIKE)
    summary = summary_rows(curves, metric_rows(curves))
    texts = {}

    def keep(fig, folder, name):
        texts[name] = [t.get_text() for t in fig.findobj(lambda o: hasattr(o, "get_text"))]
        return []

    monkeypatch.setattr(figures, "save_figure", keep)
    figures.all_figures(curves, summary, "title", tmp_path, (0, 4, 32))
    assert any("mean ± std over 2 of 3 replicates" in t for t in texts["figure1"])
    legend = [t for t in texts["figure2"] if t.startswith("t = ")]
    assert {"t = 0 (2 of 3 replicates)", "t = 4 (2 of 3 replicates)", "t = 32"} <= set(legend)
    assert texts["figure3"].count("2/3") == 2 * 2  # t = 0 and 4, in both panels
    assert any("n/3: a point averaging n replicates only" in t for t in texts["figure3"])


@pytest.mark.slow
def test_the_report_of_a_run_and_of_a_merged_study_after_a_deletion(tmp_path):
    """End to end: stages.report writes summary.csv, report.md and report.html, each stating
    2 of 3 at the t whose item was deleted, in a run and in a merged study."""
    for run in (swept_run(tmp_path / "run"), merged_study(tmp_path / "merged")):
        run.item_file(PAPER_LIKE, 1, 4).unlink()
        stages.report(run.root)
        summary = read_csv_rows(run.results_dir(PAPER_LIKE) / "summary.csv")
        assert {(row["t"], row["replicates"]) for row in summary} == {("0", "3"), ("4", "2"), ("32", "3")}
        report = run.report.read_text()
        assert "| 4 (2 of 3 replicates) |" in report and "**Verdicts withheld**" in report
        assert '"counts":[3,2,3]' in run.report.with_suffix(".html").read_text()


@pytest.mark.slow
def test_a_report_during_a_real_sweep_says_so_and_claims_nothing_more(tmp_path, data_root):
    """issue 30.3's case: `linpath report` while `linpath sweep` of a two-replicate run is
    stopped inside its second item (a real process holding the sweep's lock)."""
    from .hostile_runs import untrained_run
    from .test_faults import start, wait_for

    run = untrained_run(tmp_path)
    marker = tmp_path / "stalled"
    argv = ["sweep", str(run.root), "--points", "3", "--eval-examples", "200", "--from-steps", "0,4"]
    child = start([*argv, "--data-root", str(data_root), "--quiet"], "csv|2", marker)
    try:
        assert wait_for(marker.exists, child), child.communicate()[1][-2000:]
        stages.report(run.root)
    finally:
        child.kill()
        child.wait()
    report = run.report.read_text()
    assert f"a sweep of this run is still running (pid {child.pid})" in report
    assert "2 replicates (incomplete: at t = 0 replicate 1 is missing (1 of 2 averaged))" in report
    assert "| 0 (1 of 2 replicates) |" in report and "**Verdicts withheld**" in report
    record(
        "fault",
        "linpath report while linpath sweep is stopped mid-item (issue 30.3)",
        "note naming the sweep's pid; t = 0 stated as 1 of 2 replicates; verdicts withheld",
    )


def test_report_js_states_the_count_where_it_is_short():
    """report.js's shortfall(), run by node on report.html's data shapes (no browser here)."""
    node = shutil.which("node")
    if node is None:
        pytest.skip("node is not installed")
    script = (Path(figures.__file__).parents[1] / "report" / "report.js").read_text()
    function = re.search(r"  function shortfall\(s, i\) \{.*?\n  \}\n", script, re.S).group(0)
    calls = "for (const [s, i] of JSON.parse(process.argv[1])) console.log(JSON.stringify(shortfall(s, i)));"
    cases = [
        [{"counts": [3, 2], "replicates": 3}, 1],
        [{"counts": [3, 2], "replicates": 3}, 0],
        [{"replicates": 1}, 0],
    ]
    done = subprocess.run(
        [node, "-e", function + calls, json.dumps(cases)], capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 0, done.stderr
    assert [json.loads(line) for line in done.stdout.splitlines()] == [" (2 of 3 replicates)", "", ""]
