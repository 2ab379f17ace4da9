"""Evaluation data read a batch at a time and never held whole: the streamed evaluator's input.

A `Stream` gives a fresh iterator over the same batches in the same order every time it is
asked (each point of a path reads the data again, and must see the same examples), and its
number of examples when known. Kinds:

- TensorStream: tensors already in memory, sliced (the preloaded engine's data, streamed).
- LoaderStream: a DataLoader, a Dataset or an IterableDataset yielding (inputs, targets) pairs,
  (inputs, targets, bytes) triples or Hugging Face-style dicts (input_ids, labels,
  attention_mask); a shuffling DataLoader or a one-shot generator is refused.
- TextBlocks: a .jsonl (one document per line, its text under `text_field`) or a plain text
  file (documents separated by blank lines), tokenized by a callable the user gives, cut into
  blocks of at most seq_len tokens for a causal language model (see TextBlocks).
- ImageFolderStream: an image-folder tree (ImageNet's layout), decoded in DataLoader workers.

`shard(batches, rank, size)` keeps every size-th batch, from the rank-th on: torchrun ranks
share a stream, and their shares together are the whole.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

import torch
from torch.utils.data import DataLoader, Dataset, IterableDataset, RandomSampler

from linpath.data.source import EvalSet, SourceSplit
from linpath.errors import LinpathError
from linpath.io.jsonfile import parse_json

IGNORE_INDEX = -100  # a target position that is not scored (padding), as in Hugging Face


@dataclass
class Batch:
    """One batch: inputs, targets, and where known the UTF-8 bytes of the text each example
    scores (for bits per byte) and an attention mask (passed to the model when present)."""

    inputs: torch.Tensor
    targets: torch.Tensor
    bytes: torch.Tensor | None = None
    mask: torch.Tensor | None = None

    def to(self, device: torch.device) -> Batch:
        move = lambda t: None if t is None else t.to(device, non_blocking=True)  # noqa: E731
        return Batch(move(self.inputs), move(self.targets), move(self.bytes), move(self.mask))


class Stream(Protocol):
    name: str
    length: int | None  # examples (units), when known without reading the data

    def batches(self) -> Iterator[Batch]: ...


def shard(batches: Iterable[Batch], rank: int, size: int) -> Iterator[Batch]:
    """This rank's share: batches rank, rank + size, rank + 2·size, ..."""
    if not 0 <= rank < size:
        raise LinpathError(f"shard must be (rank, size) with 0 <= rank < size, got ({rank}, {size})")
    return itertools.islice(batches, rank, None, size)


class ShareCache:
    """A rank's share of a stream (see shard), kept on the device after the first reading that
    went through all of it, when all of it fits in `budget` bytes: later points replay it instead
    of reading (tokenizing, decoding) the data again. Data that fit are so read once, as the
    preloaded engine's; data that do not are read at every point, and nothing is kept."""

    def __init__(self, stream: Stream, rank: int, size: int, device, budget: int):
        self.stream, self.rank, self.size, self.device, self.budget = stream, rank, size, device, budget
        self.kept: list[Batch] | None = None
        self.fits = budget > 0

    def batches(self) -> Iterator[Batch]:
        if self.kept is not None:
            yield from self.kept
            return
        kept, used = ([] if self.fits else None), 0
        for batch in shard(self.stream.batches(), self.rank, self.size):
            batch = batch.to(self.device)
            if kept is not None:
                parts = (batch.inputs, batch.targets, batch.bytes, batch.mask)
                used += sum(t.numel() * t.element_size() for t in parts if t is not None)
                if used <= self.budget:
                    kept.append(batch)
                else:
                    kept, self.fits = None, False
            yield batch
        self.kept = kept  # a reading that stopped early (se_target) never gets here


class TensorStream:
    """(inputs, targets[, bytes]) tensors, read in slices of batch_size."""

    def __init__(self, inputs, targets, batch_size: int, name: str = "custom", nbytes=None):
        if len(inputs) != len(targets):
            raise LinpathError(f"the data has {len(inputs)} inputs but {len(targets)} targets")
        self.inputs, self.targets, self.nbytes = inputs, targets, nbytes
        self.batch_size, self.name, self.length = batch_size, name, len(targets)

    def batches(self) -> Iterator[Batch]:
        for i in range(0, self.length, self.batch_size):
            part = slice(i, i + self.batch_size)
            nbytes = self.nbytes[part] if self.nbytes is not None else None
            yield Batch(self.inputs[part], self.targets[part], nbytes)


def as_batch(obj, where: str = "each batch of the data") -> Batch:
    """A batch as loaders give it: a pair, a triple with byte counts, or a dict."""
    if isinstance(obj, Batch):
        return obj
    if isinstance(obj, Mapping) and "input_ids" in obj:
        ids = torch.as_tensor(obj["input_ids"])
        mask = torch.as_tensor(obj["attention_mask"]) if "attention_mask" in obj else None
        labels = obj.get("labels")
        if labels is None:
            labels = ids if mask is None else ids.masked_fill(mask == 0, IGNORE_INDEX)
        nbytes = torch.as_tensor(obj["bytes"]) if "bytes" in obj else None
        return Batch(ids, torch.as_tensor(labels), nbytes, mask)
    if isinstance(obj, (tuple, list)) and len(obj) in (2, 3):
        parts = [torch.as_tensor(o) for o in obj]
        return Batch(parts[0], parts[1], parts[2] if len(parts) == 3 else None)
    raise LinpathError(
        f"{where} must be an (inputs, targets) pair, an (inputs, targets, bytes) triple or a dict with "
        f"input_ids, got {type(obj).__name__}"
    )


class LoaderStream:
    """A DataLoader (or a Dataset / IterableDataset, batched here) read batch by batch."""

    def __init__(self, data, batch_size: int = 64, name: str = "custom"):
        if isinstance(data, (Dataset, IterableDataset)) and not isinstance(data, DataLoader):
            data = DataLoader(data, batch_size=batch_size, shuffle=False)
        if not isinstance(data, DataLoader):
            if iter(data) is data:
                raise LinpathError(
                    "the data is a one-shot iterator, but every point reads it again: pass a DataLoader, "
                    "a Dataset or an IterableDataset"
                )
        elif isinstance(getattr(data, "sampler", None), RandomSampler):
            raise LinpathError(
                "the DataLoader shuffles, so each point would see other examples: use shuffle=False "
                "(shuffle the data once beforehand)"
            )
        self.loader, self.name = data, name
        try:
            self.length = len(data.dataset) if isinstance(data, DataLoader) else None
        except TypeError:  # an IterableDataset without __len__
            self.length = None

    def batches(self) -> Iterator[Batch]:
        for obj in self.loader:
            yield as_batch(obj)


Tokenizer = Callable[[str], object]  # text -> token ids: a list, a 1-D tensor, or a dict with input_ids


def bytes_tokenizer(text: str) -> list[int]:
    """UTF-8 bytes as token ids (vocabulary 256): a byte-level model's tokenizer."""
    return list(text.encode("utf-8"))


def token_ids(tokenize: Tokenizer, text: str, where: str) -> list[int]:
    """The tokenizer's output for `text` as a list of ints (one line naming `where` if not)."""
    out = tokenize(text)
    if isinstance(out, Mapping) or hasattr(out, "input_ids"):
        out = out["input_ids"] if isinstance(out, Mapping) else out.input_ids
    if isinstance(out, (list, tuple)) and not out:
        return []
    try:
        ids = torch.as_tensor(out)
    except (TypeError, ValueError, RuntimeError):
        ids = None
    if ids is None or ids.dim() != 1 or ids.is_floating_point() or ids.dtype == torch.bool:
        raise LinpathError(
            f"the tokenizer must return a list of token ids; for {where} it returned {type(out).__name__}"
        )
    if len(ids) and int(ids.min()) < 0:
        raise LinpathError(f"the tokenizer returned a negative token id for {where}")
    return ids.tolist()


class TextBlocks:
    """The documents of a .jsonl or .txt file, tokenized, as blocks for a causal language model.

    Each document's tokens are cut into windows of at most seq_len tokens overlapping by one
    (window k starts at token k·(seq_len - 1)), so that every token of a document but its first
    is predicted exactly once, from the tokens before it in its window; a batch is padded to its
    longest window (inputs pad_id, targets IGNORE_INDEX, attention mask 0). Each window carries the UTF-8 bytes it
    scores: the document's bytes × its predicted tokens / the document's predicted tokens, so a
    document's windows add up to its bytes and, over whole documents, bits per byte is exactly
    Σ nats / ln 2 / Σ bytes (a tokenizer that prepends a BOS token has every text token
    predicted). A document of fewer than two tokens scores nothing and is skipped. A .txt file's
    documents are its paragraphs (separated by blank lines, newlines inside kept); a .jsonl
    file's are its lines, each a JSON object with the text under `text_field` (or a string).
    """

    def __init__(
        self,
        path,
        tokenize: Tokenizer,
        seq_len: int,
        batch_size: int = 8,
        text_field: str = "text",
        pad_id: int = 0,
    ):
        self.path = Path(path)
        if not self.path.is_file():
            raise LinpathError(f"no text file {self.path}")
        if isinstance(seq_len, bool) or not isinstance(seq_len, int) or seq_len < 2:
            raise LinpathError(f"the sequence length must be an integer of at least 2, got {seq_len!r}")
        self.tokenize, self.seq_len, self.batch_size = tokenize, seq_len, batch_size
        self.text_field, self.pad_id = text_field, pad_id
        self.name, self.length = self.path.stem, None

    def documents(self) -> Iterator[tuple[str, str]]:
        """(where, text) for each document, read line by line."""
        if self.path.suffix == ".jsonl":
            for number, line in self._lines():
                if line.strip():
                    yield f"{self.path.name}:{number}", self._json_text(line, number)
            return
        lines, first = [], 1
        for number, line in self._lines():
            if line.strip():
                lines.append(line)
                continue
            if lines:
                yield f"{self.path.name}:{first}", "".join(lines).rstrip("\n")
            lines, first = [], number + 1
        if lines:
            yield f"{self.path.name}:{first}", "".join(lines).rstrip("\n")

    def _lines(self) -> Iterator[tuple[int, str]]:
        """(number, line) of the file, each decoded as UTF-8 on its own (so that bytes that are
        not UTF-8 are named by their line, in one line), a Windows line end read as "\\n"."""
        with open(self.path, "rb") as f:
            for number, raw in enumerate(f, 1):
                try:
                    line = raw.decode("utf-8")
                except UnicodeDecodeError as e:
                    raise LinpathError(
                        f"{self.path}:{number}: not UTF-8 text (byte {raw[e.start]:#04x} at column {e.start + 1})"
                    ) from None
                yield number, line[:-2] + "\n" if line.endswith("\r\n") else line

    def _json_text(self, line: str, number: int) -> str:
        record = parse_json(line, f"{self.path}:{number}")
        text = record.get(self.text_field) if isinstance(record, dict) else record
        if not isinstance(text, str):
            raise LinpathError(f"{self.path}:{number}: no text under {self.text_field!r} (--text-field)")
        try:  # JSON's "\ud800" escapes decode to lone surrogates, which no UTF-8 text holds
            text.encode("utf-8")
        except UnicodeEncodeError as e:
            raise LinpathError(
                f"{self.path}:{number}: the text holds {text[e.start]!r}, a lone UTF-16 surrogate (an "
                "escape such as \\ud800 without its pair), which is not a character: fix or drop the line"
            ) from None
        return text

    def windows(self) -> Iterator[tuple[list[int], float]]:
        """(token ids, bytes scored) for each window of each document, in file order."""
        step = self.seq_len - 1
        for where, text in self.documents():
            ids = token_ids(self.tokenize, text, where)
            predicted = len(ids) - 1
            if predicted < 1:
                continue
            nbytes = len(text.encode("utf-8"))
            for start in range(0, predicted, step):
                window = ids[start : start + self.seq_len]
                yield window, nbytes * (len(window) - 1) / predicted

    def batches(self) -> Iterator[Batch]:
        pending = []
        for window in self.windows():
            pending.append(window)
            if len(pending) == self.batch_size:
                yield self._collate(pending)
                pending = []
        if pending:
            yield self._collate(pending)

    def _collate(self, windows: list[tuple[list[int], float]]) -> Batch:
        longest = max(len(ids) for ids, _ in windows)
        inputs = torch.full((len(windows), longest), self.pad_id, dtype=torch.long)
        targets = torch.full((len(windows), longest), IGNORE_INDEX, dtype=torch.long)
        for row, (ids, _) in enumerate(windows):
            inputs[row, : len(ids)] = torch.tensor(ids)
            targets[row, : len(ids)] = torch.tensor(ids)
        nbytes = torch.tensor([b for _, b in windows], dtype=torch.float64)
        return Batch(inputs, targets, nbytes, mask=(targets != IGNORE_INDEX).long())


class ImageFolderStream:
    """An image-folder split (data/imagenet.py's ImageFolderSource: its test transform and
    normalization) decoded batch by batch in its DataLoader workers, never held whole."""

    def __init__(self, source, split: str = "test", batch_size: int = 256, device="cpu"):
        names = ("train",) if split == "train" else ("val", "test")
        self.source, self.items = source, source.tree.labeled(names, source.classes)
        self.batch_size, self.device = batch_size, torch.device(device)
        self.name, self.length = split, len(self.items)

    def batches(self) -> Iterator[Batch]:
        n, size = self.length, self.batch_size
        sampler = [[(i, None) for i in range(j, min(j + size, n))] for j in range(0, n, size)]
        for images, labels in self.source._loader(self.items, sampler, self.device):
            images = self.source.normalize(images.to(self.device, non_blocking=True))
            yield Batch(images, labels.to(self.device, non_blocking=True))


def is_stream(data: object) -> bool:
    """Whether `data` is read as it streams (never materialized): a Stream, an IterableDataset,
    or a DataLoader over one."""
    if isinstance(data, DataLoader):
        return isinstance(data.dataset, IterableDataset)
    return isinstance(data, IterableDataset) or (
        callable(getattr(data, "batches", None)) and hasattr(data, "length")
    )


def as_stream(data, batch_size: int, device: torch.device | str = "cpu", name: str = "custom") -> Stream:
    """`data` as a Stream: a Stream as it is; (inputs, targets[, bytes]) tensors or an EvalSet
    moved to `device` once and sliced (the preloaded fast path); a DataLoader, Dataset or
    IterableDataset read a batch at a time."""
    if callable(getattr(data, "batches", None)) and hasattr(data, "length"):
        return data
    if isinstance(data, SourceSplit):
        if data.streams_images:
            return ImageFolderStream(data.source, data.split, batch_size, device)
        data = data.eval_set(device)
    if isinstance(data, EvalSet):
        return TensorStream(data.inputs.to(device), data.labels.to(device), batch_size, data.name)
    if (
        isinstance(data, (tuple, list))
        and len(data) in (2, 3)
        and all(isinstance(d, torch.Tensor) for d in data)
    ):
        parts = [d.to(device) for d in data]
        if len(parts[0]) == 0:
            raise LinpathError("the data is empty")
        return TensorStream(parts[0], parts[1], batch_size, name, parts[2] if len(parts) == 3 else None)
    if isinstance(data, (DataLoader, Dataset, IterableDataset)) or (
        hasattr(data, "__iter__") and not isinstance(data, (str, bytes, Mapping))
    ):
        return LoaderStream(data, batch_size, name)  # a list of batches too; a one-shot iterator is refused
    raise LinpathError(
        "data must be (inputs, targets) tensors, a Dataset, an IterableDataset, a DataLoader or a "
        f"linpath.data.stream Stream (TextBlocks, ...), got {type(data).__name__}"
    )
