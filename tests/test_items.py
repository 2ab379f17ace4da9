"""Item files as the sweep, the merge and the report read them: every number in its range, the
`examples` column the setting's, and a digest recorded when written, so that an edit by hand
(issue 30, items 6 and 7) is found by each of them, in one line naming the file.

The oracles are hand-made files with known numbers and the known grid; the one real sweep is
checked against a plain evaluation of the same states (the endpoints' loss)."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from linpath.analysis.curves import load_curves
from linpath.io.rundir import RunDir
from linpath.sweep.items import format_rows, item_problem, write_item
from linpath.sweep.paths_tables import rebuild_tables
from linpath.sweep.run import SweepOptions, item_check, run_sweep
from linpath.sweep.setting import SweepSetting

from ._reliability import record
from .hostile_runs import SETTING, STEPS, rows_of, set_cell, untrained_run
from .test_merge import PAPER_LIKE, fake_run, refusal

KEY = "test-interpolate-uniform3-fp32-n200"
WHOLE = "test-interpolate-uniform3-fp32"


def an_item(folder, key=KEY, examples=200, se=0.01, loss=(0.5, 0.7, 0.4), error=(0.1, 0.2, 0.05)) -> RunDir:
    """Replicate 0's item at t = 4 on a 3-point grid, written as the sweep writes it (with its digest)."""
    run = RunDir(folder)
    rows = [
        [0, 4, repr(x), "test", "interpolate", examples, "fp32", repr(lo), repr(e), se, se]
        for x, lo, e in zip((0.0, 0.5, 1.0), loss, error)
    ]
    write_item(run, key, 0, 4, rows)
    return run


# --- item 6: ranges ---------------------------------------------------------------------------

OUT_OF_RANGE = {  # (column, value) -> the words the problem must hold
    "a negative loss": (7, "-3.0", "line 3 has loss -3.0 (a cross-entropy is >= 0)"),
    "a loss of -inf": (7, "-inf", "line 3 has loss -inf"),
    "an error above 1": (8, "7.0", "line 3 has error 7.0 (a fraction of the examples, in [0, 1])"),
    "a negative error": (8, "-0.1", "line 3 has error -0.1"),
    "an error of nan with a finite loss": (8, "nan", "line 3 has error nan"),
    "a negative standard error": (9, "-0.5", "line 3 has loss_se -0.5"),
    "an infinite standard error": (10, "inf", "line 3 has error_se inf"),
    "no examples": (5, "0", "line 3 has examples 0"),
    "another subset's examples": (5, "1000", "line 3 has examples 1000, the setting's subset -n200"),
}


@pytest.mark.parametrize("case", list(OUT_OF_RANGE))
def test_a_number_out_of_its_range_is_named(tmp_path, case):
    run = an_item(tmp_path)
    path = run.item_file(KEY, 0, 4)
    column, value, words = OUT_OF_RANGE[case]
    set_cell(path, 2, column, value)
    problem = item_problem(path)
    assert problem is not None and problem.startswith(words), problem
    record("bad-input", f"item file hand-edited: {case}", f"refused by the readers: {problem}")


def test_a_diverging_path_is_in_range():
    """+inf and NaN losses (NaN error with a NaN loss) are what a diverging path records."""
    for loss, error in (("inf", "0.9"), ("nan", "nan")):
        rows = [
            [0, 4, x, "test", "interpolate", 200, "fp32", loss, error, 0.01, 0.01] for x in (0.0, 0.5, 1.0)
        ]
        assert _problem_of(rows) is None


def _problem_of(rows) -> str | None:
    import tempfile

    with tempfile.TemporaryDirectory() as tmp:
        path = RunDir(tmp).item_file(KEY, 0, 4)
        path.parent.mkdir(parents=True)
        path.write_text(format_rows(rows))
        return item_problem(path)


def test_the_issues_edit_is_refused_by_merge_and_left_out_by_the_report(tmp_path, capsys):
    """loss = -3.0, error = 7.0 in one item: the merge refuses it naming the file (it merged,
    exit 0, before); the report's tables leave it out with a one-line warning."""
    a, b = fake_run(tmp_path / "a", [0]), fake_run(tmp_path / "b", [1])
    item = b.sweep_dir / PAPER_LIKE / "r1-t0000004.csv"
    set_cell(item, 3, 7, "-3.0")
    set_cell(item, 3, 8, "7.0")
    message = refusal(tmp_path / "study", [a.root, b.root])
    assert message.startswith(f"{item}: line 4 has loss -3.0") and "delete the file" in message
    assert rebuild_tables(b) == 2 * 5  # t = 0 and 32 of replicate 1; t = 4 left out
    assert f"left out of the tables: {item}: line 4 has loss -3.0" in capsys.readouterr().err
    assert 4 not in load_curves(b, PAPER_LIKE).steps
    record("bad-input", "merge of an item edited to loss -3.0, error 7.0 (issue 30.6)", f"exit 2: {message}")


# --- item 6: digests --------------------------------------------------------------------------


def test_an_edit_within_the_ranges_is_found_by_its_digest(tmp_path, capsys):
    run = an_item(tmp_path)
    path = run.item_file(KEY, 0, 4)
    digest = RunDir.item_digest(path)
    assert digest == path.parent / "digests" / "r0-t0000004.sha256" and len(digest.read_text().strip()) == 64
    assert item_problem(path) is None
    set_cell(path, 2, 7, "0.69")  # 0.7 -> 0.69: a plausible number, but not the sweep's
    problem = item_problem(path)
    assert problem == f"it was changed after it was written (its sha256 is not the one in {digest})"
    assert item_check(path, SweepSetting(grid=SETTING.grid, eval_examples=200), 0, 4) == problem
    assert (
        rebuild_tables(run) == 0
        and f"left out of the tables: {path}: it was changed" in capsys.readouterr().err
    )
    record(
        "bad-input", "an item file's loss edited by hand within its range", f"found by its digest: {problem}"
    )


def test_a_file_without_a_digest_is_read_on_its_numbers_and_a_damaged_digest_is_named(tmp_path):
    run = an_item(tmp_path)
    path = run.item_file(KEY, 0, 4)
    RunDir.item_digest(path).unlink()
    assert item_problem(path) is None  # an older linpath's file, or one written by hand on purpose
    RunDir.item_digest(path).write_bytes(b"\xff\xfe")
    assert item_problem(path).startswith("its digest ") and "unreadable" in item_problem(path)
    RunDir.item_digest(path).write_text("0" * 64 + "\n")
    assert item_problem(path).startswith("it was changed after it was written")


def test_a_kill_between_digest_and_item_never_leaves_a_trusted_file(tmp_path, monkeypatch):
    """The digest is written first: a kill before the item leaves the old file, which does not
    match the new digest, so it is recomputed, never trusted (even once restored by hand)."""
    run = an_item(tmp_path)
    path = run.item_file(KEY, 0, 4)
    old = path.read_bytes()
    path.write_bytes(old[:-5])  # a damaged file, about to be recomputed
    from linpath.sweep import items

    real = items.atomic_write

    def killed(target, write, mode="wb"):
        if target == path:
            raise KeyboardInterrupt  # the kill, after the digest's write
        real(target, write, mode)

    monkeypatch.setattr(items, "atomic_write", killed)
    with pytest.raises(KeyboardInterrupt):
        an_item(tmp_path, loss=(0.5, 0.71, 0.4))
    assert item_problem(path) == "cut short (no newline at its end)"
    path.write_bytes(old)  # the earlier numbers put back by hand
    assert item_problem(path).startswith("it was changed after it was written")


@pytest.mark.slow
def test_a_resumed_sweep_recomputes_an_edited_item_and_merge_refuses_it(tmp_path, mnist, capsys):
    """A real sweep of untrained LeNet states: an item edited by hand is recomputed by the
    resumed sweep (to the numbers a plain evaluation gives) and refused by merge."""
    run = untrained_run(tmp_path / "a", replicates=(0,))
    assert run_sweep(run, SETTING, mnist, SweepOptions(from_steps=list(STEPS), progress=False)) == 2
    path = run.item_file(SETTING.key, 0, 4)
    good = path.read_bytes()
    set_cell(path, 1, 7, repr(float(rows_of(path)[0][7]) * 0.9))
    assert refusal(tmp_path / "study", [run.root]).startswith(f"{path}: it was changed after it was written")
    capsys.readouterr()
    assert run_sweep(run, SETTING, mnist, SweepOptions(from_steps=list(STEPS), progress=False)) == 1
    assert f"recomputing {path}: it was changed after it was written" in capsys.readouterr().err
    assert path.read_bytes() == good
    assert float(rows_of(path)[-1][7]) == pytest.approx(_plain_loss(run, mnist), rel=1e-5)


def _plain_loss(run: RunDir, mnist) -> float:
    """The final state's loss on the setting's subset, by a plain load_state_dict loop."""
    from linpath.models import build
    from linpath.sweep.engine_entry import evaluation_subset

    evalset, _ = evaluation_subset(mnist.eval_set("test"), SETTING.eval_examples)
    model = build("mnist_lenet_300_100", 10, seed=0)
    model.load_state_dict(torch.load(run.checkpoint(0, 40), weights_only=True))
    with torch.no_grad():
        return float(F.cross_entropy(model(evalset.inputs), evalset.labels).double())


# --- item 7: examples -------------------------------------------------------------------------


def test_a_subsets_item_in_the_whole_split_folder_is_refused(tmp_path):
    """Its standard errors give it away (the whole split has none); another subset's count too."""
    run = an_item(tmp_path, key=WHOLE, examples=1000, se=0.004)
    problem = item_problem(run.item_file(WHOLE, 0, 4))
    assert problem.startswith("line 2 has a standard error (0.004): a subset's item"), problem
    assert (
        item_problem(an_item(tmp_path / "b", key=WHOLE, examples=10000, se="nan").item_file(WHOLE, 0, 4))
        is None
    )
    record(
        "bad-input", "a 1,000-example subset's item placed in the whole split's folder", f"refused: {problem}"
    )


def test_items_of_one_setting_holding_different_examples_leave_the_odd_one_out(tmp_path, capsys):
    """Without standard errors to tell (a custom score), the counts are compared: the whole
    split is the largest any item holds, or the one an external run's data.json records."""
    run = an_item(tmp_path, key=WHOLE, examples=10000, se="nan")
    rows = [[1, 4, x, "test", "interpolate", 1000, "fp32", 0.5, 0.1, "nan", "nan"] for x in (0.0, 0.5, 1.0)]
    write_item(run, WHOLE, 1, 4, rows)
    assert rebuild_tables(run) == 3
    odd = run.item_file(WHOLE, 1, 4)
    assert f"left out of the tables: {odd}: it holds 1000 examples, the setting's other items 10000" in (
        capsys.readouterr().err
    )
    run.setting_data(WHOLE).write_text('{"data": "mine.pt", "examples": 1000, "sha256": "x"}\n')
    assert rebuild_tables(run) == 3 and load_curves(run, WHOLE).replicates == [1]


def test_merge_setting_refuses_a_subsets_item_in_the_full_set_folder(tmp_path):
    """issue 30.7: an item of a 1,000-example subset in the full-set folder, given to merge --setting."""
    key = WHOLE.replace("uniform3", "uniform5")
    a, b = (fake_run(tmp_path / name, [r], settings=(key,)) for name, r in (("a", 0), ("b", 1)))
    for path in a.item_files(key) + b.item_files(key):  # the whole split: 10,000 examples, no se
        path.write_text(path.read_text().replace(",500,", ",10000,").replace(",0.01,0.01\n", ",nan,nan\n"))
    intruder = b.item_file(key, 1, 4)
    intruder.write_text(
        intruder.read_text().replace(",10000,", ",1000,").replace(",nan,nan\n", ",0.004,0.004\n")
    )
    assert item_problem(intruder).startswith("line 2 has a standard error (0.004)")
    message = refusal(tmp_path / "study", [a.root, b.root], [key])
    assert message.startswith(f"{intruder}: line 2 has a standard error")
    record("bad-input", "merge --setting with a subset's item in the full-set folder", f"exit 2: {message}")


def test_rows_of_one_file_must_share_their_examples(tmp_path):
    rows = [
        [0, 4, x, "test", "interpolate", n, "fp32", 0.5, 0.1, "nan", "nan"]
        for x, n in ((0.0, 5), (0.5, 5), (1.0, 6))
    ]
    path = RunDir(tmp_path).item_file(WHOLE, 0, 4)
    path.parent.mkdir(parents=True)
    path.write_text(format_rows(rows))
    assert item_problem(path) == "its rows hold different numbers of examples"


def test_error_is_a_fraction(tmp_path):
    """The range checks against a hand count: 3 errors of 200 examples is 0.015."""
    run = an_item(tmp_path, error=(3 / 200, 0.0, 1.0))
    assert item_problem(run.item_file(KEY, 0, 4)) is None
    assert math.isclose(load_curves(run, KEY).by_item[(0, 4)]["error"][0], 0.015)


@pytest.mark.slow
def test_a_resumed_sweep_recomputes_a_subsets_item_placed_in_the_whole_split_folder(tmp_path, mnist, capsys):
    """issue 30.7 end to end: the -n200 item of (0, 4) copied over the whole split's; the
    resumed sweep names it and computes the whole split's path again, the same bytes as before."""
    run = untrained_run(tmp_path, replicates=(0,))
    whole = SweepSetting(grid=SETTING.grid)
    for setting in (SETTING, whole):
        assert run_sweep(run, setting, mnist, SweepOptions(from_steps=list(STEPS), progress=False)) == 2
    target = run.item_file(whole.key, 0, 4)
    good = target.read_bytes()
    target.write_bytes(run.item_file(SETTING.key, 0, 4).read_bytes())
    RunDir.item_digest(target).unlink()  # as a careful hand would
    capsys.readouterr()
    assert run_sweep(run, whole, mnist, SweepOptions(from_steps=list(STEPS), progress=False)) == 1
    err = capsys.readouterr().err
    assert f"recomputing {target}: line 2 has a standard error" in err
    assert target.read_bytes() == good and rows_of(target)[0][5] == "10000"
    record("fault", "a subset's item placed in the whole split's folder, then the sweep resumed", err.strip())
