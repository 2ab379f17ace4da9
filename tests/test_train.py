"""Training: the faithful setting, the schedule, exact resumption."""

import shutil

import torch

from linpath.config.presets import preset
from linpath.config.schedule import Schedule
from linpath.config.spec import read_spec, write_spec
from linpath.io.rundir import RunDir
from linpath.models import build, count_parameters
from linpath.runs import stages
from linpath.train.log import LOG_COLUMNS, read_log
from linpath.train.loop import Branch, train_replicate

from .conftest import SMALL


def test_lenet_has_266610_parameters():
    assert count_parameters(build("mnist_lenet_300_100", 10)) == 266_610


def test_mnist_preset_is_openlths_default():
    spec = preset("mnist_lenet_300_100")
    s = Schedule.of(spec, 60000)
    assert (s.iterations_per_epoch, s.total) == (469, 18760)
    assert {s.lr_at(0), s.lr_at(18759)} == {0.1}
    assert (spec.train.momentum, spec.train.weight_decay, spec.data.batch_size, spec.data.augment) == (
        0.0,
        0.0,
        128,
        False,
    )
    assert len(s.kept()) == 30


def test_small_run_keeps_the_scheduled_checkpoints_and_logs(small_run):
    assert small_run.replicates() == [0, 1]
    assert small_run.saved_steps(0) == [0, 1, 2, 4, 8, 16, 32, 64, 128, 256, 300]
    log = read_log(small_run, 0)
    assert list(log[0]) == LOG_COLUMNS
    assert [int(row["iteration"]) for row in log] == [300]  # 300 < one epoch: only the end is logged
    assert 0.85 < float(log[-1]["test_accuracy"]) < 1.0


def test_replicates_differ_and_are_reproducible(small_run, tmp_path, mnist):
    a = torch.load(small_run.checkpoint(0, 300), weights_only=True)
    b = torch.load(small_run.checkpoint(1, 300), weights_only=True)
    assert not torch.equal(a["fc.weight"], b["fc.weight"])
    init = torch.load(small_run.checkpoint(1, 0), weights_only=True)
    spec = preset("mnist_lenet_300_100").with_overrides({**SMALL, "training_steps": "2it"})
    run = RunDir(tmp_path / spec.run_name)
    write_spec(run, spec)
    train_replicate(spec, run, 1, mnist, progress=False)
    again = torch.load(run.checkpoint(1, 0), weights_only=True)
    assert all(torch.equal(init[k], again[k]) for k in init)


def test_training_resumed_after_an_interruption_is_bitwise_identical(small_run, mnist, tmp_path):
    spec = read_spec(small_run)
    run = RunDir(tmp_path / spec.run_name)
    write_spec(run, spec)
    train_replicate(spec, run, 0, mnist, progress=False, branch=Branch(stop_after=150))  # "killed" at 150
    assert not run.done_marker(0).exists() and run.resume_file(0).exists()
    assert torch.load(run.resume_file(0), weights_only=True)["step"] == 128  # the last save before the kill
    train_replicate(spec, run, 0, mnist, progress=False)
    assert run.saved_steps(0) == small_run.saved_steps(0)
    for t in run.saved_steps(0):
        ours = torch.load(run.checkpoint(0, t), weights_only=True)
        ref = torch.load(small_run.checkpoint(0, t), weights_only=True)
        assert all(torch.equal(ours[k], ref[k]) for k in ref), t
    strip = lambda rows: [{k: v for k, v in r.items() if k != "seconds"} for r in rows]  # noqa: E731
    assert strip(read_log(run, 0)) == strip(read_log(small_run, 0))


def test_an_existing_run_is_reused_not_retrained(small_run, data_root):
    spec = read_spec(small_run)
    before = small_run.checkpoint(0, 300).stat().st_mtime_ns
    run = stages.train(spec, small_run.root.parent, data_root, progress=False)
    assert run.root == small_run.root
    assert small_run.checkpoint(0, 300).stat().st_mtime_ns == before


def test_overrides_enter_the_hash_but_the_replicate_count_does_not():
    base = preset("mnist_lenet_300_100")
    assert base.with_overrides({"lr": 0.05}).hash != base.hash
    assert base.with_overrides({"training_steps": "2ep"}).hash != base.hash
    assert base.with_overrides({"seed": 7}).hash != base.hash
    assert base.with_overrides({"replicates": 1}).hash == base.hash
    # pinned: the same settings must name the same folder in every version (runs made before stay found)
    assert base.hash == "63e0742d57"
    assert len(base.hash) == 10


def test_an_edited_spec_is_refused(small_run, tmp_path):
    import json

    import pytest

    from linpath.errors import LinpathError

    copy = RunDir(tmp_path / small_run.root.name)
    shutil.copytree(small_run.root, copy.root)
    d = json.loads(copy.spec_path.read_text())
    d["train"]["lr"] = 0.5
    copy.spec_path.write_text(json.dumps(d))
    with pytest.raises(LinpathError, match="edited"):
        read_spec(copy)


def test_training_one_replicate_alone_gives_that_replicate_of_the_full_run(small_run, data_root, tmp_path):
    """`--replicate 1` (stages.train(only=[1])): a folder holding replicate 1 alone, its
    checkpoints bitwise those of replicate 1 in the two-replicate run, and the spec's count
    covering it."""
    spec = read_spec(small_run)
    run = stages.train(spec, tmp_path, data_root, device="cpu", progress=False, only=[1])
    assert run.replicates() == [1] and not run.replicate_dir(0).exists()
    assert read_spec(run).replicates == 2
    assert run.saved_steps(1) == small_run.saved_steps(1)
    for t in run.saved_steps(1):
        a = torch.load(run.checkpoint(1, t), weights_only=True)
        b = torch.load(small_run.checkpoint(1, t), weights_only=True)
        assert all(torch.equal(a[k], b[k]) for k in a)
