"""Baselines with the MANN's interface: (images, prev_labels) -> logits (B, T, G, S)."""

from __future__ import annotations

import torch
from torch import nn

from ..config import ModelConfig
from ..episodes import LabelCode
from .controller import LSTMController
from .encoder import make_encoder


class LSTMBaseline(nn.Module):
    """The controller alone: an LSTM over [x_t; y_{t-1}] with no external memory."""

    def __init__(self, cfg: ModelConfig, image_shape: tuple[int, int, int],
                 code: LabelCode) -> None:
        super().__init__()
        self.code = code
        self.encoder = make_encoder(cfg, image_shape)
        self.controller = LSTMController(self.encoder.out_features + code.input_size, 0,
                                         cfg.controller_size)
        self.output = nn.Linear(cfg.controller_size, code.groups * code.symbols)

    def forward(self, images: torch.Tensor, prev_labels: torch.Tensor) -> torch.Tensor:
        B, T, _ = images.shape
        projected = self.controller.project(torch.cat([self.encoder(images), prev_labels], -1))
        state = self.controller.initial_state(B, projected)
        hidden = []
        for step_input in projected.unbind(1):  # unbind: one backward stack, not T zero-fills
            state = self.controller.step(step_input, None, state)
            hidden.append(state[0])
        logits = self.output(torch.stack(hidden, dim=1))
        return logits.view(B, T, self.code.groups, self.code.symbols)


class FeedforwardBaseline(nn.Module):
    """A two-layer perceptron on [x_t; y_{t-1}]: no memory of the episode at all, so it can do
    no better than chance on held-out classes; the floor of the comparison."""

    def __init__(self, cfg: ModelConfig, image_shape: tuple[int, int, int],
                 code: LabelCode) -> None:
        super().__init__()
        self.code = code
        self.encoder = make_encoder(cfg, image_shape)
        self.net = nn.Sequential(
            nn.Linear(self.encoder.out_features + code.input_size, cfg.hidden_size), nn.ReLU(),
            nn.Linear(cfg.hidden_size, cfg.hidden_size), nn.ReLU(),
            nn.Linear(cfg.hidden_size, code.groups * code.symbols))

    def forward(self, images: torch.Tensor, prev_labels: torch.Tensor) -> torch.Tensor:
        B, T, _ = images.shape
        logits = self.net(torch.cat([self.encoder(images), prev_labels], dim=-1))
        return logits.view(B, T, self.code.groups, self.code.symbols)
