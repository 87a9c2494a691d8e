"""LRUA (Santoro et al. 2016, eqs. 17-23) on tiny cases computed by hand, for both backends."""

from __future__ import annotations

import pytest
import torch

from fewshot_mann.config import ModelConfig
from fewshot_mann.memory import BACKENDS, make_memory
from fewshot_mann.memory.addressing import least_used
from fewshot_mann.memory.lrua import LRUAControls, LRUAState


def state(memory, usage, read_weights, least_used_weights, lu) -> LRUAState:
    return LRUAState(torch.tensor([memory]), torch.tensor([usage]), torch.tensor([read_weights]),
                     torch.tensor([least_used_weights]), torch.tensor([lu]))


@pytest.fixture(params=BACKENDS)
def backend(request):
    return request.param


def lrua(backend: str, slots: int, width: int, heads: int, gamma: float):
    # the hand computations take the cosine as printed (eq. 17): an eps of 1e-8 is below their
    # tolerance, 1e-2 would not be
    cfg = ModelConfig(memory_slots=slots, memory_width=width, read_heads=heads, gamma=gamma,
                      cosine_eps=1e-8)
    return make_memory("lrua", backend, cfg, label_size=5)


def test_write_interpolation_zeroing_and_read(backend):
    # 4 slots x 2, one head, gamma 0.5
    mem = lrua(backend, slots=4, width=2, heads=1, gamma=0.5)
    s = state(memory=[[1.0, 0.0], [0.0, 1.0], [3.0, 3.0], [0.0, 0.0]],
              usage=[0.9, 0.2, 0.1, 0.4],
              read_weights=[[1.0, 0.0, 0.0, 0.0]],
              least_used_weights=[0.0, 0.0, 1.0, 0.0],
              lu=2)
    key = torch.tensor([[[2.0, 0.0]]])
    gate = torch.tensor([[0.25]])
    reads, new = mem.step(s, LRUAControls(key, gate, torch.ones(1, 1)))
    # eq. 22: w_w = 0.25 * [1,0,0,0] + 0.75 * [0,0,1,0]
    w_w = torch.tensor([0.25, 0.0, 0.75, 0.0])
    # slot 2 (least used) zeroed, then eq. 23: M += w_w (x) k
    expected_memory = torch.tensor([[1.5, 0.0], [0.0, 1.0], [1.5, 0.0], [0.0, 0.0]])
    torch.testing.assert_close(new.memory[0], expected_memory)
    # eq. 17: cosine of k=[2,0] with each slot: 1, 0, 1, 0 (empty slot reads as 0)
    cosine = torch.tensor([1.0, 0.0, 1.0, 0.0])
    w_r = torch.softmax(cosine, 0)  # eq. 18, strength 1
    torch.testing.assert_close(new.read_weights[0, 0], w_r)
    torch.testing.assert_close(reads[0, 0], w_r @ expected_memory)  # eq. 19
    # eq. 20: usage = 0.5 * usage + w_r + w_w
    usage = 0.5 * torch.tensor([0.9, 0.2, 0.1, 0.4]) + w_r + w_w
    torch.testing.assert_close(new.usage[0], usage)
    # eq. 21 with n = 1 head: the single smallest usage
    assert int(new.least_used[0]) == int(usage.argmin())
    assert new.least_used_weights[0].tolist() == [
        1.0 if i == int(usage.argmin()) else 0.0 for i in range(4)]


def test_read_weights_sharpen_with_strength(backend):
    mem = lrua(backend, slots=3, width=2, heads=2, gamma=0.95)
    s = mem.initial_state(1, torch.device("cpu"), torch.float32)
    s = s._replace(memory=torch.tensor([[[1.0, 0.0], [0.0, 1.0], [1.0, 1.0]]]),
                   least_used_weights=torch.zeros(1, 3), least_used=torch.tensor([2]))
    # slot 2 is zeroed before the write; nothing is written (gate 1, no previous reads)
    keys = torch.tensor([[[1.0, 0.0], [1.0, 0.0]]])
    _, new = mem.step(s, LRUAControls(keys, torch.ones(1, 2), torch.tensor([[1.0, 5.0]])))
    cos = torch.tensor([1.0, 0.0, 0.0])
    torch.testing.assert_close(new.read_weights[0, 0], torch.softmax(cos, 0))
    torch.testing.assert_close(new.read_weights[0, 1], torch.softmax(5 * cos, 0))
    assert new.memory[0, 2].abs().sum() == 0


def test_usage_accumulates_all_heads_and_decays(backend):
    mem = lrua(backend, slots=4, width=3, heads=2, gamma=0.9)
    s = mem.initial_state(2, torch.device("cpu"), torch.float32)
    keys = torch.randn(2, 2, 3)
    gates = torch.tensor([[0.3, 0.6], [0.0, 1.0]])
    _, new = mem.step(s, LRUAControls(keys, gates, torch.ones(2, 2)))
    # initial state: w_r = 0, w_lu = slots {0, 1}, so w_w_h = (1 - g_h) * w_lu
    w_lu = torch.tensor([1.0, 1.0, 0.0, 0.0])
    for b in range(2):
        w_w = sum((1 - gates[b, h]) * w_lu for h in range(2))
        torch.testing.assert_close(new.usage[b], 0.9 * 0 + new.read_weights[b].sum(0) + w_w)
        # slot contents: (1-g0) k0 + (1-g1) k1 on both least-used slots, nothing elsewhere
        written = (1 - gates[b, 0]) * keys[b, 0] + (1 - gates[b, 1]) * keys[b, 1]
        torch.testing.assert_close(new.memory[b, 0], written)
        torch.testing.assert_close(new.memory[b, 1], written)
        assert new.memory[b, 2:].abs().sum() == 0


@pytest.mark.parametrize("usage, n, expected", [
    ([0.3, 0.1, 0.1, 0.5], 2, [1, 2]),  # tie -> lowest index first
    ([0.0, 0.0, 0.0, 0.0], 3, [0, 1, 2]),
    ([0.5, 0.4, 0.3, 0.2], 1, [3]),
    ([1e-30, 0.0, 2.0, 1e-30], 3, [1, 0, 3]),  # tiny values still ordered exactly
])
def test_least_used_choice(usage, n, expected):
    assert least_used(torch.tensor([usage]), n)[0].tolist() == expected


def test_least_used_matches_stable_sort_on_many_ties():
    g = torch.Generator().manual_seed(0)
    for _ in range(50):
        usage = torch.randint(0, 4, (16, 128), generator=g).float() / 4
        expected = torch.sort(usage, stable=True).indices[:, :4]
        assert torch.equal(least_used(usage, 4), expected)


@pytest.mark.train
def test_least_used_compiled_picks_the_same_slots():
    """Under torch.compile least_used takes n argmin passes instead of the top-k."""
    compiled = torch.compile(least_used, dynamic=False)
    usage = torch.randint(0, 4, (16, 128), generator=torch.Generator().manual_seed(1)).float() / 4
    usage[0] = 0.0
    assert torch.equal(compiled(usage, 4), torch.sort(usage, stable=True).indices[:, :4])


def test_empty_memory_has_finite_gradients(backend):
    mem = lrua(backend, slots=5, width=4, heads=2, gamma=0.95)
    s = mem.initial_state(3, torch.device("cpu"), torch.float32)
    keys = torch.randn(3, 2, 4, requires_grad=True)
    gates = torch.full((3, 2), 0.5, requires_grad=True)
    reads, _ = mem.step(s, LRUAControls(keys, gates, torch.ones(3, 2)))
    reads.sum().backward()
    assert torch.isfinite(keys.grad).all() and torch.isfinite(gates.grad).all()
    assert torch.isfinite(reads).all()
