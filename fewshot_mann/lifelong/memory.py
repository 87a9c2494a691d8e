"""A life-long memory: the key-value memory of Kaiser et al. 2017 ("Learning to Remember Rare
Events", sec. 3) kept on disk beyond any episode, its keys a trained model's embeddings.

    memory = LifelongMemory.create("my_memory/")            # keys of the zoo's encoder
    memory.add("support/", tag="batch-1")                  # class folders, csv:FILE or a dict
    memory.query(["photo.png"])[0].prediction
    memory.forget(tag="batch-1")                           # the bytes leave the disk

Each entry holds the sum of its members' unit keys (its key is their renormalised mean), a
class, the images it was written from and the logical time it was last used. Writing (`add`)
follows the paper's memory update, key by key in order; reading (`query`) returns a query's
nearest entries, as the paper's read returns V[n_1], with the top classes behind it.

Queries leave the files alone unless asked (`touch=True`): the paper resets the age of the
entry it reads, but a reader that writes needs the writers' lock and rewrites the folder, so
queries would wait on each other and on writers, could not read a memory on read-only storage,
and what was asked (including images of no stored class) would decide what is replaced later.
"""

from __future__ import annotations

import os
import warnings
from collections.abc import Iterable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ..data.folder import read_manifest
from ..errors import ConfigError, MemoryStoreError, PredictError
from ..inference.predictor import ImageLike, prepare_all, query_items, support_items
from ..zoo import get, names, resolve_checkpoint, sha256
from .answers import UNKNOWN, Answer
from .index import KeyIndex
from .keyspace import BATCH, KeySpace
from .store import Contents, Member, Settings, Snapshot, Store

NEAREST = 8  # nearest stored keys fetched per new key (more while they are all rows that the
# batch being written has changed)
SHOWN = 5  # names listed in a message


@dataclass
class Added:
    images: int
    new_classes: int
    merged: int  # images that joined an entry of their class
    new_entries: int  # images that took a free slot
    replaced: int  # images that took the slot of the entry unused longest


@dataclass
class Forgotten:
    images: int  # members removed
    entries: int  # entries removed (all their members went)
    reduced: int  # merged entries that lost some members and keep the others


class LifelongMemory:
    """A key-value memory in a folder (`store`), bound to one model's key space (`keyspace`)."""

    def __init__(self, store: Store, keyspace: KeySpace, snapshot: Snapshot,
                 progress: bool = True) -> None:
        self.store, self.keyspace, self.progress = store, keyspace, progress
        self._load(snapshot)

    @property
    def folder(self) -> Path:
        return self.store.folder

    @classmethod
    def create(cls, folder: str | Path, checkpoint: str | Path | None = None,
               capacity: int | None = None, merge: bool = True,
               threshold: float | str | None = "calibrated", views: int | None = None,
               device: str = "auto", progress: bool = True) -> LifelongMemory:
        """An empty memory in a new (or empty) folder. `checkpoint`: a ProtoNets checkpoint or
        zoo name (None: `zoo.default_keyspace()`); `capacity`: most entries (None: no limit);
        `merge`: a key joins its nearest entry when their classes agree; `threshold`: a query
        whose best cosine is below it is answered "unknown" (None: never; "calibrated": the
        zoo's open-set threshold of the model for keys of as many views, None when it has
        none); `views`: distorted copies of each image averaged into its key, for every key
        written and every query (`keyspace`; None: as many as the zoo's threshold of the
        model was calibrated with, 0 when it has none)."""
        if capacity is not None and capacity < 1:
            raise ConfigError(f"capacity must be at least 1 entry, got {capacity}")
        if isinstance(threshold, str) and threshold != "calibrated":
            raise ConfigError(f"threshold is a cosine, 'calibrated' or None; got {threshold!r}")
        keyspace = KeySpace.load(checkpoint, device)
        # the key space is named after its zoo model when it is one (KeySpace.load)
        calibrated = get(keyspace.name).open_set if keyspace.name in names() else {}
        if views is None:
            views = calibrated.get("views", 0)
        keyspace = keyspace.with_views(views)
        if threshold == "calibrated":
            threshold = (calibrated.get("threshold")
                         if calibrated.get("views", 0) == views else None)
            if threshold is None and "threshold" in calibrated:
                warnings.warn(f"the zoo's threshold of {keyspace.name} was calibrated for keys "
                              f"of {calibrated.get('views', 0)} views, not {views}: this memory "
                              f"never answers 'unknown' (pass a threshold to set one)",
                              stacklevel=2)
        if threshold is not None and not -1.0 <= threshold <= 1.0:
            raise ConfigError(f"threshold is a cosine, in -1..1; got {threshold}")
        store = Store(folder)
        store.create(Settings(keyspace.name, str(keyspace.path), keyspace.model_sha256,
                              keyspace.dim, capacity, merge, threshold, views=views))
        return cls(store, keyspace, store.read(), progress)

    @classmethod
    def open(cls, folder: str | Path, checkpoint: str | Path | None = None,
             device: str = "auto", progress: bool = True) -> LifelongMemory:
        """The memory in `folder`, with the model it was made with (None: found by its zoo
        name or file path); a checkpoint of another model is refused."""
        store = Store(folder)
        snapshot = store.read()
        s = snapshot.settings
        if checkpoint is None:
            checkpoint = s.model_name if s.model_name in names() else s.model_path
        path = resolve_checkpoint(checkpoint)
        if not path.is_file():
            raise MemoryStoreError(f"the model of memory {store.folder}, {checkpoint}, is not "
                                   f"found; pass its checkpoint (sha256 {s.model_sha256[:12]}...)")
        if (digest := sha256(path)) != s.model_sha256:
            raise MemoryStoreError(
                f"memory {store.folder} holds keys of model {s.model_name} (sha256 "
                f"{s.model_sha256[:12]}...), and {checkpoint} is another model (sha256 "
                f"{digest[:12]}...): keys of two models are not comparable; open it with its "
                f"own model or create a new memory")
        keyspace = KeySpace.load(checkpoint, device, s.views)
        return cls(store, keyspace, snapshot, progress)

    # ---- the state in memory -----------------------------------------------------------------
    def _load(self, snapshot: Snapshot) -> None:
        self.settings, self.contents = snapshot.settings, snapshot.contents
        self.generation, self.clock = snapshot.generation, snapshot.clock
        self.index = load_index(snapshot)

    def _refresh(self) -> None:
        """Catch up with what other writers committed."""
        if self.store.generation() != self.generation:
            self._load(self.store.read())

    @contextmanager
    def _writing(self) -> Iterator[None]:
        """A read-change-write under the writers' lock, on the newest generation; a failure
        leaves the files as they were and has the state read afresh."""
        with self.store.locked():
            self._refresh()
            try:
                yield
            except BaseException:
                self.generation = -1  # the copy here may be half changed
                raise

    def _commit(self) -> None:
        self.store.write(self.settings, self.generation + 1, self.clock, self.contents,
                         self.index.to_bytes())
        self.generation += 1

    # ---- writing -----------------------------------------------------------------------------
    def add(self, support: str | Path | Mapping[str, Any], tag: str | None = None) -> Added:
        """Write the images of `support` (a folder of class folders, "csv:FILE" with columns
        path,label, or {class: image files or a folder}), new classes or more of known ones,
        each under `tag`. Every file is read and embedded before anything is written: one that
        cannot be read stops the add with the memory unchanged."""
        files = support_files(support)
        paths = [path for group in files.values() for path in group]
        digests = []
        for path in paths:
            try:
                digests.append(sha256(Path(path)))
            except OSError as err:
                raise PredictError(f"{path} cannot be read ({err.strerror or err}); nothing "
                                   f"was added to {self.folder}") from None
        try:
            keys = self.keyspace.keys(paths, self.progress)  # (n, dim)
        except PredictError as err:
            raise PredictError(f"{err}; nothing was added to {self.folder}") from None
        members = [Member(str(p), d, tag) for p, d in zip(paths, digests, strict=True)]
        with self._writing():
            c = self.contents
            known = len(c.classes)
            c.classes += [name for name in files if name not in c.classes]
            label_of = {name: i for i, name in enumerate(c.classes)}
            labels = np.array([label_of[name] for name, group in files.items() for _ in group],
                              np.int64)
            self.clock, tally = remember(c, self.index, keys, labels, members, self.clock,
                                         self.settings.merge, self.settings.capacity)
            c.drop_unused_classes()
            self._commit()
        return Added(len(paths), len(label_of) - known, **tally)

    def forget(self, class_name: str | None = None, tag: str | None = None,
               image: str | Path | None = None) -> Forgotten:
        """Remove a class, the images of a tag, or one image (by the path it was added under)
        from the files themselves: an entry goes with its last member; a merged entry that
        keeps other members has the image's key (the file embedded again, and checked to be
        the bytes that were added) taken out of its sum. Afterwards no file under the folder
        holds the forgotten keys, paths or hashes."""
        given = {k: v for k, v in (("class_name", class_name), ("tag", tag), ("image", image))
                 if v is not None}
        if len(given) != 1:
            raise ConfigError("forget takes one of: a class, a tag, an image")
        with self._writing():
            c = self.contents
            hits = self._matches(class_name, tag, image)  # per entry: its members to remove
            gone = np.array([i for i, h in enumerate(hits) if h and len(h) == c.counts[i]],
                            np.int64)
            reduced = np.array([i for i, h in enumerate(hits) if h and len(h) < c.counts[i]],
                               np.int64)
            taken = [(int(i), c.members[i][j]) for i in reduced for j in hits[i]]
            if taken:
                keys = self._embed_again([m for _, m in taken])
                rows = np.array([i for i, _ in taken], np.int64)
                np.subtract.at(c.sums, rows, keys)
                np.subtract.at(c.counts, rows, 1)
                for i in reduced:
                    c.members[i] = [m for j, m in enumerate(c.members[i]) if j not in hits[i]]
                self.index.set(reduced, c.keys(reduced))
            self.index.remove(gone)
            c.keep(np.setdiff1d(np.arange(len(c)), gone))
            self._commit()
        return Forgotten(sum(map(len, hits)), len(gone), len(reduced))

    def _matches(self, class_name: str | None, tag: str | None,
                 image: str | Path | None) -> list[list[int]]:
        c = self.contents
        if class_name is not None:
            if class_name not in c.classes:
                raise MemoryStoreError(f"memory {self.folder} holds no class {class_name!r}"
                                       f"{listing('its classes', c.classes)}")
            label = c.classes.index(class_name)
            return [list(range(len(m))) if c.labels[i] == label else []
                    for i, m in enumerate(c.members)]
        if tag is not None:
            hits = [[j for j, m in enumerate(ms) if m.tag == tag] for ms in c.members]
            what = f"image tagged {tag!r}"
            tags = sorted({m.tag for ms in c.members for m in ms if m.tag is not None})
            known = listing("its tags", tags)
        else:
            target = os.path.abspath(image)
            hits = [[j for j, m in enumerate(ms)
                     if m.path == str(image) or os.path.abspath(m.path) == target]
                    for ms in c.members]
            what, known = f"image {str(image)!r}", " (images are named by the path they were " \
                                                   "added under)"
        if not any(hits):
            raise MemoryStoreError(f"memory {self.folder} holds no {what}{known}")
        return hits

    def _embed_again(self, members: list[Member]) -> np.ndarray:
        """The keys of members of merged entries, from their files, which must be the bytes
        that were added (their sha256)."""
        for m in members:
            try:
                same = sha256(Path(m.path)) == m.sha256
            except OSError:
                same = False
            if not same:
                raise MemoryStoreError(
                    f"{m.path} was merged with other images of its class, so its key is taken "
                    f"out of their sum by embedding the file again, but the file is gone or has "
                    f"changed since it was added; forget its class or tag instead")
        return self.keyspace.keys([m.path for m in members], self.progress)

    # ---- reading -----------------------------------------------------------------------------
    def query(self, images: ImageLike | Iterable[ImageLike], top_k: int = 5,
              touch: bool = False) -> list[Answer]:
        """An answer per query (files, folders of them, PIL images or prepared tensors), in
        order: its `top_k` nearest classes, each with the cosine of its nearest entry, and the
        prediction (the best class, or "unknown" below the memory's threshold). Unreadable
        queries are answered with the reason (`Answer.skipped`). `touch`: mark the entry each
        query read as just used, as the paper resets its age (this writes the folder)."""
        if top_k < 1:
            raise ConfigError(f"top_k must be at least 1, got {top_k}")
        items = query_items(images)
        if not items:
            raise PredictError("no query images: pass image files, folders of them, PIL images "
                               "or tensors")
        colour: list[str] = []
        read = [prepare_all(self.keyspace.prepare, [item], colour) for item in items]
        skipped = [failed[0] for _, _, failed in read if failed]
        if skipped:
            warnings.warn(f"{len(skipped)} queries could not be read as images; skipped, e.g. "
                          f"{skipped[0][0]}: {skipped[0][1]}", stacklevel=2)
        if colour:
            warnings.warn(f"{len(colour)} queries are in colour; this model takes grayscale, so "
                          f"their colour is dropped as in training, e.g. {colour[:3]}",
                          stacklevel=2)
        prepared = [tensors[0] for _, tensors, _ in read if tensors]  # (C, H, W) each
        keys = (self.keyspace.keys(torch.stack(prepared), self.progress) if prepared
                else np.zeros((0, self.keyspace.dim), np.float32))
        if touch:
            with self._writing():
                found, nearest = self._nearest_classes(keys, top_k)
                for row in nearest:  # one read per query, in order
                    self.clock += 1
                    self.contents.last_used[row] = self.clock
                self._commit()
        else:
            self._refresh()
            found, _ = self._nearest_classes(keys, top_k)
        answers, found_iter = [], iter(found)
        for (name, _), (_, _, failed) in zip(items, read, strict=True):
            if failed:
                answers.append(Answer(name, "", float("nan"), [], failed[0][1]))
                continue
            top = next(found_iter)
            threshold = self.settings.threshold
            unknown = threshold is not None and top[0][1] < threshold
            answers.append(Answer(name, UNKNOWN if unknown else top[0][0], top[0][1], top))
        return answers

    def _nearest_classes(self, keys: np.ndarray, top_k: int
                         ) -> tuple[list[list[tuple[str, float]]], np.ndarray]:
        """keys (m, dim) -> per query its top_k distinct classes with the cosine of each one's
        nearest entry, best first; and the nearest entry of each (m,). Entries are fetched
        4 x top_k at a time, twice as many while a query has not met top_k classes."""
        c = self.contents
        if not len(c):
            raise PredictError(f"memory {self.folder} is empty: add images first "
                               f"(fewshot-mann memory add)")
        want = min(top_k, len(c.classes))
        found: list[list[tuple[str, float]]] = [[] for _ in range(len(keys))]
        nearest = np.zeros(len(keys), np.int64)
        pending, k = np.arange(len(keys)), min(len(c), 4 * top_k)
        while len(pending):
            sims, ids = self.index.search(keys[pending], k)  # (p, k)
            still = []
            for q, row_sims, row_ids in zip(pending, sims, ids, strict=True):
                top: dict[int, float] = {}
                for sim, i in zip(row_sims.tolist(), row_ids.tolist(), strict=True):
                    if i >= 0 and len(top) < want:
                        top.setdefault(int(c.labels[i]), sim)
                if len(top) < want and k < len(c):
                    still.append(q)
                    continue
                found[q] = [(c.classes[label], sim) for label, sim in top.items()]
                nearest[q] = row_ids[0]
            pending, k = np.array(still, np.int64), min(len(c), 2 * k)
        return found, nearest

    def stats(self) -> dict[str, Any]:
        """What the memory holds and what it is: counts, settings, model, size on disk."""
        self._refresh()
        return summary(self.store, self.settings, self.contents, self.generation, self.index)

    def classes(self) -> list[str]:
        self._refresh()
        return list(self.contents.classes)


def load_index(snapshot: Snapshot) -> KeyIndex:
    """The saved index; rebuilt from the keys where there is none, or it cannot be read or
    does not hold every entry."""
    keys, kind = snapshot.contents.keys(), snapshot.settings.index
    try:
        index = KeyIndex.from_bytes(snapshot.index or b"", keys, kind)
    except Exception:  # a saved index this build cannot read: derived data, rebuilt
        index = None
    if index is None or len(index) != len(keys):
        index = KeyIndex.from_bytes(b"", keys, kind)
    return index


def summary(store: Store, s: Settings, c: Contents, generation: int, index: KeyIndex
            ) -> dict[str, Any]:
    return {"folder": str(store.folder), "classes": len(c.classes), "entries": len(c),
            "images": c.images(), "capacity": s.capacity, "merge": s.merge,
            "threshold": s.threshold, "views": s.views, "index": index.kind, "dim": s.dim,
            "model": s.model_name,
            "model_sha256": s.model_sha256, "generation": generation,
            "bytes_on_disk": store.bytes_on_disk()}


def stored_stats(folder: str | Path) -> dict[str, Any]:
    """`LifelongMemory.stats` from the folder alone, without loading the model."""
    store = Store(folder)
    snapshot = store.read()
    return summary(store, snapshot.settings, snapshot.contents, snapshot.generation,
                   load_index(snapshot))


def remember(c: Contents, index: KeyIndex, keys: np.ndarray, labels: np.ndarray,
             members: list[Member], clock: int, merge: bool, capacity: int | None
             ) -> tuple[int, dict[str, int]]:
    """The memory update of Kaiser et al. 2017, sec. 3, for new keys (n, dim) with labels (n,),
    one by one in order (each write changes what the next one finds), BATCH keys per index
    search. For key q with label v, at logical time t (one tick per key):

        n_1 = argmax_i q . K[i]                       the nearest entry (the paper's NN(q, M))
        merge, if on and V[n_1] = v:   sums[n_1] += q, counts[n_1] += 1, last_used[n_1] = t
            (the paper: K[n_1] <- normalize(q + K[n_1]), A[n_1] <- 0; here K[n_1] is the
            renormalised mean of the member keys, so that one member can be taken out again)
        else a new entry (K = q, V = v, last_used = t) in a free slot, or, at capacity, in the
            slot n' unused longest: the paper's n' = argmax_i A[i] with the age A[i] = t -
            last_used[i], ties to the lowest index as the LRUA's least-used slot (Santoro et
            al. 2016, eq. 21; `memory.addressing.least_used`) where the paper draws at random;
            the replaced entry's members leave with it
    Returns the clock after the last key and the counts of merged / new / replaced keys."""
    tally = {"merged": 0, "new_entries": 0, "replaced": 0}
    for start in range(0, len(keys), BATCH):
        stop = start + BATCH
        clock = _remember_batch(c, index, keys[start:stop], labels[start:stop],
                                members[start:stop], clock, merge, capacity, tally)
    return clock, tally


def _remember_batch(c: Contents, index: KeyIndex, keys: np.ndarray, labels: np.ndarray,
                    members: list[Member], clock: int, merge: bool, capacity: int | None,
                    tally: dict[str, int]) -> int:
    """One batch of `remember`. The index is searched once for the whole batch (it holds the
    keys as they were before the batch); rows the batch has written since are compared
    directly, and an index hit on such a row is passed over for the next clean one."""
    before = len(c)
    free = len(keys) if capacity is None else max(0, min(len(keys), capacity - before))
    c.grow(free)
    used = before  # rows in use
    written = np.zeros(before + free, bool)  # rows this batch wrote
    near_sims, near_ids = (index.search(keys, min(NEAREST, before)) if merge and before
                           else (None, None))
    for i, (q, v, member) in enumerate(zip(keys, labels.tolist(), members, strict=True)):
        clock += 1
        row = -1
        if merge:
            row = _nearest(c, index, q, near_sims[i] if before else None,
                           near_ids[i] if before else None, written, used, before)
        if row >= 0 and c.labels[row] == v:  # merge into n_1
            c.sums[row] += q
            c.counts[row] += 1
            c.members[row].append(member)
            tally["merged"] += 1
        else:
            if used < before + free:  # a free slot
                row, used = used, used + 1
                tally["new_entries"] += 1
            else:  # the slot unused longest
                row = int(np.argmin(c.last_used[:used]))
                tally["replaced"] += 1
            c.sums[row], c.counts[row], c.labels[row], c.members[row] = q, 1, v, [member]
        c.last_used[row] = clock
        written[row] = True
    if used < before + free:  # slots grown for keys that merged instead
        c.sums, c.counts, c.labels, c.last_used = (c.sums[:used], c.counts[:used],
                                                   c.labels[:used], c.last_used[:used])
        c.members = c.members[:used]
    rewritten = np.flatnonzero(written[:before])
    index.set(rewritten, c.keys(rewritten))
    index.add(c.keys(slice(before, used)))
    return clock


def _nearest(c: Contents, index: KeyIndex, q: np.ndarray, sims: np.ndarray | None,
             ids: np.ndarray | None, written: np.ndarray, used: int, before: int) -> int:
    """n_1 for key q (dim,): the best of the nearest row the index knows unchanged and the rows
    written in this batch (compared with their keys now); -1 while the memory is empty."""
    best, best_sim = -1, -np.inf
    if ids is not None:
        while True:
            clean = (ids >= 0) & ~written[np.maximum(ids, 0)]
            if clean.any() or len(ids) >= before or (ids < 0).any():
                break
            sims, ids = (a[0] for a in index.search(q[None], min(before, 2 * len(ids))))
        if clean.any():
            first = int(np.argmax(clean))
            best, best_sim = int(ids[first]), float(sims[first])
    changed = np.flatnonzero(written[:used])
    if len(changed):
        changed_sims = c.keys(changed) @ q  # (w,)
        j = int(np.argmax(changed_sims))
        if changed_sims[j] > best_sim:
            best = int(changed[j])
    return best


def support_files(support: str | Path | Mapping[str, Any]) -> dict[str, list[str | Path]]:
    """{class: image files} of a folder of class folders, "csv:FILE" (columns path,label;
    paths relative to the file's folder) or a mapping; image files only, since each entry
    records the files it was written from."""
    if isinstance(support, str) and support.startswith("csv:"):
        items: dict[str, list[Any]] = {}
        for path, label in read_manifest(Path(support[4:]).expanduser()):
            items.setdefault(label, []).append(path)
    else:
        items = support_items(support)
    if not items:
        raise PredictError("the support set holds no classes")
    for name, files in items.items():
        if name == UNKNOWN:
            raise PredictError(f"a class may not be named {UNKNOWN!r}: it is the answer to a "
                               f"query below the threshold; rename the class")
        if not files:
            raise PredictError(f"support class {name!r} holds no images")
        odd = next((f for f in files if not isinstance(f, str | Path)), None)
        if odd is not None:
            raise PredictError(f"support class {name!r}: a life-long memory records the file "
                               f"each key came from, so give image files, not "
                               f"{type(odd).__name__} objects")
    return items


def listing(what: str, names: list[str]) -> str:
    """ " (its classes: a, b, c and 7 more)", or "" for none."""
    if not names:
        return " (it holds none)"
    more = f" and {len(names) - SHOWN} more" if len(names) > SHOWN else ""
    return f" ({what}: {', '.join(names[:SHOWN])}{more})"
