"""Checkpoint grids addressed by revision (issue 32): revision names and selections, states by
revision on a local mirror and in huggingface_hub's own offline cache, the import (hashes as
sha256 of the files themselves), the grid audit (each plant found, nothing else), the sweep on
the streamed evaluator against a plain Hugging Face loop, and the report's language-model
tables. Nothing here needs a network: the Hub's download call runs against a cache the test
builds, with HF_HUB_OFFLINE set."""

from __future__ import annotations

import json
import math
import shutil

import pytest
import torch

from linpath.analysis.audit import audit_run
from linpath.analysis.grid_audit import grid_audit
from linpath.config.revisions import listed_steps, paper_steps, requested_steps, step_of, steps_by_name
from linpath.errors import LinpathError
from linpath.io.grid_record import GridRecord
from linpath.io.hub import HubSource, MirrorSource, parse_ref, resolve_state
from linpath.io.rundir import RunDir
from linpath.runs.import_grid import import_grid
from tests.grid_helpers import REPO, hub_cache, line_grid, plant, sha256, shard_files

transformers = pytest.importorskip("transformers")
huggingface_hub = pytest.importorskip("huggingface_hub")

PYTHIA = [0, *(2**k for k in range(10)), *range(1000, 143001, 1000)]  # Pythia's 154 revisions
STEPS = [0, 1, 2, 4, 8, 16, 32, 64, 100]


def test_revision_names():
    assert [step_of(n) for n in ("step0", "step143000", "stage1-step1000-tokens4B", "step2000-tokens8B")] == [
        0, 143000, 1000, 2000,
    ]  # fmt: skip
    assert [step_of(n) for n in ("main", "refs/pr/1", "step", "steps100", "step10-extra")] == [None] * 5
    assert steps_by_name(["main", "step1", "step0"], "repo") == {0: "step0", 1: "step1"}
    with pytest.raises(LinpathError, match="both name step 1000"):
        steps_by_name(["step1000", "stage1-step1000-tokens4B"], "repo")


def test_pythias_grid_is_the_papers():
    """Pythia's 154 revisions are the paper's grid, step1000 standing in for 2^10."""
    assert len(PYTHIA) == 154
    assert paper_steps(set(PYTHIA)) == PYTHIA
    assert requested_steps("all", {0, 5, 7}) == [0, 5, 7]
    assert paper_steps(set(PYTHIA) - {64}) == PYTHIA  # asked for: the audit names 64 missing
    assert paper_steps({0, 1, 2, 600}) == [0, 1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 600]
    assert listed_steps("step0, 16,stage1-step1000-tokens4B") == [0, 16, 1000]
    for bad in ("main", ",", "step0,latest"):
        with pytest.raises(LinpathError):
            listed_steps(bad)


def test_references(tmp_path):
    (tmp_path / "mirror" / "step4").mkdir(parents=True)
    (tmp_path / "a@b").mkdir()
    ref = parse_ref("hf://EleutherAI/pythia-70m@step1000")
    assert (ref.source, ref.revision, ref.hub) == ("EleutherAI/pythia-70m", "step1000", True)
    assert parse_ref("hf://EleutherAI/pythia-70m").revision is None
    local = parse_ref(f"{tmp_path / 'mirror'}@step4")
    assert (local.revision, local.hub) == ("step4", False)
    assert parse_ref(str(tmp_path / "a@b")) is None  # an '@' in a folder's name is left alone
    assert parse_ref(f"{tmp_path / 'mirror'}@step8") is None and parse_ref(3) is None
    with pytest.raises(LinpathError, match="ORG/NAME"):
        parse_ref("hf://pythia@step1")


@pytest.fixture(scope="module")
def mirror(tmp_path_factory):
    """Two seeds of a line grid (seed 1 another line), as a local mirror."""
    root = tmp_path_factory.mktemp("mirror")
    line_grid(root / "tiny", STEPS, seed=0)
    line_grid(root / "tiny-seed1", STEPS, seed=1)
    return root


def copy_mirror(mirror, tmp_path):
    shutil.copytree(mirror, tmp_path / "m")
    return tmp_path / "m"


def test_pickle_only_revisions_are_refused(tmp_path):
    folder = tmp_path / "m" / "step0"
    folder.mkdir(parents=True)
    (folder / "config.json").write_text("{}")
    torch.save({"w": torch.zeros(2)}, folder / "pytorch_model.bin")
    with pytest.raises(
        LinpathError, match=r"only pickled weights \(pytorch_model.bin\): linpath reads safetensors"
    ):
        MirrorSource(tmp_path / "m").files("step0")


def test_import_of_a_mirror_references_it_with_its_hashes(mirror, tmp_path):
    run, notes = import_grid(
        mirror / "tiny", tmp_path / "runs", replicate_pattern=str(mirror / "tiny-seed{r}")
    )
    record = GridRecord.read(run.grid_record)
    assert notes == [] and record.kind == "mirror" and sorted(record.replicates) == [0, 1]
    assert record.requested == (0, 1, 2, 4, 8, 16, 32, 64, 100)  # the paper's grid up to 100
    for r, name in ((0, "tiny"), (1, "tiny-seed1")):
        for t in STEPS:
            files = {f.name: f.sha256 for f in record.replicates[r].revisions[t].files}
            folder = mirror / name / f"step{t}"
            want = {p.name: sha256(p) for p in folder.iterdir() if p.name != "generation_config.json"}
            assert files == want  # config.json, the index and both shards, hashed independently
    assert not list(run.root.rglob("*.safetensors"))  # references, no copies
    assert run.replicates() == [0, 1] and run.done_step(1) == 100
    spec = json.loads(run.spec_path.read_text())
    assert spec["kept_steps"] == STEPS and spec["external"]["model_class"] == "GPTNeoXForCausalLM"
    again, notes = import_grid(
        mirror / "tiny", tmp_path / "runs", replicate_pattern=str(mirror / "tiny-seed{r}")
    )
    assert again.root == run.root and notes[0].startswith("already imported")


def test_a_copied_import_holds_the_checked_files(mirror, tmp_path):
    run, _ = import_grid(mirror / "tiny", tmp_path / "runs", revisions="step0,step64,step100", copy=True)
    record = GridRecord.read(run.grid_record)
    assert record.copied and sorted(record.replicates[0].revisions) == [0, 64, 100]
    for t in (0, 64, 100):
        for shard in shard_files(mirror / "tiny" / f"step{t}"):
            assert sha256(run.revision_folder(0, t) / shard.name) == sha256(shard)


def test_refused_imports_leave_nothing(mirror, tmp_path):
    m = copy_mirror(mirror, tmp_path)
    shutil.rmtree(m / "tiny-seed1" / "step100")  # seed 1 lacks the final state
    out = tmp_path / "runs"
    with pytest.raises(LinpathError, match="no revision at the grid's last step 100"):
        import_grid(m / "tiny", out, replicate_pattern=str(m / "tiny-seed{r}"))
    with pytest.raises(LinpathError, match="none of the steps asked for"):
        import_grid(m / "tiny", out, revisions="step3,step5")
    with pytest.raises(LinpathError, match="must hold"):
        import_grid(m / "tiny", out, replicate_pattern="seed")
    assert not out.exists() or not list(out.iterdir())


@pytest.fixture
def offline_cache(mirror, tmp_path, monkeypatch):
    """The mirror's two seeds as the Hub repos org/tiny and org/tiny-seed1 in huggingface_hub's
    cache layout, with HF_HUB_OFFLINE and HF_HUB_CACHE as the library reads them."""
    cache = tmp_path / "hub"
    commits = {}
    for repo, name in (("org/tiny", "tiny"), ("org/tiny-seed1", "tiny-seed1")):
        revisions = {f"step{t}": mirror / name / f"step{t}" for t in STEPS}
        revisions["main"] = mirror / name / "step100"
        commits[repo] = hub_cache(cache, repo, revisions)
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", True)
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_CACHE", str(cache))
    return cache, commits


def test_the_hub_path_reads_huggingface_hubs_own_offline_cache(mirror, offline_cache, tmp_path):
    """The same grid through the Hub's download call (snapshot_download on the cache) and through
    the mirror: the same files, the same hashes, the commits of the cache's refs."""
    cache, commits = offline_cache
    source = HubSource("org/tiny")
    assert source.revisions() == commits["org/tiny"]  # main included; no step name, never in a grid
    folder = resolve_state("hf://org/tiny@step64")
    assert folder == cache / "models--org--tiny" / "snapshots" / commits["org/tiny"]["step64"]
    hub_run, _ = import_grid(
        "hf://org/tiny", tmp_path / "a", replicate_pattern="org/tiny-seed{r}", replicates=2
    )
    mirror_run, _ = import_grid(
        mirror / "tiny", tmp_path / "b", replicate_pattern=str(mirror / "tiny-seed{r}")
    )
    hub, local = GridRecord.read(hub_run.grid_record), GridRecord.read(mirror_run.grid_record)
    assert hub.kind == "hub" and hub.replicates[1].source == "org/tiny-seed1"
    for r in (0, 1):
        for t in STEPS:
            a, b = hub.replicates[r].revisions[t], local.replicates[r].revisions[t]
            assert a.commit == commits[hub.replicates[r].source][f"step{t}"] and b.commit is None
            assert [(f.name, f.size, f.sha256) for f in a.files] == [
                (f.name, f.size, f.sha256) for f in b.files
            ]
    with pytest.raises(LinpathError, match="no revision in the cache"):
        HubSource("org/absent").revisions()
    with pytest.raises(LinpathError, match="cannot get revision 'step3'"):
        resolve_state("hf://org/tiny@step3")


def test_online_revisions_come_from_list_repo_refs(monkeypatch):
    """Online, the revisions are list_repo_refs' branches and tags (a stand-in HfApi answers)."""
    from huggingface_hub import GitRefInfo, GitRefs

    class Api:
        def list_repo_refs(self, repo, token=None):
            branch = [
                GitRefInfo("step0", "refs/heads/step0", "a" * 40),
                GitRefInfo("main", "refs/heads/main", "b" * 40),
            ]
            return GitRefs(branches=branch, converts=[], tags=[GitRefInfo("v1", "refs/tags/v1", "c" * 40)])

    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", False)
    assert HubSource("org/x", api=Api()).revisions() == {"step0": "a" * 40, "main": "b" * 40, "v1": "c" * 40}


def kinds(findings) -> list[str]:
    return sorted(f.kind for f in findings)


def test_the_audit_finds_exactly_the_three_plants(mirror, tmp_path):
    m = copy_mirror(mirror, tmp_path)
    plant(m, "tiny", "tiny-seed1", duplicate=(4, 8), deleted=16, foreign=(32, 64))
    run, notes = import_grid(m / "tiny", tmp_path / "runs", replicate_pattern=str(m / "tiny-seed{r}"))
    assert notes == [
        "replicate 1 (" + str((m / "tiny-seed1").resolve()) + ") publishes no revision at step 16"
    ]
    found = {f.kind: f for f in grid_audit(run).findings}
    assert sorted(found) == ["duplicate-file", "foreign-shard", "missing"]
    assert found["duplicate-file"].items == ((0, 4), (0, 8))
    assert found["missing"].items == ((1, 16),)
    assert (
        found["foreign-shard"].items == ((0, 32), (0, 64)) and "model-00002" in found["foreign-shard"].message
    )
    assert [f.message for f in audit_run(run)] == [f.message for f in grid_audit(run).findings]  # the hook


def test_a_clean_grid_passes_and_distances_are_the_lines(mirror, tmp_path):
    """No finding on the clean mirror; the distances read a tensor at a time are (1 − t/T)·D."""
    run, _ = import_grid(mirror / "tiny", tmp_path / "runs")
    audit = grid_audit(run)
    assert audit.findings == [] and audit.unread == []
    d = audit.facts[(0, 0)].distance
    for t in STEPS:
        assert audit.facts[(0, t)].distance == pytest.approx((1 - t / 100) * d, rel=1e-6, abs=1e-9)
    assert run.grid_audit_cache.is_file()


def test_config_time_and_tensor_plants(mirror, tmp_path):
    """A config edited at one step; near-final weights served at step 16 (no hash can tell: the
    distance does); step 2's tensors re-saved as one file under step 3 (equal tensors)."""
    m = copy_mirror(mirror, tmp_path)
    config = json.loads((m / "tiny" / "step1" / "config.json").read_text())
    (m / "tiny" / "step1" / "config.json").write_text(json.dumps({**config, "hidden_act": "relu"}))
    final = transformers.AutoModelForCausalLM.from_pretrained(m / "tiny" / "step100")
    with torch.no_grad():
        for p in final.parameters():
            p.add_(1e-3)
    shutil.rmtree(m / "tiny" / "step16")
    final.save_pretrained(m / "tiny" / "step16", max_shard_size="60KB")
    model = transformers.AutoModelForCausalLM.from_pretrained(m / "tiny" / "step2")
    model.save_pretrained(m / "tiny" / "step3", max_shard_size="1GB")  # one file: other bytes
    run, _ = import_grid(m / "tiny", tmp_path / "runs", revisions="all")
    found = {f.kind: f for f in grid_audit(run).findings}
    assert sorted(found) == ["config", "distance", "equal-tensors"], found
    assert "hidden_act: 'relu' (final: 'gelu')" in found["config"].message and found["config"].items == (
        (0, 1),
    )
    assert found["equal-tensors"].items == ((0, 2), (0, 3))
    assert found["distance"].steps[:3] == (16, 32, 64)


def test_a_revision_changed_after_the_import_is_found(mirror, tmp_path):
    m = copy_mirror(mirror, tmp_path)
    run, _ = import_grid(m / "tiny", tmp_path / "runs")
    shard = shard_files(m / "tiny" / "step4")[0]
    shutil.copyfile(shard_files(m / "tiny" / "step8")[0], shard)
    (finding,) = grid_audit(run).findings
    assert finding.kind == "changed" and "not the file imported" in finding.message


def test_hashes_are_audited_before_any_download(mirror, offline_cache, tmp_path):
    """A Hub grid whose weights are not in the cache: the recorded hashes still find the
    duplicate; the tensors are listed as unread, nothing is fetched."""
    cache, _ = offline_cache
    run, _ = import_grid("hf://org/tiny", tmp_path / "runs", revisions="step0,step4,step100")
    record = GridRecord.read(run.grid_record)
    dup = record.replicates[0].revisions[4]
    record.replicates[0].revisions[0] = type(dup)("step0", dup.commit, dup.config, dup.files)
    record.write(run.grid_record)  # as if the Hub served step4's files under step0
    for shard in (cache / "models--org--tiny" / "snapshots").rglob("*.safetensors"):
        shard.unlink()  # what an online import leaves: config.json and the index, no weights
    audit = grid_audit(run)
    assert [f.kind for f in audit.findings] == ["duplicate-file"] and len(audit.unread) == 3


def test_unreadable_and_hand_edited_records_are_one_line(mirror, tmp_path):
    run, _ = import_grid(mirror / "tiny", tmp_path / "runs")
    text = run.grid_record.read_text()
    for broken in (
        "{",
        text.replace('"format": 1', '"format": 7'),
        text.replace('"kind": "mirror"', '"kind": "s3"'),
    ):
        run.grid_record.write_text(broken)
        with pytest.raises(LinpathError) as e:
            GridRecord.read(run.grid_record)
        assert "\n" not in str(e.value)
    assert RunDir(run.root).is_grid


SEQ_LEN, BATCH = 32, 4


def grid_data(text, tokenizer="bytes", seq_len=SEQ_LEN, batch=BATCH):
    from linpath.data.stream import TextBlocks, bytes_tokenizer
    from linpath.sweep.grid_sweep import GridData

    blocks = TextBlocks(text, bytes_tokenizer, seq_len=seq_len, batch_size=batch)
    return GridData(blocks, tokenizer)


def lm_setting(grid: str, **fields):
    """The grid sweep's setting: a language model's loss, at least 4 sequences per point."""
    from linpath.sweep.grids import parse_grid
    from linpath.sweep.setting import SweepSetting

    return SweepSetting(grid=parse_grid(grid), task="causal-lm", min_examples=4, **fields)


def options(data=None, **fields):
    from linpath.sweep.run import SweepOptions

    return SweepOptions(inputs=data, **fields)


def read_items(run: RunDir, key: str) -> dict:
    from linpath.io.tables import read_csv_rows

    return {RunDir.item_of(p): read_csv_rows(p) for p in run.item_files(key)}


@pytest.fixture(scope="module")
def swept(mirror, tmp_path_factory):
    """The two seeds imported with the paper's grid, swept at x = 0, 0.5, 1 on a few paragraphs."""
    from linpath.runs.stages import sweep_grid_run
    from tests.grid_helpers import example

    out = tmp_path_factory.mktemp("swept")
    text = example().write_text(out / "valid.txt", 4, seed=5)
    run, _ = import_grid(mirror / "tiny", out / "runs", replicate_pattern=str(mirror / "tiny-seed{r}"))
    setting = lm_setting("values:0,0.5,1")
    sweep_grid_run(run.root, setting, options(grid_data(text), from_steps=[0, 32], progress=False))
    return run, setting, text


@pytest.mark.slow
def test_the_sweep_equals_a_plain_hugging_face_loop(swept, mirror):
    """Each item's token loss, next-token error and bits per byte against from_pretrained of
    both folders, the interpolated state loaded by hand, Hugging Face's own loss."""
    from tests.grid_helpers import documents, plain_loop

    run, setting, text = swept
    items = read_items(run, setting.key)
    assert sorted(items) == [(0, 0), (0, 32), (1, 0), (1, 32)]
    docs = documents(text)
    for (r, t), rows in items.items():
        folder = mirror / ("tiny" if r == 0 else "tiny-seed1")
        for row in rows:
            x = float(row["x"])
            loss, error, bpb = plain_loop(folder / f"step{t}", folder / "step100", x, docs, SEQ_LEN, BATCH)
            assert float(row["loss"]) == pytest.approx(loss, rel=1e-5), (r, t, x)
            assert float(row["error"]) == pytest.approx(error, abs=1e-9)
            assert float(row["bits_per_byte"]) == pytest.approx(bpb, rel=1e-5)
            assert float(row["perplexity"]) == pytest.approx(math.exp(loss), rel=1e-5)
    table = (run.results_dir(setting.key) / "paths.csv").read_text().splitlines()
    assert table[0].endswith("perplexity,bits_per_byte,tokens") and len(table) == 1 + 4 * 3


def test_a_grid_with_findings_is_refused_then_swept_when_allowed(mirror, tmp_path, capsys):
    from linpath.runs.stages import sweep_grid_run
    from tests.grid_helpers import example

    m = copy_mirror(mirror, tmp_path)
    plant(m, "tiny", "tiny-seed1", duplicate=(4, 8), deleted=16, foreign=(32, 64))
    run, _ = import_grid(m / "tiny", tmp_path / "runs", replicate_pattern=str(m / "tiny-seed{r}"))
    text = example().write_text(tmp_path / "valid.txt", 2, seed=5)
    setting = lm_setting("values:0,1")
    with pytest.raises(
        LinpathError, match=r"found missing: .* \(and 2 more findings\); .*--allow-findings"
    ) as e:
        sweep_grid_run(run.root, setting, options(grid_data(text), progress=False))
    assert "\n" not in str(e.value) and not run.setting_dir(setting.key).exists()  # nothing written
    assert not run.grid_audit_cache.exists()
    sweep_grid_run(
        run.root, setting, options(grid_data(text), allow_findings=True, from_steps=[8, 16], progress=False)
    )
    assert "warning: duplicate-file" in capsys.readouterr().err
    assert sorted(read_items(run, setting.key)) == [(0, 8), (0, 16), (1, 8)]  # seed 1 has no step 16
    assert run.grid_audit_cache.is_file()


def test_a_killed_sweep_resumes_and_other_data_is_refused(swept, tmp_path):
    from linpath.runs.stages import sweep_grid_run
    from linpath.sweep.grid_sweep import sweep_grid
    from tests.grid_helpers import example

    run, setting, text = swept
    path = run.item_file(setting.key, 1, 32)
    whole = path.read_text()
    path.write_text(whole[: len(whole) // 2])  # killed while writing (without the atomic rename)
    assert sweep_grid(run, setting, grid_data(text), options(from_steps=[0, 32], progress=False)) == 1
    assert path.read_text() == whole
    other = example().write_text(tmp_path / "other.txt", 3, seed=6)
    with pytest.raises(LinpathError, match="was evaluated on other data"):
        sweep_grid_run(run.root, setting, options(grid_data(other), progress=False))
    stopped = lm_setting("values:0,0.5,1", se_target=0.5)  # another setting: a table of its own
    sweep_grid_run(run.root, stopped, options(grid_data(text), from_steps=[0], progress=False))
    assert stopped.key == setting.key + "-se0.5-min4" and sorted(read_items(run, stopped.key)) == [
        (0, 0),
        (1, 0),
    ]


@pytest.mark.slow
def test_the_report_of_a_grid(swept):
    """Token loss, next-token error and bits per byte in the tables; the audit's findings and
    the grid's sources in report.md."""
    from linpath.io.tables import read_csv_rows
    from linpath.runs import stages

    run, setting, _ = swept
    report = stages.report(run.root).read_text()
    summary = read_csv_rows(run.results_dir(setting.key) / "summary.csv")
    assert {row["quantity"] for row in summary} == {"loss", "error", "bits_per_byte"}
    assert "### Bits per byte" in report and "local mirror revisions, selection `paper`" in report
    assert "9 revisions of " in report and " sequences)" in report


@pytest.fixture(scope="session")
def trained_mirror(tmp_path_factory):
    """examples/tiny_pythia_grid.py's mirror: a GPT-NeoX of 190,000 parameters trained 600 steps
    per seed on the grammar's text, saved at the paper's grid in three shards, two seeds."""
    from tests.grid_helpers import example

    root = tmp_path_factory.mktemp("trained")
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        example().build(root, steps=600, seeds=2)
    finally:
        torch.set_num_threads(threads)
    return root


@pytest.mark.slow
def test_import_audit_sweep_report_of_a_trained_mirror(trained_mirror, tmp_path):
    """The issue's flow on a trained grid with three plants: the audit finds exactly them, the
    sweep (allowed) equals the plain loop, the report lists the findings and every quantity."""
    from linpath.runs import stages
    from linpath.runs.stages import sweep_grid_run
    from tests.grid_helpers import documents, plain_loop

    m = copy_mirror(trained_mirror, tmp_path)
    plant(m, "tiny-pythia", "tiny-pythia-seed1", duplicate=(4, 8), deleted=16, foreign=(64, 512))
    run, _ = import_grid(
        m / "tiny-pythia", tmp_path / "runs", replicate_pattern=str(m / "tiny-pythia-seed{r}")
    )
    assert kinds(audit_run(run)) == ["duplicate-file", "foreign-shard", "missing"]
    setting = lm_setting("values:0,0.5,1")
    data = grid_data(m / "valid.txt", seq_len=64, batch=8)
    with pytest.raises(LinpathError, match="--allow-findings"):
        sweep_grid_run(run.root, setting, options(data, progress=False))
    sweep_grid_run(run.root, setting, options(data, allow_findings=True, progress=False))
    items = read_items(run, setting.key)
    assert len(items) == 11 + 10  # seed 1 lacks step 16
    docs = documents(m / "valid.txt")
    for r, t in ((0, 0), (1, 128), (0, 64)):
        folder = m / ("tiny-pythia" if r == 0 else "tiny-pythia-seed1")
        for row in items[(r, t)]:
            loss, error, bpb = plain_loop(
                folder / f"step{t}", folder / "step600", float(row["x"]), docs, 64, 8
            )
            assert float(row["loss"]) == pytest.approx(loss, rel=1e-5)
            assert float(row["error"]) == pytest.approx(error, abs=1e-9)
            assert float(row["bits_per_byte"]) == pytest.approx(bpb, rel=1e-5)
    assert float(items[(0, 0)][0]["loss"]) > 2 * float(items[(0, 0)][-1]["loss"])  # training lowered it
    report = stages.report(run.root).read_text()
    for finding in audit_run(run):
        assert f"- Note: {finding.message}" in report
    assert "| 16 (1 of 2 replicates) |" in report and "### Bits per byte" in report
    assert (
        "withheld" not in report
    )  # a revision the grid lacks is its gap (the audit says so), not an unfinished sweep


RANKS_SCRIPT = r"""
import sys, torch
from pathlib import Path
from linpath.data.stream import TextBlocks, bytes_tokenizer
from linpath.runs.stages import sweep_grid_run
from linpath.runtime import distributed
from linpath.sweep.grid_sweep import GridData
from linpath.sweep.grids import parse_grid
from linpath.sweep.setting import SweepSetting

torch.set_num_threads(1)
run, text = sys.argv[1:3]
world = distributed.init("cpu")
from linpath.sweep.run import SweepOptions
data = GridData(TextBlocks(text, bytes_tokenizer, seq_len=32, batch_size=4), "bytes")
setting = SweepSetting(grid=parse_grid("values:0,0.5,1"), task="causal-lm", min_examples=4)
sweep_grid_run(run, setting, SweepOptions(inputs=data, world=world, from_steps=[0, 32], progress=False))
distributed.shutdown()
"""


@pytest.mark.slow
def test_two_torchrun_ranks_give_the_one_process_numbers(swept, mirror, tmp_path):
    """Two ranks (gloo) share every point's batches; rank 0 writes the same item files."""
    import os
    import subprocess
    import sys

    from tests.test_lm_paths import free_port

    run, setting, text = swept
    again, _ = import_grid(mirror / "tiny", tmp_path / "runs", replicate_pattern=str(mirror / "tiny-seed{r}"))
    script = tmp_path / "ranks.py"
    script.write_text(RANKS_SCRIPT)
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(REPO / "src")}
    launch = [sys.executable, "-m", "torch.distributed.run", "--nproc-per-node=2", "--nnodes=1"]
    launch += [
        "--master-addr=127.0.0.1",
        f"--master-port={free_port()}",
        str(script),
        str(again.root),
        str(text),
    ]
    done = subprocess.run(launch, env=env, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    one, two = read_items(run, setting.key), read_items(again, setting.key)
    assert sorted(one) == sorted(two)
    for item, rows in one.items():
        for a, b in zip(rows, two[item]):
            assert (a["examples"], a["tokens"]) == (b["examples"], b["tokens"])
            assert float(b["loss"]) == pytest.approx(float(a["loss"]), rel=1e-9)
            assert float(b["bits_per_byte"]) == pytest.approx(float(a["bits_per_byte"]), rel=1e-9)


def test_linpath_path_between_two_revisions_of_a_gpt_neox(mirror, tmp_path):
    """linpath.path on two Pythia-style folders (GPT-NeoX: transformers 5 loads their
    embed_out.weight as lm_head.weight) equals the plain loop."""
    import linpath
    from linpath.data.stream import TextBlocks, bytes_tokenizer
    from tests.grid_helpers import documents, example, plain_loop

    text = example().write_text(tmp_path / "valid.txt", 2, seed=5)
    folder = mirror / "tiny-seed1"
    blocks = TextBlocks(text, bytes_tokenizer, seq_len=SEQ_LEN, batch_size=BATCH)
    curve = linpath.path(
        folder / "step100", folder / "step8", folder / "step100", blocks, grid=[0.5], task="causal-lm"
    )
    loss, error, _ = plain_loop(folder / "step8", folder / "step100", 0.5, documents(text), SEQ_LEN, BATCH)
    assert curve.loss[0] == pytest.approx(loss, rel=1e-5) and curve.error[0] == pytest.approx(error, abs=1e-9)


def test_states_by_revision_in_linpath_path_and_the_api(mirror, tmp_path, capsys):
    """FOLDER@REVISION wherever a state is accepted: `linpath path` and linpath.path give the
    numbers of the same revisions given as folders (the plain loop's, above); the record keeps
    the references as given."""
    import json

    import linpath
    from linpath.cli import main
    from linpath.data.stream import TextBlocks, bytes_tokenizer
    from tests.grid_helpers import example

    text = example().write_text(tmp_path / "valid.txt", 2, seed=5)
    folder = mirror / "tiny-seed1"
    blocks = TextBlocks(text, bytes_tokenizer, seq_len=SEQ_LEN, batch_size=BATCH)
    by_folder = linpath.path(
        folder / "step100", folder / "step8", folder / "step100", blocks, grid=[0.5], task="causal-lm"
    )
    by_ref = linpath.path(
        f"{folder}@step100", f"{folder}@step8", f"{folder}@step100", blocks, grid=[0.5], task="causal-lm"
    )
    assert by_ref.loss.tolist() == by_folder.loss.tolist()
    argv = ["path", f"{folder}@step8", f"{folder}@step100", "--task", "causal-lm", "--data", str(text)]
    argv += [
        "--tokenizer",
        "bytes",
        "--seq-len",
        str(SEQ_LEN),
        "--batch-size",
        str(BATCH),
        "--grid",
        "values:0.5",
    ]
    assert main([*argv, "--out", str(tmp_path / "out"), "--quiet"]) == 0, capsys.readouterr().err
    record = json.loads((tmp_path / "out" / "setting.json").read_text())
    assert record["start"] == f"{folder}@step8" and record["task"] == "causal-lm"
    rows = (tmp_path / "out" / "paths.csv").read_text().splitlines()
    assert float(rows[1].split(",")[7]) == pytest.approx(by_folder.loss[0], rel=1e-6)
