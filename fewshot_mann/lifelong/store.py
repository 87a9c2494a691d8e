"""The life-long memory's files: a folder that is read whole or not at all.

    DIR/manifest.json            what the memory is and which files hold it (below)
    DIR/arrays-<G>.safetensors   per entry: sums (n, dim) float32, the unnormalised sum of its
                                 members' keys; counts (n,) int64; labels (n,) int64, an index
                                 into the class list; last_used (n,) int64, a logical clock
    DIR/meta-<G>.json            the class names, and per entry its members: each the image
                                 path as given, the sha256 of the image file's bytes, a tag
    DIR/index-<G>.bin            the search index (`index.KeyIndex.to_bytes`), where it has
                                 bytes of its own; absent, damaged or stale: rebuilt from the keys
    DIR/.lock                    taken (fcntl) by a writer for the whole of its change

The manifest (JSON) names the format and its version, the model the keys come from (name,
path, sha256 of its checkpoint file), the key width, the capacity, the merge flag, the
threshold, the generation number G, the logical clock, and each data file with its sha256.
Nothing is pickled: arrays are safetensors, the rest JSON.

Writing (one writer at a time, under the lock): the new generation's files are written
(temporary file, fsync, rename), the folder synced, then the manifest replaced in one
os.replace, then every file of earlier generations (and any a killed writer left) deleted.
A kill at any moment leaves a manifest naming a complete generation: the old one or the new.
Reading takes no lock: the manifest once, then its files, each checked against its sha256;
when a file is missing or differs and the manifest has meanwhile moved to a newer
generation (a writer deleted the one being read), the read starts once more.
"""

from __future__ import annotations

import fcntl
import hashlib
import json
import os
import re
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from safetensors.numpy import load as load_arrays
from safetensors.numpy import save as save_arrays

from ..errors import MemoryStoreError
from ..runtime import atomic_write

FORMAT = "fewshot-mann-lifelong-memory"
VERSION = 1
MANIFEST = "manifest.json"
LOCK = ".lock"
DATA_FILE = re.compile(r"(arrays|meta|index)-\d+\.(safetensors|json|bin)")
PARTIAL_FILE = re.compile(r"\.(manifest\.json|(arrays|meta|index)-\d+\.\w+)\..*\.tmp")
ARRAYS = {"sums": np.float32, "counts": np.int64, "labels": np.int64, "last_used": np.int64}


@dataclass(frozen=True)
class Settings:
    """What a memory is, fixed when it is created."""

    model_name: str  # a zoo name, or the checkpoint file's absolute path
    model_path: str  # the checkpoint file it was created with
    model_sha256: str  # of that file: keys of another model are not comparable
    dim: int  # key width
    capacity: int | None  # most entries; None: no limit, nothing is ever replaced
    merge: bool  # a new key joins its nearest entry when their classes agree
    threshold: float | None  # below this cosine a query is "unknown"; None: never
    index: str = "auto"  # the search index's kind (`index.KeyIndex`)
    views: int = 0  # distorted copies of each image averaged into its key (`keyspace`)


@dataclass
class Member:
    """An image an entry was written from."""

    path: str  # as given when it was added
    sha256: str  # of the file's bytes
    tag: str | None = None


@dataclass
class Contents:
    """Entry i: key sums[i] / |sums[i]|, class classes[labels[i]], written from members[i]."""

    sums: np.ndarray  # (n, dim) float32
    counts: np.ndarray  # (n,) int64: len(members[i])
    labels: np.ndarray  # (n,) int64
    last_used: np.ndarray  # (n,) int64
    classes: list[str]
    members: list[list[Member]] = field(default_factory=list)

    @classmethod
    def empty(cls, dim: int) -> Contents:
        return cls(np.zeros((0, dim), np.float32), *(np.zeros(0, np.int64) for _ in range(3)),
                   classes=[], members=[])

    def __len__(self) -> int:
        return len(self.counts)

    def keys(self, rows: np.ndarray | slice = slice(None)) -> np.ndarray:
        """The unit keys (the renormalised mean of the members' keys) of `rows`: (r, dim)."""
        sums = self.sums[rows]
        return sums / np.linalg.norm(sums, axis=-1, keepdims=True).clip(1e-12)

    def grow(self, rows: int) -> None:
        """`rows` blank entries at the end, to be written."""
        self.sums = np.concatenate([self.sums, np.zeros((rows, self.sums.shape[1]), np.float32)])
        self.counts, self.labels, self.last_used = (
            np.concatenate([a, np.zeros(rows, np.int64)])
            for a in (self.counts, self.labels, self.last_used))
        self.members += [[] for _ in range(rows)]

    def keep(self, rows: np.ndarray) -> None:
        """Keep these entries (in this order), physically dropping the others, then the class
        names no entry holds any more."""
        self.sums, self.counts = self.sums[rows], self.counts[rows]
        self.labels, self.last_used = self.labels[rows], self.last_used[rows]
        self.members = [self.members[i] for i in rows]
        self.drop_unused_classes()

    def drop_unused_classes(self) -> None:
        """Forget the names of classes no entry holds (replaced or forgotten ones)."""
        used = np.unique(self.labels)  # sorted: classes keep their order
        remap = np.zeros(len(self.classes), np.int64)
        remap[used] = np.arange(len(used))
        self.classes = [self.classes[i] for i in used]
        self.labels = remap[self.labels]

    def images(self) -> int:
        return int(self.counts.sum())


@dataclass
class Snapshot:
    """One generation as read: the settings, the contents and the saved index (None where
    absent or unusable)."""

    settings: Settings
    generation: int
    clock: int  # the logical time of the last write or read that moved last_used
    contents: Contents
    index: bytes | None


class Store:
    """A memory folder: create, read, write a new generation, lock."""

    def __init__(self, folder: str | Path) -> None:
        self.folder = Path(folder).expanduser()
        self.manifest_path = self.folder / MANIFEST

    def create(self, settings: Settings) -> None:
        """An empty memory in a new or empty folder (or one that a create killed before its
        manifest was written left)."""
        if self.manifest_path.exists():
            raise MemoryStoreError(f"{self.folder} holds a memory already; open it, or choose "
                                   f"a new folder")
        if self.folder.exists() and (not self.folder.is_dir() or any(
                not (p.name == LOCK or DATA_FILE.fullmatch(p.name)
                     or PARTIAL_FILE.fullmatch(p.name)) for p in self.folder.iterdir())):
            raise MemoryStoreError(f"{self.folder} exists and is not an empty folder; choose "
                                   f"a new folder")
        self.folder.mkdir(parents=True, exist_ok=True)
        (self.folder / LOCK).touch()
        with self.locked():
            self.write(settings, 0, 0, Contents.empty(settings.dim), b"")

    # ---- reading -----------------------------------------------------------------------------
    def read(self) -> Snapshot:
        """The current generation, every file checked; once more if a writer replaced it while
        it was read; MemoryStoreError naming what is missing or damaged."""
        for _ in range(2):
            manifest = self.manifest()
            try:
                return self._read(manifest)
            except MemoryStoreError:
                if self.generation() == manifest["generation"]:
                    raise  # damaged, not replaced
        raise MemoryStoreError(f"memory {self.folder} was rewritten twice while it was read; "
                               f"try again")

    def manifest(self) -> dict[str, Any]:
        try:
            manifest = json.loads(self.manifest_path.read_bytes())
        except FileNotFoundError:
            raise MemoryStoreError(f"no life-long memory at {self.folder} (no {MANIFEST}); make "
                                   f"one with `fewshot-mann memory create {self.folder}`"
                                   ) from None
        except ValueError as err:
            raise MemoryStoreError(f"{self.manifest_path} is damaged: {err}") from None
        if not isinstance(manifest, dict) or manifest.get("format") != FORMAT:
            raise MemoryStoreError(f"{self.manifest_path} is not a {FORMAT} manifest")
        if not isinstance(manifest.get("generation"), int):
            raise MemoryStoreError(f"{self.manifest_path} is damaged: it names no generation")
        if manifest.get("version") != VERSION:
            raise MemoryStoreError(f"{self.manifest_path} is version {manifest.get('version')} "
                                   f"of the memory format; this fewshot-mann reads version "
                                   f"{VERSION}")
        return manifest

    def generation(self) -> int:
        return self.manifest()["generation"]

    def _read(self, manifest: dict[str, Any]) -> Snapshot:
        try:
            files = manifest["files"]
            settings = Settings(**manifest["settings"])
            generation, clock = manifest["generation"], int(manifest["clock"])
            names = [files[role]["name"] for role in ("arrays", "meta")]
        except (KeyError, TypeError, ValueError) as err:
            raise MemoryStoreError(f"{self.manifest_path} is damaged: {type(err).__name__} "
                                   f"{err}") from None
        arrays = self._checked(files["arrays"])
        meta = self._checked(files["meta"])
        try:
            loaded = load_arrays(arrays)
            tables = {name: loaded[name].astype(kind, copy=False) for name, kind in ARRAYS.items()}
            described = json.loads(meta)
            contents = Contents(**tables, classes=list(described["classes"]),
                                members=[[Member(**m) for m in entry]
                                         for entry in described["members"]])
        except Exception as err:  # safetensors and json raise many kinds on bad bytes
            raise MemoryStoreError(f"memory {self.folder} is damaged: {' or '.join(names)} "
                                   f"cannot be read: {err}") from None
        n = len(contents)
        if not (contents.sums.shape == (n, settings.dim) and len(contents.labels) == n
                and len(contents.last_used) == n and len(contents.members) == n
                and all(len(m) == c for m, c in zip(contents.members, contents.counts.tolist(),
                                                    strict=True))):
            raise MemoryStoreError(f"memory {self.folder} is damaged: its arrays and its "
                                   f"members disagree")
        index = None
        if "index" in files:
            try:
                index = self._checked(files["index"])
            except MemoryStoreError:
                index = None  # derived data: rebuilt from the keys
        return Snapshot(settings, generation, clock, contents, index)

    def _checked(self, entry: dict[str, Any]) -> bytes:
        path = self.folder / entry["name"]
        try:
            data = path.read_bytes()
        except FileNotFoundError:
            raise MemoryStoreError(f"memory {self.folder} is damaged: {entry['name']} is "
                                   f"missing") from None
        digest = hashlib.sha256(data).hexdigest()
        if digest != entry["sha256"]:
            raise MemoryStoreError(f"memory {self.folder} is damaged: {entry['name']} has "
                                   f"sha256 {digest[:12]}..., the manifest's is "
                                   f"{entry['sha256'][:12]}...")
        return data

    # ---- writing -----------------------------------------------------------------------------
    @contextmanager
    def locked(self) -> Iterator[None]:
        """The writers' lock, held for a read-change-write."""
        with open(self.folder / LOCK, "a") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(lock, fcntl.LOCK_UN)

    def write(self, settings: Settings, generation: int, clock: int, contents: Contents,
              index: bytes) -> None:
        """Make `generation` current (the caller holds the lock): its files, then the
        manifest, then the earlier generations' files deleted."""
        described = {"classes": contents.classes,
                     "members": [[asdict(m) for m in entry] for entry in contents.members]}
        blobs = {"arrays": (f"arrays-{generation:08d}.safetensors",
                            save_arrays({name: np.ascontiguousarray(getattr(contents, name),
                                                                    dtype=kind)
                                         for name, kind in ARRAYS.items()})),
                 "meta": (f"meta-{generation:08d}.json", json.dumps(described).encode())}
        if index:
            blobs["index"] = (f"index-{generation:08d}.bin", index)
        for name, data in blobs.values():
            atomic_write(self.folder / name, lambda f, data=data: f.write(data))
        manifest = {"format": FORMAT, "version": VERSION, "generation": generation,
                    "clock": clock, "settings": asdict(settings),
                    "entries": len(contents), "images": contents.images(),
                    "files": {role: {"name": name, "sha256": hashlib.sha256(data).hexdigest(),
                                     "bytes": len(data)}
                              for role, (name, data) in blobs.items()}}
        sync_folder(self.folder)  # the new files exist before the manifest names them
        atomic_write(self.manifest_path,
                     lambda f: f.write(json.dumps(manifest, indent=1).encode() + b"\n"))
        sync_folder(self.folder)
        current = {name for name, _ in blobs.values()}
        for path in self.folder.iterdir():
            if ((DATA_FILE.fullmatch(path.name) and path.name not in current)
                    or PARTIAL_FILE.fullmatch(path.name)):
                path.unlink(missing_ok=True)
        sync_folder(self.folder)

    def bytes_on_disk(self) -> int:
        return sum(p.stat().st_size for p in self.folder.iterdir() if p.is_file())


def sync_folder(folder: Path) -> None:
    """fsync a folder, so that the names created or replaced in it are on disk."""
    fd = os.open(folder, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
