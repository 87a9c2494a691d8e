"""The memory's health (training/health.py): logged at each held-out evaluation, printed by
scripts/diagnose_memory.py, blind to nothing a runaway does, invisible to the model."""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from fewshot_mann.config import Config, replace
from fewshot_mann.training import health
from fewshot_mann.training.trainer import Trainer

REPO = Path(__file__).resolve().parents[1]

LRUA_HEALTH = {"logit", "read_norm", "saturated_gates", "slot_norm", "strengths_max",
               "strengths_mean", "write_gates_max", "write_gates_mean"}


def small(data_root, cache_dir, **train) -> Config:
    return replace(Config(), data={"data_root": str(data_root), "cache_dir": str(cache_dir)},
                   episodes={"n_way": 3, "presentations": 4},
                   model={"controller_size": 32, "memory_slots": 16, "memory_width": 8,
                          "read_heads": 2},
                   train={"steps": 4, "batch_size": 4, "log_every": 2, "eval_every": 4,
                          "eval_episodes": 8, "checkpoint_every": 4, "device": "cpu",
                          "threads": 1, "seed": 5, **train})


def diagnose(data_root, *checkpoints) -> str:
    """scripts/diagnose_memory.py's output for `checkpoints`, on 3 episodes."""
    out = subprocess.run([sys.executable, "scripts/diagnose_memory.py", *map(str, checkpoints),
                          "--data-root", str(data_root), "--episodes", "3"],
                         cwd=REPO, capture_output=True, text=True, timeout=300,
                         env={**os.environ, "PYTHONPATH": str(REPO)})
    assert out.returncode == 0, out.stderr
    return out.stdout


@pytest.mark.train
def test_each_heldout_evaluation_logs_the_health_and_the_script_reads_a_checkpoint(
        tmp_path, data_root, cache_dir):
    run = tmp_path / "run"
    Trainer.build(small(data_root, cache_dir, health_episodes=4), run, progress=False).run()
    records = [json.loads(line) for line in (run / "train_log.jsonl").read_text().splitlines()]
    evaluated = [r for r in records if "heldout_instance_accuracy" in r]
    assert evaluated and all(("health" in r) == (r in evaluated) for r in records)
    signs = evaluated[-1]["health"]
    assert set(signs) == LRUA_HEALTH
    assert all(math.isfinite(v) for v in signs.values())
    assert 0 <= signs["write_gates_mean"] <= signs["write_gates_max"] <= 1
    assert 1 <= signs["strengths_mean"] <= signs["strengths_max"]  # beta = 1 + softplus
    assert 0 <= signs["saturated_gates"] <= 1 and signs["slot_norm"] > 0

    # the post-mortem script on the run's checkpoint: a row per shown step, then the summary
    lines = diagnose(data_root, run / "checkpoint.pt").splitlines()
    assert lines[0].endswith("12 steps, means over 3 training episodes")  # 3-way x 4
    assert lines[1].split()[0] == "t" and "slot_norm" in lines[1].split()
    assert [int(line.split()[0]) for line in lines[2:-1]] == [1, 5, 10, 12]
    assert lines[-1].startswith('summary (as train_log.jsonl\'s "health"): logit ')

    # against a copy whose output layer was doubled: that tensor moved most, by exactly 1
    payload = torch.load(run / "checkpoint.pt", weights_only=False)
    payload["model"]["output.weight"] *= 2
    torch.save(payload, tmp_path / "doubled.pt")
    out = diagnose(data_root, run / "checkpoint.pt", tmp_path / "doubled.pt")
    table = out.split("the most moved first:\n")[1].splitlines()
    assert table[1].split()[:2] == ["output.weight", "1.0000"]
    assert float(table[2].split()[1]) == 0.0


def test_no_health_when_asked_for_none(tmp_path, data_root, cache_dir):
    run = tmp_path / "run"
    Trainer.build(small(data_root, cache_dir, health_episodes=0), run, progress=False).run()
    assert "health" not in (run / "train_log.jsonl").read_text()


def test_watching_changes_nothing_and_is_undone(tmp_path, data_root, cache_dir):
    trainer = Trainer.build(small(data_root, cache_dir), tmp_path / "run", progress=False)
    model, batch = trainer.model.eval(), trainer.heldout.sample(4)
    memory, compiled = model.memory, model.step  # a stand-in for a compiled step
    model._step = compiled
    with torch.no_grad():
        logits = model(batch.images, batch.prev_labels)
    per_step, signs = health.trace(model, batch.images, batch.prev_labels)
    assert len(per_step) == batch.images.shape[1]
    assert signs["logit"] == logits.abs().amax().item()  # the same forward pass
    assert model.memory is memory and model._step is compiled
    assert "step" not in model.controller.__dict__  # the class's own step again
    assert not model.training


def test_parameters_blown_up_show_as_saturated_gates_and_large_logits(tmp_path, data_root,
                                                                       cache_dir):
    """The injected spike of tests/test_divergence.py (every parameter x 30), as the health
    sees it."""
    trainer = Trainer.build(small(data_root, cache_dir), tmp_path / "run", progress=False)
    batch = trainer.heldout.sample(8)
    _, before = health.trace(trainer.model, batch.images, batch.prev_labels)
    with torch.no_grad():
        for p in trainer.model.parameters():
            p.mul_(30.0)
    _, after = health.trace(trainer.model, batch.images, batch.prev_labels)
    assert before["saturated_gates"] < 0.05 < 0.5 < after["saturated_gates"]
    assert after["logit"] > 10 * before["logit"]
