"""NTM, DNC and the key-value memory: reference and batched forms agree (outputs and gradients,
float64), hand-computed cases pin each equation, and every variant trains, saves and reloads."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import pytest
import torch

from fewshot_mann.checkpoint import load_checkpoint, model_from_checkpoint
from fewshot_mann.config import Config, ConfigError, ModelConfig, replace
from fewshot_mann.episodes import LabelCode
from fewshot_mann.memory import BACKENDS, make_memory
from fewshot_mann.memory.addressing import allocation, link_update, precedence_update, shift
from fewshot_mann.memory.dnc import DNCControls
from fewshot_mann.memory.kv import KVControls
from fewshot_mann.memory.ntm import NTMControls
from fewshot_mann.models import MANN
from fewshot_mann.training.trainer import Trainer

F64 = torch.float64
REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(params=BACKENDS)
def backend(request):
    return request.param


def gradients(model: MANN, backend: str, images, prev, targets):
    model.set_backend(backend)
    model.zero_grad(set_to_none=True)
    logits = model(images, prev)
    loss = torch.nn.functional.cross_entropy(logits.flatten(0, 2), targets.flatten())
    if model.auxiliary_loss is not None:
        loss = loss + model.auxiliary_loss
    loss.backward()
    return logits.detach(), {n: p.grad.clone() for n, p in model.named_parameters()}


@pytest.mark.parametrize("memory, write_heads", [("ntm", 1), ("ntm", 2), ("dnc", 1),
                                                 ("dnc", 2), ("kv", 1)])
def test_reference_and_batched_agree_in_float64(memory, write_heads):
    torch.manual_seed(0)
    # 6 slots for 40 steps of 5 classes: slots are reused (kv: the oldest one overwritten)
    cfg = ModelConfig(memory=memory, controller_size=24, memory_slots=6, memory_width=5,
                      read_heads=2, write_heads=write_heads, key_strength_init=3.0)
    code = LabelCode.make("one-hot", 5)
    model = MANN(cfg, (1, 5, 5), code).to(F64)
    B, T = 3, 40
    images = torch.rand(B, T, 25, dtype=F64)
    targets = torch.randint(0, 5, (B, T, 1))
    prev = torch.cat([torch.zeros(B, 1, 5, dtype=F64), code.encode(targets)[:, :-1].to(F64)], 1)
    ref_out, ref_grad = gradients(model, "reference", images, prev, targets)
    bat_out, bat_grad = gradients(model, "batched", images, prev, targets)
    torch.testing.assert_close(bat_out, ref_out, rtol=1e-10, atol=1e-10)
    for name in ref_grad:
        assert ref_grad[name].abs().sum() > 0 or name.startswith("encoder"), name
        torch.testing.assert_close(bat_grad[name], ref_grad[name], rtol=1e-9, atol=1e-11,
                                   msg=lambda m, n=name: f"gradient of {n}: {m}")


# ---- NTM (Graves et al. 2014) --------------------------------------------------------------
def ntm_step(backend: str, memory, previous, gamma=1.0, shifts=(0.0, 1.0, 0.0),
             erase=None, add=None):
    """One NTM step with the content stage switched off (gate 0: eq. 7 keeps w_{t-1}), one
    write head and one read head that both start from `previous`."""
    N, W = len(memory), len(memory[0])
    mem = make_memory("ntm", backend, ModelConfig(memory="ntm", memory_slots=N, memory_width=W,
                                                  read_heads=1, write_heads=1), label_size=5)
    state = mem.initial_state(1, torch.device("cpu"), F64)
    state = state._replace(memory=torch.tensor([memory], dtype=F64),
                           weights=torch.tensor([[previous, previous]], dtype=F64))
    two = torch.ones(1, 2, dtype=F64)
    controls = NTMControls(
        keys=torch.ones(1, 2, W, dtype=F64), strengths=two, gates=0 * two,
        shifts=torch.tensor([shifts, shifts], dtype=F64).unsqueeze(0), sharpening=gamma * two,
        erase=torch.tensor([[erase or [0.0] * W]], dtype=F64),
        add=torch.tensor([[add or [0.0] * W]], dtype=F64))
    return mem.step(state, controls)


def test_ntm_shift_of_a_one_hot_weighting(backend):
    memory = [[0.0, 0.0]] * 5
    _, s = ntm_step(backend, memory, [0, 1.0, 0, 0, 0], shifts=(0.0, 0.0, 1.0))  # eq. 8: +1
    torch.testing.assert_close(s.weights[0, 0], torch.tensor([0, 0, 1.0, 0, 0], dtype=F64))
    # offsets -1 and +1 with half the weight each, from slot 0: slot 4 (wrapping round), 1
    _, s = ntm_step(backend, memory, [1.0, 0, 0, 0, 0], shifts=(0.5, 0.0, 0.5))
    torch.testing.assert_close(s.weights[0, 1], torch.tensor([0, 0.5, 0, 0, 0.5], dtype=F64))


def test_shift_function_matches_circular_convolution():
    w = torch.tensor([[[0.1, 0.2, 0.3, 0.4]]], dtype=F64)
    s = torch.tensor([[[0.2, 0.5, 0.3]]], dtype=F64)  # offsets -1, 0, +1
    # w~(i) = 0.2 w(i+1) + 0.5 w(i) + 0.3 w(i-1)
    expected = [0.2 * 0.2 + 0.5 * 0.1 + 0.3 * 0.4, 0.2 * 0.3 + 0.5 * 0.2 + 0.3 * 0.1,
                0.2 * 0.4 + 0.5 * 0.3 + 0.3 * 0.2, 0.2 * 0.1 + 0.5 * 0.4 + 0.3 * 0.3]
    torch.testing.assert_close(shift(w, s)[0, 0], torch.tensor(expected, dtype=F64))


def test_ntm_sharpening(backend):
    _, s = ntm_step(backend, [[0.0]] * 3, [0.5, 0.3, 0.2], gamma=2.0)  # eq. 9
    torch.testing.assert_close(s.weights[0, 1], torch.tensor([0.25, 0.09, 0.04], dtype=F64)
                               / 0.38)


def test_ntm_erase_then_add_and_read(backend):
    memory = [[1.0, 1.0], [4.0, 2.0], [3.0, 3.0]]
    reads, s = ntm_step(backend, memory, [0, 1.0, 0], erase=[1.0, 0.5], add=[2.0, 3.0])
    # eq. 3: M(1) * (1 - e) = [0, 1]; eq. 4: + a = [2, 4]; the others untouched
    torch.testing.assert_close(s.memory[0], torch.tensor([[1.0, 1], [2, 4], [3, 3]], dtype=F64))
    torch.testing.assert_close(reads[0, 0], torch.tensor([2.0, 4.0], dtype=F64))  # eq. 2


# ---- DNC (Graves et al. 2016) --------------------------------------------------------------
def dnc_write(mem, state):
    """One DNC step whose read heads free nothing and whose write head writes by allocation."""
    W = mem.width
    one, zero = torch.ones(1, 1, dtype=F64), torch.zeros(1, 1, dtype=F64)
    controls = DNCControls(
        read_keys=torch.ones(1, 1, W, dtype=F64), read_strengths=one,
        write_keys=torch.ones(1, 1, W, dtype=F64), write_strengths=one,
        erase=torch.zeros(1, 1, W, dtype=F64), write_vectors=torch.ones(1, 1, W, dtype=F64),
        free_gates=zero, allocation_gates=one, write_gates=one,
        read_modes=torch.tensor([[[0.0, 1.0, 0.0]]], dtype=F64))
    return mem.step(state, controls)


def dnc(backend: str, slots: int):
    return make_memory("dnc", backend, ModelConfig(memory="dnc", memory_slots=slots,
                                                   memory_width=2, read_heads=1), label_size=5)


def test_dnc_allocation_of_a_known_usage(backend):
    mem = dnc(backend, 4)
    state = mem.initial_state(1, torch.device("cpu"), F64)
    state = state._replace(usage=torch.tensor([[0.5, 0.2, 1.0, 0.8]], dtype=F64))
    _, new = dnc_write(mem, state)
    # by usage: slot 1 (0.2), 0 (0.5), 3 (0.8), 2 (1.0); a = (1 - u) x product of those before
    expected = [0.5 * 0.2, 0.8, 0.0 * 0.2 * 0.5 * 0.8, 0.2 * 0.2 * 0.5]
    torch.testing.assert_close(new.write_weights[0, 0], torch.tensor(expected, dtype=F64))
    torch.testing.assert_close(allocation(torch.tensor([[0.5, 0.2, 1.0, 0.8]], dtype=F64))[0],
                               torch.tensor(expected, dtype=F64))


def test_dnc_link_matrix_after_three_writes(backend):
    mem = dnc(backend, 4)
    state = mem.initial_state(1, torch.device("cpu"), F64)
    for slot in (0, 2, 1):  # usage 0 on `slot`, 1 elsewhere: allocation is one-hot on it
        usage = torch.ones(1, 4, dtype=F64)
        usage[0, slot] = 0.0
        unwritten = torch.zeros(1, 1, 4, dtype=F64)  # w^w_{t-1} = 0: usage stays as set
        _, state = dnc_write(mem, state._replace(usage=usage, write_weights=unwritten))
    links = torch.zeros(4, 4, dtype=F64)
    links[2, 0] = 1.0  # slot 2 was written right after slot 0
    links[1, 2] = 1.0  # slot 1 right after slot 2
    torch.testing.assert_close(state.links[0, 0], links)
    torch.testing.assert_close(state.precedence[0, 0], torch.tensor([0, 1.0, 0, 0], dtype=F64))
    # the same with the addressing functions, and soft writes: p and L by their formulas
    w = torch.tensor([[[0.5, 0.25, 0.0, 0.0]]], dtype=F64)
    p = torch.tensor([[[0.0, 0.0, 0.6, 0.2]]], dtype=F64)
    L = link_update(torch.zeros(1, 1, 4, 4, dtype=F64), p, w)[0, 0]
    assert L[0, 2] == 0.5 * 0.6 and L[1, 3] == 0.25 * 0.2 and L.diagonal().abs().sum() == 0
    torch.testing.assert_close(precedence_update(p, w)[0, 0],
                               torch.tensor([0.5, 0.25, 0.15, 0.05], dtype=F64))


def test_dnc_reads_follow_the_links(backend):
    mem = dnc(backend, 3)
    links = torch.tensor([[[[0.0, 0, 0], [0, 0, 1], [1, 0, 0]]]], dtype=F64)  # 0 -> 2 -> 1
    state = mem.initial_state(1, torch.device("cpu"), F64)._replace(
        links=links, read_weights=torch.tensor([[[0.0, 0, 1]]], dtype=F64),
        memory=torch.tensor([[[1.0, 0], [0, 1], [1, 1]]], dtype=F64))
    for modes, expected in (([1.0, 0, 0], [1.0, 0, 0]), ([0, 0, 1.0], [0, 1.0, 0])):
        controls = DNCControls(
            *(torch.zeros(1, 1, 2, dtype=F64) if i in (0, 2, 4, 5) else
              torch.zeros(1, 1, dtype=F64) for i in range(9)),
            read_modes=torch.tensor([[modes]], dtype=F64))
        _, new = mem.step(state, controls._replace(write_gates=torch.zeros(1, 1, dtype=F64)))
        # backward from slot 2 is slot 0 (written before it), forward is slot 1
        torch.testing.assert_close(new.read_weights[0, 0], torch.tensor(expected, dtype=F64))


# ---- key-value memory (Kaiser et al. 2017) -------------------------------------------------
def test_kv_update_and_margin_loss(backend):
    mem = make_memory("kv", backend, ModelConfig(memory="kv", memory_slots=3, memory_width=2,
                                                 kv_neighbours=2, kv_margin=0.1), label_size=2)
    a, b = [1.0, 0.0], [0.0, 1.0]
    state = mem.initial_state(1, torch.device("cpu"), F64)._replace(
        keys=torch.tensor([[[1.0, 0], [0, 1], [0, 0]]], dtype=F64),
        values=torch.tensor([[a, b, [0, 0]]], dtype=F64),
        ages=torch.tensor([[2.0, 5.0, 1.0]], dtype=F64),
        query=torch.tensor([[0.8, 0.6]], dtype=F64))
    query = torch.tensor([[0.0, 1.0]], dtype=F64)

    def step(label):
        return mem.step(state, KVControls(query, torch.ones(1, dtype=F64),
                                          torch.tensor([label], dtype=F64)))

    # label a: the nearest key (slot 0, similarity 0.8) holds a -> its key moves to the query
    _, new = step(a)
    torch.testing.assert_close(new.keys[0, 0], torch.tensor([1.8, 0.6], dtype=F64)
                               / torch.tensor([1.8, 0.6]).norm().item())
    assert new.ages[0].tolist() == [0.0, 6.0, 2.0]
    # loss: positive slot 0 (0.8), negative slot 1 (0.6): max(0.6 - 0.8 + 0.1, 0) = 0
    assert float(new.margin_loss[0]) == 0.0
    # label b: the nearest key holds a, so the oldest slot (1, age 5) gets query and label
    reads, new = step(b)
    torch.testing.assert_close(new.keys[0, 1], torch.tensor([0.8, 0.6], dtype=F64))
    assert new.values[0, 1].tolist() == b and new.ages[0].tolist() == [3.0, 0.0, 2.0]
    torch.testing.assert_close(new.margin_loss[0], torch.tensor(0.8 - 0.6 + 0.1, dtype=F64))
    # read for query (0, 1): its 2 nearest keys are slot 1 ((0.8, 0.6): similarity 0.6) and
    # slot 0 ((1, 0): 0, tied with the empty slot 2, the lower index first); softmax weights
    w = torch.softmax(torch.tensor([0.6, 0.0], dtype=F64), 0)
    torch.testing.assert_close(reads[0, 0], w[0] * torch.tensor(b, dtype=F64)
                               + w[1] * torch.tensor(a, dtype=F64))


# ---- every variant trains, checkpoints and reloads -----------------------------------------
HEALTH_CONTROLS = {"ntm": ("strengths", "gates"), "kv": ("strength",),
                   "dnc": ("read_strengths", "write_strengths", "free_gates",
                           "allocation_gates", "write_gates")}


@pytest.mark.parametrize("memory, options", [("ntm", {}), ("dnc", {}), ("kv", {}),
                                             ("kv", {"kv_query": "encoder"})])
def test_trains_and_reloads(tmp_path, data_root, cache_dir, memory, options):
    cfg = replace(Config(), data={"data_root": str(data_root), "cache_dir": str(cache_dir)},
                  model={"memory": memory, "controller_size": 32, "memory_slots": 16,
                         "memory_width": 8, "read_heads": 2, **options},
                  train={"steps": 3, "batch_size": 4, "eval_every": 3, "eval_episodes": 8,
                         "checkpoint_every": 3, "device": "cpu", "threads": 1})
    trainer = Trainer.build(cfg, tmp_path / memory, progress=False)
    before = {n: p.detach().clone() for n, p in trainer.model.named_parameters()}
    trainer.run()
    assert all(not torch.equal(before[n], p) for n, p in trainer.model.named_parameters()
               if n.startswith(("head_params", "controller")))
    # the held-out evaluation logged the variant's strengths and gates (training/health.py)
    signs = json.loads((tmp_path / memory / "train_log.jsonl").read_text().splitlines()[-1]
                       )["health"]
    assert {f"{name}_{of}" for name in HEALTH_CONTROLS[memory] for of in ("mean", "max")} \
        <= set(signs)
    assert ("slot_norm" in signs) == (memory != "kv")  # kv keeps unit keys and labels
    model, saved, _ = model_from_checkpoint(load_checkpoint(tmp_path / memory / "model.pt"))
    assert saved.model.memory == memory
    batch = trainer.heldout.sample(2)
    model.eval(), trainer.model.eval()
    with torch.no_grad():
        assert torch.equal(model(batch.images, batch.prev_labels),
                           trainer.model(batch.images, batch.prev_labels))
    if memory == "kv":  # its margin loss reaches the interface layer
        trainer.model.train()
        trainer.model(batch.images, batch.prev_labels)
        loss = trainer.model.auxiliary_loss
        assert loss > 0
        loss.backward()
        queried = trainer.model.head_params.query_projection or trainer.model.head_params
        assert queried.weight.grad.abs().sum() > 0


def test_kv_query_from_the_encoder():
    """kv_query = "encoder": q_t = normalize(W_q e_t), W_q the identity where the widths agree
    (so that a pretrained encoder's nearest neighbours are the memory's from the first step),
    a random projection with orthonormal rows where they do not."""
    code = LabelCode.make("one-hot", 5)
    cfg = ModelConfig(memory="kv", kv_query="encoder", memory_width=64, controller_size=16)
    model = MANN(cfg, (1, 8, 8), code)  # flat pixels: 64 features
    features, h = torch.randn(3, 64), torch.randn(3, 16)
    controls = model.head_params(h, torch.zeros(3, code.input_size), features)
    torch.testing.assert_close(controls.query, torch.nn.functional.normalize(features, dim=-1))
    assert model.head_params.out_features == 1  # the controller sets the strength only
    narrow = MANN(dataclasses.replace(cfg, memory_width=40), (1, 8, 8), code).head_params
    w = narrow.query_projection.weight  # (40, 64)
    torch.testing.assert_close(w @ w.T, torch.eye(40))


def test_a_frozen_query_keeps_the_encoders_metric(tmp_path, data_root, cache_dir):
    """freeze_query: real training steps leave W_q where it started (the controller, output
    layer and key strength still learn), and the reloaded model has the same W_q."""
    cfg = replace(Config(), data={"data_root": str(data_root), "cache_dir": str(cache_dir)},
                  model={"memory": "kv", "kv_query": "encoder", "freeze_query": True,
                         "controller_size": 32, "memory_slots": 16, "memory_width": 8},
                  train={"steps": 3, "batch_size": 4, "eval_every": 3, "eval_episodes": 8,
                         "checkpoint_every": 3, "device": "cpu", "threads": 1})
    trainer = Trainer.build(cfg, tmp_path, progress=False)
    projection = trainer.model.head_params.query_projection.weight
    start, output = projection.detach().clone(), trainer.model.output.weight.detach().clone()
    trainer.run()
    assert torch.equal(projection, start) and not projection.requires_grad
    assert not torch.equal(trainer.model.output.weight, output)
    model, saved, _ = model_from_checkpoint(load_checkpoint(tmp_path / "model.pt"))
    assert saved.model.freeze_query
    assert torch.equal(model.head_params.query_projection.weight, start)
    with pytest.raises(ConfigError, match="kv_query = 'encoder'"):
        replace(Config(), model={"memory": "kv", "freeze_query": True}).validate()


def test_checkpoints_from_before_the_memory_choice_load_as_lrua():
    payload = load_checkpoint(REPO / "results" / "santoro-5way" / "model.pt")
    assert "memory" not in payload["config"]["model"]
    _, cfg, _ = model_from_checkpoint(payload)
    assert cfg.model.memory == "lrua"
