"""A training process killed with SIGKILL mid-run resumes from its last checkpoint and ends with
exactly the parameters of a run that was never interrupted."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from test_cli import TINY

from fewshot_mann.checkpoint import load_checkpoint
from fewshot_mann.data import FolderDataset

pytestmark = pytest.mark.train  # other processes / paper-sized runs

STEPS = 120


def train_command(tree: Path, cache: Path, out: Path) -> list[str]:
    return [sys.executable, "-m", "fewshot_mann.cli", "train", "--dataset", f"folder:{tree}",
            "--split", "ratio:0.5", "--cache-dir", str(cache), *TINY, "--threads", "1",
            "--checkpoint-every", "5", "--eval-every", "40", "--steps", str(STEPS),
            "--out", str(out)]


def tensors(obj: object, prefix: str = "") -> dict[str, torch.Tensor]:
    """Every tensor in a nested checkpoint payload, by its path."""
    if isinstance(obj, torch.Tensor):
        return {prefix: obj}
    items = obj.items() if isinstance(obj, dict) else enumerate(obj) \
        if isinstance(obj, list | tuple) else []
    return {k: t for key, value in items for k, t in tensors(value, f"{prefix}/{key}").items()}


def test_sigkill_then_resume_matches_an_uninterrupted_run(tmp_path, image_tree):
    cache = tmp_path / "cache"
    FolderDataset.from_spec(f"folder:{image_tree}", cache_dir=cache)  # decode once, up front
    straight, killed = tmp_path / "straight", tmp_path / "killed"

    process = subprocess.Popen(train_command(image_tree, cache, killed),
                               stderr=subprocess.PIPE, text=True)
    checkpoint = killed / "checkpoint.pt"
    deadline = time.monotonic() + 60
    while not checkpoint.exists() and process.poll() is None and time.monotonic() < deadline:
        time.sleep(0.01)
    process.send_signal(signal.SIGKILL)
    process.wait()
    assert process.returncode == -signal.SIGKILL, process.stderr.read()
    assert not (killed / "model.pt").exists()  # killed before the end...
    reached = load_checkpoint(checkpoint)["step"]
    assert 5 <= reached < STEPS  # ...and after a checkpoint

    with open(killed / "train_log.jsonl", "a") as log:
        log.write('{"step": 999, "loss": 1.2')  # as if killed halfway through writing a line
    subprocess.run([*train_command(image_tree, cache, killed), "--resume"], check=True,
                   capture_output=True)
    subprocess.run(train_command(image_tree, cache, straight), check=True, capture_output=True)

    for name in ("model.pt", "checkpoint.pt"):
        a = tensors(load_checkpoint(straight / name))
        b = tensors(load_checkpoint(killed / name))
        assert a.keys() == b.keys() and "/model/output.weight" in a
        unequal = [k for k in a if not torch.equal(a[k], b[k])]
        assert not unequal, f"{name}: {unequal}"
    logged = [json.loads(line) for line in (killed / "train_log.jsonl").read_text().splitlines()]
    assert [r["step"] for r in logged if "loss" in r] == list(range(1, STEPS + 1))  # none lost
    assert [r["event"] for r in logged if "loss" not in r] == ["no_validation"]  # nor doubled
