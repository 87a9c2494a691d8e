"""A short real training run on the CPU learns to classify held-out Omniglot characters."""

from __future__ import annotations

import json

import pytest

from fewshot_mann.cli import main


@pytest.mark.train
def test_mann_learns_held_out_classes(tmp_path, data_root, cache_dir):
    """The paper's model and task with the package's defaults (santoro split, 5-way, 10
    presentations, Adam 3e-3, batch 16), trained until the held-out 2nd-presentation accuracy
    on 100 episodes, evaluated every 100 updates, reaches 50 % (2,000 updates at most): about
    1,000 updates (16,000 episodes) on seed 0 on a 2-core AMD EPYC, 100 to 150 CPU-seconds.
    Then on 500 test episodes the 2nd presentation must be recognised far above chance (20 %)."""
    run = tmp_path / "run"
    assert main(["train", "--data-root", str(data_root), "--cache-dir", str(cache_dir),
                 "--steps", "2000", "--lr-min", "3e-3", "--seed", "0", "--eval-every", "100",
                 "--eval-episodes", "100", "--health-episodes", "0", "--stop-accuracy", "0.5",
                 "--checkpoint-every", "2000", "--device", "cpu", "--quiet",
                 "--out", str(run)]) == 0
    assert main(["evaluate", "--checkpoint", str(run / "model.pt"), "--episodes", "500",
                 "--data-root", str(data_root), "--cache-dir", str(cache_dir),
                 "--out", str(tmp_path / "eval"), "--quiet"]) == 0
    metrics = json.loads((tmp_path / "eval" / "metrics.json").read_text())
    second, ci = metrics["instance_accuracy"][1], metrics["instance_ci95"][1]
    assert second - ci > 0.4, (f"2nd-presentation accuracy {second:.3f} +- {ci:.3f} after "
                               f"{metrics['trained_steps']} updates")
    # the curve rises: later presentations are recognised better than the first
    assert metrics["instance_accuracy"][-1] > metrics["instance_accuracy"][0] + 0.2
