"""Episodic training of the ProtoNet and MAML baselines on the Vinyals training classes.

    python -m fewshot_mann.baselines.train --method protonet --shots 1 --out runs/protonet-1

Defaults follow the papers: ProtoNets 60-way episodes with 5 queries per class, Adam 1e-3
halved every 2,000 episodes (Snell et al. 2017, sec. 3.1); MAML 5-way, 32 tasks per meta-batch,
one inner step of 0.4 while training and three at test, Adam 1e-3 (Finn et al. 2017, sec. 5.2;
their 20-way runs use 16 tasks and 5 steps of 0.1: pass those flags). Training sees the Vinyals
train classes (or train + val with --classes trainval), never the test classes.

`--out` receives: train_log.jsonl (one record per --log-every steps, with validation accuracy
every --eval-every steps), checkpoint.pt (atomically, every --checkpoint-every steps; --resume
continues from it), and model.pt (network config + weights) at the end: the file the report
evaluates.
"""

from __future__ import annotations

import argparse
import json
import shlex
import sys
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import torch
from tqdm import tqdm

from ..config import default_cache_dir, default_data_root
from ..data.omniglot import load_omniglot
from ..data.splits import omniglot_split
from ..runtime import device_name, pick_device
from .checkpoint import build_network, load_baseline, save_baseline
from .tasks import Setting, eval_episodes, score, split_support_query, task_sampler

CHECKPOINT, MODEL, LOG = "checkpoint.pt", "model.pt", "train_log.jsonl"
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
            raise ValueError(f"--{name.replace('_', '-')} must be positive")
    return cfg


class BaselineTrainer:
    def __init__(self, cfg: BaselineConfig, out: Path, command: str, resume: bool = False,
                 progress: bool = True) -> None:
        self.out, self.progress, self.step = Path(out), progress, 0
        payload = load_baseline(self.out / CHECKPOINT)[1] if resume else None
        if payload:
            # the run's own settings; only the step budget and where it runs may change
            cfg = BaselineConfig(**{**payload["train"], "steps": max(cfg.steps,
                                                                   payload["train"]["steps"]),
                                    "data_root": cfg.data_root, "cache_dir": cfg.cache_dir,
                                    "device": cfg.device})
            command = f"{payload['command']} && {command}"  # the whole history of the run
        elif (self.out / CHECKPOINT).exists():
            raise FileExistsError(f"{self.out / CHECKPOINT} exists: pass --resume or another "
                                  f"--out")
        self.cfg, self.command = cfg, command
        self.device = pick_device(cfg.device)
        torch.manual_seed(cfg.seed)
        imageset = load_omniglot(cfg.data_root, cfg.cache_dir, cfg.image_size)
        split = omniglot_split("vinyals", imageset)
        self.imageset, self.val_classes = imageset, split.val
        classes = split.train + (split.val if cfg.classes == "trainval" else [])
        self.sampler = task_sampler(imageset, classes, cfg.ways, cfg.shots + cfg.queries,
                                    cfg.seed, self.device)
        self.model = build_network(cfg.network()).to(self.device)
        self.optimizer = torch.optim.Adam(self.model.parameters(), lr=cfg.lr)
        self.elapsed_before = 0.0
        if payload:
            self.model.load_state_dict(payload["model"])
            self.optimizer.load_state_dict(payload["optimizer"])
            self.sampler.generator.set_state(payload["sampler_rng"])
            torch.set_rng_state(payload["torch_rng"])
            self.step, self.elapsed_before = payload["step"], payload["elapsed_s"]
            self._truncate_log()
        else:
            self.out.mkdir(parents=True, exist_ok=True)
            (self.out / LOG).write_text("")

    def _truncate_log(self) -> None:
        """Keep the log records up to the checkpoint's step; later ones (and a line cut short
        by a crash) go, and are written again."""
        kept = []
        for line in (self.out / LOG).read_text().splitlines():
            try:
                if json.loads(line)["step"] <= self.step:
                    kept.append(line)
            except (ValueError, KeyError, TypeError):
                continue
        (self.out / LOG).write_text("".join(line + "\n" for line in kept))

    def lr_at(self, step: int) -> float:
        halvings = step // self.cfg.lr_halve_every if self.cfg.lr_halve_every else 0
        return self.cfg.lr * 0.5 ** halvings

    def validate(self) -> dict[str, float]:
        if self.cfg.classes == "trainval":
            return {}
        setting = Setting(min(self.cfg.ways, len(self.val_classes)), self.cfg.shots)
        result = score(self.model, eval_episodes(self.imageset, self.val_classes, setting,
                                                 self.cfg.val_episodes, self.cfg.seed + 1,
                                                 self.device), setting.shots)
        return {"val_accuracy": result.mean, "val_ci95": result.ci95}

    def run(self) -> None:
        cfg, started = self.cfg, time.perf_counter()
        losses: list[float] = []
        accuracies: list[float] = []
        bar = tqdm(total=cfg.steps, initial=self.step, disable=not self.progress, unit="step",
                   desc=f"train {cfg.method}", dynamic_ncols=True)
        while self.step < cfg.steps:
            for group in self.optimizer.param_groups:
                group["lr"] = self.lr_at(self.step)
            self.model.train()
            tasks = split_support_query(self.sampler.sample(cfg.batch), cfg.shots)
            loss, accuracy = self.model.meta_loss(tasks)
            self.optimizer.zero_grad(set_to_none=True)
            loss.backward()
            self.optimizer.step()
            self.step += 1
            losses.append(loss.item())
            accuracies.append(accuracy.item())
            bar.update(1)
            last = self.step == cfg.steps
            if self.step % cfg.log_every == 0 or last:
                record = {"step": self.step, "elapsed_s": round(
                    self.elapsed_before + time.perf_counter() - started, 2),
                    "lr": self.lr_at(self.step - 1), "loss": sum(losses) / len(losses),
                    "accuracy": sum(accuracies) / len(accuracies)}
                if self.step % cfg.eval_every == 0 or last:
                    record.update(self.validate())
                losses.clear()
                accuracies.clear()
                with open(self.out / LOG, "a") as f:
                    f.write(json.dumps(record) + "\n")
                bar.set_postfix(loss=f"{record['loss']:.3f}", acc=f"{record['accuracy']:.3f}")
                if "val_accuracy" in record and self.progress:
                    bar.write(f"step {self.step}: validation accuracy "
                              f"{100 * record['val_accuracy']:.2f} %")
            if self.step % cfg.checkpoint_every == 0 or last:
                self.save(CHECKPOINT, time.perf_counter() - started, resumable=True)
        bar.close()
        self.save(MODEL, time.perf_counter() - started, resumable=False)

    def save(self, name: str, elapsed: float, resumable: bool) -> None:
        extra: dict[str, Any] = {
            "train": asdict(self.cfg), "step": self.step,
            "elapsed_s": round(self.elapsed_before + elapsed, 2), "command": self.command,
            "machine": device_name(self.device), "torch": str(torch.__version__)}
        if resumable:
            extra.update(optimizer=self.optimizer.state_dict(),
                         sampler_rng=self.sampler.generator.get_state(),
                         torch_rng=torch.get_rng_state())
        save_baseline(self.out / name, self.cfg.network(), self.model, **extra)


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    command = shlex.join(["python", "-m", "fewshot_mann.baselines.train",
                          *(sys.argv[1:] if argv is None else argv)])
    trainer = BaselineTrainer(config_from_args(args), args.out, command, resume=args.resume,
                              progress=not args.quiet)
    trainer.run()
    print(f"model: {args.out / MODEL}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
