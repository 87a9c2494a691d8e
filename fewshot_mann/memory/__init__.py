"""External memories behind one interface (base.py): LRUA, NTM, DNC and a key-value memory.

Each variant has an Interface layer (controller output -> its Controls) and two forms of the
same step on the same state: `reference`, one episode at a time with each equation as printed
(the specification), and `batched`, all episodes and heads in single batched tensor operations.
`make_memory(name, backend, cfg, label_size)` returns one; MEMORIES is the registry.
"""

from __future__ import annotations

from typing import NamedTuple

from ..config import BACKENDS, MEMORY_NAMES, ModelConfig
from ..errors import ConfigError
from .base import Interface, Memory
from .dnc import BatchedDNC, DNCInterface, ReferenceDNC
from .kv import BatchedKV, KVInterface, ReferenceKV
from .lrua import BatchedLRUA, LRUAInterface, LRUAState, ReferenceLRUA
from .ntm import BatchedNTM, NTMInterface, ReferenceNTM


class Variant(NamedTuple):
    interface: type[Interface]
    reference: type[Memory]
    batched: type[Memory]


MEMORIES: dict[str, Variant] = {
    "lrua": Variant(LRUAInterface, ReferenceLRUA, BatchedLRUA),  # Santoro et al. 2016
    "ntm": Variant(NTMInterface, ReferenceNTM, BatchedNTM),  # Graves et al. 2014
    "dnc": Variant(DNCInterface, ReferenceDNC, BatchedDNC),  # Graves et al. 2016
    "kv": Variant(KVInterface, ReferenceKV, BatchedKV),  # Kaiser et al. 2017
}
assert tuple(MEMORIES) == MEMORY_NAMES, "config.MEMORY_NAMES names the registry's keys"


def make_memory(name: str, backend: str, cfg: ModelConfig, label_size: int) -> Memory:
    if name not in MEMORIES:
        raise ConfigError(f"unknown memory {name!r}; choose one of {list(MEMORIES)}")
    if backend not in BACKENDS:
        raise ConfigError(f"unknown memory backend {backend!r}; choose one of {list(BACKENDS)}")
    return getattr(MEMORIES[name], backend)(cfg, label_size)


__all__ = ["BACKENDS", "MEMORIES", "Interface", "LRUAState", "Memory", "Variant", "make_memory"]
