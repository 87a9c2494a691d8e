"""Least-Recently-Used Access (LRUA), Santoro et al. 2016, sec. 3.1, eqs. 17-23.

Notation, per episode:
    M_t      memory, slots x width                          `memory`
    w^r_t    read weights, one row per head                 `read_weights`
    w^u_t    usage, eq. 20                                  `usage`
    w^lu_t   least-used weights, eq. 21: 1 on the n slots   `least_used_weights`
             of smallest usage (n = number of read heads)
             the single least-used slot, zeroed before the  `least_used`
             next write

Each read head also writes its key (eq. 23). Key strength: eq. 18 as printed is softmax(cosine),
nearly uniform over 128 slots; a learned strength beta_t = 1 + softplus(.) >= 1 multiplies the
cosine, starting at `key_strength_init` (models/mann.py tells why); `key_strength = False` gives
eq. 18 exactly.
"""

from __future__ import annotations

from typing import NamedTuple

import torch
import torch.nn.functional as F

from ..config import ModelConfig
from .addressing import cosine_rows, least_used
from .base import Interface, Memory, ReferenceMemory, strength_logit
from .fused import content_weights


class LRUAControls(NamedTuple):
    keys: torch.Tensor  # (B, H, W) k_t = tanh(W_k h_t)
    write_gates: torch.Tensor  # (B, H) sigma(alpha_t)
    strengths: torch.Tensor  # (B, H) beta_t (1 = eq. 18 as printed)


class LRUAState(NamedTuple):
    memory: torch.Tensor  # (B, slots, width)
    usage: torch.Tensor  # (B, slots)
    read_weights: torch.Tensor  # (B, heads, slots)
    least_used_weights: torch.Tensor  # (B, slots), n ones
    least_used: torch.Tensor  # (B,) int64 slot index


class LRUAInterface(Interface):
    """Per head: key (width), write-gate logit alpha (1), key-strength logit (1)."""

    def __init__(self, cfg: ModelConfig, input_features: int) -> None:
        super().__init__(cfg, [(cfg.read_heads, cfg.memory_width + 2)])
        self.heads, self.width, self.key_strength = cfg.read_heads, cfg.memory_width, \
            cfg.key_strength
        if self.key_strength:  # start sharp: beta_0 = key_strength_init
            with torch.no_grad():
                self.bias.view(self.heads, self.width + 2)[:, -1] = strength_logit(
                    cfg.key_strength_init)

    def forward(self, h: torch.Tensor, prev_labels: torch.Tensor,
                features: torch.Tensor) -> LRUAControls:
        params = self.project(h).view(h.shape[0], self.heads, self.width + 2)
        write_gates = torch.sigmoid(params[..., self.width])  # (B, H)
        strengths = (1 + F.softplus(params[..., self.width + 1]) if self.key_strength
                     else torch.ones_like(write_gates))
        return LRUAControls(torch.tanh(params[..., :self.width]), write_gates, strengths)


class LRUAMemory(Memory):
    def __init__(self, cfg: ModelConfig, label_size: int) -> None:
        super().__init__(cfg, label_size)
        self.gamma = cfg.gamma

    def initial_state(self, batch: int, device: torch.device, dtype: torch.dtype) -> LRUAState:
        """Empty memory, zero usage, nothing read yet; least used = slots 0..n-1 (ties -> lowest
        index, the rule both forms follow)."""
        least_used_weights = torch.zeros(batch, self.slots, device=device, dtype=dtype)
        least_used_weights[:, :self.heads] = 1.0
        return LRUAState(
            memory=torch.zeros(batch, self.slots, self.width, device=device, dtype=dtype),
            usage=torch.zeros(batch, self.slots, device=device, dtype=dtype),
            read_weights=torch.zeros(batch, self.heads, self.slots, device=device, dtype=dtype),
            least_used_weights=least_used_weights,
            least_used=torch.zeros(batch, dtype=torch.long, device=device),
        )


class ReferenceLRUA(ReferenceMemory, LRUAMemory):
    def episode_step(self, s: LRUAState, c: LRUAControls) -> tuple[torch.Tensor, LRUAState]:
        """s holds one episode: memory (slots, width), usage (slots,), read_weights
        (heads, slots), least_used_weights (slots,), least_used (); keys (heads, width)."""
        heads = range(self.heads)

        # eq. 22: w^w_t = sigma(alpha) w^r_{t-1} + (1 - sigma(alpha)) w^lu_{t-1}, per head
        write_weights = [c.write_gates[h] * s.read_weights[h]
                         + (1 - c.write_gates[h]) * s.least_used_weights for h in heads]

        # the least-used slot (from w^u_{t-1}) is set to zero before writing
        keep = torch.arange(self.slots, device=c.keys.device) != s.least_used
        memory = s.memory * keep.unsqueeze(1)

        # eq. 23: M_t(i) = M_{t-1}(i) + w^w_t(i) k_t, each head writing its key
        for h in heads:
            memory = memory + torch.outer(write_weights[h], c.keys[h])

        read_weights, reads = [], []
        for h in heads:
            cos = cosine_rows(memory, c.keys[h], self.cosine_eps)  # eq. 17, with every slot of M_t
            # eq. 18: read weights, softmax over slots (strength 1 = the equation as printed)
            read_weights.append(torch.softmax(c.strengths[h] * cos, dim=0))
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


class BatchedLRUA(LRUAMemory):
    def step(self, state: LRUAState, c: LRUAControls) -> tuple[torch.Tensor, LRUAState]:
        gate = c.write_gates.unsqueeze(-1)  # (B, H, 1)
        # eq. 22, all heads: (B, H, N)
        least_used_weights = state.least_used_weights.unsqueeze(1)  # (B, 1, N)
        write_weights = gate * state.read_weights + (1 - gate) * least_used_weights
        # zero the least-used slot, then eq. 23 for all heads as one batched matmul:
        # M_t = M_{t-1} * keep + (w^w)^T k    (B, N, H) @ (B, H, W) -> (B, N, W)
        keep = torch.ones_like(state.usage).scatter_(1, state.least_used.unsqueeze(1), 0.0)
        kept, spread = keep.unsqueeze(-1), write_weights.transpose(1, 2)  # (B, N, 1), (B, N, H)
        if not torch.is_grad_enabled():  # inference: the memory updated in place
            memory = state.memory.mul_(kept).add_(torch.bmm(spread, c.keys))
        elif torch.is_autocast_enabled(kept.device.type) or torch.compiler.is_compiling():
            # a sum: under bf16 autocast the matmul runs in bf16 while the memory stays
            # float32, which torch.compile's baddbmm refuses
            memory = state.memory * kept + torch.bmm(spread, c.keys)
        else:  # the matmul adds into the kept memory: one pass over (B, N, W) fewer
            memory = torch.baddbmm(state.memory * kept, spread, c.keys)
        read_weights = content_weights(memory, c.keys, c.strengths, self.cosine_eps)  # eqs. 17-18
        reads = torch.bmm(read_weights, memory)  # eq. 19, (B, H, W)
        usage = self.gamma * state.usage + read_weights.sum(1) + write_weights.sum(1)  # eq. 20
        order = least_used(usage, self.heads)  # eq. 21, (B, H)
        least_used_weights = torch.zeros_like(usage).scatter_(1, order, 1.0)
        return reads, LRUAState(memory, usage, read_weights, least_used_weights, order[:, 0])
