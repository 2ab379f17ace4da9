"""train_log.csv: appended per epoch; a resumed run's log is truncated to its resume step,
a row cut short by a kill dropped. Compared with the rows as written by the csv module."""

import csv

from linpath.io.rundir import RunDir
from linpath.train.log import LOG_COLUMNS, append_log, read_log, truncate_log


def rows_of(path):
    with open(path, newline="") as f:
        return list(csv.reader(f))


def test_the_log_is_appended_and_truncated_to_the_resume_step(tmp_path):
    run = RunDir(tmp_path / "run")
    run.replicate_dir(0).mkdir(parents=True)
    truncate_log(run, 0, 0)
    assert rows_of(run.train_log(0)) == [LOG_COLUMNS]
    for step in (10, 20, 30):
        append_log(run, 0, [step, step / 10, 0.1, 0.5, 0.25, 0.9, 1.5])
    assert [r["iteration"] for r in read_log(run, 0)] == ["10", "20", "30"]
    assert rows_of(run.train_log(0))[2] == ["20", "2.0", "0.1", "0.5", "0.25", "0.9", "1.5"]
    truncate_log(run, 0, 20)
    assert [r["iteration"] for r in read_log(run, 0)] == ["10", "20"]


def test_a_row_cut_short_by_a_kill_is_dropped_on_resume(tmp_path):
    run = RunDir(tmp_path / "run")
    run.replicate_dir(0).mkdir(parents=True)
    truncate_log(run, 0, 0)
    append_log(run, 0, [10, 1.0, 0.1, 0.5, 0.25, 0.9, 1.5])
    with open(run.train_log(0), "a") as f:
        f.write("20,2.0,0.1,0.4")  # the kill
    truncate_log(run, 0, 20)  # resuming from step 20: the row of 20 will be written again
    assert [r["iteration"] for r in read_log(run, 0)] == ["10"]
    append_log(run, 0, [20, 2.0, 0.1, 0.4, 0.2, 0.95, 3.0])
    assert [r["iteration"] for r in read_log(run, 0)] == ["10", "20"]
    assert run.train_log(0).read_text().endswith("3.0\n")
