"""What every LRUA backend shares: the state it carries from step to step, and its interface.

Notation of Santoro et al. 2016 (sec. 3.1, eqs. 17-23), per episode:
    M_t      memory, slots x width                          `memory`
    w^r_t    read weights, one row per head                 `read_weights`
    w^u_t    usage, eq. 20                                  `usage`
    w^lu_t   least-used weights, eq. 21: 1 on the n slots   `least_used_weights`
             of smallest usage (n = number of read heads)
             the single least-used slot, zeroed before the  `least_used`
             next write
"""

from __future__ import annotations

from typing import NamedTuple

import torch

EPS = 1e-8  # added to the norm product of the cosine (eq. 17), so empty slots read as 0


class LRUAState(NamedTuple):
    memory: torch.Tensor  # (B, slots, width)
    usage: torch.Tensor  # (B, slots)
    read_weights: torch.Tensor  # (B, heads, slots)
    least_used_weights: torch.Tensor  # (B, slots), n ones
    least_used: torch.Tensor  # (B,) int64 slot index


class MemoryBackend:
    """LRUA memory with `slots` x `width` cells read by `heads` heads; usage decay `gamma`."""

    def __init__(self, slots: int, width: int, heads: int, gamma: float) -> None:
        if min(slots, width, heads) < 1:
            raise ValueError("memory slots, width and heads must be positive")
        if heads > slots:
            raise ValueError(f"{heads} read heads need at least {heads} memory slots")
        self.slots, self.width, self.heads, self.gamma = slots, width, heads, gamma

    def initial_state(self, batch: int, device: torch.device, dtype: torch.dtype) -> LRUAState:
        """Empty memory, zero usage, nothing read yet; least used = slots 0..n-1 (ties -> lowest
        index, the rule both backends follow)."""
        least_used_weights = torch.zeros(batch, self.slots, device=device, dtype=dtype)
        least_used_weights[:, :self.heads] = 1.0
        return LRUAState(
            memory=torch.zeros(batch, self.slots, self.width, device=device, dtype=dtype),
            usage=torch.zeros(batch, self.slots, device=device, dtype=dtype),
            read_weights=torch.zeros(batch, self.heads, self.slots, device=device, dtype=dtype),
            least_used_weights=least_used_weights,
            least_used=torch.zeros(batch, dtype=torch.long, device=device),
        )

    def step(self, state: LRUAState, keys: torch.Tensor, write_gates: torch.Tensor,
             strengths: torch.Tensor) -> tuple[torch.Tensor, LRUAState]:
        """One time step: write, then read.

        keys (B, heads, width) k_t; write_gates (B, heads) sigma(alpha); strengths (B, heads)
        the softmax sharpening of the cosine (1.0 = eq. 18 as printed).
        Returns the read vectors r_t (B, heads, width) and the new state.
        """
        raise NotImplementedError
