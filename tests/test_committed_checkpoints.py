"""Every checkpoint committed under results/ (MANN with each memory, LSTM, feedforward,
ProtoNets, MAML; model.pt and resumable checkpoint.pt files, those of the former ProtoNets/MAML
trainer too) loads through the public loader and evaluates on its split's test classes."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from fewshot_mann.checkpoint import checkpoint_config, load_checkpoint
from fewshot_mann.config import METHODS
from fewshot_mann.evaluation.heldout import evaluate_checkpoint

RESULTS = Path(__file__).resolve().parents[1] / "results"
CHECKPOINTS = sorted(RESULTS.rglob("*.pt"))


def test_results_hold_checkpoints_of_every_method():
    kinds = {checkpoint_config(load_checkpoint(path), path)[0].model.kind
             for path in CHECKPOINTS}
    assert kinds == set(METHODS), kinds


@pytest.mark.parametrize("path", CHECKPOINTS,
                         ids=[str(p.relative_to(RESULTS)) for p in CHECKPOINTS])
def test_committed_checkpoint_loads_and_evaluates(path, tmp_path, data_root, cache_dir):
    # sequence models: episodes of 2 presentations a class, the shortest with a memory answer
    result = evaluate_checkpoint(path, episodes=2, out_dir=tmp_path, batch_size=2,
                                 presentations=2, device="cpu", progress=False,
                                 data_overrides={"data_root": str(data_root),
                                                 "cache_dir": str(cache_dir)})
    metrics = json.loads((tmp_path / "metrics.json").read_text())
    assert metrics["episodes"] == result.episodes == 2
    assert metrics["trained_steps"] == load_checkpoint(path)["step"] > 0
    accuracy = metrics.get("accuracy", metrics.get("instance_accuracy"))
    assert accuracy is not None and all(0 <= a <= 1 for a in
                                        (accuracy if isinstance(accuracy, list) else [accuracy]))
