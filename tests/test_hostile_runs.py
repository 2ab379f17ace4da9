"""A hostile user against kept states: reopened and resumed Keepers, replicates made of two
trainings, hand-edited kept files, damaged audit caches.

Oracles: the uninterrupted training's own files (bitwise), the bytes a folder held before a
refused call, and for the lineage signal the correlation computed here by hand in numpy.
"""

from __future__ import annotations

import copy
import hashlib
import json
import os
import shutil
import warnings

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from linpath.analysis.audit import audit_run
from linpath.cli import main
from linpath.errors import LinpathError
from linpath.io.rundir import RunDir
from linpath.train import keeper as keeper_module
from linpath.train.keeper import Keeper, restore_state
from linpath.train.lineage import INDEPENDENCE_Z, LINEAGE_FLOOR, weight_correlation
from tests.kept_runs import MODEL, TinyMLP, vectors

from ._reliability import record
from .test_api import one_line_error

STEPS = 300  # kept: 0, 1, 2, 4, ..., 256, 300
X, Y = vectors()


def fresh(seed: int = 0):
    torch.manual_seed(seed)
    model = TinyMLP()
    return model, torch.optim.SGD(model.parameters(), lr=0.2, momentum=0.9)


def advance(model, optimizer, keeper, steps) -> None:
    """The user's loop: the batch of a step depends on the step only (a rerun sees the same)."""
    for step in steps:
        batch = torch.arange(step * 32, step * 32 + 32) % len(Y)
        optimizer.zero_grad()
        F.cross_entropy(model(X[batch]), Y[batch]).backward()
        optimizer.step()
        keeper.step(step)


def snapshot(root) -> dict[str, str]:
    return {
        str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(root.rglob("*"))
        if p.is_file() and not p.name.endswith(".lock")
    }


@pytest.fixture(scope="module")
def reference(tmp_path_factory) -> RunDir:
    """The uninterrupted training of STEPS steps."""
    root = tmp_path_factory.mktemp("reference") / "run"
    model, optimizer = fresh()
    keeper = Keeper(root, model, STEPS, optimizer=optimizer)
    advance(model, optimizer, keeper, range(1, STEPS + 1))
    keeper.finish()
    return RunDir(root)


def killed_at(folder, step: int, own_checkpoint_at: int):
    """The same training killed after `step` (its Keeper never closed), with the user's own
    checkpoint (model and optimizer) taken at `own_checkpoint_at`."""
    model, optimizer = fresh()
    keeper = Keeper(folder, model, STEPS, optimizer=optimizer)
    own = None
    for s in range(1, step + 1):
        advance(model, optimizer, keeper, [s])
        if s == own_checkpoint_at:
            own = copy.deepcopy((model.state_dict(), optimizer.state_dict()))
    keeper.close()  # the process died: the lock goes with it
    return own


def resumed_from(own):
    model, optimizer = fresh(seed=99)  # a rerun builds its model anew, then loads the checkpoint
    model.load_state_dict(own[0])
    optimizer.load_state_dict(own[1])
    return model, optimizer


def assert_same_files(run: RunDir, reference: RunDir) -> None:
    assert run.saved_steps(0) == reference.saved_steps(0)
    for t in reference.saved_steps(0):
        assert run.checkpoint(0, t).read_bytes() == reference.checkpoint(0, t).read_bytes(), t


def test_a_reopened_keeper_never_overwrites_the_initial_state(tmp_path):
    """The issue's reproduction: five steps kept, closed, the same Keeper opened again without
    start_step on the trained model: refused in one line, every kept file as it was."""
    model, optimizer = fresh()
    keeper = Keeper(tmp_path / "r", model, total_steps=10)
    advance(model, optimizer, keeper, range(1, 6))
    keeper.close()
    before = snapshot(tmp_path / "r")
    with pytest.raises(LinpathError, match="say where this training resumes, start_step=") as e:
        Keeper(tmp_path / "r", model, total_steps=10)
    assert "\n" not in str(e.value) and snapshot(tmp_path / "r") == before
    with pytest.raises(LinpathError, match="is not the state kept at step 0"):  # start_step=0 said outright
        Keeper(tmp_path / "r", model, total_steps=10, start_step=0)
    assert snapshot(tmp_path / "r") == before
    record(
        "fault",
        "a Keeper reopened without start_step on a trained model (issue 30 #1)",
        f"refused: {e.value}",
    )
    again = Keeper(tmp_path / "r", model, total_steps=10, start_step=5)  # said right: resumes
    advance(model, optimizer, again, range(6, 11))
    again.finish()
    assert RunDir(tmp_path / "r").saved_steps(0) == [0, 1, 2, 4, 8, 10]


def test_killed_at_100_and_rerun(tmp_path, reference):
    """Killed at step 100: rerun from the user's own checkpoint at 100 without start_step is
    refused (the old Keeper rewrote all 11 states); with start_step=100 every kept state is
    bitwise the uninterrupted run's, and the audit finds nothing."""
    folder = tmp_path / "run"
    own = killed_at(folder, 100, own_checkpoint_at=100)
    before = snapshot(folder)
    model, optimizer = resumed_from(own)
    with pytest.raises(LinpathError, match="none of them") as e:
        Keeper(folder, model, STEPS, optimizer=optimizer)
    assert snapshot(folder) == before
    keeper = Keeper(folder, model, STEPS, optimizer=optimizer, start_step=100)
    advance(model, optimizer, keeper, range(101, STEPS + 1))
    keeper.finish()
    assert_same_files(RunDir(folder), reference)
    assert audit_run(folder, save=False) == []
    record(
        "fault",
        "a training with a Keeper killed at step 100, rerun from the user's checkpoint",
        f"without start_step refused ({str(e.value)[:80]}...); with start_step=100 all "
        f"{len(reference.saved_steps(0))} kept states bitwise the uninterrupted run's, audit clean",
    )


def test_resumed_from_a_kept_state_is_inferred(tmp_path, reference):
    """restore_state at the last kept state (64), then a Keeper without start_step: it resumes
    at 64; step 100, passed again, is not kept (not on the grid), the rest is bitwise the
    uninterrupted run's."""
    folder = tmp_path / "run"
    killed_at(folder, 100, own_checkpoint_at=100)
    model, optimizer = fresh(seed=7)
    restore_state(folder, 64, model, optimizer)
    keeper = Keeper(folder, model, STEPS, optimizer=optimizer)
    assert keeper.start_step == 64
    advance(model, optimizer, keeper, range(65, STEPS + 1))
    keeper.finish()
    assert_same_files(RunDir(folder), reference)


def test_a_rerun_passing_kept_steps_again(tmp_path, reference):
    """From the user's checkpoint at 50 (before the kept 64): 64 is passed again. The same
    weights leave the file alone; other weights (a nondeterministic rerun, here a changed
    step) are kept, the earlier file moved to superseded/ with a warning, never overwritten."""
    folder = tmp_path / "same"
    own = killed_at(folder, 100, own_checkpoint_at=50)
    mtime = RunDir(folder).checkpoint(0, 64).stat().st_mtime_ns
    model, optimizer = resumed_from(own)
    keeper = Keeper(folder, model, STEPS, optimizer=optimizer, start_step=50)
    advance(model, optimizer, keeper, range(51, STEPS + 1))
    keeper.finish()
    assert_same_files(RunDir(folder), reference)
    assert RunDir(folder).checkpoint(0, 64).stat().st_mtime_ns == mtime
    assert not (folder / "replicate-0" / "superseded").exists()

    folder = tmp_path / "other"
    own = killed_at(folder, 100, own_checkpoint_at=50)
    old = RunDir(folder).checkpoint(0, 64).read_bytes()
    model, optimizer = resumed_from(own)
    with torch.no_grad():
        model.net[0].bias.add_(1e-3)  # the rerun's step 51 comes out a little different
    keeper = Keeper(folder, model, STEPS, optimizer=optimizer, start_step=50)
    with pytest.warns(UserWarning, match="reached step 64 with other weights"):
        advance(model, optimizer, keeper, range(51, STEPS + 1))
    keeper.finish()
    run = RunDir(folder)
    moved = folder / "replicate-0" / "superseded" / "iter-0000064.1.pt"
    assert moved.read_bytes() == old and run.checkpoint(0, 64).read_bytes() != old
    assert (folder / "replicate-0" / "superseded" / "training-state-0000064.1.pt").is_file()
    assert audit_run(folder, save=False) == []  # superseded/ is not a kept state
    record(
        "fault",
        "a resumed Keeper passing a kept step again with other weights",
        "kept its own, old one moved",
    )


def two_trainings(folder) -> None:
    """The issue's #5: crash at 100, 'resumed' with start_step=100 on a fresh random model,
    as the Keeper allowed before it checked the lineage."""
    killed_at(folder, 100, own_checkpoint_at=100)
    model, optimizer = fresh(seed=5)
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(keeper_module, "check_continues", lambda *a: None)
        keeper = Keeper(folder, model, STEPS, optimizer=optimizer, start_step=100)
    advance(model, optimizer, keeper, range(101, STEPS + 1))
    keeper.finish()


def by_hand(a: dict, b: dict) -> float:
    """The lineage correlation in numpy: weight matrices, each centered, sums pooled."""
    dot = aa = bb = 0.0
    for k in a:
        if a[k].dim() >= 2 and a[k].numel() >= 64:
            x = a[k].numpy().astype(np.float64).ravel()
            y = b[k].numpy().astype(np.float64).ravel()
            x, y = x - x.mean(), y - y.mean()
            dot, aa, bb = dot + x @ y, aa + x @ x, bb + y @ y
    return dot / np.sqrt(aa * bb)


def test_a_replicate_of_two_trainings(tmp_path, reference):
    """The Keeper refuses the fresh model; a folder made so anyway (the old Keeper) is found by
    the audit at the seam (64, 128), and only there; the correlation equals numpy's."""
    folder = tmp_path / "run"
    killed_at(folder, 100, own_checkpoint_at=100)
    model, optimizer = fresh(seed=5)
    with pytest.raises(LinpathError, match="does not continue the training kept") as e:
        Keeper(folder, model, STEPS, optimizer=optimizer, start_step=100)
    assert "\n" not in str(e.value)
    shutil.rmtree(folder)
    two_trainings(folder)
    run = RunDir(folder)
    findings = audit_run(folder, save=False)
    assert [(f.kind, f.steps) for f in findings] == [("lineage", (64, 128))], [f.message for f in findings]
    load = lambda t: torch.load(run.checkpoint(0, t), weights_only=True)  # noqa: E731
    seam = by_hand(load(64), load(128))
    assert abs(seam) < 0.2 and f"correlate {seam:.2f}" in findings[0].message
    steps = reference.saved_steps(0)
    clean = [
        by_hand(*(torch.load(reference.checkpoint(0, t), weights_only=True) for t in p))
        for p in zip(steps, steps[1:])
    ]
    c = weight_correlation(load(64), load(128))
    assert abs(c.value - seam) < 1e-12 and c.independent
    assert min(clean) > 0.8 > LINEAGE_FLOOR > INDEPENDENCE_Z * c.noise  # the same pairs in one training
    record(
        "fault", "Keeper resumed at 100 with a fresh model (issue 30 #5)", f"refused: {str(e.value)[:90]}..."
    )
    record(
        "fault", "a replicate made of two trainings (old Keeper)", f"audit: {findings[0].message[:120]}..."
    )


def test_overwritten_in_place_with_the_mtime_restored(tmp_path, reference, capsys):
    """iter-16 overwritten with iter-8's bytes in place (same inode, same size), its mtime set
    back: the cache does not hide it (ctime moved), the audit finds it and the sweep refuses."""
    root = tmp_path / "run"
    shutil.copytree(reference.root, root, ignore=shutil.ignore_patterns(".*lock"))
    run = RunDir(root)
    assert audit_run(run) == []  # the cache now holds every file
    target, source = run.checkpoint(0, 16), run.checkpoint(0, 8)
    st = target.stat()
    assert source.stat().st_size == st.st_size
    with open(target, "r+b") as f:
        f.write(source.read_bytes())
    os.utime(target, ns=(st.st_atime_ns, st.st_mtime_ns))
    after = target.stat()
    assert (after.st_size, after.st_mtime_ns, after.st_ino) == (st.st_size, st.st_mtime_ns, st.st_ino)
    findings = audit_run(run)
    assert [(f.kind, set(f.steps)) for f in findings][:1] == [("duplicate-file", {8, 16})]
    torch.save(vectors(64, seed=1), tmp_path / "eval.pt")
    argv = [
        "sweep",
        str(root),
        "--model",
        MODEL,
        "--data",
        str(tmp_path / "eval.pt"),
        "--points",
        "3",
        "--quiet",
    ]
    line = one_line_error(capsys, argv)
    assert "duplicate states" in line and "iter-0000016" in line
    record(
        "fault",
        "iter-16 overwritten in place with iter-8's bytes, mtime restored (issue 30 #8)",
        f"audit found it; sweep: {line}",
    )


DAMAGED_CACHES = {
    "an array": "[]",
    "null": "null",
    "a string entry": '{"replicate-0/checkpoints/iter-0000000.pt": "x"}',
    "an entry missing its digest": None,  # made from the real cache below
    "a distance that is a string": None,
    "nested 100,000 deep": "[" * 100_000 + "]" * 100_000,
    "bytes that are not UTF-8": b"\xff\xfe\x00{",
    "an empty file": "",
}


@pytest.mark.parametrize("case", list(DAMAGED_CACHES))
def test_a_damaged_audit_cache_is_no_cache(tmp_path, reference, case):
    root = tmp_path / "run"
    shutil.copytree(reference.root, root, ignore=shutil.ignore_patterns(".*lock"))
    run = RunDir(root)
    assert audit_run(run) == []
    text = DAMAGED_CACHES[case]
    if text is None:
        entries = json.loads(run.audit_cache.read_text())
        entry = entries["replicate-0/checkpoints/iter-0000016.pt"]
        if case == "an entry missing its digest":
            del entry["digest"]
        else:
            entry["distance"] = {k: "far" for k in entry["distance"]}
        text = json.dumps(entries)
    run.audit_cache.write_bytes(text if isinstance(text, bytes) else text.encode())
    assert audit_run(run) == []
    assert json.loads(run.audit_cache.read_text())  # written anew, whole
    run.checkpoint(0, 32).write_bytes(run.checkpoint(0, 4).read_bytes())  # and it still finds things
    assert [f.kind for f in audit_run(run)][:1] == ["duplicate-file"]
    record(
        "bad-input",
        f"audit/cache.json: {case} (issue 30 #11)",
        "treated as no cache; the audit reads the files again",
    )


@pytest.mark.slow
def test_a_damaged_cache_does_not_block_a_sweep(tmp_path, reference):
    root = tmp_path / "run"
    shutil.copytree(reference.root, root, ignore=shutil.ignore_patterns(".*lock"))
    run = RunDir(root)
    run.audit_cache.parent.mkdir(parents=True, exist_ok=True)
    run.audit_cache.write_text("[]")
    torch.save(vectors(64, seed=1), tmp_path / "eval.pt")
    argv = [
        "sweep",
        str(root),
        "--model",
        MODEL,
        "--data",
        str(tmp_path / "eval.pt"),
        "--points",
        "3",
        "--quiet",
    ]
    assert main(argv) == 0
    assert isinstance(json.loads(run.audit_cache.read_text()), dict)


def test_the_architecture_message_names_shapes_in_order(tmp_path, reference):
    root = tmp_path / "run"
    shutil.copytree(reference.root, root, ignore=shutil.ignore_patterns(".*lock", "audit"))
    run = RunDir(root)
    wide = torch.nn.Sequential(torch.nn.Linear(10, 24), torch.nn.ReLU(), torch.nn.Linear(24, 3))
    torch.save({f"net.{k}": v for k, v in wide.state_dict().items()}, run.checkpoint(0, 16))
    (finding,) = [f for f in audit_run(run, save=False) if f.kind == "architecture"]
    assert (
        "replicate-0/checkpoints/iter-0000016.pt holds another architecture than "
        "replicate-0/checkpoints/iter-0000300.pt" in finding.message
    )
    assert finding.message.endswith("'net.0.weight' has shape (24, 10) vs (16, 10)")  # this file's first


def test_keeper_start_step_checks(tmp_path):
    model, _ = fresh()
    for bad in (-1, 11, 2.5, True, "3"):
        with pytest.raises(LinpathError, match="start_step must be a step in 0..10"):
            Keeper(tmp_path / "r", model, 10, start_step=bad)
    assert not (tmp_path / "r").exists()  # refused before anything was written
    record("bad-input", "Keeper start_step=-1, 11, 2.5, True, '3'", "one line each, nothing written")


def test_a_hand_edited_kept_state_under_a_resume(tmp_path):
    """iter-4 replaced by hand with a random state, then a resume from it (restore_state):
    the resume is inferred at 4 (the file is what the model is), but the audit of the finished
    replicate finds the seam 2 → 4."""
    model, optimizer = fresh()
    keeper = Keeper(tmp_path / "r", model, 40)
    advance(model, optimizer, keeper, range(1, 6))
    keeper.close()
    torch.save(fresh(seed=3)[0].state_dict(), RunDir(tmp_path / "r").checkpoint(0, 4))
    model, optimizer = fresh()
    restore_state(tmp_path / "r", 4, model)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        keeper = Keeper(tmp_path / "r", model, 40)
        assert keeper.start_step == 4
        advance(model, optimizer, keeper, range(5, 41))
        keeper.finish()
    kinds = {(f.kind, f.steps) for f in audit_run(tmp_path / "r", save=False)}
    assert ("lineage", (2, 4)) in kinds
    record(
        "fault",
        "a kept state replaced by hand with another model's, training resumed from it",
        f"audit: {sorted(kinds)}",
    )


# --- more of the same classes: reopened Keepers, hand-edited kept states, caches --------------------
def test_two_keepers_on_one_replicate(tmp_path):
    model, _ = fresh()
    first = Keeper(tmp_path / "r", model, 40)
    message = refused_line(lambda: Keeper(tmp_path / "r", model, 40), "is in use by another linpath process")
    first.close()
    record("bad-input", "two Keepers on one replicate at once", f"the second refused: {message}")


def refused_line(make, match: str) -> str:
    with pytest.raises(LinpathError, match=match) as e:
        make()
    assert "\n" not in str(e.value)
    return str(e.value)


def test_a_keeper_on_odd_folders(tmp_path, reference):
    model, _ = fresh()
    root = tmp_path / "run"
    shutil.copytree(reference.root, root, ignore=shutil.ignore_patterns(".*lock"))
    (root / "replicate-1").mkdir()
    (root / "replicate-1" / "checkpoints").write_text("a file where the folder goes")
    message = refused_line(lambda: Keeper(root, model, STEPS, replicate=1), "cannot write")
    record("bad-input", "a Keeper whose replicate's checkpoints/ is a file", message)
    (tmp_path / "deep").mkdir()
    (tmp_path / "deep" / "spec.json").write_text("[" * 100_000 + "]" * 100_000)
    message = refused_line(lambda: Keeper(tmp_path / "deep", model, 40), "nested too deeply")
    record("bad-input", "a Keeper on a folder whose spec.json is nested 100,000 deep", message)
    spec = json.loads((root / "spec.json").read_text())
    (root / "spec.json").write_text(json.dumps({**spec, "kept_steps": [0, 10**12]}))
    message = refused_line(lambda: Keeper(root, model, STEPS), "kept_steps must lie in 0..300")
    record("bad-input", "a Keeper on a folder whose spec.json kept_steps were edited past the end", message)


def test_a_truncated_kept_file_under_a_resume(tmp_path, reference):
    """The newest kept file (64) truncated by hand, the model restored from 32: the resume is
    inferred at 32 (the truncated file matches nothing), and at 64 the truncated file is moved
    to superseded/ and the state written anew: the files end as the uninterrupted run's."""
    folder = tmp_path / "run"
    killed_at(folder, 100, own_checkpoint_at=100)
    run = RunDir(folder)
    run.checkpoint(0, 64).write_bytes(run.checkpoint(0, 64).read_bytes()[:100])
    model, optimizer = fresh(seed=7)
    restore_state(folder, 32, model, optimizer)
    keeper = Keeper(folder, model, STEPS, optimizer=optimizer)
    assert keeper.start_step == 32
    with pytest.warns(UserWarning, match="reached step 64 with other weights"):
        advance(model, optimizer, keeper, range(33, STEPS + 1))
    keeper.finish()
    assert_same_files(run, reference)
    assert len((folder / "replicate-0" / "superseded" / "iter-0000064.1.pt").read_bytes()) == 100
    record(
        "fault",
        "a truncated kept file, then a resume from the state before it",
        "replaced, the truncated one moved aside",
    )


def planted(reference: RunDir, tmp_path, plant) -> tuple[RunDir, list]:
    root = tmp_path / "run"
    shutil.copytree(reference.root, root, ignore=shutil.ignore_patterns(".*lock", "audit"))
    run = RunDir(root)
    plant(run)
    return run, audit_run(run)


def a_folder_named_like_a_state(run):
    run.checkpoint(0, 8).unlink()
    run.checkpoint(0, 8).mkdir()


def a_symlinked_duplicate(run):
    run.checkpoint(0, 8).unlink()
    run.checkpoint(0, 8).symlink_to(run.checkpoint(0, 4))


def an_empty_file(run):
    run.checkpoint(0, 8).write_bytes(b"")


def safetensors_renamed(run):
    from safetensors.torch import save_file

    save_file(torch.load(run.checkpoint(0, 4), weights_only=True), str(run.checkpoint(0, 8)))


def a_garbage_done_mark(run):
    run.done_marker(0).write_bytes(b"\x00garbage")


PLANTS = {
    a_folder_named_like_a_state: ("unreadable", (8,)),
    a_symlinked_duplicate: ("duplicate-file", (4, 8)),
    an_empty_file: ("unreadable", (8,)),
    safetensors_renamed: ("equal-tensors", (4, 8)),
    a_garbage_done_mark: (None, None),
}


@pytest.mark.parametrize("plant", list(PLANTS), ids=lambda p: p.__name__)
def test_hand_edited_kept_states(reference, tmp_path, plant):
    run, findings = planted(reference, tmp_path, plant)
    kind, steps = PLANTS[plant]
    found = [(f.kind, f.steps) for f in findings]
    assert found[:1] == ([(kind, steps)] if kind else []), [f.message for f in findings]
    assert all("\n" not in f.message for f in findings)
    outcome = findings[0].message if findings else "audit clean (the last kept state is the final one)"
    record("fault", f"audit of a hand-edited run: {plant.__name__.replace('_', ' ')}", outcome)


def test_odd_caches(reference, tmp_path):
    """cache.json a folder (never written, the audit still complete); a cache copied from
    another run (its entries match none of this run's files: read again, the duplicate found)."""
    root = tmp_path / "run"
    shutil.copytree(reference.root, root, ignore=shutil.ignore_patterns(".*lock", "audit"))
    run = RunDir(root)
    run.audit_cache.mkdir(parents=True)
    assert audit_run(run) == [] and run.audit_cache.is_dir()
    other = tmp_path / "other"
    shutil.copytree(reference.root, other, ignore=shutil.ignore_patterns(".*lock", "audit"))
    assert audit_run(other) == []
    shutil.rmtree(run.audit_cache)
    shutil.copy(RunDir(other).audit_cache, run.audit_cache)
    run.checkpoint(0, 16).write_bytes(run.checkpoint(0, 8).read_bytes())
    assert [f.kind for f in audit_run(run)][:1] == ["duplicate-file"]
    record(
        "bad-input",
        "audit/cache.json a folder; a cache copied from another run",
        "no cache / read again; findings complete",
    )


@pytest.mark.slow
def test_the_lineage_signal_on_real_lenet_states(small_run):
    """LeNet-300-100 trained on real MNIST (two replicates, 300 steps): every pair of
    consecutive kept states of a replicate is far from independent; the two replicates' final
    states are independent trainings, and the signal says so."""
    for r in (0, 1):
        steps = small_run.saved_steps(r)
        states = {t: torch.load(small_run.checkpoint(r, t), weights_only=True) for t in steps}
        pairs = [weight_correlation(states[a], states[b]) for a, b in zip(steps, steps[1:])]
        assert all(not c.independent and c.value > 0.9 for c in pairs), [c.value for c in pairs]
    finals = [torch.load(small_run.checkpoint(r, 300), weights_only=True) for r in (0, 1)]
    across = weight_correlation(*finals)
    assert across.independent and abs(across.value) < INDEPENDENCE_Z * across.noise, across
    assert audit_run(small_run, save=False) == []


@pytest.fixture(scope="module")
def momentum_run(tmp_path_factory, data_root):
    """LeNet with momentum 0.9 on real MNIST, 40 iterations (as tests/test_spawn.py's)."""
    from linpath.config.presets import preset
    from linpath.runs import stages

    spec = preset("mnist_lenet_300_100").with_overrides(
        {"training_steps": "40it", "momentum": 0.9, "replicates": 1}
    )
    return stages.train(spec, tmp_path_factory.mktemp("spawnruns"), data_root, device="cpu", progress=False)


def test_a_spawn_killed_between_its_parent_and_spawn_json(momentum_run, mnist, tmp_path):
    """parent.pt written, spawn.json not (a kill between the two writes): the next spawn makes
    both again and gives the same rows; spawn.json nested 100,000 deep is one line."""
    from linpath.runs.spawn import SpawnOptions, spawn, spawn_dir
    from linpath.sweep.grids import Grid
    from linpath.sweep.setting import SweepSetting

    root = tmp_path / "run"
    shutil.copytree(momentum_run.root, root, ignore=shutil.ignore_patterns(".*lock", "spawn"))
    setting = SweepSetting(grid=Grid(points=3))
    rows = spawn(root, 16, mnist, setting, SpawnOptions(children=2, progress=False))
    sdir = spawn_dir(RunDir(root), 0, 16)
    for child in (0, 1):
        shutil.rmtree(sdir.replicate_dir(child))
    sdir.info_file.unlink()
    assert spawn(root, 16, mnist, setting, SpawnOptions(children=2, progress=False)) == rows
    sdir.info_file.write_text("[" * 100_000 + "]" * 100_000)
    message = refused_line(
        lambda: spawn(root, 16, mnist, setting, SpawnOptions(children=2, progress=False)), "nested too deeply"
    )
    record(
        "fault",
        "`linpath spawn` killed between parent.pt and spawn.json; spawn.json nested deep",
        f"made again, same rows; {message}",
    )
