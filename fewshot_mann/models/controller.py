"""LSTM controller whose input splits into a part known for all steps and a feedback part.

The image x_t and the previous label y_{t-1} are known for the whole episode up front, so their
projection W_x [x_t; y_{t-1}] + b is computed for all T steps in one matmul (`project`); only
the recurrent part W_h [r_{t-1}; h_{t-1}] (previous reads and hidden state) runs per step.
"""

from __future__ import annotations

import torch
from torch import nn


class LSTMController(nn.Module):
    def __init__(self, input_size: int, feedback_size: int, hidden_size: int) -> None:
        super().__init__()
        self.hidden_size = hidden_size
        # gate layout [input | forget | output | cell]: one sigmoid covers the first three
        self.input_proj = nn.Linear(input_size, 4 * hidden_size)
        self.recurrent = nn.Linear(feedback_size + hidden_size, 4 * hidden_size, bias=False)
        with torch.no_grad():  # forget-gate bias 1: remember by default (Gers et al. 2000)
            self.input_proj.bias[hidden_size:2 * hidden_size].fill_(1.0)

    def project(self, inputs: torch.Tensor) -> torch.Tensor:
        """(B, T, input_size) -> (B, T, 4 * hidden) pre-activations of all steps."""
        return self.input_proj(inputs)

    def initial_state(self, batch: int, ref: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        zeros = ref.new_zeros(batch, self.hidden_size)
        return zeros, zeros

    def gates(self, projected: torch.Tensor, feedback: torch.Tensor | None, h: torch.Tensor
              ) -> torch.Tensor:
        """(B, 4H) pre-activations of the gates [input | forget | output | cell] of a step."""
        return projected + self.recurrent(h if feedback is None else torch.cat([feedback, h], -1))

    def step(self, projected: torch.Tensor, feedback: torch.Tensor | None,
             state: tuple[torch.Tensor, torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
        """projected (B, 4H) for this step; feedback (B, F) or None; state (h, c) -> (h, c)."""
        h, c = state
        gates = self.gates(projected, feedback, h)
        H = self.hidden_size
        input_gate, forget_gate, output_gate = torch.sigmoid(gates[:, :3 * H]).chunk(3, dim=-1)
        c = forget_gate * c + input_gate * torch.tanh(gates[:, 3 * H:])
        h = output_gate * torch.tanh(c)
        return h, c
