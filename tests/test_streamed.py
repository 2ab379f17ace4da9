"""The streamed evaluator (engine/streamed.py) and what feeds it, against independent computations:
the causal-LM scorer and bits per byte by hand, streaming against the preloaded engine, two ranks'
shares against one, the stopping rule against plain means of the examples it read, model folders
with tied weights against a plain load_state_dict loop, and the one-line errors of bad folders.
Fast: tiny models, no transformers (tests/test_lm_paths.py has the GPT-2 ones)."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from safetensors.torch import load_file, save_file
from torch import nn
from torch.utils.data import IterableDataset

import linpath
from linpath.data.stream import TensorStream, TextBlocks, as_batch, bytes_tokenizer
from linpath.engine.lazy_states import DictState, StateMix
from linpath.engine.streamed import StreamedEvaluator, result_of
from linpath.engine.tasks import causal_lm_units, make_task
from linpath.errors import LinpathError
from linpath.io.hf_folder import ModelFolder

# --- the causal-LM scorer and bits per byte, by hand ---------------------------------------------


def nll(row: list[float], target: int) -> float:
    return math.log(sum(math.exp(v) for v in row)) - row[target]


def test_causal_lm_units_by_hand():
    # two sequences over a vocabulary of 3; the second is padded (-100) after two tokens
    logits = torch.tensor(
        [
            [[2.0, 0.0, -1.0], [0.0, 0.0, 1.0], [1.0, 1.0, 3.0], [0.5, 0.0, 0.0]],
            [[0.0, 3.0, 0.0], [1.0, 0.0, 0.0], [9.0, 9.0, 9.0], [9.0, 0.0, 0.0]],
        ]
    )
    targets = torch.tensor([[0, 1, 2, 0], [2, 0, -100, -100]])
    units = causal_lm_units(logits, targets)
    # sequence 1: positions 0..2 predict 1, 2, 0; sequence 2: position 0 predicts 0, the rest is padding
    first = nll([2, 0, -1], 1) + nll([0, 0, 1], 2) + nll([1, 1, 3], 0)
    second = nll([0, 3, 0], 0)
    assert units.loss.tolist() == pytest.approx([first, second], rel=1e-6)
    assert units.errors.tolist() == [2.0, 1.0]  # argmaxes 0 (miss), 2 (hit), 2 (miss); 1 (miss)
    assert units.count.tolist() == [3.0, 1.0]
    task = make_task("causal-lm")
    assert (task.unit, task.per, task.has_error) == ("sequence", "token", True)


class Bigram(nn.Module):
    """Logits at position i depend on token i alone, so a hand computation needs no windows."""

    def __init__(self, vocab: int = 64, seed: int = 0):
        super().__init__()
        torch.manual_seed(seed)
        self.table = nn.Embedding(vocab, vocab)

    def forward(self, ids):
        return self.table(ids)


def char_tokens(text: str) -> list[int]:
    return [ord(c) % 64 for c in text]  # one token per character: tokens are not bytes


def test_bits_per_byte_and_windows_by_hand(tmp_path):
    docs = ["héllo wörld, ça va?", "x", "日本語のテキスト and more text\nover two lines", "ab"]
    (tmp_path / "t.txt").write_text("\n\n".join(docs) + "\n", encoding="utf-8")
    model = Bigram()
    blocks = TextBlocks(tmp_path / "t.txt", char_tokens, seq_len=4, batch_size=3)
    curve = linpath.path(model, model, model, blocks, grid=[0.0], task="causal-lm")
    log_p = torch.log_softmax(model.table.weight.detach().double(), dim=1).numpy()
    nats = tokens = nbytes = 0.0
    for text in docs:
        ids = char_tokens(text)
        if len(ids) < 2:
            continue  # nothing to predict: left out, bytes too
        nats -= sum(log_p[a, b] for a, b in zip(ids[:-1], ids[1:]))
        tokens += len(ids) - 1
        nbytes += len(text.encode("utf-8"))
    assert curve.quantities["tokens"][0] == tokens
    assert curve.loss[0] == pytest.approx(nats / tokens, rel=1e-6)
    assert curve.quantities["perplexity"][0] == pytest.approx(math.exp(nats / tokens), rel=1e-6)
    assert curve.quantities["bits_per_byte"][0] == pytest.approx(nats / math.log(2) / nbytes, rel=1e-6)


def test_text_blocks_overlap_by_one_token_and_share_bytes(tmp_path):
    (tmp_path / "d.jsonl").write_text(
        json.dumps({"text": "abcdefghij"}) + "\n" + json.dumps({"text": "uvwxyz"}) + "\n"
    )
    windows = list(TextBlocks(tmp_path / "d.jsonl", bytes_tokenizer, seq_len=4).windows())
    text = [bytes(ids).decode() for ids, _ in windows]
    assert text == [
        "abcd",
        "defg",
        "ghij",
        "uvwx",
        "xyz",
    ]  # every token but a document's first predicted once
    assert [b for _, b in windows] == pytest.approx([10 * 3 / 9] * 3 + [6 * 3 / 5, 6 * 2 / 5])
    (batch,) = TextBlocks(tmp_path / "d.jsonl", bytes_tokenizer, seq_len=4, batch_size=8).batches()
    assert batch.targets[4].tolist() == [ord("x"), ord("y"), ord("z"), -100]  # padded to the longest
    assert batch.inputs[4, 3] == 0


def test_text_errors_are_one_line(tmp_path):
    (tmp_path / "bad.jsonl").write_text('{"text": "fine"}\n{"body": "no text"}\n')
    with pytest.raises(LinpathError, match=r"bad.jsonl:2: no text under 'text'") as e:
        list(TextBlocks(tmp_path / "bad.jsonl", bytes_tokenizer, seq_len=8).batches())
    assert "\n" not in str(e.value)
    (tmp_path / "t.txt").write_text("some text\n")
    with pytest.raises(LinpathError, match="list of token ids"):
        list(TextBlocks(tmp_path / "t.txt", lambda s: "not ids", seq_len=8).batches())


# --- streaming against the preloaded engine; ranks; the stopping rule ------------------------------


def classifier_job(n: int = 600, seed: int = 0):
    g = torch.Generator().manual_seed(seed)
    inputs, labels = torch.randn(n, 12, generator=g), torch.randint(0, 4, (n,), generator=g)
    torch.manual_seed(seed)
    model = nn.Sequential(nn.Linear(12, 16), nn.ReLU(), nn.Linear(16, 4))
    start = {k: v.clone() for k, v in model.state_dict().items()}
    end = {k: v + 0.5 * torch.randn(v.shape, generator=g) for k, v in start.items()}
    return model, start, end, inputs, labels


class Pairs(IterableDataset):
    def __init__(self, inputs, labels):
        self.inputs, self.labels = inputs, labels

    def __iter__(self):
        return iter(zip(self.inputs, self.labels))


XS = [-0.5, 0.0, 0.4, 1.0, 1.5]


def test_streamed_equals_preloaded_engine_on_a_classifier():
    model, start, end, inputs, labels = classifier_job()
    preloaded = linpath.path(model, start, end, (inputs, labels), grid=XS)
    streamed = linpath.path(model, start, end, Pairs(inputs, labels), grid=XS, batch_size=64)
    assert streamed.point_examples.tolist() == [600] * len(XS)
    np.testing.assert_allclose(streamed.loss, preloaded.loss, rtol=1e-6)
    np.testing.assert_allclose(streamed.error, preloaded.error, rtol=0, atol=1e-12)
    assert (streamed.loss_se == 0).all() and (preloaded.loss_se == 0).all()  # the whole data: exact


def evaluator_at(model, start, end, x, stream, **kw):
    evaluator = StreamedEvaluator(model, stream, make_task(), torch.device("cpu"), **kw)
    StateMix(model, [DictState(start), DictState(end)], ["start", "end"]).write((1 - x, x))
    return evaluator


def test_two_ranks_read_disjoint_shares_whose_union_is_the_whole():
    model, start, end, inputs, labels = classifier_job()
    stream = TensorStream(inputs, labels, batch_size=50)
    whole = evaluator_at(model, start, end, 0.3, stream).evaluate_current()
    shares = [evaluator_at(model, start, end, 0.3, stream, shard=(r, 2)).evaluate_sums() for r in (0, 1)]
    assert [int(s[0]) for s in shares] == [300, 300]  # 12 batches, every second one each
    union = result_of(shares[0] + shares[1], stream.length)
    assert union.examples == 600 and union.loss == pytest.approx(whole.loss, rel=1e-12)
    assert union.error == pytest.approx(whole.error, abs=1e-15) and union.loss_se == 0.0


class Counting(TensorStream):
    """A TensorStream that counts the batches it gives."""

    read = 0

    def batches(self):
        for batch in super().batches():
            self.read += 1
            yield batch


def test_data_that_fit_are_read_once_and_data_that_do_not_at_every_point():
    model, start, end, inputs, labels = classifier_job()
    whole = Counting(inputs, labels, batch_size=50)  # 12 batches of 2,800 bytes
    evaluator = evaluator_at(model, start, end, 0.3, whole)
    first, again = evaluator.evaluate_current(), evaluator.evaluate_current()
    assert whole.read == 12 and again == first
    part = Counting(inputs, labels, batch_size=50)
    evaluator = evaluator_at(model, start, end, 0.3, part, cache_bytes=3 * 2800)
    assert evaluator.evaluate_current() == first and evaluator.evaluate_current() == first
    assert part.read == 24 and evaluator._share.kept is None


def plain_losses(model, start, end, x, inputs, labels) -> np.ndarray:
    """Per-example cross-entropy of θ(x), loaded the ordinary way."""
    plain = nn.Sequential(nn.Linear(12, 16), nn.ReLU(), nn.Linear(16, 4))
    plain.load_state_dict({k: (1 - x) * start[k] + x * end[k] for k in start})
    with torch.no_grad():
        return F.cross_entropy(plain(inputs), labels, reduction="none").double().numpy()


def test_se_target_stops_once_the_standard_error_is_below_it():
    model, start, end, inputs, labels = classifier_job(n=2000)
    stream = TensorStream(inputs, labels, batch_size=50)
    result = evaluator_at(model, start, end, 0.5, stream, se_target=0.08, min_examples=100).evaluate_current()
    k = result.examples
    assert 100 <= k < 2000 and k % 50 == 0 and not result.exhausted
    losses = plain_losses(model, start, end, 0.5, inputs, labels)
    se = losses[:k].std(ddof=1) / math.sqrt(k) * math.sqrt(1 - k / 2000)  # known size: with the fpc
    assert result.loss == pytest.approx(losses[:k].mean(), rel=1e-6)
    assert result.loss_se == pytest.approx(se, rel=1e-6) and result.loss_se <= 0.08
    before = losses[: k - 50]  # one batch fewer was not enough
    assert before.std(ddof=1) / math.sqrt(k - 50) * math.sqrt(1 - (k - 50) / 2000) > 0.08
    exhausted = evaluator_at(model, start, end, 0.5, stream, se_target=1e-9).evaluate_current()
    assert exhausted.examples == 2000 and exhausted.exhausted and exhausted.loss_se == 0.0


def test_api_records_examples_per_point_under_se_target(tmp_path):
    model, start, end, inputs, labels = classifier_job(n=2000)
    curve = linpath.path(model, start, end, (inputs, labels), grid=XS, se_target=0.08, batch_size=50)
    assert curve.point_examples.min() < 2000 and (curve.loss_se <= 0.08).all()
    table = curve.to_csv(tmp_path / "p.csv").read_text().splitlines()
    assert [int(row.split(",")[5]) for row in table[1:]] == curve.point_examples.tolist()


# --- model folders: tied weights, buffers, one-line errors ------------------------------------------


class TiedLM(nn.Module):
    """A language model whose output layer is its embedding (tied), with a persistent and a
    non-persistent buffer."""

    def __init__(self, vocab: int = 11, dim: int = 6):
        super().__init__()
        self.emb = nn.Embedding(vocab, dim)
        self.mix = nn.Linear(dim, dim)
        self.norm = nn.LayerNorm(dim)
        self.head = nn.Linear(dim, vocab, bias=False)
        self.head.weight = self.emb.weight
        self.register_buffer("scale", torch.tensor(1.0))
        self.register_buffer("offset", torch.zeros(dim), persistent=False)

    def forward(self, ids):
        h = torch.tanh(self.mix(self.emb(ids)) + self.offset)
        return self.head(self.norm(h) * self.scale)


def save_folder(path, state: dict, shards: int = 2):
    """What save_pretrained writes: shards, an index, a config; the tied head.weight left out."""
    path.mkdir()
    names = sorted(k for k in state if k != "head.weight")
    weight_map = {}
    for i in range(shards):
        file = f"model-{i + 1:05d}-of-{shards:05d}.safetensors"
        part = {k: state[k].contiguous() for k in names[i::shards]}
        save_file(part, str(path / file))
        weight_map.update({k: file for k in part})
    (path / "model.safetensors.index.json").write_text(json.dumps({"metadata": {}, "weight_map": weight_map}))
    (path / "config.json").write_text("{}")
    return path


def tied_states(seed: int):
    torch.manual_seed(seed)
    model = TiedLM()
    state = {k: v.clone() for k, v in model.state_dict().items()}
    state["scale"] = torch.tensor(1.0 + seed)
    return state


def read_folder(path) -> dict:
    return {k: v for f in sorted(path.glob("*.safetensors")) for k, v in load_file(str(f)).items()}


def test_model_folders_with_tied_weights_equal_a_plain_loop(tmp_path):
    a, b = save_folder(tmp_path / "a", tied_states(0)), save_folder(tmp_path / "b", tied_states(1))
    ids = torch.randint(0, 11, (6, 9), generator=torch.Generator().manual_seed(0))
    curve = linpath.path(TiedLM(), a, b, (ids, ids), grid=XS, task="causal-lm", batch_size=4)
    for x, loss in zip(XS, curve.loss):
        plain = TiedLM()
        sa, sb = read_folder(a), read_folder(b)
        missing, unexpected = plain.load_state_dict(
            {k: (1 - x) * sa[k] + x * sb[k] for k in sa}, strict=False
        )
        assert missing == ["head.weight"] and unexpected == []  # loaded through the tied emb.weight
        with torch.no_grad():
            logits = plain(ids)
        expected = F.cross_entropy(logits[:, :-1].reshape(-1, 11), ids[:, 1:].reshape(-1))
        assert loss == pytest.approx(float(expected), rel=1e-5)


def test_a_persistent_buffer_the_folders_lack_keeps_the_models_value(tmp_path):
    states = [tied_states(s) for s in (0, 1)]
    for state in states:
        del state["scale"]
    a, b = save_folder(tmp_path / "a", states[0]), save_folder(tmp_path / "b", states[1])
    model = TiedLM()
    model.scale.fill_(2.0)
    ids = torch.randint(0, 11, (4, 5), generator=torch.Generator().manual_seed(0))
    curve = linpath.path(model, a, b, (ids, ids), grid=[0.0], task="causal-lm")
    plain = TiedLM()
    plain.load_state_dict(read_folder(a), strict=False)
    plain.scale.fill_(2.0)
    with torch.no_grad():
        expected = F.cross_entropy(plain(ids)[:, :-1].reshape(-1, 11), ids[:, 1:].reshape(-1))
    assert curve.loss[0] == pytest.approx(float(expected), rel=1e-5)


@pytest.mark.parametrize(
    "change, message",
    [
        (lambda s: s.pop("mix.weight"), r"the start state \(a\) lacks the model's 'mix.weight'"),
        (lambda s: s.pop("emb.weight"), r"lacks the model's 'emb.weight' \(nor its tied 'head.weight'\)"),
        (
            lambda s: s.update({"mix.weight": torch.zeros(6, 5)}),
            r"'mix.weight' has shape \(6, 6\) vs \(6, 5\)",
        ),
        (
            lambda s: s.update({"extra.bias": torch.zeros(2)}),
            r"holds 'extra.bias', which the model does not have",
        ),
    ],
)
def test_mismatched_folders_are_one_line(tmp_path, change, message):
    start, end = tied_states(0), tied_states(1)
    change(start)
    change(end)
    a, b = save_folder(tmp_path / "a", start), save_folder(tmp_path / "b", end)
    ids = torch.zeros(2, 4, dtype=torch.long)
    with pytest.raises(LinpathError, match=message) as e:
        linpath.path(TiedLM(), a, b, (ids, ids), grid=[0.0], task="causal-lm")
    assert "\n" not in str(e.value)


def test_start_and_end_folders_that_differ_are_one_line(tmp_path):
    end = tied_states(1)
    end["mix.bias"] = torch.zeros(7)
    a, b = save_folder(tmp_path / "a", tied_states(0)), save_folder(tmp_path / "b", end)
    ids = torch.zeros(2, 4, dtype=torch.long)
    with pytest.raises(LinpathError, match=r"'mix.bias' has shape \(6,\) vs \(7,\)"):
        linpath.path(TiedLM(), a, b, (ids, ids), grid=[0.0], task="causal-lm")


def test_broken_folders_are_one_line(tmp_path):
    a = save_folder(tmp_path / "a", tied_states(0))
    index = json.loads((a / "model.safetensors.index.json").read_text())
    index["weight_map"]["mix.bias"] = "model-00009-of-00009.safetensors"
    (a / "model.safetensors.index.json").write_text(json.dumps(index))
    with pytest.raises(LinpathError, match="shard model-00009-of-00009.safetensors is missing"):
        ModelFolder(a)
    b = save_folder(tmp_path / "b", tied_states(0))
    (b / "model-00001-of-00002.safetensors").write_bytes(b"\x10\x00\x00\x00\x00\x00\x00\x00{not json")
    with pytest.raises(LinpathError, match="corrupt or truncated safetensors file"):
        ModelFolder(b)


def test_nonfinite_folder_is_refused_naming_the_tensor(tmp_path):
    bad = tied_states(1)
    bad["mix.bias"][2] = float("nan")
    a, b = save_folder(tmp_path / "a", tied_states(0)), save_folder(tmp_path / "b", bad)
    ids = torch.zeros(2, 4, dtype=torch.long)
    with pytest.raises(LinpathError, match=r"tensor 'mix.bias' has 1 NaN value"):
        linpath.path(TiedLM(), a, b, (ids, ids), grid=[0.0], task="causal-lm")


def test_batches_in_the_forms_loaders_give():
    ids = torch.tensor([[5, 6, 7], [8, 9, 0]])
    batch = as_batch({"input_ids": ids, "attention_mask": torch.tensor([[1, 1, 1], [1, 1, 0]])})
    assert batch.targets.tolist() == [[5, 6, 7], [8, 9, -100]] and batch.mask is not None
    assert as_batch((ids, ids, torch.tensor([3.0, 2.0]))).bytes.tolist() == [3.0, 2.0]
    with pytest.raises(LinpathError, match="one-shot iterator"):
        linpath.path(TiedLM(), tied_states(0), tied_states(1), iter([(ids, ids)]), task="causal-lm")


def test_image_folder_streams_what_the_preloaded_split_holds(tmp_path, monkeypatch):
    from PIL import Image

    from linpath.data.imagefolder import read_tree
    from linpath.data.imagenet import SPLITS, ImageFolderSource
    from linpath.data.stream import ImageFolderStream

    monkeypatch.setenv("LINPATH_WORKERS", "0")
    rng = np.random.default_rng(0)
    for split in ("train", "val"):
        for name in ("ant", "bee"):
            (tmp_path / split / name).mkdir(parents=True)
            for i in range(3):
                pixels = rng.integers(0, 256, (10, 12, 3), dtype=np.uint8)
                Image.fromarray(pixels).save(tmp_path / split / name / f"{i}.png")
    source = ImageFolderSource(read_tree(tmp_path, SPLITS), image_size=8)
    preloaded = source.eval_set("test")
    batches = list(ImageFolderStream(source, "test", batch_size=4).batches())
    assert [len(b.targets) for b in batches] == [4, 2]
    assert torch.equal(torch.cat([b.inputs for b in batches]), preloaded.inputs)
    assert torch.equal(torch.cat([b.targets for b in batches]), preloaded.labels)


def test_planes_take_model_folders(tmp_path):
    model, start, end, inputs, labels = classifier_job()
    third = {k: v + 0.3 for k, v in start.items()}
    folders = [save_folder(tmp_path / n, s) for n, s in (("o", start), ("a", end), ("b", third))]
    from_folders = linpath.plane(model, *folders, (inputs, labels), grid=3)
    from_dicts = linpath.plane(model, start, end, third, (inputs, labels), grid=3)
    np.testing.assert_allclose(from_folders.loss, from_dicts.loss, rtol=1e-6)


def test_a_folder_read_whole_has_its_tied_keys_filled(tmp_path):
    from linpath.engine.lazy_states import full_state

    a = save_folder(tmp_path / "a", tied_states(0))
    state = full_state(TiedLM(), ModelFolder(a), "a")
    assert list(state) == list(TiedLM().state_dict())
    assert torch.equal(state["head.weight"], state["emb.weight"])
    assert torch.equal(state["emb.weight"], tied_states(0)["emb.weight"])


def test_cli_on_model_folders_with_a_tokenizer_of_ones_own(tmp_path, capsys):
    from linpath.cli import main
    from tests.test_api import one_line_error

    a, b = save_folder(tmp_path / "a", tied_states(0)), save_folder(tmp_path / "b", tied_states(1))
    (tmp_path / "tok.py").write_text("def chars(text):\n    return [ord(c) % 11 for c in text]\n")
    (tmp_path / "t.jsonl").write_text(
        "".join(json.dumps({"text": t}) + "\n" for t in ("a first text", "and more"))
    )
    out = tmp_path / "out"
    common = ["path", str(a), str(b), "--model", "tests.test_streamed:TiedLM", "--task", "causal-lm"]
    common += ["--data", str(tmp_path / "t.jsonl"), "--out", str(out), "--device", "cpu", "--quiet"]
    tokenizer = ["--tokenizer", f"{tmp_path / 'tok.py'}:chars", "--seq-len", "5"]
    assert main([*common, *tokenizer, "--grid", "values:0,0.5,1"]) == 0
    assert "perplexity: start" in capsys.readouterr().out
    rows = (out / "paths.csv").read_text().splitlines()
    assert rows[0].endswith(",perplexity,bits_per_byte,tokens") and len(rows) == 4
    record = json.loads((out / "setting.json").read_text())
    assert (record["seq_len"], record["se_unit"], record["tokenizer"]) == (5, "sequence", tokenizer[1])
    tokenize = lambda text: [ord(c) % 11 for c in text]  # noqa: E731
    blocks = TextBlocks(tmp_path / "t.jsonl", tokenize, seq_len=5)
    api = linpath.path(TiedLM(), a, b, blocks, grid=[0.5], task="causal-lm")
    assert float(rows[2].split(",")[7]) == pytest.approx(api.loss[0], rel=1e-12)
    assert "give --tokenizer" in one_line_error(capsys, common)
    assert "--bn recompute is not supported" in one_line_error(
        capsys, [*common, *tokenizer, "--bn", "recompute"]
    )
    assert "--eval-examples is not supported" in one_line_error(
        capsys, [*common, *tokenizer, "--eval-examples", "5"]
    )


def test_a_single_file_folder_and_a_plain_state_file_mix(tmp_path):
    a = tmp_path / "a"
    a.mkdir()
    start = tied_states(0)
    save_file({k: v for k, v in start.items() if k != "head.weight"}, str(a / "model.safetensors"))
    torch.save(tied_states(1), tmp_path / "b.pt")
    ids = torch.randint(0, 11, (4, 6), generator=torch.Generator().manual_seed(1))
    mixed = linpath.path(TiedLM(), a, tmp_path / "b.pt", (ids, ids), grid=XS, task="causal-lm")
    plain = linpath.path(TiedLM(), start, tied_states(1), (ids, ids), grid=XS, task="causal-lm")
    np.testing.assert_allclose(mixed.loss, plain.loss, rtol=1e-6)


def test_a_loss_fn_streams_with_batches_as_units():
    g = torch.Generator().manual_seed(0)
    inputs, targets = torch.randn(300, 5, generator=g), torch.randn(300, 2, generator=g)
    torch.manual_seed(0)
    model = nn.Linear(5, 2)
    start = {k: v.clone() for k, v in model.state_dict().items()}
    end = {k: v + 1.0 for k, v in start.items()}
    preloaded = linpath.path(model, start, end, (inputs, targets), grid=XS, loss_fn=F.mse_loss)
    streamed = linpath.path(
        model, start, end, Pairs(inputs, targets), grid=XS, loss_fn=F.mse_loss, batch_size=64
    )
    np.testing.assert_allclose(streamed.loss, preloaded.loss, rtol=1e-6)
    assert streamed.error is None and preloaded.error is None
