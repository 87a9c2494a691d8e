"""The written-out backward passes of fewshot_mann/memory/fused.py equal autograd through the
same equations (float64), for every input and with some outputs' gradients absent."""

from __future__ import annotations

import pytest
import torch

from fewshot_mann.memory.fused import (ContentWeights, DNCAccess, EraseAndAdd, Locate, NTMStep,
                                      TemporalLinks)

F64 = torch.float64
B, N, W = 3, 7, 4


def rand(*shape: int, low: float = 0.0, high: float = 1.0) -> torch.Tensor:
    return (low + (high - low) * torch.rand(*shape, dtype=F64)).requires_grad_()


def weighting(*shape: int) -> torch.Tensor:
    return torch.softmax(3 * torch.randn(*shape, dtype=F64), dim=-1).requires_grad_()


def cases() -> dict:
    torch.manual_seed(0)
    memory = rand(B, N, W, low=-1)
    with torch.no_grad():
        memory[:, 2] = 0.0  # an empty slot: the cosine's norm at 0
    links = rand(2 * B, 2, N, N)  # two write heads
    with torch.no_grad():
        links.diagonal(dim1=-2, dim2=-1).zero_()
    return {
        "content": (ContentWeights, (memory, rand(B, 2, W, low=-1), rand(B, 2, low=1, high=5),
                                     1e-8)),
        "locate": (Locate, (weighting(B, 2, N), weighting(B, 2, N), rand(B, 2),
                            weighting(B, 2, 3), rand(B, 2, low=1, high=4))),
        "locate, reach 2": (Locate, (weighting(B, 1, N), weighting(B, 1, N), rand(B, 1),
                                     weighting(B, 1, 5), rand(B, 1, low=1, high=4))),
        "write, 1 head": (EraseAndAdd, (memory, weighting(B, 1, N), rand(B, 1, W),
                                        rand(B, 1, W, low=-1))),
        "write, 3 heads": (EraseAndAdd, (memory, weighting(B, 3, N), rand(B, 3, W),
                                         rand(B, 3, W, low=-1))),
        "links": (TemporalLinks, (links, 0.5 * weighting(2 * B, 2, N),
                                  0.9 * weighting(2 * B, 2, N), weighting(2 * B, 3, N))),
        # two write heads, three read heads
        "ntm step": (NTMStep, (memory, weighting(B, 5, N), rand(B, 5, W, low=-1),
                               rand(B, 5, low=1, high=5), rand(B, 5), weighting(B, 5, 3),
                               rand(B, 5, low=1, high=4), rand(B, 2, W), rand(B, 2, W, low=-1),
                               2, 1e-8)),
        "dnc access": (DNCAccess, (rand(2 * B, N, W, low=-1), links, 0.5 * weighting(2 * B, 2, N),
                                   weighting(2 * B, 3, N), weighting(2 * B, 2, N),
                                   rand(2 * B, 2, W, low=-1), rand(2 * B, 2, low=1, high=5),
                                   rand(2 * B, 2, W), rand(2 * B, 2, W, low=-1), rand(2 * B, 2),
                                   rand(2 * B, 2), rand(2 * B, 3, W, low=-1),
                                   rand(2 * B, 3, low=1, high=5), weighting(2 * B, 3, 5),
                                   1e-8)),
    }


@pytest.mark.parametrize("name", list(cases()))
def test_backward_equals_autograd_through_the_equations(name):
    function, inputs = cases()[name]
    outputs = function.apply(*inputs)
    expected = function.equations(*inputs)[0]
    outputs = outputs if isinstance(outputs, tuple) else (outputs,)
    expected = expected if isinstance(expected, tuple) else (expected,)
    tensors = [x for x in inputs if isinstance(x, torch.Tensor)]
    torch.manual_seed(1)
    for used in ([True] * len(outputs), [False] + [True] * (len(outputs) - 1)):
        grads = [torch.randn_like(o) if u else None for o, u in zip(outputs, used, strict=True)]
        for o, e in zip(outputs, expected, strict=True):
            torch.testing.assert_close(o, e, rtol=0, atol=0)
        got = torch.autograd.grad([o for o, g in zip(outputs, grads, strict=True) if g is not None],
                                  tensors, [g for g in grads if g is not None], retain_graph=True,
                                  allow_unused=True)
        want = torch.autograd.grad([o for o, g in zip(expected, grads, strict=True) if g is not None],
                                   tensors, [g for g in grads if g is not None], retain_graph=True,
                                   allow_unused=True)
        for i, (a, b) in enumerate(zip(got, want, strict=True)):
            if b is None:
                assert a is None or not a.abs().any(), (name, i)
            else:
                torch.testing.assert_close(a, b, rtol=1e-12, atol=1e-12,
                                           msg=lambda m, i=i: f"{name}, input {i}: {m}")
