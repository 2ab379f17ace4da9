"""`linpath import DIR --pattern ...` (commands/import_dir.py): step-<t>.pt files, Lightning
.ckpt names, regular expressions and Hugging Face checkpoint-<t>/ folders become a run folder
whose iter-<t>.pt hold the same tensors; bad input is one line and leaves nothing behind; the
imported folder sweeps to the numbers of a plain loop over the same states."""

from __future__ import annotations

import json
import shutil

import pytest
import torch
from safetensors.torch import save_file

from linpath.cli import main
from linpath.config.spec import read_spec
from linpath.errors import LinpathError
from linpath.io.rundir import RunDir
from linpath.runs.import_dir import compile_pattern, import_folders
from tests.kept_runs import MODEL, TinyMLP, check_against_oracle, sweep_and_report, train, vectors
from tests.test_api import one_line_error

STEPS = (0, 10, 100, 1000)


def states(seed: int = 0) -> dict[int, dict]:
    torch.manual_seed(seed)
    return {t: TinyMLP().state_dict() for t in STEPS}


def equal(a: dict, b: dict) -> bool:
    return a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


def imported(run: RunDir, r: int = 0) -> dict[int, dict]:
    return {t: torch.load(run.checkpoint(r, t), weights_only=True) for t in run.saved_steps(r)}


def test_patterns():
    assert compile_pattern("step-{t}.pt").fullmatch("step-120.pt").group("t") == "120"
    assert compile_pattern("epoch=*-step={t}.ckpt").fullmatch("epoch=3-step=40.ckpt").group("t") == "40"
    assert compile_pattern("step-{t}.pt").fullmatch("a/step-1.pt") is None  # * and literals stay in one name
    assert compile_pattern(r"ck_(?P<t>\d+)\.bin").fullmatch("ck_7.bin").group("t") == "7"
    for bad in ("step.pt", "{t}-{t}.pt", "(?P<t>["):
        with pytest.raises(LinpathError):
            compile_pattern(bad)


def test_step_files_plain_and_wrapped(tmp_path, capsys):
    source, want = tmp_path / "ckpts", states()
    source.mkdir()
    for t, state in want.items():  # a plain state dict, and the PyTorch tutorial's wrapper
        torch.save(state if t % 20 else {"model_state_dict": state, "step": t}, source / f"step-{t}.pt")
    (source / "notes.txt").write_text("not matched")
    assert main(["import", str(source), "--pattern", "step-{t}.pt", "--out", str(tmp_path / "runs")]) == 0
    out = capsys.readouterr().out
    (folder,) = (tmp_path / "runs").iterdir()
    run = RunDir(folder)
    assert f"imported: {folder}" in out and "--model module:callable --data" in out
    assert run.saved_steps(0) == list(STEPS) and run.done_marker(0).read_text() == "1000\n"
    assert all(equal(imported(run)[t], want[t]) for t in STEPS)
    spec = read_spec(run, external_ok=True)
    assert (
        spec.kept_by == "import" and spec.total_steps == 1000 and folder.name == f"import-ckpts-{spec.hash}"
    )
    assert json.loads((folder / "import.json").read_text())["replicates"]["0"]["files"]["10"] == "step-10.pt"
    assert sorted(p.name for p in source.iterdir()) == sorted([*(f"step-{t}.pt" for t in STEPS), "notes.txt"])
    # the same import again reuses the folder, writing nothing
    before = {p: p.stat().st_mtime_ns for p in folder.rglob("*")}
    assert main(["import", str(source), "--pattern", "step-{t}.pt", "--out", str(tmp_path / "runs")]) == 0
    assert "already imported" in capsys.readouterr().out
    assert {p: p.stat().st_mtime_ns for p in folder.rglob("*")} == before


def test_hugging_face_checkpoint_folders(tmp_path):
    source, want = tmp_path / "trainer-out", states()
    for t, state in want.items():
        folder = source / f"checkpoint-{t}"
        folder.mkdir(parents=True)
        if t < 100:
            save_file(state, str(folder / "model.safetensors"))
        else:
            torch.save(state, folder / "pytorch_model.bin")
        (folder / "config.json").write_text(json.dumps({"architectures": ["TinyForClassification"]}))
        (folder / "trainer_state.json").write_text("{}")
    run, notes = import_folders([source], tmp_path / "runs")  # the default pattern: checkpoint-{t}/
    assert run.saved_steps(0) == list(STEPS) and notes == []
    assert all(equal(imported(run)[t], want[t]) for t in STEPS)
    assert read_spec(run, external_ok=True).model_class == "TinyForClassification"


def test_lightning_names_regex_and_replicates(tmp_path):
    sources = [tmp_path / "seed0", tmp_path / "seed1"]
    wants = [states(0), states(1)]
    for source, want in zip(sources, wants):
        source.mkdir()
        for i, (t, state) in enumerate(want.items()):
            if t:  # no state at t = 0: noted
                torch.save({"state_dict": state, "epoch": i}, source / f"epoch={i}-step={t}.ckpt")
    run, notes = import_folders(sources, tmp_path / "runs", "epoch=*-step={t}.ckpt")
    assert notes == ["no state at t = 0: paths start at t = 10"]
    for r, want in enumerate(wants):
        assert run.saved_steps(r) == [10, 100, 1000]
        assert all(equal(imported(run, r)[t], want[t]) for t in (10, 100, 1000))
    again, _ = import_folders(sources[:1], tmp_path / "other", r"epoch=\d+-step=(?P<t>\d+)\.ckpt")
    assert again.saved_steps(0) == [10, 100, 1000] and again.root.parent.name == "other"


def bad_input_cases(tmp_path):
    """(source folders, pattern, message) of each refusal."""
    cases = []

    def folder(name: str, files: dict) -> str:
        path = tmp_path / name
        path.mkdir(parents=True)
        for file, content in files.items():
            (path / file).parent.mkdir(parents=True, exist_ok=True)
            if isinstance(content, bytes):
                (path / file).write_bytes(content)
            else:
                torch.save(content, path / file)
        return str(path)

    sd = TinyMLP().state_dict()
    cases.append(
        ([folder("none", {"a.pt": sd})], "step-{t}.pt", "matches --pattern 'step-{t}.pt' (it holds a.pt)")
    )
    cases.append(
        (
            [folder("twice", {"step-1.pt": sd, "step-01.pt": sd, "step-5.pt": sd})],
            "step-{t}.pt",
            "two checkpoints for step 1",
        )
    )
    text = folder("text", {"step-0.pt": sd, "step-5.pt": b"loss 0.3\n"})
    cases.append(([text], "step-{t}.pt", "step-5.pt: not a file written by torch.save"))
    cases.append(
        ([folder("notsd", {"step-0.pt": sd, "step-5.pt": [1, 2]})], "step-{t}.pt", "is not a state dict")
    )
    cases.append(
        (
            [folder("hf", {"checkpoint-5/optimizer.pt": sd})],
            None,
            "neither model.safetensors nor pytorch_model.bin",
        )
    )
    ends = [
        folder("end5", {"step-0.pt": sd, "step-5.pt": sd}),
        folder("end6", {"step-0.pt": sd, "step-6.pt": sd}),
    ]
    cases.append((ends, "step-{t}.pt", "the folders end at different steps (5, 6)"))
    cases.append(([folder("zero", {"step-0.pt": sd})], "step-{t}.pt", "holds only a checkpoint at step 0"))
    cases.append(([str(tmp_path / "absent")], "step-{t}.pt", "no folder at"))
    return cases


def test_bad_input_is_one_line_and_leaves_nothing(tmp_path, capsys):
    out = tmp_path / "runs"
    for sources, pattern, message in bad_input_cases(tmp_path / "cases"):
        argv = ["import", *sources, "--out", str(out), *(["--pattern", pattern] if pattern else [])]
        line = one_line_error(capsys, argv)
        assert message in line, (message, line)
        assert not out.exists() or not any(out.iterdir()), sorted(out.iterdir())


@pytest.mark.slow
def test_an_imported_folder_sweeps_to_the_plain_loop(tmp_path):
    """States kept by a loop of one's own as step-<t>.pt, imported, swept: the plain loop's numbers."""
    kept = tmp_path / "kept"
    train(kept, 40, keep=[5, 20])
    source = tmp_path / "mine"
    source.mkdir()
    for path in (kept / "replicate-0" / "checkpoints").glob("iter-*.pt"):
        shutil.copy(path, source / f"step-{int(path.stem.split('-')[1])}.pt")
    run, _ = import_folders([source], tmp_path / "runs", "step-{t}.pt")
    inputs, labels = vectors(150, seed=3)
    sweep_and_report(run.root, MODEL, inputs, labels, tmp_path)
    assert check_against_oracle(run.root, TinyMLP, inputs, labels) == 3  # t = 0, 5, 20
