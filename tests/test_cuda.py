"""CUDA only (skipped on machines without a GPU; run them where one is: see
scripts/gpu_measurements.sh). The batched backend on the GPU is the reference backend, and a
CUDA-graph-captured episode is the eager one: same outputs, same updates."""

from __future__ import annotations

import copy
import math
import os

import pytest
import torch

from fewshot_mann.bench import random_episodes
from fewshot_mann.config import CACHE_DIR_ENV, Config, ModelConfig, replace
from fewshot_mann.episodes import LabelCode
from fewshot_mann.errors import ConfigError
from fewshot_mann.metrics import episode_loss
from fewshot_mann.models import MANN
from fewshot_mann.training.cuda_graphs import (
    GraphedInference,
    graph_inference,
    graph_training_forward,
)
from fewshot_mann.training.trainer import Trainer

pytestmark = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
CUDA = torch.device("cuda")


def paper_model_and_batches(batches: int, B: int = 16, T: int = 50, seed: int = 0,
                            key_strength_init: float = 11.0):
    torch.manual_seed(seed)
    code = LabelCode.make("one-hot", 5)
    model = MANN(ModelConfig(key_strength_init=key_strength_init), (1, 20, 20), code).to(CUDA)
    return model, [random_episodes(code, B, T, device=CUDA) for _ in range(batches)]


def train_steps(model, forward, data, fused: bool | None = None) -> list[float]:
    optimizer = torch.optim.Adam(model.parameters(), lr=3e-3, fused=fused)
    losses = []
    for images, prev, targets in data:
        loss = episode_loss(forward(images, prev), targets)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 10.0)
        optimizer.step()
        losses.append(loss.item())
    return losses


def test_backends_agree_on_cuda():
    # a moderate key strength, as tests/test_backends.py in float32: at the default (11) the
    # gradient through 50 chained sharp reads amplifies float32 rounding to O(1) differences
    model, [(images, prev, targets)] = paper_model_and_batches(1, B=8, key_strength_init=2.0)
    grads = {}
    for backend in ("reference", "batched"):
        model.set_backend(backend)
        model.zero_grad(set_to_none=True)
        episode_loss(model(images, prev), targets).backward()
        grads[backend] = {n: p.grad.clone() for n, p in model.named_parameters()}
    for name, ref in grads["reference"].items():
        scale = float(ref.abs().max())
        torch.testing.assert_close(grads["batched"][name], ref, rtol=0, atol=1e-4 * scale,
                                   msg=lambda m, n=name: f"gradient of {n}: {m}")


def test_graphed_training_makes_the_eager_updates():
    model, data = paper_model_and_batches(6)
    graphed_model = copy.deepcopy(model)
    eager_losses = train_steps(model, model, data)
    forward = graph_training_forward(graphed_model, data[0][0], data[0][1])
    graph_losses = train_steps(graphed_model, forward, data)
    assert graph_losses == pytest.approx(eager_losses, rel=1e-4)
    for (name, p), q in zip(model.named_parameters(), graphed_model.parameters(), strict=True):
        torch.testing.assert_close(q, p, rtol=1e-4, atol=1e-5, msg=lambda m, n=name: f"{n}: {m}")


def test_compiled_step_under_the_graph_makes_the_eager_updates():
    """train.compile with train.cuda_graph: the warm-up before the capture compiles the time
    step, and the graph replays its fused kernels. Fused float32 arithmetic rounds differently,
    so a moderate key strength (see test_backends_agree_on_cuda) and a looser tolerance."""
    model, data = paper_model_and_batches(6, key_strength_init=2.0)
    compiled = copy.deepcopy(model)
    compiled.compile_step()
    eager_losses = train_steps(model, model, data)
    forward = graph_training_forward(compiled, data[0][0], data[0][1])
    assert train_steps(compiled, forward, data) == pytest.approx(eager_losses, rel=1e-3)
    for (name, p), q in zip(model.named_parameters(), compiled.parameters(), strict=True):
        torch.testing.assert_close(q, p, rtol=1e-3, atol=1e-4, msg=lambda m, n=name: f"{n}: {m}")
    model.eval()
    replay = GraphedInference(compiled).eval()  # the trainer's held-out evaluations
    for images, prev, _ in data[:2]:
        with torch.inference_mode():
            torch.testing.assert_close(replay(images, prev), model(images, prev), rtol=1e-3,
                                       atol=1e-4)


def test_fused_adam_makes_the_multi_tensor_updates():
    """The trainer steps Adam fused on CUDA (run.make_optimizer): the same updates as torch's
    default multi-tensor Adam, to float32 rounding (a moderate key strength, which does not
    amplify it; see test_backends_agree_on_cuda)."""
    model, data = paper_model_and_batches(6, key_strength_init=2.0)
    fused = copy.deepcopy(model)
    expected = train_steps(model, model, data)
    assert train_steps(fused, fused, data, fused=True) == pytest.approx(expected, rel=1e-4)
    for (name, p), q in zip(model.named_parameters(), fused.parameters(), strict=True):
        torch.testing.assert_close(q, p, rtol=1e-4, atol=1e-5, msg=lambda m, n=name: f"{n}: {m}")


@pytest.mark.xfail(reason="torch 2.11 on an H200 (2026-11-27): the compiled backward runs a "
                   "float32 bmm into a bf16 buffer; run.build_run refuses bf16 + compile on CUDA",
                   strict=False)
def test_compiled_step_under_the_graph_trains_in_bf16():
    """bf16 autocast + compiled step + CUDA graph (train.precision "bf16" with train.compile):
    torch.compile refused the memory write as a baddbmm of a float32 memory and bf16 matmul
    inputs; the write is a float32 sum of a bf16 matmul now, and the graphed steps should train
    as the eager bf16 ones do (bf16 rounding: a loose tolerance). They do not yet: the backward
    fails inside inductor's code (results/bench/h200-profile-b16384-bf16-compiled.txt)."""
    model, data = paper_model_and_batches(6, key_strength_init=2.0)
    compiled = copy.deepcopy(model)
    compiled.compile_step()

    def bf16(forward):
        def run(images, prev):
            with torch.autocast("cuda", dtype=torch.bfloat16, cache_enabled=False):
                return forward(images, prev).float()
        return run

    eager_losses = train_steps(model, bf16(model), data)
    with torch.autocast("cuda", dtype=torch.bfloat16, cache_enabled=False):
        forward = graph_training_forward(compiled, data[0][0], data[0][1])
    graph_losses = train_steps(compiled, bf16(forward), data)
    assert all(map(math.isfinite, graph_losses))
    assert graph_losses == pytest.approx(eager_losses, rel=2e-2)


def test_trainer_refuses_bf16_with_compile_on_cuda(tmp_path, data_root):
    cfg = replace(Config(), data={"data_root": str(data_root)},
                  train={"device": "cuda", "precision": "bf16", "compile": True})
    with pytest.raises(ConfigError, match=r"bf16 with train\.compile"):
        Trainer.build(cfg, tmp_path / "run", progress=False)


@pytest.mark.parametrize("compiled", [False, True])
def test_graphed_inference_matches_eager(compiled):
    """With a compiled step too: the inference graph captures the eager step (no compilation
    of the inference shape) and leaves the compiled one in place for training."""
    model, data = paper_model_and_batches(2)
    if compiled:
        model.compile_step()
    step = model.__dict__.get("_step")
    model.eval()
    replay = graph_inference(model, data[0][0], data[0][1])
    assert model.__dict__.get("_step") is step
    for images, prev, _ in data:  # new inputs are copied into the captured buffers
        with torch.inference_mode(), model.uncompiled():
            expected = model(images, prev)
        torch.testing.assert_close(replay(images, prev).clone(), expected, rtol=1e-4, atol=1e-5)


def test_trainer_with_cuda_graph_resumes_exactly(tmp_path, data_root, cache_dir):
    cache = os.environ.get(CACHE_DIR_ENV) or str(cache_dir)  # a decoded cache, if one is there
    cfg = replace(Config(), data={"data_root": str(data_root), "cache_dir": cache},
                  train={"steps": 40, "device": "cuda", "cuda_graph": True, "eval_every": 20,
                         "checkpoint_every": 20, "log_every": 20, "eval_episodes": 64})
    whole = Trainer.build(cfg, tmp_path / "whole", progress=False)
    whole.run()
    paused = Trainer.build(cfg, tmp_path / "paused", progress=False)
    paused.run(stop_at=20)
    resumed = Trainer.build(cfg, tmp_path / "paused", resume=True, progress=False)
    assert [g["fused"] for g in resumed.optimizer.param_groups] == [True]  # one Adam kernel
    resumed.run()
    for (name, p), q in zip(whole.model.named_parameters(), resumed.model.parameters(),
                            strict=True):
        torch.testing.assert_close(q, p, rtol=1e-4, atol=1e-5, msg=lambda m, n=name: f"{n}: {m}")
    assert (tmp_path / "whole" / "model.pt").is_file()


def test_rollback_under_cuda_graphs_restores_the_captured_parameters(tmp_path, data_root,
                                                                     cache_dir):
    """A rollback copies the last good weights into the parameters in place, so the captured
    graph goes on reading them; a curriculum captures one graph per episode length."""
    from test_divergence import SPIKE_AT, SpikingTrainer, log_records, tiny_config

    cache = os.environ.get(CACHE_DIR_ENV) or str(cache_dir)
    cfg = tiny_config(data_root, cache, device="cuda", cuda_graph=True, curriculum="2",
                      curriculum_accuracy=0.01)
    trainer = SpikingTrainer.build(cfg, tmp_path / "run", progress=False)
    trainer.run()
    events = [r for r in log_records(tmp_path / "run") if "event" in r]
    assert [e["event"] for e in events] == ["widen", "rollback"], events
    assert events[1]["step"] == SPIKE_AT and len(trainer._graphed) == 2
    restored = {k: v.clone() for k, v in trainer.model.state_dict().items()}
    assert all(torch.isfinite(v).all() for v in restored.values())
