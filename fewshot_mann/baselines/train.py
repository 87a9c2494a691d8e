"""Episodic training of the ProtoNet and MAML baselines on the Vinyals training classes.

    python -m fewshot_mann.baselines.train --method protonet --shots 1 --out runs/protonet-1

Defaults follow the papers: ProtoNets 60-way episodes with 5 queries per class, Adam 1e-3
halved every 2,000 episodes (Snell et al. 2017, sec. 3.1); MAML 5-way, 32 tasks per meta-batch,
one inner step of 0.4 while training and three at test, Adam 1e-3 (Finn et al. 2017, sec. 5.2;
their 20-way runs use 16 tasks and 5 steps of 0.1: pass those flags). Training sees the Vinyals
train classes (or train + val with --classes trainval), never the test classes.

Training runs on the loop the MANN uses (`fewshot_mann.loop`): `--out` receives
train_log.jsonl (one record per --log-every steps, with validation accuracy every --eval-every
steps), checkpoint.pt (atomically, every --checkpoint-every steps; --resume continues from it,
--time-limit pauses at a validation after that many seconds) and model.pt (network config +
weights) at the end: the file the report evaluates. A NaN, a loss spike or a collapse of the
validation accuracy rolls back to the last good state at half the learning rate (logged).
"""

from __future__ import annotations

import argparse
import shlex
import sys
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn

from ..checkpoint import load_weights
from ..config import TrainConfig, default_cache_dir, default_data_root
from ..data.imageset import ImageSet
from ..data.omniglot import load_omniglot
from ..data.splits import omniglot_split
from ..episodes import EpisodeSampler
from ..errors import ConfigError, RunExistsError
from ..loop import CHECKPOINT, MODEL, TrainingLoop, restore_training_state
from ..runtime import device_name, pick_device
from .checkpoint import build_network, load_baseline, save_baseline
from .tasks import Setting, eval_episodes, score, split_support_query, task_sampler

# per method: ways, queries per class (None: as many as shots), tasks per step, lr halving
DEFAULTS: dict[str, dict[str, Any]] = {
    "protonet": {"ways": 60, "queries": 5, "batch": 1, "lr_halve_every": 2000},
    "maml": {"ways": 5, "queries": None, "batch": 32, "lr_halve_every": 0},
}


@dataclass
class BaselineConfig:
    method: str
    shots: int
    ways: int
    queries: int
    batch: int
    steps: int
    lr: float
    lr_halve_every: int  # steps between halvings of the learning rate; 0: constant
    fast_lr: float  # MAML inner step size alpha
    adapt_steps: int  # MAML inner steps while meta-training
    test_adapt_steps: int  # MAML inner steps at test time
    first_order: bool
    image_size: int
    classes: str  # "train" | "trainval"
    seed: int
    data_root: str
    cache_dir: str
    device: str
    log_every: int
    eval_every: int
    val_episodes: int
    checkpoint_every: int

    def loop_settings(self) -> TrainConfig:
        """The shared loop's settings: this run's budget and cadence, no gradient clipping, the
        divergence guard at its defaults."""
        return TrainConfig(steps=self.steps, batch_size=self.batch, lr=self.lr, grad_clip=0.0,
                           seed=self.seed, device=self.device, log_every=self.log_every,
                           eval_every=self.eval_every, eval_episodes=self.val_episodes,
                           checkpoint_every=self.checkpoint_every)

    def network(self) -> dict[str, Any]:
        """The constructor arguments of the network (saved with every checkpoint)."""
        if self.method == "protonet":
            return {"method": "protonet", "image_size": self.image_size}
        return {"method": "maml", "ways": self.ways, "image_size": self.image_size,
                "fast_lr": self.fast_lr, "adapt_steps": self.adapt_steps,
                "test_adapt_steps": self.test_adapt_steps, "first_order": self.first_order}


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m fewshot_mann.baselines.train",
                                description=__doc__.split("\n\n")[0])
    p.add_argument("--method", choices=sorted(DEFAULTS), required=True)
    p.add_argument("--shots", type=int, default=1, help="support images per class (K)")
    p.add_argument("--ways", type=int, help="classes per training episode "
                   "(default: protonet 60, maml 5)")
    p.add_argument("--queries", type=int, help="query images per class "
                   "(default: protonet 5, maml as many as --shots)")
    p.add_argument("--batch", type=int, help="tasks per step (default: protonet 1, maml 32)")
    p.add_argument("--steps", type=int, default=20_000, help="optimiser steps")
    p.add_argument("--lr", type=float, default=1e-3, help="Adam learning rate (outer loop)")
    p.add_argument("--lr-halve-every", type=int,
                   help="halve the learning rate every this many steps, 0 never "
                        "(default: protonet 2000, maml 0)")
    p.add_argument("--fast-lr", type=float, default=0.4, help="MAML inner step size")
    p.add_argument("--adapt-steps", type=int, default=1, help="MAML inner steps (training)")
    p.add_argument("--test-adapt-steps", type=int, default=3, help="MAML inner steps (test)")
    p.add_argument("--first-order", action="store_true", help="first-order MAML")
    p.add_argument("--image-size", type=int, default=28)
    p.add_argument("--classes", choices=["train", "trainval"], default="train",
                   help="Vinyals classes to train on (trainval: no validation)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--data-root", default=default_data_root(),
                   help="folder holding omniglot-py/ (default $FEWSHOT_MANN_DATA or data/)")
    p.add_argument("--cache-dir", default=default_cache_dir())
    p.add_argument("--device", default="auto")
    p.add_argument("--threads", type=int, default=0, help="torch CPU threads (0: default)")
    p.add_argument("--log-every", type=int, default=100)
    p.add_argument("--eval-every", type=int, default=1000,
                   help="steps between validation scores (on Vinyals val classes)")
    p.add_argument("--val-episodes", type=int, default=200)
    p.add_argument("--checkpoint-every", type=int, default=1000)
    p.add_argument("--out", type=Path, required=True)
    p.add_argument("--resume", action="store_true",
                   help="continue the run in --out (its settings; --steps may grow)")
    p.add_argument("--time-limit", type=float, default=0.0, metavar="SECONDS",
                   help="pause (checkpointed) at the first validation after this many seconds")
    p.add_argument("--quiet", action="store_true")
    return p


def config_from_args(args: argparse.Namespace) -> BaselineConfig:
    defaults = DEFAULTS[args.method]
    queries = args.queries or defaults["queries"] or args.shots
    values = {k: v for k, v in vars(args).items() if k in BaselineConfig.__dataclass_fields__}
    values.update(ways=args.ways or defaults["ways"], queries=queries,
                  batch=args.batch or defaults["batch"],
                  lr_halve_every=(defaults["lr_halve_every"] if args.lr_halve_every is None
                                  else args.lr_halve_every))
    cfg = BaselineConfig(**values)
    for name in ("shots", "ways", "queries", "batch", "steps", "adapt_steps", "test_adapt_steps",
                 "log_every", "eval_every", "val_episodes", "checkpoint_every"):
        if getattr(cfg, name) < 1:
            raise ConfigError(f"--{name.replace('_', '-')} must be positive")
    return cfg


class BaselineTrainer(TrainingLoop):
    """The shared loop (`fewshot_mann.loop`) over the tasks of a baseline:
    `BaselineTrainer.build(cfg, out, command)`."""

    def __init__(self, cfg: BaselineConfig, out: Path, command: str, *, imageset: ImageSet,
                 val_classes: list[str], sampler: EpisodeSampler, model: nn.Module,
                 optimizer: torch.optim.Optimizer, device: torch.device,
                 payload: dict[str, Any] | None = None, time_limit_s: float = 0.0,
                 progress: bool = True) -> None:
        self.cfg, self.command, self.device = cfg, command, device
        self.imageset, self.val_classes, self.sampler = imageset, val_classes, sampler
        super().__init__(model=model, optimizer=optimizer, settings=cfg.loop_settings(),
                         out_dir=out, payload=payload, time_limit_s=time_limit_s,
                         eval_samples=cfg.val_episodes * min(cfg.ways, len(val_classes)),
                         progress=progress)

    @classmethod
    def build(cls, cfg: BaselineConfig, out: str | Path, command: str, *, resume: bool = False,
              **options: Any) -> BaselineTrainer:
        """The run in one line: config -> data -> split -> sampler -> network -> optimiser ->
        restore. `options`: time_limit_s, progress."""
        out = Path(out)
        payload = load_baseline(out / CHECKPOINT)[1] if resume else None
        if payload:
            # the run's own settings; only the step budget and where it runs may change
            cfg = BaselineConfig(**{**payload["train"], "steps": max(cfg.steps,
                                                                   payload["train"]["steps"]),
                                    "data_root": cfg.data_root, "cache_dir": cfg.cache_dir,
                                    "device": cfg.device})
            command = f"{payload['command']} && {command}"  # the whole history of the run
        elif (out / CHECKPOINT).exists():
            raise RunExistsError(f"{out / CHECKPOINT} exists: pass --resume or another --out")
        device = pick_device(cfg.device)
        torch.manual_seed(cfg.seed)
        imageset = load_omniglot(cfg.data_root, cfg.cache_dir, cfg.image_size)
        split = omniglot_split("vinyals", imageset)
        classes = split.train + (split.val if cfg.classes == "trainval" else [])
        sampler = task_sampler(imageset, classes, cfg.ways, cfg.shots + cfg.queries, cfg.seed,
                               device)
        model = build_network(cfg.network()).to(device)
        optimizer = torch.optim.Adam(model.parameters(), lr=cfg.lr)
        if payload:
            load_weights(model, payload["model"], out / CHECKPOINT)
            restore_training_state(payload, out / CHECKPOINT, optimizer, sampler.generator,
                                   (payload.get("sampler_rng"), payload.get("torch_rng")))
        return cls(cfg, out, command, imageset=imageset, val_classes=split.val, sampler=sampler,
                   model=model, optimizer=optimizer, device=device, payload=payload, **options)

    def lr_at(self, step: int) -> float:
        halvings = step // self.cfg.lr_halve_every if self.cfg.lr_halve_every else 0
        return self.cfg.lr * 0.5 ** halvings

    def batch_loss(self) -> tuple[torch.Tensor, torch.Tensor]:
        """The method's loss on the queries of a batch of training tasks, and its accuracy."""
        tasks = split_support_query(self.sampler.sample(self.cfg.batch), self.cfg.shots)
        loss, accuracy = self.model.meta_loss(tasks)
        return loss, accuracy.detach().reshape(1)

    def train_fields(self, metrics: torch.Tensor) -> dict[str, Any]:
        return {"accuracy": metrics.item()}

    def evaluate(self) -> dict[str, Any]:
        """Accuracy on episodes of the validation classes (none with --classes trainval)."""
        if self.cfg.classes == "trainval":
            return {}
        setting = Setting(min(self.cfg.ways, len(self.val_classes)), self.cfg.shots)
        result = score(self.model, eval_episodes(self.imageset, self.val_classes, setting,
                                                 self.cfg.val_episodes, self.cfg.seed + 1,
                                                 self.device), setting.shots)
        return {"val_accuracy": result.mean, "val_ci95": result.ci95}

    def heldout_accuracy(self, record: dict[str, Any]) -> float | None:
        return record.get("val_accuracy")

    def postfix(self, record: dict[str, Any], seconds: float) -> dict[str, str]:
        return {"loss": f"{record['loss']:.3f}", "acc": f"{record['accuracy']:.3f}"}

    def describe(self, record: dict[str, Any]) -> str | None:
        if "val_accuracy" in record:
            accuracy = 100 * record["val_accuracy"]
            return f"step {record['step']}: validation accuracy {accuracy:.2f} %"
        return super().describe(record) if "event" in record else None

    def write(self, path: Path, resumable: bool) -> None:
        extra: dict[str, Any] = {
            "train": asdict(self.cfg), "step": self.step, "elapsed_s": round(self.elapsed(), 2),
            "command": self.command, "machine": device_name(self.device),
            "torch": str(torch.__version__)}
        if resumable:
            extra.update(**self.loop_state(), sampler_rng=self.sampler.generator.get_state(),
                         torch_rng=torch.get_rng_state())
        save_baseline(path, self.cfg.network(), self.model, **extra)


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    command = shlex.join(["python", "-m", "fewshot_mann.baselines.train",
                          *(sys.argv[1:] if argv is None else argv)])
    trainer = BaselineTrainer.build(config_from_args(args), args.out, command,
                                    resume=args.resume, time_limit_s=args.time_limit,
                                    progress=not args.quiet)
    trainer.run()
    print(f"model: {args.out / MODEL}" if trainer.step >= trainer.cfg.steps else
          f"paused at step {trainer.step} (--time-limit): {args.out / CHECKPOINT}; "
          f"--resume continues")
    return 0


if __name__ == "__main__":
    sys.exit(main())
