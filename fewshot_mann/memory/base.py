"""The memory contract every variant (lrua, ntm, dnc, kv) implements.

    Controls    NamedTuple of batch-first tensors: what one time step asks of the memory
    Interface   nn.Linear from the controller output h_t to that variant's Controls, with the
                variant's own initialisation; built as `interface(cfg, input_features)` and
                called as `interface(h, prev_labels, features)`: the label y_{t-1} and the
                encoder's features e_t of x_t are read only by kv, the one memory that stores
                labels and may take its query from the input itself
    State       NamedTuple of batch-first tensors carried from step to step (functional: a step
                returns new tensors, or changes them in place only under no_grad)
    Memory      `initial_state(batch, device, dtype)` and `step(state, controls) -> (reads,
                state)`, reads (B, R, read_width); two implementations per variant:
                reference  one episode (and one head) at a time, each equation as printed
                batched    every head of every episode in single batched tensor operations

The controller never knows which memory it has: it reads `reads.flatten(1)`, `read_size`
features, and the Interface reads its hidden state.
"""

from __future__ import annotations

import math
from typing import Any, NamedTuple

import torch
from torch import nn

from ..config import ModelConfig


class Interface(nn.Linear):
    """controller output h_t (B, controller) -> Controls. One linear layer whose output is cut
    into consecutive pieces of the per-episode `shapes` (keys, gates, ...) that the variant's
    `forward` squashes into its Controls. A Linear itself (not a module holding one), so that
    the weights keep their names `head_params.weight|bias` in every MANN checkpoint."""

    def __init__(self, cfg: ModelConfig, shapes: list[tuple[int, ...]]) -> None:
        super().__init__(cfg.controller_size, sum(math.prod(shape) for shape in shapes))
        self.shapes = shapes

    def forward(self, h: torch.Tensor, prev_labels: torch.Tensor, features: torch.Tensor
                ) -> Any:
        """h (B, controller); prev_labels y_{t-1} (B, G*S) and features e_t (B, E), the
        encoder's output for x_t, read only by kv. Returns the variant's Controls."""
        raise NotImplementedError

    def project(self, h: torch.Tensor) -> torch.Tensor:
        """The layer's raw output W h + b (B, out_features)."""
        return nn.functional.linear(h, self.weight, self.bias)

    def split(self, h: torch.Tensor) -> list[torch.Tensor]:
        """The layer's output for h (B, controller) cut into [(B, *shape) for shape in
        shapes]."""
        pieces = self.project(h).split([math.prod(shape) for shape in self.shapes], dim=-1)
        return [p.reshape(h.shape[0], *shape)
                for p, shape in zip(pieces, self.shapes, strict=True)]

    def bias_pieces(self) -> list[torch.Tensor]:
        """Views of the bias cut like `split` cuts the output, [shape for shape in shapes], to
        set where each control starts (writing into them changes the bias)."""
        pieces = self.bias.data.split([math.prod(shape) for shape in self.shapes])
        return [p.view(shape) for p, shape in zip(pieces, self.shapes, strict=True)]


class Memory:
    """A memory without parameters: settings from the model config, state in a NamedTuple.
    `label_size` (G*S, the label code's width) matters only to a memory that stores labels."""

    def __init__(self, cfg: ModelConfig, label_size: int) -> None:
        self.slots, self.width, self.heads = cfg.memory_slots, cfg.memory_width, cfg.read_heads
        self.cosine_eps = cfg.cosine_eps  # of every content lookup (memory/addressing.py)
        self.read_width = self.width

    @property
    def read_size(self) -> int:
        """Features of the flattened reads that the controller and the output layer see."""
        return self.heads * self.read_width

    def initial_state(self, batch: int, device: torch.device, dtype: torch.dtype
                      ) -> NamedTuple:
        raise NotImplementedError

    def step(self, state: Any, controls: Any) -> tuple[torch.Tensor, Any]:
        """One time step. Returns the reads (B, heads, read_width) and the new state."""
        raise NotImplementedError

    def auxiliary_loss(self, state: Any) -> torch.Tensor | None:
        """A loss term of its own, summed over the steps so far, per episode (B,); None for a
        memory trained by the classification loss alone."""
        return None


class ReferenceMemory(Memory):
    """The reference form of a variant: `step` splits the batch into episodes, runs
    `episode_step` (equations written for one episode, vectors not batches) on each and
    stacks the results. Slow by design: the specification the batched form is tested against."""

    def step(self, state: Any, controls: Any) -> tuple[torch.Tensor, Any]:
        per_episode = [self.episode_step(type(state)(*(part[b] for part in state)),
                                         type(controls)(*(part[b] for part in controls)))
                       for b in range(state[0].shape[0])]
        reads = torch.stack([reads for reads, _ in per_episode])
        new_state = type(state)(*(torch.stack(parts) for parts in
                                  zip(*(s for _, s in per_episode), strict=True)))
        return reads, new_state

    def episode_step(self, state: Any, controls: Any) -> tuple[torch.Tensor, Any]:
        raise NotImplementedError


def strength_logit(strength: float) -> float:
    """The logit x with 1 + softplus(x) = strength (> 1): where a strength's bias starts."""
    return math.log(math.expm1(strength - 1.0))
