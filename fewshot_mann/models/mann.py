"""The Memory-Augmented Neural Network of Santoro et al. 2016 (sec. 3.1).

Per step t:
    controller  (h_t, c_t) = LSTM([x_t; y_{t-1}; r_{t-1}], (h_{t-1}, c_{t-1}))
    heads       from h_t, for each read head: key k_t = tanh(W_k h_t), write gate
                sigma(alpha_t), and (optional) key strength beta_t = 1 + softplus(W_b h_t + b_b)
    memory      LRUA write then read (eqs. 17-23, `fewshot_mann.memory`) -> r_t
    output      logits = W_o [h_t; r_t]   (one softmax per label-code group)

Key strength. Eq. 18 as printed is softmax(cosine): with cosines in [-1, 1] over 128 slots the
read weights are nearly uniform (the best match gets at most e^2 times the weight of the worst),
so reads return a blur of the whole memory. Like the NTM's content addressing we multiply the
cosine by a learned strength beta_t >= 1 (`key_strength`, on by default; off = eq. 18 exactly).
Its bias starts at beta_0 = `key_strength_init` (11). Measured on this CPU
(results/plateau, 64,000 training episodes, held-out 2nd-presentation accuracy): with Adam 1e-3
and batch 32, beta_0 = 1.7 stays on the MANN plateau (31.5 %) while beta_0 = 11 leaves it
(53.4 %); with the package's Adam 3e-3 and batch 16, beta_0 = 11 reaches 81.4 % and no key
strength at all 61.3 %.

Read normalisation (`read_norm`, off by default, on in the recipes of results/scaling). LRUA adds
every write into its slot (eq. 23) and only the least-used slot is ever cleared, so a slot that
is read and written again and again grows with the episode: in the 150-step 15-way episodes the
largest slot norm grows from about 1 to 10 over one episode (scripts/diagnose_memory.py). The
read vectors r_t feed both the output layer and the next controller step, so their scale is
unbounded in T. With `read_norm` each head's r_t is layer-normalised (no parameters) before
either sees it: the cosine addressing is scale-free already, and now the reads are too.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from ..config import ModelConfig
from ..episodes import LabelCode
from ..memory import LRUAState, make_memory
from .controller import LSTMController
from .encoder import make_encoder


class MANN(nn.Module):
    def __init__(self, cfg: ModelConfig, image_shape: tuple[int, int, int],
                 code: LabelCode) -> None:
        super().__init__()
        self.code = code
        self.heads, self.width = cfg.read_heads, cfg.memory_width
        self.key_strength = cfg.key_strength
        self.read_norm = cfg.read_norm
        self.encoder = make_encoder(cfg, image_shape)
        self.controller = LSTMController(self.encoder.out_features + code.input_size,
                                         self.heads * self.width, cfg.controller_size)
        # per head: key (width), write-gate logit alpha (1), key-strength logit (1)
        self.head_params = nn.Linear(cfg.controller_size, self.heads * (self.width + 2))
        self.memory = make_memory(cfg.backend, cfg.memory_slots, cfg.memory_width,
                                  cfg.read_heads, cfg.gamma)
        self.output = nn.Linear(cfg.controller_size + self.heads * self.width,
                                code.groups * code.symbols)
        if self.key_strength:  # start sharp: beta_0 = key_strength_init (see module doc)
            with torch.no_grad():
                bias = self.head_params.bias.view(self.heads, self.width + 2)
                bias[:, -1] = math.log(math.expm1(cfg.key_strength_init - 1.0))

    def set_backend(self, backend: str) -> None:
        m = self.memory
        self.memory = make_memory(backend, m.slots, m.width, m.heads, m.gamma)
        self.__dict__.pop("_step", None)  # a compiled step belongs to the old backend

    def compile_step(self) -> None:
        """torch.compile one time step (controller, heads and memory): fuses the many small
        element-wise ops of a step. Compiles on first use (tens of seconds on a CPU)."""
        self._step = torch.compile(self.step, dynamic=False)

    def forward(self, images: torch.Tensor, prev_labels: torch.Tensor) -> torch.Tensor:
        """images (B, T, D), prev_labels (B, T, G*S) -> logits (B, T, G, S)."""
        B, T, _ = images.shape
        inputs = torch.cat([self.encoder(images), prev_labels], dim=-1)
        projected = self.controller.project(inputs)  # (B, T, 4 * controller)
        state = self.controller.initial_state(B, projected)
        memory = self.memory.initial_state(B, projected.device, projected.dtype)
        reads = projected.new_zeros(B, self.heads * self.width)  # r_0
        step = getattr(self, "_step", self.step)
        outputs = []
        for step_input in projected.unbind(1):  # unbind: one backward stack, not T zero-fills
            output, reads, state, memory = step(step_input, reads, state, memory)
            outputs.append(output)
        logits = self.output(torch.stack(outputs, dim=1))
        return logits.view(B, T, self.code.groups, self.code.symbols)

    def step(self, step_input: torch.Tensor, reads: torch.Tensor,
             state: tuple[torch.Tensor, torch.Tensor], memory: LRUAState
             ) -> tuple[torch.Tensor, torch.Tensor, tuple[torch.Tensor, torch.Tensor], LRUAState]:
        """One time step. step_input (B, 4*controller) projected [x_t; y_{t-1}]; reads r_{t-1}
        (B, H*W). Returns ([h_t; r_t] for the output layer, r_t, controller state, memory)."""
        B = reads.shape[0]
        state = self.controller.step(step_input, reads, state)
        h = state[0]
        params = self.head_params(h).view(B, self.heads, self.width + 2)
        keys = torch.tanh(params[..., :self.width])  # (B, H, W)
        write_gates = torch.sigmoid(params[..., self.width])  # (B, H)
        strengths = (1 + F.softplus(params[..., self.width + 1]) if self.key_strength
                     else torch.ones_like(write_gates))
        read_vectors, memory = self.memory.step(memory, keys, write_gates, strengths)
        if self.read_norm:  # each head's r_t to zero mean, unit variance (see module doc)
            read_vectors = F.layer_norm(read_vectors, (self.width,))
        reads = read_vectors.flatten(1)
        return torch.cat([h, reads], dim=-1), reads, state, memory
