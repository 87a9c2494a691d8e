"""Neural Turing Machine memory, Graves et al. 2014, sec. 3, eqs. 2-9.

Hw write heads (`write_heads`) and R read heads (`read_heads`) address the N x W memory in the
same four stages (sec. 3.3), each head from its previous weighting w_{t-1}:
    eqs. 5-6  content: w^c = softmax(beta K[k, M(i)]), K the cosine similarity
    eq. 7     interpolation: w^g = g w^c + (1 - g) w_{t-1}
    eq. 8     convolutional shift over offsets -S..S (`shift_range` S), circular
    eq. 9     sharpening: w = w~^gamma / sum w~^gamma, gamma >= 1
Per step the write heads address M_{t-1} and write (eq. 3 erase, eq. 4 add), then the read heads
address M_t and read (eq. 2). Every head starts on slot 0 (w_0 one-hot), the memory empty.
Controls: keys and add vectors tanh, erase vectors and gates sigmoid, strengths and gamma
1 + softplus (the strengths' bias starts at `key_strength_init`), shifts a softmax. The biases
start the write heads as a tape (each step one slot further) and the read heads on content
(`NTMInterface`): Graves et al. leave the initialisation open.
"""

from __future__ import annotations

from typing import NamedTuple

import torch
import torch.nn.functional as F

from ..config import ModelConfig
from .addressing import TINY, cosine_rows
from .base import Interface, Memory, ReferenceMemory, strength_logit
from .fused import NTMStep


class NTMControls(NamedTuple):  # heads: the Hw write heads first, then the R read heads
    keys: torch.Tensor  # (B, Hw+R, W) k_t
    strengths: torch.Tensor  # (B, Hw+R) beta_t >= 1
    gates: torch.Tensor  # (B, Hw+R) interpolation gate g_t
    shifts: torch.Tensor  # (B, Hw+R, 2S+1) s_t over offsets -S..S
    sharpening: torch.Tensor  # (B, Hw+R) gamma_t >= 1
    erase: torch.Tensor  # (B, Hw, W) e_t in (0, 1)
    add: torch.Tensor  # (B, Hw, W) a_t


class NTMState(NamedTuple):
    memory: torch.Tensor  # (B, N, W) M_t
    weights: torch.Tensor  # (B, Hw+R, N) w_t of every head, write heads first


class NTMInterface(Interface):
    def __init__(self, cfg: ModelConfig, input_features: int) -> None:
        Hw, H, W = cfg.write_heads, cfg.write_heads + cfg.read_heads, cfg.memory_width
        offsets = 2 * cfg.shift_range + 1
        super().__init__(cfg, [(H, W), (H,), (H,), (H, offsets), (H,), (Hw, W), (Hw, W)])
        _, strengths, gates, shifts, sharpening, _, _ = self.bias_pieces()
        strengths.fill_(strength_logit(cfg.key_strength_init))
        # start as a tape: write heads keep their previous weighting (g ~ 0.05) and move one
        # slot on (s(+1) ~ 0.9), sharply (gamma ~ 5), so that each step writes a fresh slot;
        # read heads look up by content (g ~ 0.95) and stay put
        gates[:Hw], gates[Hw:] = -3.0, 3.0
        shifts[:Hw, -1] = shifts[Hw:, cfg.shift_range] = 3.0
        sharpening[:Hw] = strength_logit(5.0)

    def forward(self, h: torch.Tensor, prev_labels: torch.Tensor,
                features: torch.Tensor) -> NTMControls:
        keys, strengths, gates, shifts, sharpening, erase, add = self.split(h)
        return NTMControls(torch.tanh(keys), 1 + F.softplus(strengths), torch.sigmoid(gates),
                           torch.softmax(shifts, dim=-1), 1 + F.softplus(sharpening),
                           torch.sigmoid(erase), torch.tanh(add))


class NTMMemory(Memory):
    def __init__(self, cfg: ModelConfig, label_size: int) -> None:
        super().__init__(cfg, label_size)
        self.write_heads = cfg.write_heads

    def initial_state(self, batch: int, device: torch.device, dtype: torch.dtype) -> NTMState:
        weights = torch.zeros(batch, self.write_heads + self.heads, self.slots, device=device,
                              dtype=dtype)
        weights[..., 0] = 1.0
        return NTMState(torch.zeros(batch, self.slots, self.width, device=device, dtype=dtype),
                        weights)


class ReferenceNTM(ReferenceMemory, NTMMemory):
    def address(self, memory: torch.Tensor, c: NTMControls, h: int,
                previous: torch.Tensor) -> torch.Tensor:
        """Head h's weighting (N,) on memory (N, W), from its previous weighting (N,)."""
        # eqs. 5-6: w^c_t(i) = exp(beta K[k, M(i)]) / sum_j exp(beta K[k, M(j)])
        content = torch.softmax(c.strengths[h] * cosine_rows(memory, c.keys[h], self.cosine_eps),
                                    dim=0)
        # eq. 7: w^g_t = g_t w^c_t + (1 - g_t) w_{t-1}
        gated = c.gates[h] * content + (1 - c.gates[h]) * previous
        # eq. 8: w~_t(i) = sum_j w^g_t(j) s_t(i - j), indices modulo N; s_t(o) for |o| <= S
        reach, slots = (c.shifts.shape[-1] - 1) // 2, torch.arange(memory.shape[0],
                                                                   device=memory.device)
        s = torch.zeros_like(previous).index_add(  # s_t on all N offsets, 0 beyond +-S
            0, torch.arange(-reach, reach + 1, device=memory.device) % len(slots), c.shifts[h])
        shifted = s[(slots[:, None] - slots[None, :]) % len(slots)] @ gated  # [i, j]: s(i - j)
        # eq. 9: w_t(i) = w~_t(i)^gamma / sum_j w~_t(j)^gamma
        powered = shifted.clamp_min(TINY) ** c.sharpening[h]
        return powered / powered.sum()

    def episode_step(self, s: NTMState, c: NTMControls) -> tuple[torch.Tensor, NTMState]:
        """One episode: memory (N, W), weights (Hw+R, N); controls per head as in NTMControls."""
        memory, weights = s.memory, []
        write = [self.address(s.memory, c, h, s.weights[h]) for h in range(self.write_heads)]
        for h, w in enumerate(write):  # eq. 3: M~_t(i) = M_{t-1}(i) [1 - w_t(i) e_t]
            memory = memory * (1 - torch.outer(w, c.erase[h]))
        for h, w in enumerate(write):  # eq. 4: M_t(i) = M~_t(i) + w_t(i) a_t
            memory = memory + torch.outer(w, c.add[h])
        weights = write + [self.address(memory, c, h, s.weights[h])
                           for h in range(self.write_heads, self.write_heads + self.heads)]
        reads = [w @ memory for w in weights[self.write_heads:]]  # eq. 2: r_t = sum_i w_t(i) M_t(i)
        return torch.stack(reads), NTMState(memory, torch.stack(weights))


class BatchedNTM(NTMMemory):
    def step(self, state: NTMState, c: NTMControls) -> tuple[torch.Tensor, NTMState]:
        """Every head of every episode at once, as one autograd node (memory/fused.py)."""
        reads, memory, weights = NTMStep.run(state.memory, state.weights, *c,
                                             self.write_heads, self.cosine_eps)
        return reads, NTMState(memory, weights)
