"""A tiny GPT-2 trained for a few hundred steps, saved as sharded model folders at two steps, for
the path between them (docs/own_model.md, "Language models"):

    python examples/tiny_gpt2.py --out lm-out          # about 10-30 s on a CPU; needs transformers
    linpath path lm-out/step-50 lm-out/step-300 --task causal-lm --data lm-out/valid.jsonl --tokenizer bytes

The model is built from a random config (2 layers, 64 dimensions, 256 byte-level tokens: the
"tokenizer" is the text's UTF-8 bytes), so nothing is downloaded; the corpus is the docstrings of
Python's standard library, paragraphs as documents, the even ones for training, the odd ones
(valid.jsonl) for evaluation. Each state is written by save_pretrained with a small
max_shard_size: several .safetensors shards and model.safetensors.index.json, as large
checkpoints come. tests/test_lm_paths.py and benchmarks/lm_path.py build on it.
"""

from __future__ import annotations

import argparse
import inspect
import json
from pathlib import Path

import torch

MODULES = ("argparse", "collections", "dataclasses", "functools", "inspect", "json", "pathlib", "textwrap")


def documents() -> list[str]:
    """Paragraphs of the docstrings of a few standard-library modules and their public members."""
    texts = []
    for name in MODULES:
        module = __import__(name)
        texts.append(inspect.getdoc(module) or "")
        for attr in sorted(vars(module)):
            if not attr.startswith("_") and (
                inspect.isfunction(getattr(module, attr)) or inspect.isclass(getattr(module, attr))
            ):
                texts.append(inspect.getdoc(getattr(module, attr)) or "")
    paragraphs = [p.strip() for text in texts for p in text.split("\n\n")]
    unique = list(dict.fromkeys(p for p in paragraphs if len(p) >= 40))
    return unique


def write_corpus(out: Path) -> tuple[Path, Path]:
    """train.jsonl (even paragraphs) and valid.jsonl (odd ones), one {"text": ...} per line."""
    out.mkdir(parents=True, exist_ok=True)
    docs = documents()
    files = []
    for name, part in (("train", docs[0::2]), ("valid", docs[1::2])):
        path = out / f"{name}.jsonl"
        path.write_text("".join(json.dumps({"text": d}) + "\n" for d in part), encoding="utf-8")
        files.append(path)
    return files[0], files[1]


def config(n_positions: int = 64, n_embd: int = 64, n_layer: int = 2):
    import transformers

    return transformers.GPT2Config(
        vocab_size=256, n_positions=n_positions, n_embd=n_embd, n_layer=n_layer, n_head=2,
        bos_token_id=0, eos_token_id=0, pad_token_id=0,
    )  # fmt: skip


def train(out: Path, steps: int = 300, save_at=(50, 300), batch: int = 8, seq_len: int = 64, seed: int = 0):
    """Train on train.jsonl's bytes (random windows, AdamW) and save_pretrained at `save_at`
    steps into out/step-<n> (shards of at most 100 KB). Returns the folders."""
    import transformers

    transformers.logging.set_verbosity_error()
    train_file, _ = write_corpus(out)
    text = "\n\n".join(
        json.loads(line)["text"] for line in train_file.read_text(encoding="utf-8").splitlines()
    )
    data = torch.tensor(list(text.encode("utf-8")))
    torch.manual_seed(seed)
    model = transformers.GPT2LMHeadModel(config(n_positions=seq_len))
    opt = torch.optim.AdamW(model.parameters(), lr=3e-3)
    g = torch.Generator().manual_seed(seed)
    folders = []
    for step in range(1, steps + 1):
        starts = torch.randint(0, len(data) - seq_len, (batch,), generator=g)
        ids = torch.stack([data[i : i + seq_len] for i in starts])
        loss = model(ids, labels=ids).loss
        opt.zero_grad()
        loss.backward()
        opt.step()
        if step in save_at:
            folders.append(out / f"step-{step}")
            model.save_pretrained(folders[-1], max_shard_size="100KB")
    return folders


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default="lm-out", help="output folder (default lm-out/)")
    parser.add_argument("--steps", type=int, default=300, help="training steps (default 300)")
    args = parser.parse_args()
    out = Path(args.out)
    first, last = train(out, args.steps, save_at=(50, args.steps))
    print(f"wrote {first}, {last} and {out / 'valid.jsonl'}; now:")
    print(f"linpath path {first} {last} --task causal-lm --data {out / 'valid.jsonl'} --tokenizer bytes")


if __name__ == "__main__":
    main()
