"""The trainer of any method: the sequence models' (`training.trainer.Trainer`) or the
support/query methods' (`methods.trainer.SupportQueryTrainer`), picked by the run's method."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from .config import SUPPORT_QUERY, Config
from .training.run import build_run
from .training.trainer import Trainer


def build_trainer(cfg: Config, out_dir: str | Path, *, resume: bool = False,
                  requested: dict[str, dict[str, Any]] | None = None,
                  **options: Any) -> Trainer:
    """The run of `cfg` in `out_dir` (or, with `resume`, the one checkpointed there, whose
    method rules) with the trainer of its method, ready to `run()`; `options`: stop_accuracy,
    time_limit_s, progress."""
    run = build_run(cfg, out_dir, resume=resume, requested=requested,
                    progress=options.get("progress", True))
    if run.cfg.model.kind in SUPPORT_QUERY:
        from .methods.trainer import SupportQueryTrainer  # learn2learn: loaded for them alone

        return SupportQueryTrainer(run, **options)
    return Trainer(run, **options)
