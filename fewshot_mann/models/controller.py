"""LSTM controller whose input splits into a part known for all steps and a feedback part.

The image x_t and the previous label y_{t-1} are known for the whole episode up front, so their
projection W_x [x_t; y_{t-1}] + b is computed for all T steps in one matmul (`project`); only
the recurrent part W_h [r_{t-1}; h_{t-1}] (previous reads and hidden state) runs per step.

The gradient of W_h is sum_t g_t^T [r_{t-1}; h_{t-1}] over the steps. Autograd would form it
as one (4H x B) by (B x F) product per step, each writing a full 4H x F matrix and adding it to
the last: on a CPU at small batches these were the slowest kernels of a training step
(docs/benchmarks.md). On the CPU the steps of one forward pass record their inputs and output
gradients instead, and the first step's backward, the last to run (every later step's input
depends on it), forms the sum as one product of (4H x BT) by (BT x F) matrices
(`_RecurrentProduct`). On CUDA (graph capture replays no Python), under autocast and under
torch.compile the steps take autograd's product.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn


class _Steps:
    """The (input, output gradient) pairs of the recurrent product, one per step of a forward
    pass, gathered by the steps' backward passes (last step first)."""

    def __init__(self) -> None:
        self.count = 0
        self.pairs: list[tuple[torch.Tensor, torch.Tensor]] = []


class _RecurrentProduct(torch.autograd.Function):
    """projected + x W^T for one step: projected (B, 4H), x (B, F), W (4H, F). Its backward
    returns the gradients of projected and x; the first step's returns W's, over all steps."""

    @staticmethod
    def forward(ctx: Any, projected: torch.Tensor, x: torch.Tensor, weight: torch.Tensor,
                steps: _Steps) -> torch.Tensor:
        ctx.save_for_backward(x, weight)
        ctx.steps, ctx.first = steps, steps.count == 0
        steps.count += 1
        return torch.addmm(projected, x, weight.t())

    @staticmethod
    def backward(ctx: Any, grad: torch.Tensor) -> tuple[torch.Tensor | None, ...]:
        x, weight = ctx.saved_tensors
        ctx.steps.pairs.append((x, grad))
        grad_weight = None
        if ctx.first:  # every other step's backward has run
            inputs, grads = zip(*ctx.steps.pairs, strict=True)
            grad_weight = torch.cat(grads).t() @ torch.cat(inputs)  # (4H, BT) @ (BT, F)
            ctx.steps.pairs.clear()
        return grad, grad @ weight, grad_weight, None


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
        """Zero (h_0, c_0) for a forward pass over `batch` episodes; the steps that follow
        share one record of their recurrent products (see the module doc)."""
        self._steps = _Steps()
        zeros = ref.new_zeros(batch, self.hidden_size)
        return zeros, zeros

    def gates(self, projected: torch.Tensor, feedback: torch.Tensor | None, h: torch.Tensor
              ) -> torch.Tensor:
        """(B, 4H) pre-activations of the gates [input | forget | output | cell] of a step."""
        x = h if feedback is None else torch.cat([feedback, h], -1)
        if (x.device.type == "cpu" and torch.is_grad_enabled() and hasattr(self, "_steps")
                and not torch.is_autocast_enabled("cpu") and not torch.compiler.is_compiling()):
            return _RecurrentProduct.apply(projected, x, self.recurrent.weight, self._steps)
        return projected + self.recurrent(x)

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
