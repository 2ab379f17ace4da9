"""States by revision: `hf://ORG/NAME@REVISION` on the Hugging Face Hub, and `MIRROR@REVISION`, a
local folder holding one model folder per revision (MIRROR/step1000/config.json, ...).

Both are sources of model folders (io/hf_folder.py) with one interface:
  revisions()               {revision name: commit hash} (a mirror has no commits: None)
  files(revision, commit)   the revision's model files (config.json, the safetensors index, the
                            *.safetensors shards) with their sizes and sha256, before any
                            download of weights where the Hub gives the hashes
  folder(revision, commit)  the local model folder
The Hub's differ from a mirror's only in the calls to huggingface_hub: revisions from
list_repo_refs (offline: the refs of its cache, scan_cache_dir), hashes from list_repo_tree's
LFS metadata (offline: the cache's blob names, which are the sha256 of LFS files), folders from
snapshot_download (its cache, HF_HUB_OFFLINE, its token handling: a token is passed through,
never read or stored here), only config.json, the index and *.safetensors (and *.py only where
remote code was asked for). A folder is hashed the same way in both: a file that is a link into
a Hugging Face cache's blobs/ takes its blob's name, any other is read (folder_files).

Weights are safetensors only: a revision holding only pickles (pytorch_model.bin, *.pt) is
refused in one line, since loading a pickle can run code. huggingface_hub is imported only here,
and only when the Hub is used (it comes with linpath[hf]).
"""

from __future__ import annotations

import json
import re
from dataclasses import asdict, dataclass
from pathlib import Path

from linpath.errors import LinpathError
from linpath.io.files import file_sha256
from linpath.io.hf_folder import CONFIG_FILE, INDEX_FILE

HUB_SCHEME = "hf://"
WEIGHT_SUFFIX = ".safetensors"
PICKLE_SUFFIXES = (".bin", ".pt", ".pth", ".ckpt", ".pkl")
MODEL_PATTERNS = [CONFIG_FILE, INDEX_FILE, "*" + WEIGHT_SUFFIX]
_SHA256 = re.compile(r"^[0-9a-f]{64}$")
_REPO_ID = re.compile(r"^[A-Za-z0-9][\w.-]*/[\w.-]+$")


@dataclass(frozen=True)
class FileInfo:
    """One file of a revision: its name in the folder, size, sha256; mtime_ns where it was read
    from a local file (a later check reads again only a file whose size or mtime changed)."""

    name: str
    size: int
    sha256: str
    mtime_ns: int | None = None

    def to_json(self) -> dict:
        return {k: v for k, v in asdict(self).items() if k != "name" and v is not None}


def is_model_file(name: str) -> bool:
    """config.json, the safetensors index or a shard, at the folder's top level."""
    return "/" not in name and (name in (CONFIG_FILE, INDEX_FILE) or name.endswith(WEIGHT_SUFFIX))


def check_safetensors_only(names: list[str], where: str) -> None:
    """One line for a revision without safetensors weights (pickles only, or nothing)."""
    if any(n.endswith(WEIGHT_SUFFIX) for n in names):
        return
    pickles = sorted(n for n in names if n.endswith(PICKLE_SUFFIXES))
    if pickles:
        raise LinpathError(
            f"{where} holds only pickled weights ({', '.join(pickles[:3])}): linpath reads safetensors only "
            "(a pickle can run code when loaded); convert them with safetensors' convert script first"
        )
    raise LinpathError(f"{where} holds no weights (no *.safetensors file)")


def blob_sha256(path: Path) -> str | None:
    """The sha256 a Hugging Face cache names a file's content by: a snapshot's file is a link to
    blobs/<sha256> for LFS files (weights); None for any other file."""
    if not path.is_symlink():
        return None
    target = path.resolve()
    return target.name if target.parent.name == "blobs" and _SHA256.match(target.name) else None


def local_file(path: Path) -> FileInfo:
    """A local file's FileInfo: its blob's name in a Hugging Face cache, else read and hashed."""
    st = path.stat()
    return FileInfo(path.name, st.st_size, blob_sha256(path) or file_sha256(path), st.st_mtime_ns)


def folder_files(folder: Path, where: str) -> list[FileInfo]:
    """The model files of a local model folder (see the module's docstring)."""
    if not folder.is_dir():
        raise LinpathError(f"{where}: no folder {folder}")
    names = sorted(p.name for p in folder.iterdir() if p.is_file())
    check_safetensors_only(names, where)
    return [local_file(folder / n) for n in names if is_model_file(n)]


def changed_file(folder: Path, info: FileInfo) -> str | None:
    """Why `folder`'s file differs from its record (None: it is the recorded file): missing,
    another size, or another sha256 (read again only where its mtime changed)."""
    path = folder / info.name
    if not path.is_file():
        return f"{info.name} is missing"
    st = path.stat()
    if st.st_size != info.size:
        return f"{info.name} has {st.st_size} bytes, {info.size} when imported"
    if info.mtime_ns is not None and st.st_mtime_ns == info.mtime_ns:
        return None
    sha = blob_sha256(path) or file_sha256(path)
    return None if sha == info.sha256 else f"{info.name} is not the file imported (sha256 {sha[:12]}…)"


def verify_folder(folder: Path, files: list[FileInfo], where: str) -> None:
    """Refuse a model folder whose files are not the recorded ones, in one line."""
    for info in files:
        if problem := changed_file(folder, info):
            raise LinpathError(
                f"{where} changed since it was imported: {problem} ({folder}); import it again"
            )


def read_config(path: Path, where: str) -> dict:
    try:
        config = json.loads(Path(path).read_text())
    except (OSError, ValueError) as e:
        raise LinpathError(f"{where}: unreadable {CONFIG_FILE} ({e})") from None
    if not isinstance(config, dict):
        raise LinpathError(f"{where}: {CONFIG_FILE} is not a JSON object")
    return config


class MirrorSource:
    """A local folder of revisions, one model folder each (see the module's docstring)."""

    kind = "mirror"

    def __init__(self, root: str | Path):
        self.root = Path(root).resolve()
        if not self.root.is_dir():
            raise LinpathError(f"no folder of revisions at {root}")
        self.name = str(self.root)

    def revisions(self) -> dict[str, str | None]:
        return {p.name: None for p in sorted(self.root.iterdir()) if p.is_dir()}

    def cached_folder(self, revision: str, commit: str | None = None) -> Path | None:
        return self.folder(revision)

    def folder(self, revision: str, commit: str | None = None) -> Path:
        path = self.root / revision
        if not path.is_dir():
            raise LinpathError(f"{self.root} has no revision {revision!r} (no folder {path})")
        return path

    def files(self, revision: str, commit: str | None = None) -> list[FileInfo]:
        return folder_files(self.folder(revision), f"{self.name}@{revision}")

    def config(self, revision: str, commit: str | None = None) -> dict:
        return read_config(self.folder(revision) / CONFIG_FILE, f"{self.name}@{revision}")


def hub():
    """huggingface_hub, or one line saying how to install it."""
    try:
        import huggingface_hub
    except ImportError:
        raise LinpathError(
            "revisions on the Hub (hf://) need huggingface_hub: pip install 'linpath[hf]'"
        ) from None
    return huggingface_hub


def hub_errors() -> tuple[type[BaseException], ...]:
    """What huggingface_hub raises for a repo, revision or file it cannot give (HTTP errors,
    an entry missing from the cache offline, an incomplete snapshot are all OSErrors)."""
    hub()
    from huggingface_hub import errors

    return (OSError, ValueError, errors.EntryNotFoundError, errors.CacheNotFound)


def _first_line(e: BaseException) -> str:
    text = str(e).strip()
    return text.splitlines()[0] if text else type(e).__name__


class HubSource:
    """A model repository on the Hugging Face Hub (see the module's docstring). `api` is an
    HfApi (by default one with `token`); `cache_dir` the cache (default HF_HUB_CACHE)."""

    kind = "hub"

    def __init__(self, repo_id: str, cache_dir=None, token=None, trust_remote_code: bool = False, api=None):
        if not _REPO_ID.match(repo_id):
            raise LinpathError(f"{HUB_SCHEME}{repo_id}: a Hub model is named ORG/NAME")
        self.repo, self.name, self.cache_dir, self.token = repo_id, repo_id, cache_dir, token
        self.patterns = MODEL_PATTERNS + (["*.py"] if trust_remote_code else [])
        self.api = api or hub().HfApi(token=token)

    @property
    def offline(self) -> bool:
        """HF_HUB_OFFLINE, as huggingface_hub reads it."""
        return bool(hub().constants.HF_HUB_OFFLINE)

    def _call(self, what: str, fn, *args, **kwargs):
        try:
            return fn(*args, **kwargs)
        except hub_errors() as e:
            raise LinpathError(f"{HUB_SCHEME}{self.repo}: cannot {what}: {_first_line(e)}") from None

    def revisions(self) -> dict[str, str | None]:
        """{branch or tag: commit}: the Hub's list_repo_refs; offline, the refs in the cache."""
        if self.offline:
            return self._call("list the revisions in the cache", self._cached_refs)
        refs = self._call("list its revisions", self.api.list_repo_refs, self.repo, token=self.token)
        return {ref.name: ref.target_commit for ref in [*refs.branches, *refs.tags]}

    def _cached_refs(self) -> dict[str, str | None]:
        info = hub().scan_cache_dir(self.cache_dir)
        repos = [r for r in info.repos if r.repo_id == self.repo and r.repo_type == "model"]
        refs = {ref: rev.commit_hash for repo in repos for rev in repo.revisions for ref in rev.refs}
        if not refs:
            raise LinpathError(
                f"{HUB_SCHEME}{self.repo} has no revision in the cache (HF_HUB_OFFLINE is set)"
            )
        return refs

    def folder(self, revision: str, commit: str | None = None) -> Path:
        """The revision's model files in the cache, downloaded where missing (the one download)."""
        path = self._call(
            f"get revision {revision!r}",
            hub().snapshot_download,
            self.repo,
            revision=commit or revision,
            cache_dir=self.cache_dir,
            token=self.token,
            allow_patterns=self.patterns,
        )
        return Path(path)

    def cached_folder(self, revision: str, commit: str | None = None) -> Path | None:
        """The revision's model folder where the cache holds all of it, else None (nothing downloaded)."""
        try:
            path = hub().snapshot_download(
                self.repo,
                revision=commit or revision,
                cache_dir=self.cache_dir,
                allow_patterns=self.patterns,
                local_files_only=True,
            )
        except hub_errors():
            return None
        return Path(path)

    def files(self, revision: str, commit: str | None = None) -> list[FileInfo]:
        """The revision's model files: online from the Hub's listing (LFS sha256, no weights
        downloaded; the small JSON files fetched and hashed); offline from the cached folder."""
        where = f"{HUB_SCHEME}{self.repo}@{revision}"
        if self.offline:
            return folder_files(self.folder(revision, commit), where)
        listed = self._call(
            f"list revision {revision!r}", self.api.list_repo_tree, self.repo, revision=commit or revision
        )
        entries = [e for e in listed if hasattr(e, "blob_id")]  # RepoFile, not RepoFolder
        check_safetensors_only([e.path for e in entries], where)
        out = []
        for e in (e for e in entries if is_model_file(e.path)):
            if e.lfs is not None:
                out.append(FileInfo(e.path, int(e.lfs.size), str(e.lfs.sha256)))
            else:
                out.append(FileInfo(e.path, int(e.size), file_sha256(self._small(e.path, revision, commit))))
        return out

    def _small(self, name: str, revision: str, commit: str | None) -> Path:
        """One small file of a revision (config.json, the index), through the cache."""
        return Path(
            self._call(
                f"get {name} of revision {revision!r}",
                hub().hf_hub_download,
                self.repo,
                name,
                revision=commit or revision,
                cache_dir=self.cache_dir,
                token=self.token,
            )
        )

    def config(self, revision: str, commit: str | None = None) -> dict:
        where = f"{HUB_SCHEME}{self.repo}@{revision}"
        return read_config(self._small(CONFIG_FILE, revision, commit), where)


@dataclass(frozen=True)
class StateRef:
    """A state addressed by revision: a Hub repo (hub) or a local folder of revisions."""

    source: str  # ORG/NAME, or the folder
    revision: str | None  # None: the Hub's main branch
    hub: bool


def parse_ref(text: object) -> StateRef | None:
    """`hf://ORG/NAME[@REVISION]`, or `FOLDER@REVISION` where FOLDER/REVISION is a folder; None for
    anything else (a plain path: an '@' in a file name is left alone)."""
    if not isinstance(text, (str, Path)):
        return None
    s = str(text)
    if s.startswith(HUB_SCHEME):
        repo, _, revision = s[len(HUB_SCHEME) :].partition("@")
        if not _REPO_ID.match(repo):
            raise LinpathError(
                f"{s}: write {HUB_SCHEME}ORG/NAME@REVISION (e.g. hf://EleutherAI/pythia-70m@step1000)"
            )
        return StateRef(repo, revision or None, True)
    head, at, revision = s.rpartition("@")
    if at and revision and "/" not in revision and Path(head).is_dir() and (Path(head) / revision).is_dir():
        return StateRef(head, revision, False)
    return None


def open_source(ref: StateRef | str, cache_dir=None, token=None, trust_remote_code: bool = False):
    """The source a reference names: a HubSource or a MirrorSource; a string without a revision
    (hf://ORG/NAME, a folder of revisions) names the whole source."""
    if isinstance(ref, str):
        if ref.startswith(HUB_SCHEME):
            return HubSource(ref[len(HUB_SCHEME) :].split("@")[0], cache_dir, token, trust_remote_code)
        return MirrorSource(ref)
    if ref.hub:
        return HubSource(ref.source, cache_dir, token, trust_remote_code)
    return MirrorSource(ref.source)


def resolve_state(text: object, cache_dir=None, token=None, trust_remote_code: bool = False) -> Path | None:
    """The local model folder of a state addressed by revision (downloaded from the Hub where
    needed), or None when `text` is no such reference (for the resolvers of states)."""
    ref = parse_ref(text)
    if ref is None:
        return None
    source = open_source(ref, cache_dir, token, trust_remote_code)
    return source.folder(ref.revision or "main")
