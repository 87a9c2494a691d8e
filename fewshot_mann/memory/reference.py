"""The specification: LRUA one episode and one head at a time, equation by equation."""

from __future__ import annotations

import torch

from .base import EPS, LRUAState, MemoryBackend


class ReferenceLRUA(MemoryBackend):
    def step(self, state: LRUAState, keys: torch.Tensor, write_gates: torch.Tensor,
             strengths: torch.Tensor) -> tuple[torch.Tensor, LRUAState]:
        per_episode = [
            self.episode_step(LRUAState(*(part[b] for part in state)), keys[b], write_gates[b],
                              strengths[b])
            for b in range(keys.shape[0])
        ]
        reads = torch.stack([reads for reads, _ in per_episode])
        new_state = LRUAState(*(torch.stack(parts) for parts in
                                zip(*(s for _, s in per_episode), strict=True)))
        return reads, new_state

    def episode_step(self, s: LRUAState, keys: torch.Tensor, write_gates: torch.Tensor,
                     strengths: torch.Tensor) -> tuple[torch.Tensor, LRUAState]:
        """s holds one episode: memory (slots, width), usage (slots,), read_weights
        (heads, slots), least_used_weights (slots,), least_used (); keys (heads, width)."""
        heads = range(self.heads)

        # eq. 22: w^w_t = sigma(alpha) w^r_{t-1} + (1 - sigma(alpha)) w^lu_{t-1}, per head
        write_weights = [write_gates[h] * s.read_weights[h]
                         + (1 - write_gates[h]) * s.least_used_weights for h in heads]

        # the least-used slot (from w^u_{t-1}) is set to zero before writing
        keep = torch.arange(self.slots, device=keys.device) != s.least_used
        memory = s.memory * keep.unsqueeze(1)

        # eq. 23: M_t(i) = M_{t-1}(i) + w^w_t(i) k_t, each head writing its key
        for h in heads:
            memory = memory + torch.outer(write_weights[h], keys[h])

        read_weights, reads = [], []
        for h in heads:
            # eq. 17: cosine similarity of the key with every slot of M_t
            cosine = (memory @ keys[h]) / (memory.norm(dim=1) * keys[h].norm() + EPS)
            # eq. 18: read weights, softmax over slots (strength 1 = the equation as printed)
            read_weights.append(torch.softmax(strengths[h] * cosine, dim=0))
            # eq. 19: r_t = sum_i w^r_t(i) M_t(i)
            reads.append(read_weights[-1] @ memory)

        # eq. 20: w^u_t = gamma w^u_{t-1} + w^r_t + w^w_t, summed over heads
        usage = self.gamma * s.usage + sum(read_weights) + sum(write_weights)

        # eq. 21: w^lu_t(i) = 1 if w^u_t(i) is among the n smallest usages (n = heads), else 0;
        # ties go to the lowest slot index (stable sort)
        by_usage = torch.sort(usage.detach(), stable=True).indices
        least_used_weights = torch.zeros_like(usage)
        least_used_weights[by_usage[:self.heads]] = 1.0

        return torch.stack(reads), LRUAState(memory, usage, torch.stack(read_weights),
                                             least_used_weights, by_usage[0])
