"""Nearest stored keys by inner product (cosine, the keys being unit vectors): exact, numpy."""

import numpy as np

from ..errors import ConfigError


class KeyIndex:
    """Keys (n, dim) float32, their ids their positions in the order added. `search`: best
    first, padded with id -1 and similarity -inf where fewer than k keys are stored."""

    def __init__(self, dim: int, kind: str = "auto") -> None:
        if kind not in ("auto", "exact"):
            raise ConfigError(f"unknown index kind {kind!r}; use auto or exact")
        self.dim, self._keys = dim, np.zeros((0, dim), np.float32)

    @property
    def kind(self) -> str:
        return "exact"

    def __len__(self) -> int:
        return len(self._keys)

    def add(self, keys: np.ndarray) -> None:
        self._keys = np.concatenate([self._keys, np.asarray(keys, np.float32)])

    def set(self, ids: np.ndarray, keys: np.ndarray) -> None:
        self._keys[ids] = keys

    def remove(self, ids: np.ndarray) -> None:
        self._keys = np.delete(self._keys, ids, axis=0)

    def search(self, queries: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        m, found = len(queries), min(k, len(self))
        sims, ids = np.full((m, k), -np.inf, np.float32), np.full((m, k), -1, np.int64)
        if found:
            all_sims = queries @ self._keys.T  # (m, n)
            ids[:, :found] = np.argsort(-all_sims, axis=1, kind="stable")[:, :found]
            sims[:, :found] = np.take_along_axis(all_sims, ids[:, :found], axis=1)
        return sims, ids

    def to_bytes(self) -> bytes:
        return b""  # exact: rebuilt from the stored keys

    @classmethod
    def from_bytes(cls, data: bytes, keys: np.ndarray, kind: str) -> "KeyIndex":
        index = cls(keys.shape[1], kind)
        index.add(keys)
        return index
