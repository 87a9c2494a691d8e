"""What a trained MANN's memory does over an episode: the post-mortem tool for a diverged run.

For each checkpoint (model.pt, checkpoint.pt or a trainer's diverged-stepN.pt), runs a batch of
training episodes of its own configuration and prints, at some steps t, the mean over episodes
of each number of training/health.py (largest slot norm of M_t, read-vector norm, the key
strengths and gates of the memory's controls, the share of saturated LSTM gates), then the
summary that training logs at each held-out evaluation. Compare a diverged checkpoint with the
last good one to see which of them ran away; with two or more checkpoints it also lists the
parameter tensors that moved most from the first one (|theta - theta_first| / |theta_first|).

    python scripts/diagnose_memory.py results/santoro-5way/model.pt RUN/diverged-step1075.pt
"""

from __future__ import annotations

import argparse
from pathlib import Path

import torch

from fewshot_mann.checkpoint import load_checkpoint, model_from_checkpoint
from fewshot_mann.config import replace
from fewshot_mann.data import load_dataset
from fewshot_mann.training import health
from fewshot_mann.training.run import make_sampler

SHOWN_STEPS = (0, 4, 9, 24, 49, 99, 149)  # and the last


def diagnose(path: Path, data_root: str | None, episodes: int, seed: int
             ) -> tuple[list[dict[str, float]], dict[str, float]]:
    """health.trace of the checkpoint's model over `episodes` training episodes of its own
    configuration (the classes it was trained on: a diverged model is diagnosed where it ran
    away)."""
    model, cfg, split = model_from_checkpoint(load_checkpoint(path), path)
    if cfg.model.kind != "mann":
        raise SystemExit(f"{path} holds a {cfg.model.kind} model, which has no memory")
    if data_root:
        cfg = replace(cfg, data={"data_root": data_root})
    sampler = make_sampler(cfg, load_dataset(cfg.data), split.train, side="train",
                           device=torch.device("cpu"), seed=seed)
    batch = sampler.sample(episodes)
    return health.trace(model, batch.images, batch.prev_labels)


def weight_changes(first: dict[str, torch.Tensor], other: dict[str, torch.Tensor]
                   ) -> list[tuple[str, float, float]]:
    """(name, relative change, norm in `other`) of every tensor of both state dicts, the
    largest change first."""
    changes = [(name, ((other[name] - w).norm() / w.norm().clamp_min(1e-12)).item(),
                other[name].norm().item())
               for name, w in first.items() if name in other and w.is_floating_point()]
    return sorted(changes, key=lambda change: -change[1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("checkpoints", type=Path, nargs="+")
    parser.add_argument("--data-root", default=None)
    parser.add_argument("--episodes", type=int, default=32)
    parser.add_argument("--seed", type=int, default=0, help="seed of the episodes")
    args = parser.parse_args()
    for path in args.checkpoints:
        per_step, summary = diagnose(path, args.data_root, args.episodes, args.seed)
        names = list(per_step[0])
        print(f"{path}: {len(per_step)} steps, means over {args.episodes} training episodes")
        print("     t " + " ".join(f"{name:>15s}" for name in names))
        for t in sorted({*SHOWN_STEPS, len(per_step) - 1}):
            if t < len(per_step):
                print(f"{t + 1:6d} " + " ".join(f"{per_step[t][name]:15.3f}" for name in names))
        print("summary (as train_log.jsonl's \"health\"): "
              + ", ".join(f"{name} {value:.3f}" for name, value in summary.items()))
    if len(args.checkpoints) > 1:
        first = load_checkpoint(args.checkpoints[0])["model"]
        for path in args.checkpoints[1:]:
            print(f"weights of {path} against {args.checkpoints[0]}, the most moved first:")
            print(f"{'tensor':>28s} {'relative change':>16s} {'norm':>10s}")
            for name, change, norm in weight_changes(first, load_checkpoint(path)["model"])[:8]:
                print(f"{name:>28s} {change:16.4f} {norm:10.3f}")


if __name__ == "__main__":
    main()
