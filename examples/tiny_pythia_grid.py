"""A local mirror of a Pythia-style checkpoint grid, small enough to build on a CPU in a minute:
one folder per model, one subfolder per revision (`step0/`, `step1/`, ..., `step600/`), as
EleutherAI publishes Pythia's checkpoints as Hub revisions (docs/checkpoint_grids.md):

    python examples/tiny_pythia_grid.py --out mirror     # needs transformers
    # mirror/tiny-pythia/step0/ ... step600/, mirror/tiny-pythia-seed1/ ..., mirror/valid.txt

The model is a GPT-NeoX (Pythia's architecture: rotary embeddings on a quarter of each head,
parallel residual, untied input and output embeddings) of 3 layers and 64 dimensions over a
byte vocabulary (the "tokenizer" is the text's UTF-8 bytes), about 190,000 parameters; each seed
trains with AdamW for --steps steps on sentences drawn from a small grammar (generated here,
so nothing is downloaded and nothing is anyone's text), and is saved with save_pretrained at the
paper's grid, {0} ∪ {2^k} ∪ {1000k} up to the last step, as safetensors shards and an index,
as large checkpoints come. Seed 0 is the base model, seed r the folder `<name>-seed<r>`, as
PolyPythias names its seeds. --plant damages it as published grids have been damaged (plant()).
tests/test_checkpoint_grids.py and docs/results/grid_mirror/make.py build their mirrors here.
"""

from __future__ import annotations

import argparse
import random
import shutil
from pathlib import Path

import torch

NOUNS = ("river", "lantern", "farmer", "window", "garden", "sailor", "mountain", "letter", "clock", "meadow")
VERBS = ("carries", "watches", "remembers", "follows", "paints", "finds", "answers", "keeps")
ADJECTIVES = ("quiet", "old", "bright", "patient", "distant", "small", "golden", "careful")
ENDINGS = ("at dawn", "in the rain", "before supper", "by the gate", "all winter", "without a word")


def sentence(rng: random.Random) -> str:
    """One sentence of the grammar: the ADJ NOUN VERBS the ADJ NOUN ENDING."""
    a, b = rng.choice(ADJECTIVES), rng.choice(ADJECTIVES)
    return (
        f"The {a} {rng.choice(NOUNS)} {rng.choice(VERBS)} the {b} {rng.choice(NOUNS)} {rng.choice(ENDINGS)}."
    )


def paragraphs(count: int, seed: int) -> list[str]:
    """`count` paragraphs of three to six sentences each."""
    rng = random.Random(seed)
    return [" ".join(sentence(rng) for _ in range(rng.randint(3, 6))) for _ in range(count)]


def write_text(path: Path, count: int, seed: int) -> Path:
    """A .txt file of paragraphs separated by blank lines (TextBlocks' documents)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("\n\n".join(paragraphs(count, seed)) + "\n", encoding="utf-8")
    return path


def config(hidden: int = 64, layers: int = 3, positions: int = 128):
    import transformers

    return transformers.GPTNeoXConfig(
        vocab_size=256, hidden_size=hidden, num_hidden_layers=layers, num_attention_heads=4,
        intermediate_size=4 * hidden, max_position_embeddings=positions, rotary_pct=0.25,
        use_parallel_residual=True, tie_word_embeddings=False, bos_token_id=0, eos_token_id=0,
        pad_token_id=0,
    )  # fmt: skip


def paper_grid(last: int) -> list[int]:
    """The paper's kept steps up to `last`: {0} ∪ {2^k: k <= 10} ∪ {1000k: k >= 2} ∪ {last}."""
    steps = {0, last, *(2**k for k in range(11) if 2**k < last), *range(2000, last, 1000)}
    return sorted(steps)


def train_seed(folder: Path, seed: int, steps: int, text: str, seq_len: int = 64, batch: int = 8) -> None:
    """Train one seed and save_pretrained it at the paper's grid into folder/step<t>/."""
    import transformers

    data = torch.tensor(list(text.encode("utf-8")))
    torch.manual_seed(seed)
    model = transformers.GPTNeoXForCausalLM(config())
    opt = torch.optim.AdamW(model.parameters(), lr=3e-3, weight_decay=0.01)
    g = torch.Generator().manual_seed(seed)
    keep = set(paper_grid(steps))
    shard = f"{sum(p.numel() * p.element_size() for p in model.parameters()) // 2 // 1000 + 1}KB"
    for step in range(steps + 1):
        if step in keep:
            model.save_pretrained(folder / f"step{step}", max_shard_size=shard)  # two shards
        if step == steps:
            break
        starts = torch.randint(0, len(data) - seq_len, (batch,), generator=g)
        ids = torch.stack([data[i : i + seq_len] for i in starts])
        loss = model(ids, labels=ids).loss
        opt.zero_grad()
        loss.backward()
        opt.step()


def build(out: Path, steps: int = 600, seeds: int = 2, name: str = "tiny-pythia") -> list[Path]:
    """The mirror: out/<name>/ (seed 0) and out/<name>-seed<r>/, and out/valid.txt (held-out
    paragraphs of the same grammar). Returns the model folders, by seed."""
    import transformers

    transformers.logging.set_verbosity_error()
    transformers.utils.logging.disable_progress_bar()
    text = "\n\n".join(paragraphs(400, seed=1234))
    write_text(out / "valid.txt", 24, seed=99)
    folders = [out / (name if r == 0 else f"{name}-seed{r}") for r in range(seeds)]
    for r, folder in enumerate(folders):
        train_seed(folder, r, steps, text)
    return folders


def plant(base: Path, seed1: Path, duplicate=(4, 8), deleted=16, foreign=(64, 512)) -> None:
    """Three defects published grids are known to have: base's step duplicate[1] a copy of its
    step duplicate[0] (EleutherAI/pythia#195), seed 1's step `deleted` gone (#94), the second
    shard of base's step foreign[0] the one of its step foreign[1] (#206)."""
    a, b = base / f"step{duplicate[0]}", base / f"step{duplicate[1]}"
    shutil.rmtree(b)
    shutil.copytree(a, b)
    shutil.rmtree(seed1 / f"step{deleted}")
    target = sorted((base / f"step{foreign[0]}").glob("*.safetensors"))[1]
    shutil.copyfile(base / f"step{foreign[1]}" / target.name, target)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default="mirror", help="output folder (default mirror/)")
    parser.add_argument("--steps", type=int, default=600, help="training steps (default 600)")
    parser.add_argument("--seeds", type=int, default=2, help="seeds, each a replicate (default 2)")
    parser.add_argument(
        "--plant",
        action="store_true",
        help="plant three defects (a duplicate, a deleted step, a foreign shard)",
    )
    args = parser.parse_args()
    folders = build(Path(args.out), args.steps, args.seeds)
    if args.plant:
        plant(folders[0], folders[1])
    print(f"wrote {', '.join(map(str, folders))} and {Path(args.out) / 'valid.txt'}")


if __name__ == "__main__":
    main()
