"""Signs of a MANN running away: what its memory and controller do over a few episodes.

A large-batch run can collapse with nothing in its log but the loss: a jump to tens of nats
(confident wrong answers), then chance, for good. These are the quantities that say which
part ran away. The trainer records their summary over a few held-out episodes at every
held-out evaluation (`train_log.jsonl`, field "health"; `train.health_episodes`), and
scripts/diagnose_memory.py prints them step by step for any checkpoint:

    slot_norm          largest |M_t(i)| over the slots (LRUA adds every write, eq. 23; only the
                       least-used slot is ever cleared)
    read_norm          |r_t|, each head's read vector (eq. 19), which feeds the output layer and
                       the next controller step unnormalised
    <control>          every control whose name holds "strength" or "gate": the key strengths
                       beta_t (eq. 18 with the learned strength), the write gates sigma(alpha_t)
                       of eq. 22, the NTM's and DNC's gates
    saturated_gates    share of the LSTM's gate pre-activations with |z| > 5, where sigmoid and
                       tanh pass less than 1 % of a gradient on
    logit              largest |logit| of the output layer (the collapse's confident answers)

Recording swaps the model's memory for a stand-in and wraps the controller's step for one
forward pass (`watch`), so that the model itself stays as it is, compiled step included.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import torch
from torch import nn

SATURATED = 5.0  # |pre-activation| beyond which a gate passes < 1 % of a gradient (sigmoid')


def _watched_controls(controls: Any) -> dict[str, torch.Tensor]:
    """The strengths and gates of a memory's Controls, each (B, ...) as (B, n)."""
    return {name: value.detach().reshape(value.shape[0], -1).float()
            for name, value in controls._asdict().items()
            if "strength" in name or "gate" in name}


class _Watched:
    """Stands in for a memory backend and keeps, per step, the numbers above, each (B,) or
    (B, n), on the device (read once at the end: no synchronisation per step)."""

    def __init__(self, memory: Any) -> None:
        self.memory = memory
        self.steps: list[dict[str, torch.Tensor]] = []

    def __getattr__(self, name: str) -> Any:  # slots, heads, initial_state, auxiliary_loss...
        return getattr(self.__dict__["memory"], name)

    def step(self, state: Any, controls: Any) -> tuple[torch.Tensor, Any]:
        reads, new = self.memory.step(state, controls)
        record = _watched_controls(controls)
        record["read_norm"] = reads.detach().float().norm(dim=-1)  # (B, heads)
        memory = getattr(new, "memory", None)  # LRUA, NTM, DNC: (B, N, W); kv stores unit keys
        if memory is not None:
            record["slot_norm"] = memory.detach().float().norm(dim=-1).amax(-1, keepdim=True)
        self.steps[-1].update(record)
        return reads, new


@contextmanager
def watch(model: nn.Module) -> Iterator[list[dict[str, torch.Tensor]]]:
    """Within the block, each time step of `model`'s forward passes appends a dict of (B, n)
    tensors to the yielded list. `model` must be a MANN (have a memory)."""
    watched = _Watched(model.memory)
    controller = model.controller
    controller_step = controller.step

    def step(projected: torch.Tensor, feedback: torch.Tensor | None,
             state: tuple[torch.Tensor, torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
        gates = controller.gates(projected, feedback, state[0])
        watched.steps.append({"saturated_gates": (gates.detach().abs() > SATURATED).float()})
        return controller_step(projected, feedback, state)

    controller.step = step
    try:
        with model.memory_replaced(watched):
            yield watched.steps
    finally:
        del controller.step  # the instance attribute: the class's method again


@torch.no_grad()
def trace(model: nn.Module, images: torch.Tensor, prev_labels: torch.Tensor
          ) -> tuple[list[dict[str, float]], dict[str, float]]:
    """One forward pass over a batch of episodes (images (B, T, D), prev_labels (B, T, G*S)).
    Returns per time step the mean over episodes (and over heads or gates) of each number, and
    the summary the training log keeps: the largest slot norm, the mean read norm, mean and
    largest of each strength and gate, the saturated share and the largest |logit|."""
    training = model.training
    model.eval()
    try:
        with watch(model) as steps:
            logits = model(images, prev_labels)
    finally:
        model.train(training)
    whole = {name: torch.stack([step[name] for step in steps], 1) for name in steps[0]}  # (B, T, n)
    # per step, the mean over episodes and heads: one transfer per number, not one per step
    means = {name: value.mean((0, 2)).tolist() for name, value in whole.items()}
    per_step = [{name: means[name][t] for name in whole} for t in range(len(steps))]
    summary = {"read_norm": whole["read_norm"].mean().item(),
               "saturated_gates": whole["saturated_gates"].mean().item(),
               "logit": logits.detach().abs().amax().item()}
    if "slot_norm" in whole:
        summary["slot_norm"] = whole["slot_norm"].amax().item()
    for name in whole.keys() - {"read_norm", "saturated_gates", "slot_norm"}:
        summary[f"{name}_mean"] = whole[name].mean().item()
        summary[f"{name}_max"] = whole[name].amax().item()
    return per_step, dict(sorted(summary.items()))
