"""External memory with Least-Recently-Used Access (LRUA), Santoro et al. 2016, eqs. 17-23.

Two backends implement the same `step`, on the same state, with the same numbers:

    reference  one episode and one head at a time, each equation as it is printed in the
               paper (vectors, not batches). The specification; slow by design.
    batched    all episodes and all heads of a batch in single batched tensor operations.

`make_memory(backend, ...)` returns either.
"""

from .base import LRUAState, MemoryBackend
from .batched import BatchedLRUA
from .reference import ReferenceLRUA

BACKENDS: dict[str, type[MemoryBackend]] = {"reference": ReferenceLRUA, "batched": BatchedLRUA}


def make_memory(backend: str, slots: int, width: int, heads: int, gamma: float) -> MemoryBackend:
    if backend not in BACKENDS:
        raise ValueError(f"unknown memory backend {backend!r}; choose one of {list(BACKENDS)}")
    return BACKENDS[backend](slots, width, heads, gamma)


__all__ = ["BACKENDS", "BatchedLRUA", "LRUAState", "MemoryBackend", "ReferenceLRUA", "make_memory"]
