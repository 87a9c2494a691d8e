"""Evaluate a saved checkpoint on the held-out classes of its own split."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from .checkpoint import load_checkpoint, model_from_checkpoint
from .config import replace
from .data import load_dataset, resolve
from .evaluate import EvalResult, evaluate, format_table, write_outputs
from .train import make_sampler, pick_device


def evaluate_checkpoint(checkpoint: str | Path, episodes: int, out_dir: str | Path,
                        presentations: int | None = None, batch_size: int = 250,
                        seed: int = 12345, device: str = "auto", backend: str | None = None,
                        data_overrides: dict[str, Any] | None = None,
                        progress: bool = True) -> EvalResult:
    """Always on the split's *test* classes, which the checkpoint never trained on.

    Episodes have max(training presentations, 11) presentations per class unless told
    otherwise (or fewer, when the test classes have fewer images), so that 1-, 5- and 10-shot
    accuracies all exist.
    """
    payload = load_checkpoint(checkpoint)
    model, cfg, split = model_from_checkpoint(payload, checkpoint)
    overrides = {k: v for k, v in (data_overrides or {}).items() if v is not None}
    if overrides:
        cfg = replace(cfg, data=overrides)
    if backend is not None and hasattr(model, "set_backend"):
        model.set_backend(backend)
    dev = pick_device(device)
    model.to(dev)
    imageset = load_dataset(cfg.data)
    if presentations is None:  # 11 when the test classes have enough images for 10-shot
        index, _ = resolve(imageset, split.test)
        presentations = max(cfg.episodes.presentations, min(11, int(imageset.counts[index].min())))
    K = presentations
    sampler = make_sampler(cfg, imageset, split.test, side="test", device=dev, seed=seed,
                           presentations=K)
    result = evaluate(model, sampler, episodes, batch_size=batch_size, progress=progress)
    extra = {"split": split.name, "checkpoint": str(checkpoint), "trained_steps": payload["step"],
             "model": cfg.model.kind, "labels": cfg.episodes.labels, "seed": seed,
             "test_classes": len(split.test)}
    paths = write_outputs(result, out_dir, extra, title=cfg.model.kind)
    if progress:
        print(format_table(result))
        print("wrote " + ", ".join(str(p) for p in paths.values()))
    return result
