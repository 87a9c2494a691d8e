"""Evaluation on held-out classes: per-instance accuracy curves and k-shot accuracy.

Per-instance accuracy at presentation k (1-based) is the accuracy on the k-th showing of a class
in an episode; it is averaged over the episode's classes, then over episodes, with a 95%
confidence interval over episodes. The k-shot accuracy is the accuracy on the presentation that
follows exactly k labelled presentations of its class, i.e. instance k+1.
"""

from __future__ import annotations

import csv
import json
from collections.abc import Iterable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn
from tqdm import tqdm

from ..episodes import Episodes, EpisodeSampler
from ..errors import ConfigError
from ..metrics import episode_loss, mean_ci95, presentation_accuracy, step_correct

SHOTS = (1, 5, 10)


@dataclass
class EvalResult:
    episodes: int
    n_way: int
    presentations: int
    loss: float
    instance_accuracy: list[float]  # index 0 = 1st presentation
    instance_ci95: list[float]
    shot_accuracy: dict[str, float] = field(default_factory=dict)
    shot_ci95: dict[str, float] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def evaluate(model: nn.Module, sampler: EpisodeSampler, episodes: int, batch_size: int = 256,
             progress: bool = False) -> EvalResult:
    """Run `episodes` episodes from `sampler` through `model` in eval mode."""
    if episodes < 1:
        raise ConfigError("need at least one evaluation episode")
    sizes = [min(batch_size, episodes - done) for done in range(0, episodes, batch_size)]
    batches = (sampler.sample(size) for size in sizes)  # drawn lazily, one batch at a time
    return evaluate_episodes(model, batches, sampler.n_way, sampler.presentations,
                             total=episodes, progress=progress)


@torch.no_grad()
def evaluate_episodes(model: nn.Module, batches: Iterable[Episodes], n_way: int,
                      presentations: int, total: int | None = None,
                      progress: bool = False) -> EvalResult:
    """Run ready-made batches of episodes (on the model's device) through `model` in eval mode:
    from a sampler, or from another task pipeline (`fewshot_mann.interop`)."""
    model.eval()
    K = presentations
    per_episode, losses, done = [], [], 0
    with tqdm(total=total, disable=not progress, unit="episode", desc="evaluate") as bar:
        for batch in batches:
            logits = model(batch.images, batch.prev_labels)
            losses.append(episode_loss(logits, batch.targets).item() * batch.batch_size)
            correct = step_correct(logits, batch.targets)
            per_episode.append(presentation_accuracy(correct, batch.presentation, K).cpu())
            done += batch.batch_size
            bar.update(batch.batch_size)
    if done == 0:
        raise ConfigError("need at least one evaluation episode")
    accuracy, ci = mean_ci95(torch.cat(per_episode))
    shots = [k for k in SHOTS if k < K]
    return EvalResult(episodes=done, n_way=n_way, presentations=K,
                      loss=sum(losses) / done, instance_accuracy=accuracy, instance_ci95=ci,
                      shot_accuracy={str(k): accuracy[k] for k in shots},
                      shot_ci95={str(k): ci[k] for k in shots})


def format_table(result: EvalResult) -> str:
    lines = [f"{result.n_way}-way, {result.episodes} held-out episodes "
             f"(mean +- 95% CI over episodes)", "presentation  accuracy"]
    lines += [f"{k + 1:>12}  {100 * a:6.2f} +- {100 * c:4.2f} %"
              for k, (a, c) in enumerate(zip(result.instance_accuracy, result.instance_ci95,
                                             strict=True))]
    if result.shot_accuracy:
        lines.append("k-shot (the presentation after k labelled ones)")
        lines += [f"{k + '-shot':>12}  {100 * a:6.2f} +- {100 * result.shot_ci95[k]:4.2f} %"
                  for k, a in result.shot_accuracy.items()]
    return "\n".join(lines)


def write_outputs(result: EvalResult, out_dir: str | Path, extra: dict[str, Any],
                  title: str = "") -> dict[str, Path]:
    """metrics.json, instance_accuracy.csv and instance_accuracy.png in `out_dir`."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    paths = {"json": out / "metrics.json", "csv": out / "instance_accuracy.csv",
             "png": out / "instance_accuracy.png"}
    paths["json"].write_text(json.dumps({**result.to_dict(), **extra}, indent=1) + "\n")
    with open(paths["csv"], "w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["presentation", "accuracy", "ci95"])
        for k, (a, c) in enumerate(zip(result.instance_accuracy, result.instance_ci95,
                                       strict=True)):
            writer.writerow([k + 1, f"{a:.6f}", f"{c:.6f}"])
    from .plots import plot_curves

    plot_curves({title or "model": (result.instance_accuracy, result.instance_ci95)},
                paths["png"], title=f"{result.n_way}-way, {result.episodes} held-out episodes",
                n_way=result.n_way)
    return paths
