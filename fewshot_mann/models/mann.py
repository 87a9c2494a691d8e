"""The Memory-Augmented Neural Network of Santoro et al. 2016 (sec. 3.1).

Per step t:
    controller  (h_t, c_t) = LSTM([x_t; y_{t-1}; r_{t-1}], (h_{t-1}, c_{t-1}))
    interface   the memory's Controls from h_t (`head_params`, one linear layer; for LRUA, per
                read head: key k_t = tanh(W_k h_t), write gate sigma(alpha_t) and key strength
                beta_t = 1 + softplus(W_b h_t + b_b))
    memory      one step of the chosen memory (`model.memory`: lrua, eqs. 17-23 of the paper;
                ntm, dnc, kv: fewshot_mann.memory) -> r_t
    output      logits = W_o [h_t; r_t]   (one softmax per label-code group)

Key strength. Eq. 18 as printed is softmax(cosine): with cosines in [-1, 1] over 128 slots the
read weights are nearly uniform (the best match gets at most e^2 times the weight of the worst),
so reads return a blur of the whole memory. Like the NTM's content addressing we multiply the
cosine by a learned strength beta_t >= 1 (`key_strength`, on by default; off = eq. 18 exactly).
Its bias starts at beta_0 = `key_strength_init` (11). Measured after 64,000 training episodes
(held-out 2nd-presentation accuracy; docs/memories.md): with Adam 1e-3
and batch 32, beta_0 = 1.7 stays on the MANN plateau (31.5 %) while beta_0 = 11 leaves it
(53.4 %); with the package's Adam 3e-3 and batch 16, beta_0 = 11 reaches 81.4 % and no key
strength at all 61.3 %.

Read normalisation (`read_norm`, off by default: an ablation). LRUA adds every write into its slot
(eq. 23) and only the least-used slot is ever cleared, so a slot that is read and written again
grows with the episode (in 150-step 15-way episodes the largest slot norm of a CPU-trained model
grows from about 1 to 10; scripts/diagnose_memory.py), and the read vectors r_t feed the output
layer and the next controller step unnormalised. `read_norm` layer-normalises each read vector
(no parameters). Tried against the collapse of large-batch runs, it slows learning badly on the
5-way protocol (docs/training.md), so it stays off.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from ..config import ModelConfig
from ..episodes import LabelCode
from ..memory import MEMORIES, make_memory
from .controller import LSTMController
from .encoder import make_encoder


class MANN(nn.Module):
    def __init__(self, cfg: ModelConfig, image_shape: tuple[int, int, int],
                 code: LabelCode) -> None:
        super().__init__()
        self.code, self.cfg = code, cfg
        self.encoder = make_encoder(cfg, image_shape)
        self.memory = make_memory(cfg.memory, cfg.backend, cfg, code.input_size)
        self.controller = LSTMController(self.encoder.out_features + code.input_size,
                                         self.memory.read_size, cfg.controller_size)
        self.head_params = MEMORIES[cfg.memory].interface(cfg, self.encoder.out_features)
        self.output = nn.Linear(cfg.controller_size + self.memory.read_size,
                                code.groups * code.symbols)
        # the memory's own loss term of the last forward (the kv margin loss), mean per step
        # and episode; None for a memory trained by the classification loss alone
        self.auxiliary_loss: torch.Tensor | None = None

    def set_backend(self, backend: str) -> None:
        self.memory = make_memory(self.cfg.memory, backend, self.cfg, self.code.input_size)
        self.__dict__.pop("_step", None)  # a compiled step belongs to the old backend

    @contextmanager
    def uncompiled(self) -> Iterator[None]:
        """Within the block, forward passes take the uncompiled step (`compile_step`); the
        compiled one is put back after."""
        compiled = self.__dict__.pop("_step", None)
        try:
            yield
        finally:
            if compiled is not None:
                self._step = compiled

    @contextmanager
    def memory_replaced(self, stand_in: Any) -> Iterator[None]:
        """Within the block, forward passes step `stand_in` (a recorder wrapping the memory:
        explain.py, health.py) instead of the memory, through the uncompiled step (a compiled
        one would bypass it); both are put back after."""
        memory, self.memory = self.memory, stand_in
        try:
            with self.uncompiled():
                yield
        finally:
            self.memory = memory

    def compile_step(self) -> None:
        """torch.compile one time step (controller, interface and memory): fuses the many
        small element-wise ops of a step. Compiles on first use (tens of seconds on a CPU)."""
        self._step = torch.compile(self.step, dynamic=False)

    def forward(self, images: torch.Tensor, prev_labels: torch.Tensor) -> torch.Tensor:
        """images (B, T, D), prev_labels (B, T, G*S) -> logits (B, T, G, S)."""
        B, T, _ = images.shape
        features = self.encoder(images)  # (B, T, E)
        inputs = torch.cat([features, prev_labels], dim=-1)
        projected = self.controller.project(inputs)  # (B, T, 4 * controller)
        state = self.controller.initial_state(B, projected)
        memory = self.memory.initial_state(B, projected.device, projected.dtype)
        reads = projected.new_zeros(B, self.memory.read_size)  # r_0
        step = getattr(self, "_step", self.step)
        outputs = []
        # unbind: one backward stack, not T zero-fills
        for step_input, labels, x in zip(projected.unbind(1), prev_labels.unbind(1),
                                         features.unbind(1), strict=True):
            output, reads, state, memory = step(step_input, labels, x, reads, state, memory)
            outputs.append(output)
        extra = self.memory.auxiliary_loss(memory)
        self.auxiliary_loss = None if extra is None else extra.mean() / T
        logits = self.output(torch.stack(outputs, dim=1))
        return logits.view(B, T, self.code.groups, self.code.symbols)

    def step(self, step_input: torch.Tensor, prev_labels: torch.Tensor, features: torch.Tensor,
             reads: torch.Tensor, state: tuple[torch.Tensor, torch.Tensor], memory: Any
             ) -> tuple[torch.Tensor, torch.Tensor, tuple[torch.Tensor, torch.Tensor], Any]:
        """One time step. step_input (B, 4*controller) projected [x_t; y_{t-1}]; prev_labels
        y_{t-1} (B, G*S); features e_t (B, E) the encoder's output for x_t; reads r_{t-1}
        (B, read_size); memory: the memory's State. Returns ([h_t; r_t] for the output layer,
        r_t, controller state, memory state)."""
        state = self.controller.step(step_input, reads, state)
        h = state[0]
        read_vectors, memory = self.memory.step(memory,
                                                self.head_params(h, prev_labels, features))
        if self.cfg.read_norm:  # each head's r_t to zero mean, unit variance (see module doc)
            read_vectors = F.layer_norm(read_vectors, read_vectors.shape[-1:])
        reads = read_vectors.flatten(1)
        return torch.cat([h, reads], dim=-1), reads, state, memory
