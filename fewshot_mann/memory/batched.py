"""LRUA for a whole batch: every head of every episode in single batched tensor operations.

Same equations and same tie-breaking as `reference.py`; the loop over time steps lives in the
model, nothing here loops. Shapes: B episodes, H heads, N slots, W width.
"""

from __future__ import annotations

import torch

from .base import EPS, LRUAState, MemoryBackend


def least_used(usage: torch.Tensor, n: int) -> torch.Tensor:
    """Indices (B, n) of the n smallest usages per row, ties to the lowest index (eq. 21).

    A top-k over one int64 key per slot, (float bits of usage) << log2(N) | slot index, instead of
    sorting: usage is >= 0, so its float32 bit pattern orders like the value, and the low bits
    break ties exactly as a stable sort does.
    """
    slots = usage.shape[-1]
    shift = max(1, (slots - 1).bit_length())
    bits = usage.detach().float().contiguous().view(torch.int32).to(torch.int64)
    key = (bits << shift) | torch.arange(slots, device=usage.device)
    return key.topk(n, dim=-1, largest=False, sorted=True).indices


class BatchedLRUA(MemoryBackend):
    def step(self, state: LRUAState, keys: torch.Tensor, write_gates: torch.Tensor,
             strengths: torch.Tensor) -> tuple[torch.Tensor, LRUAState]:
        gate = write_gates.unsqueeze(-1)  # (B, H, 1)
        # eq. 22, all heads: (B, H, N)
        least_used_weights = state.least_used_weights.unsqueeze(1)  # (B, 1, N)
        write_weights = gate * state.read_weights + (1 - gate) * least_used_weights
        # zero the least-used slot, then eq. 23 for all heads as one batched matmul:
        # M_t = M_{t-1} * keep + (w^w)^T k    (B, N, H) @ (B, H, W) -> (B, N, W)
        keep = torch.ones_like(state.usage).scatter_(1, state.least_used.unsqueeze(1), 0.0)
        if torch.is_grad_enabled():
            memory = torch.baddbmm(state.memory * keep.unsqueeze(-1),
                                   write_weights.transpose(1, 2), keys)
        else:  # inference: overwrite the (B, N, W) memory in place, no new tensor per step
            memory = state.memory.mul_(keep.unsqueeze(-1)).baddbmm_(
                write_weights.transpose(1, 2), keys)
        # eq. 17 for all heads: (B, H, W) @ (B, W, N) -> (B, H, N)
        norms = memory.norm(dim=-1).unsqueeze(1) * keys.norm(dim=-1, keepdim=True)  # (B, H, N)
        cosine = torch.bmm(keys, memory.transpose(1, 2)) / (norms + EPS)
        read_weights = torch.softmax(strengths.unsqueeze(-1) * cosine, dim=-1)  # eq. 18
        reads = torch.bmm(read_weights, memory)  # eq. 19, (B, H, W)
        usage = self.gamma * state.usage + read_weights.sum(1) + write_weights.sum(1)  # eq. 20
        order = least_used(usage, self.heads)  # eq. 21, (B, H)
        least_used_weights = torch.zeros_like(usage).scatter_(1, order, 1.0)
        return reads, LRUAState(memory, usage, read_weights, least_used_weights, order[:, 0])
