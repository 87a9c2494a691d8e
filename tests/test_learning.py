"""A short real training run on the CPU learns to classify held-out Omniglot characters."""

from __future__ import annotations

import json

from fewshot_mann.cli import main


def test_mann_learns_held_out_classes(tmp_path, data_root, cache_dir):
    """About a minute on 2 cores: a smaller MANN (controller 100, 64 slots) on 5-way episodes
    with 5 presentations, 2,000 updates of 16 episodes (32,000 episodes), must exceed 50 %
    on the 2nd presentation of held-out classes (chance: 20 %)."""
    run = tmp_path / "run"
    assert main(["train", "--data-root", str(data_root), "--cache-dir", str(cache_dir),
                 "--split", "santoro", "--n-way", "5", "--presentations", "5",
                 "--controller-size", "100", "--memory-slots", "64", "--batch-size", "16",
                 "--steps", "2000", "--lr", "3e-3", "--lr-min", "3e-3", "--seed", "0",
                 "--eval-every", "1000", "--checkpoint-every", "1000", "--device", "cpu",
                 "--quiet", "--out", str(run)]) == 0
    assert main(["evaluate", "--checkpoint", str(run / "model.pt"), "--episodes", "500",
                 "--presentations", "5", "--data-root", str(data_root), "--cache-dir",
                 str(cache_dir), "--out", str(tmp_path / "eval"), "--quiet"]) == 0
    metrics = json.loads((tmp_path / "eval" / "metrics.json").read_text())
    second, ci = metrics["instance_accuracy"][1], metrics["instance_ci95"][1]
    assert second - ci > 0.5, f"2nd-presentation accuracy {second:.3f} +- {ci:.3f}"
    # the curve rises: later presentations are recognised better than the first
    assert metrics["instance_accuracy"][-1] > metrics["instance_accuracy"][0] + 0.2
