"""Differentiable Neural Computer memory, Graves et al. 2016 (Nature 538), Methods.

The Methods' equations are not numbered; each is named here by its Methods paragraph.
Per step, with Hw write heads (`write_heads`, the paper: 1) and R read heads:
    retention   psi_t = prod_i (1 - f^i_t w^{r,i}_{t-1})                      "Dynamic memory
    usage       u_t = (u_{t-1} + w^w_{t-1} - u_{t-1} o w^w_{t-1}) o psi_t       allocation"
    allocation  a_t[phi_t[j]] = (1 - u_t[phi_t[j]]) prod_{i<j} u_t[phi_t[i]], phi_t = slots by
                ascending usage
    write       c^w_t = C(M_{t-1}, k^w_t, beta^w_t)                            "Write weighting"
                w^w_t = g^w_t [g^a_t a_t + (1 - g^a_t) c^w_t]
    memory      M_t = M_{t-1} o (E - w^w_t e_t^T) + w^w_t v_t^T                "Reading and writing"
    links       L_t[i, j] = (1 - w^w_t[i] - w^w_t[j]) L_{t-1}[i, j] + w^w_t[i] p_{t-1}[j],
                L_t[i, i] = 0                                                   "Temporal memory
    precedence  p_t = (1 - sum_i w^w_t[i]) p_{t-1} + w^w_t                      linkage"
    directions  f^i_t = L_t w^{r,i}_{t-1}, b^i_t = L_t^T w^{r,i}_{t-1}
    read        w^{r,i}_t = pi^i_t[1] b^i_t + pi^i_t[2] c^{r,i}_t + pi^i_t[3] f^i_t,
                c^{r,i}_t = C(M_t, k^{r,i}_t, beta^{r,i}_t)                     "Read weighting"
                r^i_t = M_t^T w^{r,i}_t
C(M, k, beta) is the softmax over slots of beta x cosine ("Content-based addressing").
Several write heads, as in DeepMind's released code: usage takes w^w_{t-1} = 1 - prod_h (1 - w^h),
head h allocates after heads < h have claimed their slots (u <- u + (1 - u) g^w a), erasures
multiply, additions sum, and each head has its own link matrix and precedence; the read modes
are (backward per write head, content, forward per write head).

Memory: the link matrices are N x N per write head and episode, kept for every step for the
backward pass: 4 N^2 Hw T bytes per episode in float32 (N = 128, T = 50: 3.3 MB).
"""

from __future__ import annotations

from typing import NamedTuple

import torch
import torch.nn.functional as F

from ..config import ModelConfig
from .addressing import allocation, cosine_rows
from .base import Interface, Memory, ReferenceMemory, strength_logit
from .fused import DNCAccess


class DNCControls(NamedTuple):
    read_keys: torch.Tensor  # (B, R, W) k^r
    read_strengths: torch.Tensor  # (B, R) beta^r >= 1
    write_keys: torch.Tensor  # (B, Hw, W) k^w
    write_strengths: torch.Tensor  # (B, Hw) beta^w >= 1
    erase: torch.Tensor  # (B, Hw, W) e in (0, 1)
    write_vectors: torch.Tensor  # (B, Hw, W) v
    free_gates: torch.Tensor  # (B, R) f
    allocation_gates: torch.Tensor  # (B, Hw) g^a
    write_gates: torch.Tensor  # (B, Hw) g^w
    read_modes: torch.Tensor  # (B, R, 2 Hw + 1) pi: backward x Hw, content, forward x Hw


class DNCState(NamedTuple):
    memory: torch.Tensor  # (B, N, W) M_t
    usage: torch.Tensor  # (B, N) u_t
    links: torch.Tensor  # (B, Hw, N, N) L_t
    precedence: torch.Tensor  # (B, Hw, N) p_t
    read_weights: torch.Tensor  # (B, R, N) w^r_t
    write_weights: torch.Tensor  # (B, Hw, N) w^w_t


class DNCInterface(Interface):
    """The interface vector xi_t: keys and write vectors tanh (the paper leaves them
    unsquashed), strengths oneplus (bias starting at `key_strength_init`), gates and e
    sigmoid, read modes softmax."""

    def __init__(self, cfg: ModelConfig, input_features: int) -> None:
        R, Hw, W = cfg.read_heads, cfg.write_heads, cfg.memory_width
        super().__init__(cfg, [(R, W), (R,), (Hw, W), (Hw,), (Hw, W), (Hw, W), (R,), (Hw,),
                               (Hw,), (R, 2 * Hw + 1)])
        (_, read_strengths, _, write_strengths, _, _, free_gates, allocation_gates,
         write_gates, read_modes) = self.bias_pieces()
        read_strengths.fill_(strength_logit(cfg.key_strength_init))
        write_strengths.fill_(strength_logit(cfg.key_strength_init))
        # start by writing every step (g^w ~ 0.95) into a free slot (g^a ~ 0.95), freeing
        # little (f ~ 0.05) and reading by content (pi[content] ~ 0.9); Graves et al. leave
        # the initialisation open
        write_gates.fill_(3.0)
        allocation_gates.fill_(3.0)
        free_gates.fill_(-3.0)
        read_modes[:, Hw] = 3.0

    def forward(self, h: torch.Tensor, prev_labels: torch.Tensor,
                features: torch.Tensor) -> DNCControls:
        (read_keys, read_strengths, write_keys, write_strengths, erase, write_vectors,
         free_gates, allocation_gates, write_gates, read_modes) = self.split(h)
        return DNCControls(torch.tanh(read_keys), 1 + F.softplus(read_strengths),
                           torch.tanh(write_keys), 1 + F.softplus(write_strengths),
                           torch.sigmoid(erase), torch.tanh(write_vectors),
                           torch.sigmoid(free_gates), torch.sigmoid(allocation_gates),
                           torch.sigmoid(write_gates), torch.softmax(read_modes, dim=-1))


class DNCMemory(Memory):
    def __init__(self, cfg: ModelConfig, label_size: int) -> None:
        super().__init__(cfg, label_size)
        self.write_heads = cfg.write_heads

    def initial_state(self, batch: int, device: torch.device, dtype: torch.dtype) -> DNCState:
        def zeros(*shape: int) -> torch.Tensor:
            return torch.zeros(batch, *shape, device=device, dtype=dtype)

        N, Hw = self.slots, self.write_heads
        return DNCState(zeros(N, self.width), zeros(N), zeros(Hw, N, N), zeros(Hw, N),
                        zeros(self.heads, N), zeros(Hw, N))


class ReferenceDNC(ReferenceMemory, DNCMemory):
    def episode_step(self, s: DNCState, c: DNCControls) -> tuple[torch.Tensor, DNCState]:
        """One episode: memory (N, W), usage (N,), links (Hw, N, N), precedence (Hw, N),
        read_weights (R, N), write_weights (Hw, N); controls per head as in DNCControls."""
        R, Hw = range(self.heads), range(self.write_heads)
        # retention: psi_t = prod_i (1 - f^i_t w^{r,i}_{t-1})
        retention = torch.ones_like(s.usage)
        for i in R:
            retention = retention * (1 - c.free_gates[i] * s.read_weights[i])
        # usage: u_t = (u_{t-1} + w^w_{t-1} - u_{t-1} o w^w_{t-1}) o psi_t
        usage = s.usage
        for h in Hw:
            usage = usage + s.write_weights[h] - usage * s.write_weights[h]
        usage = usage * retention

        write_weights, memory = [], s.memory
        claimed = usage  # usage as seen by write head h, after heads < h have allocated
        for h in Hw:
            # allocation: a_t[phi_t[j]] = (1 - u_t[phi_t[j]]) prod_{i<j} u_t[phi_t[i]]
            order = torch.sort(claimed.detach(), stable=True).indices
            free, product = [], 1.0
            for j in order:
                free.append((1 - claimed[j]) * product)
                product = product * claimed[j]
            alloc = torch.zeros_like(claimed).index_put((order,), torch.stack(free))
            # write weighting: w^w_t = g^w [g^a a_t + (1 - g^a) C(M_{t-1}, k^w, beta^w)]
            content = torch.softmax(
                c.write_strengths[h] * cosine_rows(s.memory, c.write_keys[h], self.cosine_eps),
                dim=0)
            write_weights.append(c.write_gates[h] * (c.allocation_gates[h] * alloc
                                                     + (1 - c.allocation_gates[h]) * content))
            claimed = claimed + (1 - claimed) * c.write_gates[h] * alloc
        # M_t = M_{t-1} o (E - w^w e^T) + w^w v^T
        for h in Hw:
            memory = memory * (1 - torch.outer(write_weights[h], c.erase[h]))
        for h in Hw:
            memory = memory + torch.outer(write_weights[h], c.write_vectors[h])

        links, precedence = [], []
        for h in Hw:
            w, p = write_weights[h], s.precedence[h]
            # L_t[i, j] = (1 - w[i] - w[j]) L_{t-1}[i, j] + w[i] p_{t-1}[j];  L_t[i, i] = 0
            link = (1 - w[:, None] - w[None, :]) * s.links[h] + torch.outer(w, p)
            links.append(link * (1 - torch.eye(self.slots, dtype=w.dtype, device=w.device)))
            precedence.append((1 - w.sum()) * p + w)  # p_t = (1 - sum_i w[i]) p_{t-1} + w

        read_weights, reads = [], []
        for i in R:
            previous, modes = s.read_weights[i], c.read_modes[i]
            content = torch.softmax(
                c.read_strengths[i] * cosine_rows(memory, c.read_keys[i], self.cosine_eps), dim=0)
            weights = modes[self.write_heads] * content
            for h in Hw:  # b^i_t = L_t^T w^{r,i}_{t-1}, f^i_t = L_t w^{r,i}_{t-1}
                weights = (weights + modes[h] * (links[h].T @ previous)
                           + modes[self.write_heads + 1 + h] * (links[h] @ previous))
            read_weights.append(weights)
            reads.append(memory.T @ weights)  # r^i_t = M_t^T w^{r,i}_t
        return torch.stack(reads), DNCState(memory, usage, torch.stack(links),
                                            torch.stack(precedence), torch.stack(read_weights),
                                            torch.stack(write_weights))


class BatchedDNC(DNCMemory):
    def step(self, s: DNCState, c: DNCControls) -> tuple[torch.Tensor, DNCState]:
        Hw = self.write_heads
        retention = torch.prod(1 - c.free_gates.unsqueeze(-1) * s.read_weights, dim=1)  # (B, N)
        # w^w_{t-1} of all write heads: 1 - prod_h (1 - w^h), one head's own
        written = (s.write_weights[:, 0] if Hw == 1 else
                   1 - torch.prod(1 - s.write_weights, dim=1))  # (B, N)
        usage = (s.usage + written - s.usage * written) * retention
        claimed, allocs = usage, []
        for h in range(Hw):  # head h allocates after heads < h have claimed their slots
            allocs.append(allocation(claimed))
            if h + 1 < Hw:
                claimed = claimed + (1 - claimed) * c.write_gates[:, h, None] * allocs[-1]
        alloc = torch.stack(allocs, dim=1) if Hw > 1 else allocs[0].unsqueeze(1)  # (B, Hw, N)
        # write weighting, write, links, read weighting, read: one autograd node
        reads, memory, links, precedence, read_weights, write_weights = DNCAccess.run(
            s.memory, s.links, s.precedence, s.read_weights, alloc, c.write_keys,
            c.write_strengths, c.erase, c.write_vectors, c.allocation_gates, c.write_gates,
            c.read_keys, c.read_strengths, c.read_modes, self.cosine_eps)
        return reads, DNCState(memory, usage, links, precedence, read_weights, write_weights)
