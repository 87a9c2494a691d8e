"""`KeyIndex`: the nearest-neighbour index over the life-long memory's keys, for sparse reads.

A read of the life-long memory looks at the k stored keys most similar to the query and at
nothing else (sparse access memory, Rae et al. 2016; the k nearest neighbours of Kaiser et al.
2017), where the package's episodic memories read every slot, w = softmax(beta K q). Keys are
L2-normalised, so cosine similarity is the inner product:

    sim_i = q . K_i,    the read = the k largest sim_i and their ids    (Kaiser et al., sec. 3)

Ids are positions: row i of the keys in the order added, every row after a removed one moving
down by one, as the caller's own key array does. Kinds (faiss, Johnson et al. 2019):

    exact  IndexFlatIP: every key scanned.
    ivf    IndexIVFFlat (inverted file over a k-means coarse quantiser, Jegou et al. 2011; keys
           kept uncompressed): nlist = the power of two nearest sqrt(n) lists, a query scans
           the IVF_PROBES lists whose centroids are nearest. The clustering is fitted again on
           all keys (seeded) when n grows so that the list count it calls for doubles
           (n x 4): keys that arrive later in a life-long memory are clustered too.
    hnsw   IndexHNSWFlat (Malkov & Yashunin 2018): a layered neighbour graph, HNSW_M links a
           node, HNSW_EF_SEARCH candidates kept while searching. Faiss cannot delete from it,
           so a removed or overwritten key stays in the graph as a tombstone that searches
           skip (an ID selector) until tombstones outnumber live keys; then it is rebuilt.
    auto   exact below `threshold` keys, AUTO_APPROXIMATE from there on, and exact again once
           removals bring n below threshold / 2 (the gap keeps an index near the threshold
           from being rebuilt by alternating adds and removes).

Work per call, n keys stored, d = dim, b keys in the call:
    exact  add O(b d); set O(b d); remove O(n d) (the rows after it shift); search O(n d).
    ivf    add O(b nlist d), and the refit O(n nlist d) each time n quadruples (O(nlist d) a
           key amortised); set O(b nlist d) (each key moves to its new list); remove O(b + n)
           (the position map shifts); search O((nlist + IVF_PROBES n / nlist) d).
    hnsw   add O(b M efConstruction log n); set as add plus b tombstones; remove O(n) (the
           position map); the rebuild when tombstones outnumber live keys O(n M efConstruction
           log n), amortised over the n sets and removes that caused it.
    Measured (results/lifelong/README.md): at 10^6 64-d keys spread from Omniglot embeddings,
    a single top-5 query takes 24 ms exact, 0.28 ms ivf (recall@1 1.0), 0.23 ms hnsw (0.991).
"auto" rebuilds the index when it changes kind: at the threshold, one IVF fit on `threshold`
keys (1.9 s for 2**15 keys on 2 loaded cores, results/lifelong/README.md).

Determinism: exact and ivf give the same index for the same calls, on any number of threads
(k-means seeded). An HNSW
graph built on several threads depends on their timing; its reads are then equal up to the
approximation. Threads: faiss's OpenMP pool as the caller set it (OMP_NUM_THREADS or
faiss.omp_set_num_threads), except that a call with a single key, id or query runs on the
calling thread alone (`_one_thread_if`).

`to_bytes`: MAGIC, the length of a JSON header (8 bytes, little-endian), the header (kind, dim,
count, slots), the slot of each position (int64, approximate kinds), faiss.serialize_index of
the index. No pickle.
"""

from __future__ import annotations

import json
import struct
import warnings
from collections.abc import Iterator
from contextlib import contextmanager

import faiss
import numpy as np

from ..errors import ConfigError

EXACT, IVF, HNSW = "exact", "ivf", "hnsw"
KINDS = ("auto", EXACT, IVF, HNSW)
AUTO_APPROXIMATE = IVF
AUTO_THRESHOLD = 32_768  # keys; below it an exact query takes <= 0.15 ms (results/lifelong/)
IVF_PROBES = 16  # lists scanned a query
IVF_SEED = 1234  # k-means initialisation and sampling
HNSW_M = 16  # links a node; 32 bought no recall per ms of query on Omniglot keys
HNSW_EF_CONSTRUCTION = 40  # candidates kept while inserting
HNSW_EF_SEARCH = 128  # candidates kept while searching
MAGIC = b"FMKEYIDX"
SPOT_CHECKS = 16  # rows compared with the caller's keys when an index is loaded


def ivf_lists(n: int) -> int:
    """The IVF list count for n keys: the power of two nearest sqrt(n) (at least 1)."""
    return 1 << max(0, round(np.log2(max(n, 1)) / 2))


class _Exact:
    """IndexFlatIP: faiss ids are positions already."""

    kind = EXACT

    def __init__(self, index: faiss.IndexFlatIP) -> None:
        self.index = index

    @classmethod
    def build(cls, keys: np.ndarray) -> _Exact:
        index = faiss.IndexFlatIP(keys.shape[1])
        index.add(keys)
        return cls(index)

    def __len__(self) -> int:
        return self.index.ntotal

    def view(self) -> np.ndarray:
        """(n, d) float32: faiss's own key buffer, written in place by `set`."""
        n, d = self.index.ntotal, self.index.d
        if n == 0:
            return np.zeros((0, d), np.float32)
        return faiss.rev_swig_ptr(self.index.get_xb(), n * d).reshape(n, d)

    def rows(self, ids: np.ndarray) -> np.ndarray:
        return self.view()[ids]

    def add(self, keys: np.ndarray) -> None:
        self.index.add(keys)

    def set(self, ids: np.ndarray, keys: np.ndarray) -> None:
        self.view()[ids] = keys

    def remove(self, ids: np.ndarray) -> None:
        self.index.remove_ids(ids)  # IndexFlat compacts in order: later rows move down

    def search(self, queries: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        return self.index.search(queries, k)

    def slot_bytes(self) -> bytes:
        return b""

    def outgrown(self) -> bool:
        return False


def _appended(buffer: np.ndarray, used: int, extra: np.ndarray) -> np.ndarray:
    """buffer[:used] followed by `extra`: in `buffer` when it has room, else in a new one of
    twice the size, so that appending b items costs O(b) amortised."""
    need = used + len(extra)
    if need > len(buffer):
        grown = np.empty(max(need, 2 * len(buffer)), buffer.dtype)
        grown[:used] = buffer[:used]
        buffer = grown
    buffer[used:need] = extra
    return buffer


class _Slotted:
    """A faiss index whose ids are slots, numbers that never shift, mapped to positions:
    slot_of (n,) int64, the slot of each position; position_of (slots,) int64, the position of
    each slot, -1 for a slot no longer in use. New keys take the next slots, in order; both
    maps live in buffers that grow by doubling."""

    kind: str
    index: faiss.Index

    def __init__(self, index: faiss.Index, slot_of: np.ndarray, slots: int) -> None:
        self.index = index
        self.reset(slot_of, slots)

    def reset(self, slot_of: np.ndarray, slots: int) -> None:
        self.count, self.slots = len(slot_of), slots
        self._slot_of = np.array(slot_of, np.int64)
        self._position_of = np.empty(slots, np.int64)
        self.remap()

    @property
    def slot_of(self) -> np.ndarray:
        return self._slot_of[:self.count]

    @property
    def position_of(self) -> np.ndarray:
        return self._position_of[:self.slots]

    def remap(self) -> None:
        """position_of from slot_of: O(n + slots)."""
        self.position_of[:] = -1
        self.position_of[self.slot_of] = np.arange(self.count)

    def take_slots(self, positions: np.ndarray) -> np.ndarray:
        """The next len(positions) slots, recorded as those of `positions`."""
        new = np.arange(self.slots, self.slots + len(positions), dtype=np.int64)
        self._position_of = _appended(self._position_of, self.slots, positions)
        self.slots += len(positions)
        return new

    def append(self, new: np.ndarray) -> None:
        """Positions n, n + 1, ... for the slots `new`."""
        self._slot_of = _appended(self._slot_of, self.count, new)
        self.count += len(new)

    def delete(self, ids: np.ndarray) -> np.ndarray:
        """Drop positions `ids` (later ones move down); their slots."""
        gone = self.slot_of[ids]
        kept = np.delete(self.slot_of, ids)
        self.count = len(kept)
        self._slot_of[:self.count] = kept
        self.remap()
        return gone

    def __len__(self) -> int:
        return self.count

    def rows(self, ids: np.ndarray) -> np.ndarray:
        if len(ids) == 0:
            return np.zeros((0, self.index.d), np.float32)
        return self.index.reconstruct_batch(self.slot_of[ids])

    def positions(self, sims: np.ndarray, slots: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """faiss's answer in slots -> the same in positions (-1 stays -1)."""
        return sims, np.where(slots >= 0, self.position_of[np.maximum(slots, 0)], -1)

    def slot_bytes(self) -> bytes:
        return self.slot_of.astype("<i8").tobytes()


class _IVF(_Slotted):
    """IndexIVFFlat with a hash-table direct map, so that keys are reconstructed, overwritten
    and deleted by slot; a deleted slot is gone from the index."""

    kind = IVF

    @classmethod
    def build(cls, keys: np.ndarray) -> _IVF:
        return cls(*cls.fit(keys))

    @staticmethod
    def fit(keys: np.ndarray) -> tuple[faiss.IndexIVFFlat, np.ndarray, int]:
        """An IVF index fitted to `keys` and holding them in slots 0..n-1."""
        n, d = keys.shape
        index = faiss.IndexIVFFlat(faiss.IndexFlatIP(d), d, ivf_lists(n),
                                   faiss.METRIC_INNER_PRODUCT)
        index.cp.seed = IVF_SEED
        index.cp.min_points_per_centroid = 1  # few keys per list is fine for a small index
        if n:
            index.train(keys)
        index.set_direct_map_type(faiss.DirectMap.Hashtable)
        if n:
            index.add_with_ids(keys, np.arange(n, dtype=np.int64))
        return index, np.arange(n, dtype=np.int64), n

    def outgrown(self) -> bool:
        """Whether n calls for twice the lists or more: then fitted again on all keys."""
        return ivf_lists(self.count) >= 2 * self.index.nlist

    def add(self, keys: np.ndarray) -> None:
        if not self.index.is_trained:  # no key was ever added: fitted on the first ones
            self.index, slot_of, slots = self.fit(keys)
            self.reset(slot_of, slots)
            return
        new = self.take_slots(np.arange(self.count, self.count + len(keys)))
        self.index.add_with_ids(keys, new)
        self.append(new)

    def set(self, ids: np.ndarray, keys: np.ndarray) -> None:
        self.index.update_vectors(self.slot_of[ids], keys)

    def remove(self, ids: np.ndarray) -> None:
        gone = self.delete(ids)
        self.index.remove_ids(faiss.IDSelectorArray(len(gone), faiss.swig_ptr(gone)))

    def search(self, queries: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        if not self.index.is_trained:
            return (np.full((len(queries), k), -np.inf, np.float32),
                    np.full((len(queries), k), -1, np.int64))
        params = faiss.SearchParametersIVF()
        params.nprobe = IVF_PROBES
        return self.positions(*self.index.search(queries, k, params=params))


class _HNSW(_Slotted):
    """IndexHNSWFlat; a slot stays in the graph after its key is removed or overwritten (a
    tombstone), left out of results by a bitmap of the live slots."""

    kind = HNSW

    @classmethod
    def build(cls, keys: np.ndarray) -> _HNSW:
        index = faiss.IndexHNSWFlat(keys.shape[1], HNSW_M, faiss.METRIC_INNER_PRODUCT)
        index.hnsw.efConstruction = HNSW_EF_CONSTRUCTION
        index.add(keys)
        return cls(index, np.arange(len(keys), dtype=np.int64), len(keys))

    def reset(self, slot_of: np.ndarray, slots: int) -> None:
        super().reset(slot_of, slots)
        self.live_bits = np.packbits(self.position_of >= 0, bitorder="little")

    def insert(self, keys: np.ndarray, positions: np.ndarray) -> np.ndarray:
        """Put keys into the graph as the keys of `positions`; their slots."""
        used = -(-self.slots // 8)  # bytes of the bitmap in use
        new = self.take_slots(positions)
        self.index.add(keys)  # faiss numbers them ntotal, ntotal + 1, ...: the slots
        self.live_bits = _appended(self.live_bits, used,
                                   np.zeros(-(-self.slots // 8) - used, np.uint8))
        self.mark(new, live=True)
        return new

    def mark(self, slots: np.ndarray, live: bool) -> None:
        bits = (np.uint8(1) << (slots & 7).astype(np.uint8))
        if live:
            np.bitwise_or.at(self.live_bits, slots >> 3, bits)
        else:
            np.bitwise_and.at(self.live_bits, slots >> 3, ~bits)

    def outgrown(self) -> bool:
        """Whether tombstones outnumber the live keys: then built again from the live keys."""
        return self.slots - self.count > self.count

    def add(self, keys: np.ndarray) -> None:
        self.append(self.insert(keys, np.arange(self.count, self.count + len(keys))))

    def set(self, ids: np.ndarray, keys: np.ndarray) -> None:
        old = self.slot_of[ids]
        self.slot_of[ids] = self.insert(keys, ids)
        self.position_of[old] = -1
        self.mark(old, live=False)

    def remove(self, ids: np.ndarray) -> None:
        self.mark(self.delete(ids), live=False)

    def search(self, queries: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        params = faiss.SearchParametersHNSW()
        params.efSearch = HNSW_EF_SEARCH
        if self.slots > self.count:  # tombstones: only live slots may answer
            params.sel = faiss.IDSelectorBitmap(self.slots, faiss.swig_ptr(self.live_bits))
        return self.positions(*self.index.search(queries, k, params=params))


@contextmanager
def _one_thread_if(single: bool) -> Iterator[None]:
    """Run a call of a single key or query on the calling thread alone: faiss splits work by
    query (or by IVF list when adding), so other threads have nothing to do, yet waking them
    can wait for a scheduler time slice on a loaded machine (results/lifelong/README.md). The
    caller's thread count is restored after."""
    if not single:
        yield
        return
    threads = faiss.omp_get_max_threads()
    faiss.omp_set_num_threads(1)
    try:
        yield
    finally:
        faiss.omp_set_num_threads(threads)


_BACKENDS: dict[str, type[_Exact] | type[_IVF] | type[_HNSW]] = {
    EXACT: _Exact, IVF: _IVF, HNSW: _HNSW}


class KeyIndex:
    """Top-k inner-product search over (n, dim) float32 keys whose ids are their positions.

    kind: "auto" (exact below `threshold` keys, AUTO_APPROXIMATE from it on), "exact", "ivf"
    or "hnsw"; see the module's docstring for what each costs.
    """

    def __init__(self, dim: int, kind: str = "auto", threshold: int = AUTO_THRESHOLD) -> None:
        if kind not in KINDS:
            raise ConfigError(f"unknown index kind {kind!r}; choose one of {', '.join(KINDS)}")
        if dim < 1 or threshold < 1:
            raise ConfigError(f"an index needs dim >= 1 and threshold >= 1, got dim={dim}, "
                              f"threshold={threshold}")
        self.dim, self.requested, self.threshold = dim, kind, threshold
        self._backend: _Exact | _IVF | _HNSW = _BACKENDS[self._target(0)].build(
            np.zeros((0, dim), np.float32))

    @property
    def kind(self) -> str:
        """The kind in use now: "exact", "ivf" or "hnsw"."""
        return self._backend.kind

    def __len__(self) -> int:
        return len(self._backend)

    @property
    def params(self) -> dict[str, int]:
        """The parameters of the kind in use: nlist and nprobe (ivf), M, efConstruction and
        efSearch (hnsw), none (exact)."""
        if self.kind == IVF:
            return {"nlist": self._backend.index.nlist, "nprobe": IVF_PROBES}
        if self.kind == HNSW:
            return {"M": HNSW_M, "efConstruction": HNSW_EF_CONSTRUCTION,
                    "efSearch": HNSW_EF_SEARCH}
        return {}

    # ---- which kind ---------------------------------------------------------------------
    def _target(self, n: int) -> str:
        """The kind to build for n keys."""
        if self.requested != "auto":
            return self.requested
        return AUTO_APPROXIMATE if n >= self.threshold else EXACT

    def _fits(self, kind: str, n: int) -> bool:
        """Whether an index of `kind` may hold n keys: auto keeps either kind between
        threshold / 2 and threshold."""
        if self.requested != "auto" or n >= self.threshold or 2 * n < self.threshold:
            return kind == self._target(n)
        return kind in (EXACT, AUTO_APPROXIMATE)

    def _settle(self) -> None:
        """Build the index again from its keys when n calls for another kind, or when the one
        in use has outgrown its structure (IVF lists, HNSW tombstones); on the caller's
        threads, also after a call of a single key."""
        n = len(self)
        if not self._fits(self.kind, n) or self._backend.outgrown():
            keys = self._backend.rows(np.arange(n))
            self._backend = _BACKENDS[self._target(n)].build(keys)

    # ---- arguments ----------------------------------------------------------------------
    def _keys(self, keys: np.ndarray, what: str = "keys") -> np.ndarray:
        keys = np.ascontiguousarray(keys, dtype=np.float32)
        if keys.ndim != 2 or keys.shape[1] != self.dim:
            raise ValueError(f"{what} must be (n, {self.dim}), got {keys.shape}")
        if not np.isfinite(keys).all():
            raise ValueError(f"{what} hold NaN or infinite values")
        return keys

    def _ids(self, ids: np.ndarray) -> np.ndarray:
        ids = np.asarray(ids)
        if ids.ndim != 1 or (ids.size and not np.issubdtype(ids.dtype, np.integer)):
            raise ValueError(f"ids must be a 1-d integer array, got {ids.dtype} {ids.shape}")
        ids = ids.astype(np.int64)
        if ids.size and (ids.min() < 0 or ids.max() >= len(self)):
            raise ValueError(f"ids must lie in 0..{len(self) - 1}, got {ids.min()}..{ids.max()}")
        if len(np.unique(ids)) != len(ids):
            raise ValueError("ids must not repeat")
        return ids

    # ---- the calls ----------------------------------------------------------------------
    def add(self, keys: np.ndarray) -> None:
        """Append keys (n, dim) float32; their ids are len(self), len(self) + 1, ..."""
        keys = self._keys(keys)
        if len(keys):
            with _one_thread_if(len(keys) == 1):
                self._backend.add(keys)
            self._settle()

    def set(self, ids: np.ndarray, keys: np.ndarray) -> None:
        """Overwrite the keys at positions `ids` (distinct) with `keys` (len(ids), dim)."""
        ids, keys = self._ids(ids), self._keys(keys)
        if len(ids) != len(keys):
            raise ValueError(f"set got {len(ids)} ids and {len(keys)} keys")
        if len(ids):
            with _one_thread_if(len(ids) == 1):
                self._backend.set(ids, keys)
            self._settle()

    def remove(self, ids: np.ndarray) -> None:
        """Remove the keys at positions `ids` (distinct); every later key moves down."""
        ids = self._ids(ids)
        if len(ids):
            with _one_thread_if(len(ids) == 1):
                self._backend.remove(np.sort(ids))
            self._settle()

    def search(self, queries: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        """queries (m, dim) -> sims (m, k) float32 and ids (m, k) int64 of the k keys of
        largest inner product, best first; id -1 and sim -inf where fewer than k are stored."""
        queries = self._keys(queries, "queries")
        if k < 1:
            raise ValueError(f"k must be >= 1, got {k}")
        if len(self) == 0 or len(queries) == 0:
            return (np.full((len(queries), k), -np.inf, np.float32),
                    np.full((len(queries), k), -1, np.int64))
        with _one_thread_if(len(queries) == 1):
            sims, ids = self._backend.search(queries, k)
        sims = np.where(ids >= 0, sims, -np.inf).astype(np.float32)
        return sims, ids.astype(np.int64)

    # ---- bytes --------------------------------------------------------------------------
    def to_bytes(self) -> bytes:
        """The index as bytes (the format: the module's docstring)."""
        backend = self._backend
        header = json.dumps({"kind": backend.kind, "dim": self.dim, "count": len(self),
                             "slots": getattr(backend, "slots", len(self))}).encode()
        body = faiss.serialize_index(backend.index).tobytes()
        return MAGIC + struct.pack("<Q", len(header)) + header + backend.slot_bytes() + body

    @classmethod
    def from_bytes(cls, data: bytes, keys: np.ndarray, kind: str,
                   threshold: int = AUTO_THRESHOLD) -> KeyIndex:
        """The index `to_bytes` wrote, for `keys` (n, dim), the keys it indexes in position
        order. Built again from `keys` when `data` is b"", when it was saved as a kind that
        `kind` does not use for n keys, or (with a warning) when it does not hold `keys`.
        Raises ValueError when `data` is not an index's bytes."""
        keys = np.asarray(keys)
        if keys.ndim != 2:
            raise ValueError(f"keys must be (n, dim), got {keys.shape}")
        index = cls(keys.shape[1], kind, threshold)
        keys = index._keys(keys)
        loaded = _parse(data) if data else None
        if loaded is not None and index._fits(loaded.kind, len(keys)):
            spots = np.unique(np.linspace(0, len(keys) - 1, min(len(keys), SPOT_CHECKS),
                                          dtype=np.int64))
            if len(loaded) == len(keys) and loaded.index.d == keys.shape[1] and np.array_equal(
                    loaded.rows(spots), keys[spots]):
                index._backend = loaded
                return index
            warnings.warn("the saved nearest-neighbour index does not hold the memory's keys; "
                          "it is built again from them", stacklevel=2)
        index._backend = _BACKENDS[index._target(len(keys))].build(keys)
        return index


def _parse(data: bytes) -> _Exact | _IVF | _HNSW:
    """The backend `KeyIndex.to_bytes` serialised in `data`."""
    try:
        if not data.startswith(MAGIC):
            raise ValueError("no header")
        at = len(MAGIC) + 8
        (length,) = struct.unpack("<Q", data[len(MAGIC):at])
        header = json.loads(data[at:at + length])
        at += length
        kind, count, slots = header["kind"], int(header["count"]), int(header["slots"])
        index = faiss.deserialize_index(np.frombuffer(
            data, np.uint8, offset=at + (8 * count if kind != EXACT else 0)))
        if kind == EXACT:
            return _Exact(index)
        slot_of = np.frombuffer(data, "<i8", count, at).astype(np.int64)
        return _BACKENDS[kind](index, slot_of, slots)
    except (ValueError, KeyError, TypeError, struct.error, RuntimeError) as e:
        raise ValueError(f"not the bytes of a KeyIndex ({e})") from None
