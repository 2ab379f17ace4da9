"""A checkpoint grid's sweep: peak memory against the model's bytes, and time per point against a
plain from_pretrained loop, both measured in the same run.

    python benchmarks/grid_memory.py                              # 6 layers x 384, about 2 minutes idle
    python benchmarks/grid_memory.py --hidden 64 --layers 2 --points 3 --docs 4 --repeats 1   # tiny

The job: a GPT-NeoX (Pythia's architecture, examples/tiny_pythia_grid.py's config at --hidden and
--layers, byte vocabulary) saved with save_pretrained at three revisions step0, step50, step100
of a line between two random states, in shards of at most --shard MB, as a local mirror;
imported as a grid run (runs/import_grid.py); one path, step0 -> step100, at --points x on the
first --docs paragraphs of the grammar's text (blocks of 64 tokens, batch 8).
  (a) plain loop: per x, both revisions loaded with AutoModelForCausalLM.from_pretrained, the
      interpolated state dict built by hand and loaded into a third model, Hugging Face's own
      loss (labels) summed over the batches;
  (b) linpath: sweep/grid_sweep.sweep_grid on the run (the folders checked against grid.json,
      θ(x) written tensor by tensor from the memory-mapped shards into one resident model, the
      text read at the first point and kept for the others).
Printed: ms per point of each (best of --repeats alternated rounds, after a warm-up) and the
ratio. Then peak memory: each way alone in a fresh process, the growth of VmHWM (anonymous and
file-backed pages, so the mapped shards count) over the resident set before the path, after a
one-layer model of the class has run once (transformers' code loaded on first use is not the
model's), as multiples of the model's parameter bytes; with --device cuda also
torch.cuda.max_memory_allocated over the memory allocated before (the resident model counted).
The claim checked: (b) holds the model plus one tensor of each endpoint (about 1x the model's
bytes, plus activations), (a) three models (about 3x).
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

REPO = Path(__file__).resolve().parents[1]
SEQ_LEN, BATCH = 64, 8


def example():
    spec = importlib.util.spec_from_file_location(
        "tiny_pythia_grid", REPO / "examples" / "tiny_pythia_grid.py"
    )
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def build(folder: Path, hidden: int, layers: int, shard_mb: int, docs: int) -> tuple[Path, Path, int]:
    """The mirror (step0, step50, step100 on a line), the text, and the model's parameter bytes."""
    import transformers

    transformers.logging.set_verbosity_error()
    transformers.utils.logging.disable_progress_bar()
    config = example().config(hidden=hidden, layers=layers, positions=SEQ_LEN)
    torch.manual_seed(0)
    start, model = transformers.GPTNeoXForCausalLM(config), transformers.GPTNeoXForCausalLM(config)
    a, b = start.state_dict(), {k: v.clone() for k, v in model.state_dict().items()}
    for t in (0, 50, 100):
        model.load_state_dict(
            {k: a[k] + t / 100 * (b[k] - a[k]) if a[k].is_floating_point() else b[k] for k in a}
        )
        model.save_pretrained(folder / "mirror" / f"step{t}", max_shard_size=f"{shard_mb}MB")
    text = example().write_text(folder / "eval.txt", docs, seed=7)
    return folder / "mirror", text, sum(p.numel() * p.element_size() for p in model.parameters())


def documents(text: Path) -> list[str]:
    return [p.strip("\n") for p in text.read_text(encoding="utf-8").split("\n\n") if p.strip()]


def plain_loop(start: Path, end: Path, xs, docs: list[str], device: str) -> list[float]:
    """The mean next-token loss at each x, the ordinary way (see the module's docstring)."""
    import transformers

    blocks = []
    for doc in docs:
        ids = list(doc.encode("utf-8"))
        blocks += [ids[s : s + SEQ_LEN] for s in range(0, len(ids) - 1, SEQ_LEN - 1)]
    losses = []
    for x in xs:
        a = transformers.AutoModelForCausalLM.from_pretrained(start).state_dict()
        b = transformers.AutoModelForCausalLM.from_pretrained(end).state_dict()
        model = transformers.AutoModelForCausalLM.from_pretrained(start).to(device).eval()
        model.load_state_dict(
            {k: (1 - x) * v + x * b[k] if v.is_floating_point() else b[k] for k, v in a.items()}
        )
        del a, b
        nats = tokens = 0.0
        for i in range(0, len(blocks), BATCH):
            chunk = blocks[i : i + BATCH]
            longest = max(map(len, chunk))
            ids = torch.tensor([w + [0] * (longest - len(w)) for w in chunk], device=device)
            labels = torch.tensor([w + [-100] * (longest - len(w)) for w in chunk], device=device)
            with torch.no_grad():
                out = model(ids, attention_mask=(labels != -100).long(), labels=labels)
            n = int((labels[:, 1:] != -100).sum())
            nats, tokens = nats + float(out.loss) * n, tokens + n
        losses.append(nats / tokens)
        del model
    return losses


def linpath_sweep(run: Path, text: Path, points: int, device: str) -> list[float]:
    """The grid sweep of the run's one path (item files removed first, so it is evaluated)."""
    import shutil

    from linpath.data.stream import TextBlocks, bytes_tokenizer
    from linpath.io.rundir import RunDir
    from linpath.io.tables import read_csv_rows
    from linpath.sweep.grid_sweep import GridData, sweep_grid
    from linpath.sweep.grids import Grid
    from linpath.sweep.run import SweepOptions
    from linpath.sweep.setting import SweepSetting

    setting = SweepSetting(grid=Grid(points=points), task="causal-lm")
    shutil.rmtree(RunDir(run).setting_dir(setting.key), ignore_errors=True)
    data = GridData(TextBlocks(text, bytes_tokenizer, seq_len=SEQ_LEN, batch_size=BATCH), "bytes")
    sweep_grid(run, setting, data, SweepOptions(device=device, progress=False))
    return [float(row["loss"]) for row in read_csv_rows(RunDir(run).item_file(setting.key, 0, 0))]


def status(key: str) -> int:
    return int(re.search(key + r":\s+(\d+)", Path("/proc/self/status").read_text()).group(1)) * 1024


def measure(way: str, run: Path, mirror: Path, text: Path, points: int, device: str) -> dict:
    """In this (fresh) process: one way's peak memory over a path of `points` points."""
    import transformers

    tiny = copy.deepcopy(transformers.AutoConfig.from_pretrained(mirror / "step0"))
    tiny.num_hidden_layers, tiny.hidden_size, tiny.intermediate_size = 1, 16, 64
    with torch.no_grad():  # warm-up: the code transformers loads on first use
        transformers.AutoModelForCausalLM.from_config(tiny).to(device)(
            torch.zeros(1, SEQ_LEN, dtype=torch.long, device=device)
        )
    cuda = device.startswith("cuda")
    if cuda:
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
    before, gpu_before = status("VmRSS"), torch.cuda.memory_allocated() if cuda else 0
    Path("/proc/self/clear_refs").write_text("5")  # VmHWM := VmRSS now
    xs = [i / (points - 1) for i in range(points)]
    if way == "plain":
        plain_loop(mirror / "step0", mirror / "step100", xs, documents(text), device)
    else:
        linpath_sweep(run, text, points, device)
    gpu = torch.cuda.max_memory_allocated() - gpu_before if cuda else None
    return {"peak": status("VmHWM") - before, "gpu_peak": gpu}


def timings(run: Path, mirror: Path, text: Path, points: int, repeats: int, device: str) -> None:
    """The speed table: both ways alternated `repeats` times (best of each), after a warm-up;
    linpath's path also at 2 points, so its one-off cost (the model built, the folders checked,
    the states checked finite, the text read) is told apart from its cost per point."""
    xs = [i / (points - 1) for i in range(points)]
    docs = documents(text)
    plain_loop(mirror / "step0", mirror / "step100", xs[:1], docs, device)  # warm-up, untimed
    linpath_sweep(run, text, 2, device)
    best = {"plain": math.inf, "linpath": math.inf, "linpath2": math.inf}
    for _ in range(repeats):
        t = time.perf_counter()
        plain = plain_loop(mirror / "step0", mirror / "step100", xs, docs, device)
        best["plain"] = min(best["plain"], time.perf_counter() - t)
        t = time.perf_counter()
        ours = linpath_sweep(run, text, points, device)
        best["linpath"] = min(best["linpath"], time.perf_counter() - t)
        t = time.perf_counter()
        linpath_sweep(run, text, 2, device)
        best["linpath2"] = min(best["linpath2"], time.perf_counter() - t)
    plain_ms, ours_ms = best["plain"] / points * 1000, best["linpath"] / points * 1000
    marginal = (best["linpath"] - best["linpath2"]) / (points - 2) * 1000 if points > 2 else math.nan
    print("| way | ms/point (whole path / points) | × plain | ms per further point |")
    print("|---|---:|---:|---:|")
    print(f"| plain loop (from_pretrained ×3 per point) | {plain_ms:.1f} | 1.00 | {plain_ms:.1f} |")
    print(
        f"| linpath grid sweep (one model, lazy folders) | {ours_ms:.1f} | {plain_ms / ours_ms:.2f} | "
        f"{marginal:.1f} (one-off {best['linpath2'] * 1000 - 2 * marginal:.0f} ms) |"
    )
    print(f"# largest |Δloss| {max(abs(p - o) for p, o in zip(plain, ours)):.1e}")


def memories(run: Path, mirror: Path, text: Path, points: int, model_bytes: int, args) -> None:
    """The memory table: each way alone in a fresh process (see measure)."""
    print(f"# peak memory over {points} points; the model: {model_bytes / 2**20:.1f} MiB of parameters")
    print("| way | peak RSS growth MiB | × model bytes | GPU peak MiB | × model bytes |")
    print("|---|---:|---:|---:|---:|")
    for way, name in (("plain", "plain loop"), ("linpath", "linpath grid sweep")):
        cmd = [
            sys.executable,
            __file__,
            "--threads",
            str(args.threads),
            "--device",
            args.device,
            "--points",
            str(points),
        ]
        cmd += ["--measure", way, str(run), str(mirror), str(text)]
        done = subprocess.run(cmd, capture_output=True, text=True, check=True)
        m = json.loads(done.stdout.strip().splitlines()[-1])
        gpu = m["gpu_peak"]
        gpu_cells = f"{gpu / 2**20:.1f} | {gpu / model_bytes:.2f}" if gpu is not None else "- | -"
        print(f"| {name} | {m['peak'] / 2**20:.1f} | {m['peak'] / model_bytes:.2f} | {gpu_cells} |")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--hidden", type=int, default=384, help="model width (default 384)")
    parser.add_argument("--layers", type=int, default=6, help="layers (default 6)")
    parser.add_argument("--shard", type=int, default=8, help="largest shard, MB (default 8)")
    parser.add_argument("--points", type=int, default=11, help="points on the path (default 11)")
    parser.add_argument("--docs", type=int, default=16, help="paragraphs evaluated (default 16)")
    parser.add_argument("--repeats", type=int, default=3, help="timed rounds, best kept (default 3)")
    parser.add_argument("--threads", type=int, default=1, help="torch threads (default 1)")
    parser.add_argument("--device", default="cpu", help="cpu or cuda (default cpu)")
    parser.add_argument("--measure", nargs=4, default=None, help=argparse.SUPPRESS)  # WAY RUN MIRROR TEXT
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    if args.measure:
        way, run, mirror, text = args.measure
        print(json.dumps(measure(way, Path(run), Path(mirror), Path(text), args.points, args.device)))
        return
    from linpath.runs.import_grid import import_grid

    with tempfile.TemporaryDirectory() as tmp:
        mirror, text, model_bytes = build(Path(tmp), args.hidden, args.layers, args.shard, args.docs)
        run, _ = import_grid(mirror, Path(tmp) / "runs", revisions="step0,step100")
        print(
            f"# GPT-NeoX {args.layers}x{args.hidden}, {args.points} points, {args.threads} thread(s), {args.device}"
        )
        timings(run.root, mirror, text, args.points, args.repeats, args.device)
        memories(run.root, mirror, text, args.points, model_bytes, args)


if __name__ == "__main__":
    main()
