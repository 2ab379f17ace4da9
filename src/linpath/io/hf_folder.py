"""Hugging Face-style model folders, read one tensor at a time.

A folder written by `save_pretrained` holds config.json and either one `model.safetensors` or
several shards listed in `model.safetensors.index.json` ({"weight_map": {name: shard file}}).
`ModelFolder` reads only the shards' headers up front (names, shapes, dtypes); a tensor's bytes
are read when asked for, through safetensors' memory-mapped `safe_open`, and a `FolderReader`
keeps at most one shard open, so that writing θ(x) tensor by tensor never holds more than one
shard mapped per state, however large the model. Nothing here unpickles anything.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import torch
from safetensors import SafetensorError, safe_open

from linpath.errors import LinpathError
from linpath.io.jsonfile import read_json

INDEX_FILE = "model.safetensors.index.json"
SINGLE_FILE = "model.safetensors"
CONFIG_FILE = "config.json"

# safetensors' dtype names (the header's) as torch dtypes
DTYPES = {
    "F64": torch.float64,
    "F32": torch.float32,
    "F16": torch.float16,
    "BF16": torch.bfloat16,
    "I64": torch.int64,
    "I32": torch.int32,
    "I16": torch.int16,
    "I8": torch.int8,
    "U8": torch.uint8,
    "BOOL": torch.bool,
    "F8_E4M3": torch.float8_e4m3fn,
    "F8_E5M2": torch.float8_e5m2,
}


def is_model_folder(path: object) -> bool:
    """A folder holding model.safetensors or model.safetensors.index.json (a string or a path)."""
    if not isinstance(path, (str, Path)):
        return False
    folder = Path(path)
    return folder.is_dir() and ((folder / INDEX_FILE).is_file() or (folder / SINGLE_FILE).is_file())


@dataclass(frozen=True)
class TensorEntry:
    """Where one tensor lives and what it is, from its shard's header."""

    file: Path
    shape: tuple[int, ...]
    dtype: torch.dtype


def _first_line(e: BaseException) -> str:
    text = str(e).strip()
    return text.splitlines()[0] if text else type(e).__name__


def _shard_files(folder: Path) -> dict[str, Path]:
    """{tensor name: shard} from the index, or {"": the single file} without one."""
    index = folder / INDEX_FILE
    if not index.is_file():
        return {"": folder / SINGLE_FILE}
    weight_map = read_json(index, dict).get("weight_map")
    if not isinstance(weight_map, dict) or not weight_map:
        raise LinpathError(f"model folder {folder}: {INDEX_FILE} has no weight_map entries")
    return {name: shard_path(folder, file) for name, file in weight_map.items()}


def shard_path(folder: Path, file: object) -> Path:
    """A shard the index names: a plain file name inside the folder (an index naming
    "../other.safetensors", a sub-folder or a non-string is refused in one line)."""
    if not isinstance(file, str) or not file or Path(file).name != file or file in (".", ".."):
        raise LinpathError(
            f"model folder {folder}: {INDEX_FILE} names the shard {file!r}, not a file name inside the folder"
        )
    return folder / file


def _header(file: Path) -> dict[str, TensorEntry]:
    """Every tensor of one shard: its shape and dtype (the header only; no tensor is read)."""
    if not file.is_file():
        raise LinpathError(f"model folder {file.parent}: shard {file.name} is missing")
    try:
        with safe_open(str(file), framework="pt") as handle:
            out = {}
            for name in handle.keys():
                piece = handle.get_slice(name)
                dtype = DTYPES.get(piece.get_dtype())
                if dtype is None:
                    raise LinpathError(
                        f"{file}: tensor {name!r} has dtype {piece.get_dtype()}, not supported"
                    )
                out[name] = TensorEntry(file, tuple(piece.get_shape()), dtype)
            return out
    except (SafetensorError, OSError, ValueError) as e:
        raise LinpathError(f"corrupt or truncated safetensors file {file}: {_first_line(e)}") from None


class ModelFolder:
    """The tensors of a model folder by name (`entries`), read lazily with `reader()`."""

    def __init__(self, path: str | Path):
        self.path = Path(path)
        if not is_model_folder(self.path):
            raise LinpathError(
                f"{self.path} is not a model folder (it holds neither {SINGLE_FILE} nor {INDEX_FILE})"
            )
        listed = _shard_files(self.path)
        self.entries: dict[str, TensorEntry] = {}
        for file in sorted(set(listed.values())):
            self.entries.update(_header(file))
        if "" not in listed:
            for name, file in listed.items():
                entry = self.entries.get(name)
                if entry is None or entry.file != file:
                    raise LinpathError(
                        f"model folder {self.path}: {INDEX_FILE} lists {name!r} in {file.name}, which does not hold it"
                    )

    def __len__(self) -> int:
        return len(self.entries)

    def meta(self) -> dict[str, torch.Tensor]:
        """Every tensor as an empty meta tensor of its shape and dtype (no memory), for checks."""
        return {k: torch.empty(e.shape, dtype=e.dtype, device="meta") for k, e in self.entries.items()}

    def reader(self, device: torch.device | str = "cpu") -> FolderReader:
        return FolderReader(self, device)

    def tensors(self) -> Iterator[tuple[str, torch.Tensor]]:
        """Every tensor, one at a time, shard by shard."""
        with self.reader() as reader:
            for name in sorted(self.entries, key=lambda k: (self.entries[k].file, k)):
                yield name, reader.get(name)


class FolderReader:
    """Reads tensors of one ModelFolder with at most one shard open (memory-mapped) at a time:
    asking for a tensor of another shard closes the previous one. Use as a context manager."""

    def __init__(self, folder: ModelFolder, device: torch.device | str = "cpu"):
        self.folder, self.device = folder, str(device)
        self._file: Path | None = None
        self._handle = None

    def get(self, name: str) -> torch.Tensor:
        entry = self.folder.entries[name]
        if entry.file != self._file:
            self.close()
            try:
                self._handle = safe_open(str(entry.file), framework="pt", device=self.device)
            except (SafetensorError, OSError, ValueError) as e:
                raise LinpathError(f"cannot read {entry.file}: {_first_line(e)}") from None
            self._file = entry.file
        try:
            return self._handle.get_tensor(name)
        except (SafetensorError, OSError, ValueError) as e:
            raise LinpathError(f"cannot read {name!r} from {entry.file}: {_first_line(e)}") from None

    def close(self) -> None:
        if self._handle is not None:
            self._handle.__exit__(None, None, None)
        self._handle, self._file = None, None

    def __enter__(self) -> FolderReader:
        return self

    def __exit__(self, *exc) -> None:
        self.close()
