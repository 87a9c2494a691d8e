"""The written-out backward passes of fewshot_mann/memory/fused.py equal autograd through the
same equations (float64), for every input and with some outputs' gradients absent; so does the
controller's recurrent weight gradient formed over all steps at once; the memories train under
bf16 autocast and compiled."""

from __future__ import annotations

import pytest
import torch

from fewshot_mann.config import ModelConfig
from fewshot_mann.episodes import LabelCode
from fewshot_mann.memory.fused import (
    ContentWeights,
    DNCAccess,
    EraseAndAdd,
    Locate,
    NTMStep,
    TemporalLinks,
)
from fewshot_mann.models import MANN, controller

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
    for o, e in zip(outputs, expected, strict=True):
        torch.testing.assert_close(o, e, rtol=0, atol=0)
    for used in ([True] * len(outputs), [False] + [True] * (len(outputs) - 1)):
        grads = [torch.randn_like(o) for o, u in zip(outputs, used, strict=True) if u]
        got, want = (torch.autograd.grad([o for o, u in zip(out, used, strict=True) if u],
                                         tensors, grads, retain_graph=True, allow_unused=True)
                     for out in (outputs, expected))
        for i, (a, b) in enumerate(zip(got, want, strict=True)):
            if b is None:
                assert a is None or not a.abs().any(), (name, i)
            else:
                torch.testing.assert_close(a, b, rtol=1e-12, atol=1e-12,
                                           msg=lambda m, i=i: f"{name}, input {i}: {m}")

def small_mann(memory: str, dtype: torch.dtype = torch.float32):
    torch.manual_seed(0)
    cfg = ModelConfig(memory=memory, controller_size=16, memory_slots=8, memory_width=4,
                      read_heads=2)
    code = LabelCode.make("one-hot", 5)
    model = MANN(cfg, (1, 5, 5), code).to(dtype)
    images = torch.rand(3, 6, 25, dtype=dtype)
    targets = torch.randint(0, 5, (3, 6, 1))
    prev = torch.cat([torch.zeros(3, 1, 5, dtype=dtype), code.encode(targets)[:, :-1].to(dtype)],
                     1)
    return model, images, prev, targets


def gradients(model, images, prev, targets):
    model.zero_grad(set_to_none=True)
    logits = model(images, prev)
    torch.nn.functional.cross_entropy(logits.float().flatten(0, 2), targets.flatten()).backward()
    return logits.detach(), {n: p.grad.clone() for n, p in model.named_parameters()}


def test_the_recurrent_weights_gradient_over_all_steps_equals_autograds(monkeypatch):
    """On the CPU the controller forms W_h's gradient once, in the first step's backward."""
    model, images, prev, targets = small_mann("dnc", F64)
    _, deferred = gradients(model, images, prev, targets)
    monkeypatch.setattr(controller._RecurrentProduct, "apply",
                        lambda projected, x, weight, steps: projected + x @ weight.t())
    _, plain = gradients(model, images, prev, targets)
    for name in plain:
        torch.testing.assert_close(deferred[name], plain[name], rtol=1e-12, atol=1e-14,
                                   msg=lambda m, n=name: f"{n}: {m}")


@pytest.mark.parametrize("memory", ["ntm", "dnc"])
def test_bf16_autocast_differentiates_the_equations(memory):
    model, images, prev, targets = small_mann(memory)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        logits, grads = gradients(model, images, prev, targets)
    assert torch.isfinite(logits).all()
    assert all(torch.isfinite(g).all() and g.abs().sum() > 0 for g in grads.values())


@pytest.mark.train
@pytest.mark.parametrize("memory", ["ntm", "dnc"])
def test_the_compiled_step_makes_the_eager_gradients(memory):
    model, images, prev, targets = small_mann(memory)
    eager_logits, eager = gradients(model, images, prev, targets)
    model.compile_step()
    logits, compiled = gradients(model, images, prev, targets)
    torch.testing.assert_close(logits, eager_logits, rtol=1e-5, atol=1e-6)
    for name in eager:
        torch.testing.assert_close(compiled[name], eager[name], rtol=1e-4, atol=1e-6)
