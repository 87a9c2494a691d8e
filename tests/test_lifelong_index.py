"""KeyIndex: each kind against brute force on small data, ids as positions through set and
remove, the auto kind's switch, bytes round trips, padding."""

from __future__ import annotations

import numpy as np
import pytest

from fewshot_mann.errors import ConfigError
from fewshot_mann.lifelong.index import KeyIndex

KINDS = ("exact", "ivf", "hnsw")
DIM = 16


def unit(n: int, seed: int) -> np.ndarray:
    x = np.random.default_rng(seed).standard_normal((n, DIM)).astype(np.float32)
    return x / np.linalg.norm(x, axis=1, keepdims=True)


def brute(keys: np.ndarray, queries: np.ndarray, k: int) -> np.ndarray:
    """ids (m, min(k, n)) of the largest inner products, best first."""
    return np.argsort(-(queries @ keys.T), axis=1, kind="stable")[:, :k]


def assert_exact(index: KeyIndex, keys: np.ndarray, queries: np.ndarray, k: int = 5) -> None:
    sims, ids = index.search(queries, k)
    expected = brute(keys, queries, k)
    np.testing.assert_array_equal(ids[:, :expected.shape[1]], expected)
    np.testing.assert_allclose(sims[:, :expected.shape[1]],
                               np.take_along_axis(queries @ keys.T, expected, 1), atol=1e-5)
    assert sims.dtype == np.float32 and ids.dtype == np.int64


@pytest.mark.parametrize("kind", KINDS)
def test_each_kind_finds_the_exact_top_k(kind):
    keys, queries = unit(300, 0), unit(20, 1)
    index = KeyIndex(DIM, kind)
    index.add(keys[:200])
    index.add(keys[200:])
    assert index.kind == kind and len(index) == 300
    assert_exact(index, keys, queries)


@pytest.mark.parametrize("kind", KINDS)
def test_set_and_remove_keep_ids_as_positions(kind):
    keys = unit(200, 2)
    index = KeyIndex(DIM, kind)
    index.add(keys)
    new = unit(30, 3)
    index.set(np.arange(0, 60, 2), new)
    keys[0:60:2] = new
    assert_exact(index, keys, keys[:40], k=1)  # every key finds itself at its position
    gone = np.array([150, 3, 77, 4])
    index.remove(gone)
    keys = np.delete(keys, gone, axis=0)
    assert len(index) == len(keys) == 196
    assert_exact(index, keys, keys[::7], k=1)
    assert_exact(index, keys, unit(10, 4))
    index.add(unit(5, 5))
    keys = np.concatenate([keys, unit(5, 5)])
    assert_exact(index, keys, keys[-5:], k=1)
    index.remove(np.arange(150))  # most keys: HNSW's tombstones now outnumber them
    keys = keys[150:]
    assert_exact(index, keys, unit(10, 6))
    if kind == "hnsw":
        assert index._backend.slots == len(index)  # the graph was rebuilt without them


@pytest.mark.parametrize("kind", [*KINDS, "auto"])
def test_random_adds_sets_and_removes_match_brute_force(kind):
    rng = np.random.default_rng(20)
    index = KeyIndex(DIM, kind, threshold=40)
    keys = unit(30, 21)
    index.add(keys)
    kinds_seen = set()
    for step in range(120):
        op = rng.choice(["add", "set", "remove"], p=[0.4, 0.3, 0.3])
        count = int(rng.integers(1, 6))
        if op == "add" or len(keys) < 10:
            new = unit(count, 100 + step)
            index.add(new)
            keys = np.concatenate([keys, new])
        elif op == "set":
            ids = rng.choice(len(keys), count, replace=False)
            new = unit(count, 100 + step)
            index.set(ids, new)
            keys[ids] = new
        else:
            ids = rng.choice(len(keys), count, replace=False)
            index.remove(ids)
            keys = np.delete(keys, ids, axis=0)
        kinds_seen.add(index.kind)
        assert len(index) == len(keys)
        if step % 10 == 9:
            assert_exact(index, keys, keys[::5], k=1)
            assert_exact(index, keys, unit(5, 500 + step))
    if kind == "auto":
        assert kinds_seen == {"exact", "ivf"}


def test_ivf_fits_its_lists_again_as_it_grows_and_hnsw_drops_tombstones():
    keys = unit(80, 22)
    ivf = KeyIndex(DIM, "ivf")
    ivf.add(keys[:16])
    assert ivf.params["nlist"] == 4  # sqrt(16)
    for key in keys[16:]:
        ivf.add(key[None])
    assert ivf.params["nlist"] == 8  # fitted again from 64 keys on
    assert_exact(ivf, keys, unit(10, 23))
    hnsw = KeyIndex(DIM, "hnsw")
    hnsw.add(keys)
    for i in range(80):
        hnsw.set(np.array([i]), keys[i][None])  # each overwrite leaves a tombstone
    assert hnsw._backend.slots == 160
    hnsw.set(np.array([0]), keys[0][None])  # 81 tombstones outnumber the 80 keys
    assert hnsw._backend.slots == 80
    assert_exact(hnsw, keys, unit(10, 24))


def test_auto_switches_kind_at_the_threshold_and_back_below_half_of_it():
    keys = unit(64, 7)
    index = KeyIndex(DIM, "auto", threshold=64)
    index.add(keys[:63])
    assert index.kind == "exact"
    index.add(keys[63:])
    assert index.kind == "ivf"
    assert_exact(index, keys, unit(10, 8))
    index.remove(np.arange(31))  # 33 keys: between half the threshold and it, kept
    assert index.kind == "ivf"
    index.remove(np.array([0, 1]))
    assert index.kind == "exact"
    assert_exact(index, keys[33:], unit(10, 9))
    with pytest.raises(ConfigError, match="unknown index kind"):
        KeyIndex(DIM, "annoy")


@pytest.mark.parametrize("kind", KINDS)
def test_bytes_round_trip(kind):
    keys = unit(120, 10)
    index = KeyIndex(DIM, kind)
    index.add(keys)
    index.remove(np.array([5, 6, 7]))
    keys = np.delete(keys, [5, 6, 7], axis=0)
    data = index.to_bytes()
    loaded = KeyIndex.from_bytes(data, keys, kind)
    assert loaded.kind == kind and len(loaded) == len(keys)
    queries = unit(10, 11)
    for got, want in zip(loaded.search(queries, 5), index.search(queries, 5), strict=True):
        np.testing.assert_array_equal(got, want)
    loaded.add(unit(3, 12))  # slots go on after the loaded ones
    assert_exact(loaded, np.concatenate([keys, unit(3, 12)]), queries)
    assert_exact(KeyIndex.from_bytes(b"", keys, kind), keys, queries)  # rebuilt from keys
    other = "hnsw" if kind == "exact" else "exact"
    assert KeyIndex.from_bytes(data, keys, other).kind == other  # saved as another kind
    stale = keys.copy()
    stale[0] = unit(1, 13)[0]
    with pytest.warns(UserWarning, match="built again"):
        assert_exact(KeyIndex.from_bytes(data, stale, kind), stale, queries)
    with pytest.raises(ValueError, match="not the bytes of a KeyIndex"):
        KeyIndex.from_bytes(data[:40], keys, kind)


@pytest.mark.parametrize("kind", KINDS)
def test_fewer_keys_than_k_pad_with_minus_one_and_minus_inf(kind):
    index = KeyIndex(DIM, kind)
    sims, ids = index.search(unit(2, 14), 3)
    assert (ids == -1).all() and np.isneginf(sims).all() and sims.shape == (2, 3)
    index.add(unit(4, 15))
    index.remove(np.array([1, 2]))
    sims, ids = index.search(unit(2, 16), 4)
    assert sorted(ids[0, :2]) == [0, 1] and (ids[:, 2:] == -1).all()
    assert np.isfinite(sims[:, :2]).all() and np.isneginf(sims[:, 2:]).all()


def test_bad_arguments_are_refused():
    index = KeyIndex(DIM, "exact")
    index.add(unit(3, 17))
    with pytest.raises(ValueError, match=r"must be \(n, 16\)"):
        index.add(np.zeros((2, 8), np.float32))
    with pytest.raises(ValueError, match=r"ids must lie in 0\.\.2"):
        index.remove(np.array([3]))
    with pytest.raises(ValueError, match="must not repeat"):
        index.set(np.array([1, 1]), unit(2, 18))
