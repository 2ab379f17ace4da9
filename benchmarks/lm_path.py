"""A language model's path: linpath (states left on disk, streamed text) vs a plain loop, same run.

    python benchmarks/lm_path.py                 # about 3-5 minutes on a 2-core CPU; needs transformers

The job: examples/tiny_gpt2.py's GPT-2 (2 layers, 64 dimensions, 256 byte tokens) trained for
300 steps, saved with save_pretrained as sharded folders at steps 50 and 300; the path between
them at --points x on the first --docs held-out paragraphs (blocks of 64 tokens, batch 8).
  (a) plain loop: both folders' shards loaded whole (safetensors load_file), then per x the
      interpolated state dict built by hand, load_state_dict into the model, Hugging Face's
      own loss (labels) summed over the batches and the next-token errors counted (the blocks
      built once, before the loop);
  (b) linpath.path(folder, A, B, TextBlocks(...), task="causal-lm"): θ(x) written tensor by tensor
      from the memory-mapped shards into one resident model; the text read and tokenized at the
      first point, its blocks kept on the device for the others (they fit in the data cache).
Printed: ms per point of each (best of --repeats alternated rounds), the ratio, the largest
loss difference. Then peak memory: each
way run alone in a fresh process on a larger random GPT-2 (6 layers, 384 dimensions, 43 MB, 8 MB
shards) for 100 points on two documents, a block at a time; measured as the growth of VmHWM
(anonymous and file-backed pages) over the resident set before the path, after a one-layer model
of the class has run once (transformers' code loaded on first use is not the model's), and
printed as multiples of the model's parameter bytes.
"""

from __future__ import annotations

import argparse
import copy
import importlib.util
import json
import math
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch
from safetensors.torch import load_file

REPO = Path(__file__).resolve().parents[1]


def tiny_gpt2():
    spec = importlib.util.spec_from_file_location("tiny_gpt2", REPO / "examples" / "tiny_gpt2.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def read_folder(folder: Path) -> dict:
    return {k: v for f in sorted(folder.glob("*.safetensors")) for k, v in load_file(str(f)).items()}


def windows(docs: list[str], seq_len: int) -> list[list[int]]:
    out = []
    for doc in docs:
        ids = list(doc.encode("utf-8"))
        out += [ids[s : s + seq_len] for s in range(0, len(ids) - 1, seq_len - 1)]
    return out


def plain_loop(start: Path, end: Path, xs, docs, seq_len: int, batch: int) -> list[float]:
    """The mean next-token loss at each x, the ordinary way (see the module's docstring)."""
    import transformers

    a, b = read_folder(start), read_folder(end)
    model = transformers.GPT2LMHeadModel(transformers.GPT2Config.from_pretrained(start)).eval()
    blocks, losses = windows(docs, seq_len), []
    for x in xs:
        model.load_state_dict({k: (1 - x) * a[k] + x * b[k] for k in a}, strict=False)  # lm_head: tied
        nats = tokens = errors = 0.0
        for i in range(0, len(blocks), batch):
            chunk = blocks[i : i + batch]
            longest = max(map(len, chunk))
            ids = torch.tensor([w + [0] * (longest - len(w)) for w in chunk])
            labels = torch.tensor([w + [-100] * (longest - len(w)) for w in chunk])
            with torch.no_grad():
                out = model(ids, attention_mask=(labels != -100).long(), labels=labels)
            scored = labels[:, 1:] != -100
            n = int(scored.sum())
            nats, tokens = nats + float(out.loss) * n, tokens + n
            errors += int(((out.logits[:, :-1].argmax(-1) != labels[:, 1:]) & scored).sum())
        losses.append(nats / tokens)
    return losses


def linpath_path(start: Path, end: Path, xs, data: Path, seq_len: int, batch: int) -> list[float]:
    import linpath
    from linpath.data.stream import TextBlocks, bytes_tokenizer

    blocks = TextBlocks(data, bytes_tokenizer, seq_len=seq_len, batch_size=batch)
    return list(linpath.path(start, start, end, blocks, grid=xs, task="causal-lm").loss)


def status(key: str) -> int:
    return int(re.search(key + r":\s+(\d+)", Path("/proc/self/status").read_text()).group(1)) * 1024


def measure(way: str, start: Path, end: Path, data: Path) -> dict:
    """In this (fresh) process: one way's peak memory over a 100-point path (module docstring)."""
    import transformers

    docs = [json.loads(line)["text"] for line in data.read_text(encoding="utf-8").splitlines()]
    tiny = copy.deepcopy(transformers.AutoConfig.from_pretrained(start))
    tiny.n_layer, tiny.n_embd = 1, 8
    with torch.no_grad():  # warm-up: the code transformers loads on first use
        transformers.AutoModelForCausalLM.from_config(tiny)(torch.zeros(1, 64, dtype=torch.long))
    xs = [i / 99 for i in range(100)]
    before = status("VmRSS")
    Path("/proc/self/clear_refs").write_text("5")  # VmHWM := VmRSS now
    if way == "plain":
        plain_loop(start, end, xs, docs, 64, 1)
    else:
        linpath_path(start, end, xs, data, 64, 1)
    return {"peak": status("VmHWM") - before}


def memory_job(folder: Path, docs: list[str]) -> tuple[Path, Path, Path, int]:
    import transformers

    config = tiny_gpt2().config(n_embd=384, n_layer=6)
    paths = []
    for seed in (0, 1):
        torch.manual_seed(seed)
        model = transformers.GPT2LMHeadModel(config)
        paths.append(folder / f"big-{seed}")
        model.save_pretrained(paths[-1], max_shard_size="8MB")
    data = folder / "two.jsonl"
    data.write_text("".join(json.dumps({"text": d}) + "\n" for d in docs[:2]), encoding="utf-8")
    return paths[0], paths[1], data, sum(p.numel() * p.element_size() for p in model.parameters())


def timings(start: Path, end: Path, data: Path, docs: list[str], xs, repeats: int) -> None:
    """The speed table: both ways alternated `repeats` times (best of each), after a warm-up."""
    plain_loop(start, end, xs[:1], docs, 64, 8)  # warm-up, untimed
    best = {"plain": math.inf, "linpath": math.inf}
    for _ in range(repeats):
        t = time.perf_counter()
        plain = plain_loop(start, end, xs, docs, 64, 8)
        best["plain"] = min(best["plain"], (time.perf_counter() - t) / len(xs) * 1000)
        t = time.perf_counter()
        ours = linpath_path(start, end, xs, data, 64, 8)
        best["linpath"] = min(best["linpath"], (time.perf_counter() - t) / len(xs) * 1000)
    print("| way | ms/point | × plain |")
    print("|---|---:|---:|")
    print(f"| plain loop (load_state_dict) | {best['plain']:.1f} | 1.00 |")
    print(
        f"| linpath.path (lazy folders, streamed) | {best['linpath']:.1f} | {best['plain'] / best['linpath']:.2f} |"
    )
    print(f"# largest |Δloss| {max(abs(p - o) for p, o in zip(plain, ours)):.1e}")


def memories(folder: Path, docs: list[str], threads: int) -> None:
    """The memory table: each way alone in a fresh process (see measure)."""
    big_a, big_b, two, model_bytes = memory_job(folder, docs)
    print(f"# peak memory over 100 points, GPT-2 6x384 ({model_bytes / 2**20:.1f} MiB), 8 MB shards")
    print("| way | peak growth MiB | × model bytes |")
    print("|---|---:|---:|")
    for way, name in (("plain", "plain loop"), ("linpath", "linpath.path")):
        cmd = [
            sys.executable,
            __file__,
            "--threads",
            str(threads),
            "--measure",
            way,
            str(big_a),
            str(big_b),
            str(two),
        ]
        done = subprocess.run(cmd, capture_output=True, text=True, check=True)
        peak = json.loads(done.stdout.strip().splitlines()[-1])["peak"]
        print(f"| {name} | {peak / 2**20:.1f} | {peak / model_bytes:.2f} |")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--points", type=int, default=25, help="points on the path (default 25)")
    parser.add_argument("--docs", type=int, default=60, help="held-out paragraphs evaluated (default 60)")
    parser.add_argument("--repeats", type=int, default=3, help="timed rounds, best kept (default 3)")
    parser.add_argument("--threads", type=int, default=1, help="torch threads (default 1)")
    parser.add_argument("--measure", nargs=4, default=None, help=argparse.SUPPRESS)  # WAY START END DATA
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    if args.measure:
        way, *files = args.measure
        print(json.dumps(measure(way, *map(Path, files))))
        return
    import transformers

    transformers.logging.set_verbosity_error()
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        start, end = tiny_gpt2().train(folder, steps=300, save_at=(50, 300))
        lines = (folder / "valid.jsonl").read_text(encoding="utf-8").splitlines()[: args.docs]
        data = folder / "eval.jsonl"
        data.write_text("\n".join(lines) + "\n", encoding="utf-8")
        docs = [json.loads(line)["text"] for line in lines]
        xs = [i / (args.points - 1) for i in range(args.points)]
        blocks = len(windows(docs, 64))
        print(
            f"# GPT-2 2x64, {blocks} blocks of <= 64 tokens, {args.points} points, {args.threads} thread(s)"
        )
        timings(start, end, data, docs, xs, args.repeats)
        memories(folder, docs, args.threads)


if __name__ == "__main__":
    main()
