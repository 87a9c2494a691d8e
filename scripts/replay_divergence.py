"""Replay a training run from its checkpoint step by step: where exactly it diverged, and
whether it would have with one setting changed.

Training on the CPU is deterministic and `--resume` continues a run exactly, so the steps after
a run's last good checkpoint can be trained again, here with every step logged (which changes
nothing in the training) and the checkpoint kept at chosen steps, for
`scripts/gradient_noise.py --next-step` and `scripts/diagnose_memory.py`:

    python scripts/replay_divergence.py RUN --to 2320 --keep 2316,2317 --out REPLAY
        # REPLAY/train_log.jsonl (a record per step), REPLAY/step-2316/checkpoint.pt, ...
    python scripts/replay_divergence.py RUN --to 2600 --set model.cosine_eps=1e-2 --out REPLAY2
        # the same steps with the memory's cosine eps changed from the checkpoint on

--set takes the settings a resumed run may change (train.grad_clip, train.lr, ...; run.py
RESUMABLE) and model.cosine_eps. The replay stops at the first divergence by default
(--on-divergence stop): its record says what ran away (fewshot_mann/training/health.py).
"""

from __future__ import annotations

import argparse
import shutil
import tomllib
from pathlib import Path
from typing import Any

import torch

from fewshot_mann.config import Config
from fewshot_mann.errors import TrainingDiverged
from fewshot_mann.training.loop import CHECKPOINT, LOG
from fewshot_mann.training.trainer import Trainer


def parse_settings(pairs: list[str]) -> dict[str, dict[str, Any]]:
    """["train.grad_clip=1.0", ...] -> {"train": {"grad_clip": 1.0}, ...}: each value read as
    a TOML value (a number, true/false), else kept as a string."""
    settings: dict[str, dict[str, Any]] = {}
    for pair in pairs:
        key, _, value = pair.partition("=")
        section, _, field = key.partition(".")
        if not (value and section and field):
            raise SystemExit(f"--set {pair!r}: expected SECTION.FIELD=VALUE")
        try:
            parsed = tomllib.loads(f"v = {value}")["v"]
        except tomllib.TOMLDecodeError:
            parsed = value
        settings.setdefault(section, {})[field] = parsed
    return settings


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("run", type=Path, help="a run folder with checkpoint.pt")
    parser.add_argument("--to", type=int, required=True, help="train up to this step")
    parser.add_argument("--keep", default="", help="comma-separated steps whose checkpoint is "
                                                   "kept as OUT/step-N/checkpoint.pt")
    parser.add_argument("--set", action="append", default=[], metavar="SECTION.FIELD=VALUE")
    parser.add_argument("--on-divergence", default="stop", choices=("stop", "rollback"))
    parser.add_argument("--threads", type=int, default=1, help="as the run had (default 1)")
    parser.add_argument("--out", type=Path, required=True, help="the replay's folder (new)")
    args = parser.parse_args()
    if args.out.exists():
        parser.error(f"{args.out} exists: choose another --out")
    settings = parse_settings(args.set)
    model = settings.pop("model", {})
    eps = model.pop("cosine_eps", None)
    if model or set(settings) - {"train"}:  # any other model.* setting, any other section
        parser.error("--set takes train.* settings and model.cosine_eps")
    torch.set_num_threads(args.threads)
    args.out.mkdir(parents=True)
    for name in (CHECKPOINT, LOG, "config.toml", "split.json"):
        if (args.run / name).exists():
            shutil.copy(args.run / name, args.out / name)
    # as `fewshot-mann train --resume` does: the checkpoint's config, with these settings
    requested = {"train": {**settings.get("train", {}), "threads": args.threads, "log_every": 1,
                           "on_divergence": args.on_divergence}}
    trainer = Trainer.build(Config.from_dict(requested), args.out, resume=True,
                            requested=requested, progress=False)
    if eps is not None:  # not a resumable setting: changed in the running model's memory
        trainer.model.memory.cosine_eps = float(eps)
    start = trainer.step
    keep = sorted(int(step) for step in args.keep.split(",") if step)
    if any(not start < step <= args.to for step in keep):
        parser.error(f"--keep steps must lie in ({start}, {args.to}]")
    try:
        for stop in [*keep, args.to]:
            trainer.run(stop_at=stop)
            if stop in keep:
                (args.out / f"step-{stop}").mkdir()
                shutil.copy(args.out / CHECKPOINT, args.out / f"step-{stop}" / CHECKPOINT)
    except TrainingDiverged as err:
        print(f"diverged: {err}")
    steps = [r for r in trainer.history if r["step"] > start and "grad_norm_max" in r]
    worst = max(steps, key=lambda r: r["grad_norm_max"])
    print(f"replayed steps {start + 1}-{trainer.step}: largest gradient norm "
          f"{worst['grad_norm_max']:.4g} at step {worst['step']}; loss at the last step "
          f"{steps[-1]['loss']:.4f}; log: {args.out / LOG}")


if __name__ == "__main__":
    main()
