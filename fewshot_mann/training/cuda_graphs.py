"""CUDA-graph capture of a whole unrolled episode, for training and for inference.

In eager mode every small kernel of the 50-step unrolled episode is launched from Python (a
MANN training step at batch 16 makes about 18,700 ATen calls), so on a GPU a step at small batch
sizes is bound by launch overhead, not by arithmetic. A CUDA graph records the kernels once and
replays them with one launch. Shapes are fixed at capture (batch size, episode length), and the
model must not synchronise with the host inside a step: the batched memory backend never does.

Training: `torch.cuda.make_graphed_callables` captures the model's forward and its backward as
one autograd function; the loss, gradient clipping and the optimiser step stay eager (a handful
of kernels), so the learning-rate schedule and the NaN check work unchanged. Inference: the
forward under `torch.inference_mode` is captured with `torch.cuda.graph`; `GraphedInference`
captures one such graph per input shape, for the trainer's held-out evaluations.

With `MANN.compile_step()` (train.compile) the training graphs hold the compiled time step's
fused kernels: the warm-up runs before each capture compile it (torch.compile must never
compile during a capture). The inference graphs capture the uncompiled step (`MANN.uncompiled`):
compiling the inference shape costs seconds for evaluations that take milliseconds either way.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable

import torch
from torch import nn

from ..config import ConfigError


class _Episode(nn.Module):
    """The model's forward behind a module of its own: `make_graphed_callables` rewires the
    forward of the module it is given, and the model's own forward must stay eager for
    evaluation (other batch sizes, inference mode)."""

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model = model

    def forward(self, images: torch.Tensor, prev_labels: torch.Tensor) -> torch.Tensor:
        return self.model(images, prev_labels)


def _require_cuda(tensor: torch.Tensor) -> None:
    if tensor.device.type != "cuda":
        raise ConfigError(f"CUDA graphs need a CUDA device; the model runs on {tensor.device}")


def graph_training_forward(model: nn.Module, images: torch.Tensor, prev_labels: torch.Tensor,
                           ) -> Callable[[torch.Tensor, torch.Tensor], torch.Tensor]:
    """Capture forward + backward of `model` for inputs shaped like images (B, T, D) and
    prev_labels (B, T, G*S). The returned callable copies its arguments into the captured input
    buffers and returns the logits; `loss.backward()` through them replays the backward graph.
    Call it inside the same autocast state as here (for bf16: `cache_enabled=False`).
    Parameters are read in place at every replay, so optimiser updates are seen."""
    _require_cuda(images)
    return torch.cuda.make_graphed_callables(_Episode(model), (images, prev_labels),
                                            allow_unused_input=True)


def graph_inference(model: nn.Module, images: torch.Tensor, prev_labels: torch.Tensor,
                    ) -> Callable[[torch.Tensor, torch.Tensor], torch.Tensor]:
    """Capture `model(images, prev_labels)` under inference mode. The returned callable copies
    new inputs of the same shape in, replays, and returns the captured output buffer (it is
    overwritten by the next call: clone it to keep it)."""
    _require_cuda(images)
    static_images, static_prev = images.clone(), prev_labels.clone()
    uncompiled = getattr(model, "uncompiled", contextlib.nullcontext)  # a MANN's eager step
    side = torch.cuda.Stream()
    side.wait_stream(torch.cuda.current_stream())
    with uncompiled(), torch.cuda.stream(side), torch.inference_mode():
        for _ in range(2):  # warm-up outside the capture: cuBLAS handles, autotuning
            model(static_images, static_prev)
    torch.cuda.current_stream().wait_stream(side)
    graph = torch.cuda.CUDAGraph()
    with uncompiled(), torch.inference_mode(), torch.cuda.graph(graph):
        static_out = model(static_images, static_prev)

    def replay(images: torch.Tensor, prev_labels: torch.Tensor) -> torch.Tensor:
        static_images.copy_(images)
        static_prev.copy_(prev_labels)
        graph.replay()
        return static_out

    return replay


class GraphedInference(nn.Module):
    """`model` for inference, replayed from one CUDA graph per input shape (captured at the
    first batch of that shape; parameters are read in place, so training updates are seen).
    Returns a copy of the captured output."""

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model = model
        self._graphs: dict[tuple[torch.Size, torch.Size],
                           Callable[[torch.Tensor, torch.Tensor], torch.Tensor]] = {}

    def forward(self, images: torch.Tensor, prev_labels: torch.Tensor) -> torch.Tensor:
        shape = (images.shape, prev_labels.shape)
        if shape not in self._graphs:
            self._graphs[shape] = graph_inference(self.model, images, prev_labels)
        return self._graphs[shape](images, prev_labels).clone()
