"""A plane's rows kept one atomic file per β row (plane.csv the merged table), and planes
shared among processes with shard=(rank, ranks). No torchrun here: the shards run one after
another in this process, which the row files allow (tests/test_plane_distributed.py runs
them under torchrun)."""

import shutil

import numpy as np
import pytest

import linpath
from linpath.analysis.plane import read_surface
from linpath.engine.plane import Plane
from linpath.errors import LinpathError
from linpath.runtime import distributed
from tests.test_plane import MODELS, data, random_state

GRID = (3, 4)  # 3 values of α, 4 rows of β


@pytest.fixture
def states():
    make, shape = MODELS["mlp"]
    return make, [random_state(make, s) for s in (1, 2, 3)], data(shape)


def evaluate(states, rows_file=None, **options):
    make, (o, a, b), d = states
    return linpath.plane(make(), o, a, b, d, grid=GRID, rows_file=rows_file, **options)


def counting(monkeypatch) -> list:
    """The β of every row Plane.evaluate is asked for from now on."""
    evaluated = []
    original = Plane.evaluate

    def wrapper(self, alphas, betas, progress=None):
        evaluated.extend(float(b) for b in betas)
        return original(self, alphas, betas, progress)

    monkeypatch.setattr(Plane, "evaluate", wrapper)
    return evaluated


def snapshot(folder):
    return {p.relative_to(folder): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


def test_each_row_has_its_own_file_and_plane_csv_merges_them(states, tmp_path):
    full = evaluate(states, tmp_path / "plane.csv")
    rows = tmp_path / "plane.rows"
    assert sorted(p.name for p in rows.iterdir()) == [f"row-{i:04d}.csv" for i in range(4)]
    table = (tmp_path / "plane.csv").read_text()
    assert table == full.to_csv(tmp_path / "reference.csv").read_text()  # β outer, α inner
    header, *lines = table.splitlines()
    for i in range(4):
        assert (rows / f"row-{i:04d}.csv").read_text().splitlines() == [header, *lines[3 * i : 3 * i + 3]]
    back = read_surface(tmp_path / "plane.csv")
    np.testing.assert_array_equal(back.loss, full.loss)
    np.testing.assert_array_equal(back.error, full.error)


def test_resumes_from_the_row_files(states, tmp_path, monkeypatch):
    """Without plane.csv and one row file, only that row is evaluated again; plane.csv comes
    back byte for byte."""
    full = evaluate(states, tmp_path / "plane.csv")
    table = (tmp_path / "plane.csv").read_text()
    (tmp_path / "plane.csv").unlink()
    (tmp_path / "plane.rows" / "row-0002.csv").unlink()
    evaluated = counting(monkeypatch)
    again = evaluate(states, tmp_path / "plane.csv")
    assert evaluated == [full.beta[2]]
    np.testing.assert_array_equal(again.loss, full.loss)
    np.testing.assert_array_equal(again.error, full.error)
    assert (tmp_path / "plane.csv").read_text() == table


def test_a_plane_csv_without_row_files_resumes(states, tmp_path, monkeypatch):
    """A plane.csv of the versions before row files (rows there only): its complete rows are
    reused, and the rows evaluated now get their files."""
    full = evaluate(states, tmp_path / "plane.csv")
    shutil.rmtree(tmp_path / "plane.rows")
    lines = (tmp_path / "plane.csv").read_text().splitlines()
    (tmp_path / "plane.csv").write_text("\n".join(lines[:7]) + "\n")  # rows 0 and 1
    evaluated = counting(monkeypatch)
    again = evaluate(states, tmp_path / "plane.csv")
    assert evaluated == [full.beta[2], full.beta[3]]
    np.testing.assert_array_equal(again.loss, full.loss)
    assert sorted(p.name for p in (tmp_path / "plane.rows").iterdir()) == ["row-0002.csv", "row-0003.csv"]
    assert (tmp_path / "plane.csv").read_text().splitlines() == lines


DAMAGE = {
    "garbled": lambda text, other: text.replace(",", ";", 2),
    "cut short": lambda text, other: "\n".join(text.splitlines()[:-1]) + "\n",
    "another row's": lambda text, other: other,
    "empty": lambda text, other: "",
    "not a number": lambda text, other: text.replace(text.splitlines()[2].split(",")[2], "nope"),
}


@pytest.mark.parametrize("damage", list(DAMAGE))
def test_a_damaged_row_file_is_named_and_its_row_evaluated_again(
    states, tmp_path, monkeypatch, capsys, damage
):
    """Even while plane.csv still holds the row: the row file is the authority for its row."""
    full = evaluate(states, tmp_path / "plane.csv")
    row = tmp_path / "plane.rows" / "row-0001.csv"
    good = row.read_text()
    row.write_text(DAMAGE[damage](good, (tmp_path / "plane.rows" / "row-0002.csv").read_text()))
    capsys.readouterr()
    evaluated = counting(monkeypatch)
    again = evaluate(states, tmp_path / "plane.csv")
    assert evaluated == [full.beta[1]]
    err = capsys.readouterr().err
    assert f"linpath: warning: {row} is damaged" in err and "evaluated again" in err
    np.testing.assert_array_equal(again.loss, full.loss)
    assert row.read_text() == good


def test_another_plane_is_refused_and_nothing_overwritten(states, tmp_path):
    make, (o, a, b), d = states
    evaluate(states, tmp_path / "plane.csv")
    (tmp_path / "plane.csv").unlink()  # the row files and plane.json alone still claim the folder
    before = snapshot(tmp_path)
    with pytest.raises(LinpathError, match="holds another plane") as refused:
        linpath.plane(make(), o, b, a, d, grid=GRID, rows_file=tmp_path / "plane.csv")
    assert "\n" not in str(refused.value)
    with pytest.raises(LinpathError, match="holds another plane"):
        linpath.plane(make(), o, a, b, d, grid=(3, 5), rows_file=tmp_path / "plane.csv", shard=(1, 2))
    (tmp_path / "plane.json").unlink()  # rows without their sidecar: not known to be this plane
    with pytest.raises(LinpathError, match="holds another plane"):
        evaluate(states, tmp_path / "plane.csv")
    assert snapshot(tmp_path) == {k: v for k, v in before.items() if str(k) != "plane.json"}


def test_a_shard_evaluates_only_its_rows_and_reads_the_others(states, tmp_path, monkeypatch):
    """shard=(0, 2) evaluates rows 0 and 2 and then finds 1 and 3 missing; shard=(1, 2)
    evaluates 1 and 3 and reads 0 and 2 from their files: the surface and plane.csv of a
    single process."""
    whole = evaluate(states, tmp_path / "single" / "plane.csv")
    rows_file = tmp_path / "shared" / "plane.csv"
    seen = []
    with pytest.raises(LinpathError, match="2 of 4 rows of the plane are not finished") as missing:
        evaluate(states, rows_file, shard=(0, 2), progress=lambda i, n: seen.append((i, n)))
    assert seen == [(1, 4), (3, 4)]
    assert str(rows_file.with_name("plane.rows") / "row-0001.csv") in str(missing.value)
    evaluated, seen = counting(monkeypatch), []
    shared = evaluate(states, rows_file, shard=(1, 2), progress=lambda i, n: seen.append((i, n)))
    assert seen == [(2, 4), (4, 4)] and evaluated == [whole.beta[1], whole.beta[3]]
    np.testing.assert_array_equal(shared.loss, whole.loss)
    np.testing.assert_array_equal(shared.error, whole.error)
    assert rows_file.read_text() == (tmp_path / "single" / "plane.csv").read_text()


def test_a_shard_waits_then_reads_the_rows_the_others_wrote(states, tmp_path, monkeypatch):
    """The barrier stands for the other ranks finishing: rows written during it are read."""
    evaluate(states, tmp_path / "single" / "plane.csv")
    rows_file = tmp_path / "shared" / "plane.csv"
    waited = []

    def other_rank_finishes():
        waited.append(sorted(p.name for p in rows_file.with_name("plane.rows").iterdir()))
        for name in ("row-0000.csv", "row-0002.csv"):
            shutil.copy(tmp_path / "single" / "plane.rows" / name, rows_file.with_name("plane.rows") / name)

    monkeypatch.setattr(distributed, "barrier_if_initialized", other_rank_finishes)
    evaluate(states, rows_file, shard=(1, 2))
    assert waited == [["row-0001.csv", "row-0003.csv"]]  # the barrier came after its own rows
    assert rows_file.read_text() == (tmp_path / "single" / "plane.csv").read_text()


def test_a_shard_needs_a_rows_file_and_a_rank_below_the_ranks(states, tmp_path):
    make, (o, _, _), d = states
    with pytest.raises(LinpathError, match="needs a rows_file"):
        evaluate(states, shard=(1, 2))
    with pytest.raises(LinpathError, match="needs a rows_file"):
        linpath.random_plane(make(), o, d, grid=GRID, shard=(0, 3))
    for bad in [(2, 2), (-1, 2), (0, 0), (0.0, 1), (0,), "01"]:
        with pytest.raises(LinpathError, match="shard must be"):
            evaluate(states, tmp_path / "plane.csv", shard=bad)
