"""Checkpoint grids for the tests (tests/test_checkpoint_grids.py): tiny GPT-NeoX grids written as
a local mirror (one folder per revision), the same revisions laid out as huggingface_hub's own
cache (blobs/, refs/, snapshots/), the plants, and the plain Hugging Face loop the sweep's
numbers are checked against."""

from __future__ import annotations

import hashlib
import importlib.util
import math
import os
from pathlib import Path

import torch

REPO = Path(__file__).resolve().parents[1]


def example():
    """examples/tiny_pythia_grid.py (the model's config, the grammar's text, the trained mirror)."""
    spec = importlib.util.spec_from_file_location(
        "tiny_pythia_grid", REPO / "examples" / "tiny_pythia_grid.py"
    )
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def line_grid(folder: Path, steps: list[int], seed: int = 0, hidden: int = 32) -> dict[int, Path]:
    """Revisions folder/step<t>/ of an untrained GPT-NeoX on the line between two random states:
    θ_t = θ_0 + (t / T)·(θ_T − θ_0), so ‖θ_T − θ_t‖ = (1 − t/T)·‖θ_T − θ_0‖ exactly. Two shards
    and an index each (save_pretrained), as published checkpoints come."""
    import transformers

    transformers.logging.set_verbosity_error()
    transformers.utils.logging.disable_progress_bar()
    config = example().config(hidden=hidden, layers=1, positions=32)
    torch.manual_seed(seed)
    start, model = transformers.GPTNeoXForCausalLM(config), transformers.GPTNeoXForCausalLM(config)
    a, b = start.state_dict(), {k: v.clone() for k, v in model.state_dict().items()}
    last, out = max(steps), {}
    shard = f"{sum(v.numel() * v.element_size() for v in b.values()) // 2 // 1000 + 1}KB"
    for t in steps:
        w = t / last
        model.load_state_dict(
            {k: (a[k] + w * (b[k] - a[k])) if a[k].is_floating_point() else b[k] for k in a}
        )
        out[t] = folder / f"step{t}"
        model.save_pretrained(out[t], max_shard_size=shard)
    return out


def shard_files(folder: Path) -> list[Path]:
    return sorted(folder.glob("*.safetensors"))


def sha256(path: Path) -> str:
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


def plant(mirror: Path, base: str, seed1: str, duplicate=(4, 8), deleted=16, foreign=(64, 512)) -> None:
    """examples/tiny_pythia_grid.plant on mirror/base and mirror/seed1 (see there)."""
    example().plant(mirror / base, mirror / seed1, duplicate, deleted, foreign)


def git_blob_sha1(data: bytes) -> str:
    return hashlib.sha1(b"blob %d\0" % len(data) + data).hexdigest()


def hub_cache(cache: Path, repo: str, revisions: dict[str, Path]) -> dict[str, str]:
    """huggingface_hub's cache layout of a model repo, built from local revision folders:
    models--ORG--NAME/blobs/<sha256 of an LFS file, git sha1 of another>, refs/<revision> holding
    its commit, snapshots/<commit>/<file> linking to its blob. Returns {revision: commit}."""
    storage = cache / ("models--" + repo.replace("/", "--"))
    (storage / "blobs").mkdir(parents=True, exist_ok=True)
    (storage / "refs").mkdir(exist_ok=True)
    commits = {}
    for name, folder in revisions.items():
        commit = hashlib.sha1(f"{repo}@{name}".encode()).hexdigest()
        (storage / "refs" / name).write_text(commit)
        snapshot = storage / "snapshots" / commit
        snapshot.mkdir(parents=True, exist_ok=True)
        for file in sorted(p for p in folder.iterdir() if p.is_file()):
            data = file.read_bytes()
            blob = hashlib.sha256(data).hexdigest() if file.suffix == ".safetensors" else git_blob_sha1(data)
            (storage / "blobs" / blob).write_bytes(data)
            os.symlink(os.path.relpath(storage / "blobs" / blob, snapshot), snapshot / file.name)
        commits[name] = commit
    return commits


def documents(path: Path) -> list[str]:
    """A .txt file's paragraphs, as data.stream.TextBlocks reads them."""
    return [p.strip("\n") for p in Path(path).read_text(encoding="utf-8").split("\n\n") if p.strip()]


def plain_loop(start: Path, end: Path, x: float, docs: list[str], seq_len: int, batch: int) -> tuple:
    """(token loss, next-token error, bits per byte) of θ(x) = (1 − x)·start + x·end done the
    ordinary way: both folders loaded with from_pretrained, the interpolated state dict built by
    hand and loaded, Hugging Face's own loss (labels) over windows of seq_len bytes overlapping
    by one, padded with -100."""
    import transformers

    a = transformers.AutoModelForCausalLM.from_pretrained(start).eval()
    b = transformers.AutoModelForCausalLM.from_pretrained(end).state_dict()
    own = a.state_dict()
    a.load_state_dict({k: (1 - x) * v + x * b[k] if v.is_floating_point() else b[k] for k, v in own.items()})
    windows = []
    for doc in docs:
        ids = list(doc.encode("utf-8"))
        windows += [ids[s : s + seq_len] for s in range(0, len(ids) - 1, seq_len - 1)]
    nats = errors = tokens = 0.0
    for i in range(0, len(windows), batch):
        chunk = windows[i : i + batch]
        longest = max(map(len, chunk))
        ids = torch.tensor([w + [0] * (longest - len(w)) for w in chunk])
        labels = torch.tensor([w + [-100] * (longest - len(w)) for w in chunk])
        with torch.no_grad():
            out = a(ids, attention_mask=(labels != -100).long(), labels=labels)
        scored = labels[:, 1:] != -100
        nats += float(out.loss) * int(scored.sum())
        errors += int(((out.logits[:, :-1].argmax(-1) != labels[:, 1:]) & scored).sum())
        tokens += int(scored.sum())
    nbytes = sum(len(d.encode("utf-8")) for d in docs)
    return nats / tokens, errors / tokens, nats / math.log(2) / nbytes
