"""Hostile files: JSON damaged or nested 100,000 deep wherever linpath reads JSON, JSONL text
that is not text, language-model folders whose config, index or shards disagree, pickles, and
kept states of two widths. Each is one line naming the file (never a traceback), or, for tied
weights, what transformers' own from_pretrained does with the same folder."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file, save_file

import linpath
from linpath.config.spec import read_spec
from linpath.data.stream import TextBlocks, bytes_tokenizer
from linpath.engine.lazy_states import full_state
from linpath.errors import LinpathError
from linpath.io.hf_folder import ModelFolder
from linpath.io.jsonfile import read_json
from linpath.io.rundir import RunDir
from linpath.io.tensors import load_state_dict, load_tensors
from linpath.runtime.provenance import read_provenance, recorded_versions
from tests.kept_runs import train

from ._reliability import record
from .test_api import one_line_error

DEEP = "[" * 100_000 + "]" * 100_000
transformers = pytest.importorskip("transformers")
transformers.logging.set_verbosity_error()


def refused(make, match: str, case: str) -> str:
    with pytest.raises(LinpathError, match=match) as e:
        make()
    message = str(e.value)
    assert "\n" not in message and "Traceback" not in message
    record("bad-input", case, f"LinpathError: {message}")
    return message


@pytest.fixture(scope="module")
def kept(tmp_path_factory) -> RunDir:
    root = tmp_path_factory.mktemp("kept") / "run"
    train(root, 8)
    return RunDir(root)


def copy(run: RunDir, tmp_path) -> RunDir:
    shutil.copytree(run.root, tmp_path / "run", ignore=shutil.ignore_patterns(".*lock"))
    return RunDir(tmp_path / "run")


# --- JSON ---------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    "text,case",
    [
        (DEEP, "nested 100,000 deep"),
        (b"\xff\xfe{\x00", "bytes that are not UTF-8"),
        ('{"preset": ', "cut short"),
    ],
)
def test_spec_json(kept, tmp_path, capsys, text, case):
    run = copy(kept, tmp_path)
    run.spec_path.write_bytes(text if isinstance(text, bytes) else text.encode())
    line = one_line_error(capsys, ["audit", str(run.root)])
    assert "spec.json: not valid JSON" in line
    refused(lambda: read_spec(run, external_ok=True), "not valid JSON", f"spec.json {case}")


def test_provenance_and_merged_json(kept, tmp_path):
    """Damaged provenance.json or merged.json read as 'not recorded' (a report is not worth
    failing over them), however damaged."""
    run = copy(kept, tmp_path)
    for text in (DEEP, "[]", '"x"', "{"):
        run.provenance(0).write_text(text)
        assert read_provenance(run, 0) is None
    run.merged_record.write_text(DEEP)  # not a merged study's record: the run's own spec.json versions
    assert recorded_versions(run, 0) == json.loads(run.spec_path.read_text())["versions"]
    for text in (
        '{"sources": 5}',
        '{"sources": [{"replicates": 0}]}',
        '{"sources": [{"replicates": [0], "versions": 3}]}',
    ):
        run.merged_record.write_text(text)
        assert recorded_versions(run, 0) == {}
    record(
        "fault",
        "provenance.json, merged.json nested 100,000 deep or of the wrong types",
        "read as not recorded",
    )


def test_read_json_one_line(tmp_path):
    for text, match in (
        (DEEP, "nested too deeply"),
        ("[1, 2", "not valid JSON"),
        ("[]", "not a JSON object"),
    ):
        (tmp_path / "f.json").write_text(text)
        refused(lambda: read_json(tmp_path / "f.json", dict), match, f"a JSON file: {text[:12]!r}")
    refused(lambda: read_json(tmp_path / "absent.json"), "cannot read", "a JSON file that is absent")


# --- JSONL text -----------------------------------------------------------------------------------
def blocks(path: Path) -> list:
    return list(TextBlocks(path, bytes_tokenizer, seq_len=8).batches())


@pytest.mark.parametrize(
    "raw,match,case",
    [
        (
            b'{"text": "ok"}\n{"text": "a \\ud800 b"}\n',
            r"jsonl:2: the text holds '\\ud800', a lone UTF-16 surrogate",
            "a lone surrogate",
        ),
        (b'{"text": "ok"}\n{"text": "caf\xe9"}\n', r"jsonl:2: not UTF-8 text \(byte 0xe9", "a Latin-1 byte"),
        (
            b'{"text": "ok"}\n' + DEEP.encode() + b"\n",
            "jsonl:2: not valid JSON \\(nested too deeply\\)",
            "a line nested 100,000 deep",
        ),
    ],
)
def test_jsonl_lines_that_are_not_text(tmp_path, raw, match, case):
    (tmp_path / "d.jsonl").write_bytes(raw)
    refused(lambda: blocks(tmp_path / "d.jsonl"), match, f"JSONL data: {case} (issue 30 #11)")


def test_windows_line_ends_read_as_unix_ones(tmp_path):
    docs = ["first paragraph\nline two", "second one"]
    (tmp_path / "u.txt").write_bytes("\n\n".join(docs).encode())
    (tmp_path / "w.txt").write_bytes("\r\n\r\n".join(d.replace("\n", "\r\n") for d in docs).encode())
    unix, windows = (TextBlocks(tmp_path / n, bytes_tokenizer, 8) for n in ("u.txt", "w.txt"))
    assert [t for _, t in unix.documents()] == [t for _, t in windows.documents()] == docs


# --- language-model folders ----------------------------------------------------------------------
GPT2 = dict(vocab_size=64, n_embd=16, n_layer=1, n_head=2, n_positions=32, bos_token_id=0, eos_token_id=0)
NEOX = dict(
    vocab_size=64,
    hidden_size=16,
    num_hidden_layers=1,
    num_attention_heads=2,
    intermediate_size=32,
    max_position_embeddings=32,
    tie_word_embeddings=True,
    bos_token_id=0,
    eos_token_id=0,
)
HEADS = {
    "gpt2": ("transformer.wte.weight", "lm_head.weight"),
    "gpt_neox": ("gpt_neox.embed_in.weight", "lm_head.weight"),
}


def lm_folder(out: Path, kind: str, seed: int, head: bool = False) -> Path:
    """A tiny causal LM saved by save_pretrained (its tied head left out of the file); with
    `head`, the file also holds a head of its own, different from the embeddings (config still
    ties them)."""
    config = transformers.GPT2Config(**GPT2) if kind == "gpt2" else transformers.GPTNeoXConfig(**NEOX)
    torch.manual_seed(seed)
    transformers.AutoModelForCausalLM.from_config(config).save_pretrained(out)
    tensors = load_file(out / "model.safetensors")
    embed, out_key = HEADS[kind]
    assert out_key not in tensors  # tied: saved once
    if head:
        tensors[out_key] = torch.randn_like(tensors[embed])
        save_file(tensors, str(out / "model.safetensors"), metadata={"format": "pt"})
    return out


def hf_losses(start: Path, end: Path, ids: torch.Tensor, xs) -> list[float]:
    """The oracle: each folder read by from_pretrained, their state dicts interpolated key by
    key, loaded into the end's model, scored by Hugging Face's own loss."""
    a = transformers.AutoModelForCausalLM.from_pretrained(str(start)).state_dict()
    work = transformers.AutoModelForCausalLM.from_pretrained(str(end))
    b = work.state_dict()
    b = {k: v.clone() for k, v in b.items()}
    out = []
    for x in xs:
        work.load_state_dict({k: (1 - x) * a[k] + x * b[k] for k in a})
        with torch.no_grad():
            out.append(float(work(ids, labels=ids).loss))
    return out


@pytest.mark.parametrize("kind", ["gpt2", "gpt_neox"])
def test_tied_weights_as_transformers_reads_them(tmp_path, kind):
    """The end folder's file holds a head unlike its embeddings while config ties them:
    transformers unties them and uses the file's head; so does the path (issue 30 #4)."""
    start = lm_folder(tmp_path / "start", kind, 0)
    end = lm_folder(tmp_path / "end", kind, 1, head=True)
    loaded = transformers.AutoModelForCausalLM.from_pretrained(str(end))
    assert loaded.get_output_embeddings().weight.data_ptr() != loaded.get_input_embeddings().weight.data_ptr()
    ids = torch.randint(0, 64, (6, 12), generator=torch.Generator().manual_seed(3))
    xs = [0.0, 0.5, 1.0]
    curve = linpath.path(str(end), str(start), str(end), (ids, ids), grid=xs, task="causal-lm")
    want = hf_losses(start, end, ids, xs)
    assert max(abs(g - w) for g, w in zip(curve.loss, want)) < 1e-4, (list(curve.loss), want)
    tied = [
        float(v)
        for v in linpath.path(
            str(start), str(start), str(start), (ids, ids), grid=[1.0], task="causal-lm"
        ).loss
    ]
    assert abs(tied[0] - hf_losses(start, start, ids, [1.0])[0]) < 1e-4  # a tied folder as before
    record(
        "check",
        f"{kind} folder: config ties the head, the file holds another (issue 30 #4)",
        f"path equals from_pretrained's: {[round(float(v), 4) for v in curve.loss]}",
    )


def test_tied_weights_in_a_whole_state_load_are_refused(tmp_path):
    end = lm_folder(tmp_path / "end", "gpt2", 1, head=True)
    model = transformers.AutoModelForCausalLM.from_config(transformers.GPT2Config(**GPT2))
    refused(
        lambda: full_state(model, ModelFolder(end), "the end state"),
        "with different values, though the model ties them",
        "a whole-state load of a folder with an untied head",
    )


def meta_only(monkeypatch) -> list:
    """Record the device each from_config call builds on (meta for the check, else real)."""
    built, real = [], transformers.AutoModelForCausalLM.from_config

    def from_config(config, **kw):
        built.append(str(torch.get_default_device()))
        return real(config, **kw)

    monkeypatch.setattr(transformers.AutoModelForCausalLM, "from_config", from_config)
    return built


@pytest.mark.parametrize(
    "edit,match",
    [
        (
            {"vocab_size": 50_000_000},
            r"makes 'transformer.wte.weight' of shape \(50000000, 16\), the shards hold \(64, 16\)",
        ),
        ({"n_positions": 1_000_000_000}, r"'transformer.wpe.weight' of shape \(1000000000, 16\)"),
        ({"n_layer": 3}, "the shards hold none of 24 of its model's parameters"),
    ],
)
def test_a_config_that_does_not_describe_the_shards(tmp_path, monkeypatch, edit, match):
    """Checked on a meta-device model against the shards' headers: nothing is allocated for the
    real model (from_config runs on meta only) (issue 30 #12)."""
    folder = lm_folder(tmp_path / "lm", "gpt2", 0)
    config = json.loads((folder / "config.json").read_text())
    (folder / "config.json").write_text(json.dumps({**config, **edit}))
    built = meta_only(monkeypatch)
    ids = torch.zeros(1, 4, dtype=torch.long)
    refused(
        lambda: linpath.path(str(folder), str(folder), str(folder), (ids, ids), grid=[0.0], task="causal-lm"),
        match,
        f"config.json {edit} over shards that disagree",
    )
    assert built == ["meta"]


@pytest.mark.parametrize(
    "index,match",
    [
        (DEEP, "not valid JSON \\(nested too deeply\\)"),
        ("[]", "not a JSON object"),
        (
            {"weight_map": {"transformer.wte.weight": "../elsewhere.safetensors"}},
            "not a file name inside the folder",
        ),
        ({"weight_map": {"transformer.wte.weight": 5}}, "names the shard 5"),
        ({"weight_map": {}}, "has no weight_map entries"),
    ],
)
def test_a_damaged_index(tmp_path, index, match):
    folder = lm_folder(tmp_path / "lm", "gpt2", 0)
    (folder / "model.safetensors.index.json").write_text(
        index if isinstance(index, str) else json.dumps(index)
    )
    refused(lambda: ModelFolder(folder), match, f"model.safetensors.index.json: {str(index)[:40]}")


def test_a_folder_of_pytorch_model_bin(tmp_path, capsys):
    folder = lm_folder(tmp_path / "lm", "gpt2", 0)
    torch.save(load_file(folder / "model.safetensors"), folder / "pytorch_model.bin")
    (folder / "model.safetensors").unlink()
    message = refused(
        lambda: load_state_dict(folder),
        "holds a pickle-based pytorch_model.bin",
        "a folder of pytorch_model.bin only (issue 30 #17)",
    )
    assert "safetensors" in message and "not found" not in message
    torch.save((torch.zeros(2, 4, dtype=torch.long), torch.zeros(2, 4, dtype=torch.long)), tmp_path / "d.pt")
    capsys.readouterr()  # save_pretrained's progress bars
    argv = [
        "path",
        str(folder),
        str(folder),
        "--task",
        "causal-lm",
        "--data",
        str(tmp_path / "d.pt"),
        "--out",
        str(tmp_path / "o"),
    ]
    line = one_line_error(capsys, argv)
    assert "pickle-based pytorch_model.bin" in line, line


# --- pickles -------------------------------------------------------------------------------------
class Payload:
    def __reduce__(self):
        return (__import__("os").system, ("true",))


class Plain:
    pass


@pytest.mark.parametrize(
    "obj,reason",
    [
        (Payload(), "unsupported global posix.system (module posix blocked)"),
        (Plain(), "unsupported global tests.test_hostile_files.Plain"),
    ],
)
def test_a_pickle_refusal_keeps_the_reason_without_the_advice(tmp_path, obj, reason):
    torch.save({"w": torch.zeros(2), "x": obj}, tmp_path / "bad.pt")
    with pytest.raises(LinpathError, match="refusing to load") as e:
        load_tensors(tmp_path / "bad.pt")
    message = str(e.value)
    kind = "security" if isinstance(obj, Payload) else "bad-input"
    record(
        kind,
        f"a pickle holding {type(obj).__name__} (issue 30 #17: the reason kept)",
        f"LinpathError: {message}",
    )
    assert reason in message and "weights_only=False" not in message and "add_safe_globals" not in message


# --- kept states of two widths --------------------------------------------------------------------
def test_trajectory_of_two_widths(kept, tmp_path, capsys):
    run = copy(kept, tmp_path)
    wide = torch.nn.Sequential(torch.nn.Linear(10, 24), torch.nn.ReLU(), torch.nn.Linear(24, 3))
    torch.save({f"net.{k}": v for k, v in wide.state_dict().items()}, run.checkpoint(0, 8))  # the final state
    line = one_line_error(capsys, ["trajectory", str(run.root)])
    assert "'net.0.weight' has shape (24, 10) vs (16, 10)" in line
    record("bad-input", "`linpath trajectory` over states of two widths (issue 30 #11)", f"exit 2: {line}")
    state = torch.load(run.checkpoint(0, 4), weights_only=True)
    state["net.0.extra"] = state.pop("net.0.bias")
    torch.save(state, run.checkpoint(0, 4))
    torch.save(torch.load(run.checkpoint(0, 2), weights_only=True), run.checkpoint(0, 8))
    line = one_line_error(capsys, ["trajectory", str(run.root)])
    assert "the state at t=4" in line and "'net.0.extra'" in line


# --- more model folders --------------------------------------------------------------------------
@pytest.mark.parametrize(
    "config,match",
    [
        (DEEP, "config.json: not valid JSON \\(nested too deeply\\)"),
        ('{"n_embd": 16}', "Should have a `model_type` key"),
        ("[]", "config.json: not a JSON object"),
    ],
)
def test_odd_configs(tmp_path, config, match):
    folder = lm_folder(tmp_path / "lm", "gpt2", 0)
    (folder / "config.json").write_text(config)
    ids = torch.zeros(1, 4, dtype=torch.long)

    def run():
        return linpath.path(str(folder), str(folder), str(folder), (ids, ids), grid=[0.0], task="causal-lm")

    refused(run, match, f"config.json {config[:24]!r}")


@pytest.mark.parametrize("held", ["head only", "both, equal"])
def test_other_tied_layouts_as_transformers_reads_them(tmp_path, held):
    """A file holding only lm_head.weight (no embeddings), or both equal: transformers ties
    them (to the one held); the path's loss at its end equals from_pretrained's."""
    folder = lm_folder(tmp_path / "lm", "gpt2", 0)
    tensors = load_file(folder / "model.safetensors")
    embed = (
        tensors.pop("transformer.wte.weight") if held == "head only" else tensors["transformer.wte.weight"]
    )
    tensors["lm_head.weight"] = embed.clone()
    save_file(tensors, str(folder / "model.safetensors"), metadata={"format": "pt"})
    loaded = transformers.AutoModelForCausalLM.from_pretrained(str(folder))
    assert loaded.lm_head.weight.data_ptr() == loaded.transformer.wte.weight.data_ptr()
    ids = torch.randint(0, 64, (4, 10), generator=torch.Generator().manual_seed(1))
    curve = linpath.path(str(folder), str(folder), str(folder), (ids, ids), grid=[1.0], task="causal-lm")
    with torch.no_grad():
        want = float(loaded(ids, labels=ids).loss)
    assert abs(float(curve.loss[0]) - want) < 1e-4
    record(
        "check",
        f"a tied GPT-2 folder holding {held}",
        f"read as from_pretrained reads it (loss {want:.4f})",
    )


def lying_header(raw: bytes, edit) -> bytes:
    import struct

    n = struct.unpack("<Q", raw[:8])[0]
    header = edit(json.loads(raw[8 : 8 + n]))
    text = header if isinstance(header, bytes) else json.dumps(header).encode()
    return struct.pack("<Q", len(text)) + text + raw[8 + n :]


def shape_lie(h):
    h["transformer.wte.weight"]["shape"] = [50_000_000, 16]
    return h


SHARD_DAMAGE = {
    "cut in half": lambda raw: raw[: len(raw) // 2],
    "a header claiming 50,000,000 rows": lambda raw: lying_header(raw, shape_lie),
    "a header nested 100,000 deep": lambda raw: lying_header(
        raw, lambda h: b'{"__metadata__":' + DEEP.encode() + b"}"
    ),
    "a header length of 2**62": lambda raw: (2**62).to_bytes(8, "little") + b"{}",
}


@pytest.mark.parametrize("case", list(SHARD_DAMAGE))
def test_damaged_shards(tmp_path, case):
    folder = lm_folder(tmp_path / "lm", "gpt2", 0)
    shard = folder / "model.safetensors"
    shard.write_bytes(SHARD_DAMAGE[case](shard.read_bytes()))
    refused(
        lambda: ModelFolder(folder),
        "corrupt or truncated safetensors file",
        f"a model folder's shard: {case}",
    )
