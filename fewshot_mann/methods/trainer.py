"""ProtoNets, SimpleShot and MAML on the sequence models' training loop: `fewshot-mann train
--method protonet|simpleshot|maml`.

The run is built as every run is (`run.build_run`: config, data, split, samplers, network,
optimiser, restore) and writes the same files (config.toml, split.json, train_log.jsonl,
checkpoint.pt, model.pt), with the same resume, pause, divergence guard and progress output
(`training.trainer.Trainer`, `training.loop.TrainingLoop`). What is theirs:

    a batch     train.batch_size tasks: N-way episodes of the training classes
                (episodes.n_way), each class shown shots + queries times, cut into support
                and queries (`tasks.split_support_query`), through the method's `meta_loss`;
                SimpleShot: train.batch_size images of all training classes, randomly
                distorted (train.augment), through its `classification_loss`
    schedule    train.lr, halved every train.lr_halve_every steps (0: constant)
    held-out    accuracy on train.eval_episodes K-shot N-way episodes of the split's
                validation classes (N: episodes.n_way, or all of them when there are fewer),
                the same episodes each time; a split without validation classes gets no
                held-out evaluation: training never reads the test classes
"""

from __future__ import annotations

from typing import Any

import torch
from tqdm import tqdm

from ..data.augment import random_affine
from ..training.run import Run
from ..training.trainer import Trainer
from .tasks import Setting, eval_episodes, score, split_support_query


class SupportQueryTrainer(Trainer):
    """`trainers.build_trainer` returns one for a config whose model.kind is in SUPPORT_QUERY."""

    def __init__(self, run: Run, **options: Any) -> None:
        super().__init__(run, **options)
        # meta_loss is not the network's forward, so DDP's hooks never see it: under torchrun
        # the loop averages the gradients itself (one flat all-reduce after the backward)
        self.forward_model = self.model
        # SimpleShot classifies all training classes at once: its batches are images, not tasks
        self.image_batches = hasattr(self.model, "classification_loss")

    def lr_at(self, step: int) -> float:
        t = self.cfg.train
        return t.lr * 0.5 ** (step // t.lr_halve_every) if t.lr_halve_every else t.lr

    def batch_loss(self) -> tuple[torch.Tensor, torch.Tensor]:
        """The method's loss on a batch, and its accuracy: on the queries of train.batch_size
        training tasks, or, for a method that classifies all training classes at once
        (SimpleShot), on train.batch_size images of them, distorted at random."""
        t, sampler = self.cfg.train, self.train_sampler
        if self.image_batches:
            images, classes = sampler.sample_images(t.batch_size)  # (B, D), (B,)
            shape = (-1, *self.imageset.image_shape)
            images = random_affine(images.view(shape), t.augment, sampler.generator)
            loss, accuracy = self.model.classification_loss(images.flatten(1), classes)
        else:
            tasks = split_support_query(sampler.sample(t.batch_size), self.cfg.episodes.shots)
            loss, accuracy = self.model.meta_loss(tasks)
        return loss, accuracy.detach().reshape(1)

    def train_fields(self, metrics: torch.Tensor) -> dict[str, Any]:
        return {"accuracy": self.dist.mean(metrics).item()}  # of the global batch

    def evaluate(self) -> dict[str, Any]:
        """Accuracy on episodes of the validation classes; {} when the split has none."""
        val, t = self.split.val, self.cfg.train
        if not val:
            return {}
        setting = Setting(min(self.cfg.episodes.n_way, len(val)), self.cfg.episodes.shots)
        result = score(self.model, eval_episodes(self.imageset, val, setting, t.eval_episodes,
                                                 t.seed + 1, self.device), setting.shots)
        return {"val_accuracy": result.mean, "val_ci95": result.ci95}

    def heldout_accuracy(self, record: dict[str, Any]) -> float | None:
        return record.get("val_accuracy")

    def after_evaluation(self, record: dict[str, Any], bar: tqdm) -> bool:
        return True  # no curriculum: every evaluation may end the run (stop_accuracy)

    def postfix(self, record: dict[str, Any], seconds: float) -> dict[str, str]:
        done = (self.step - self._start_step) * self.global_batch
        return {"loss": f"{record['loss']:.3f}",
                "images" if self.image_batches else "tasks": f"{done / seconds:.0f}/s",
                "acc": f"{record['accuracy']:.3f}"}

    def describe(self, record: dict[str, Any]) -> str | None:
        if "event" in record:
            return super().describe(record)
        line = f"step {record['step']} | loss {record['loss']:.4f} | train {record['accuracy']:.2f}"
        if "val_accuracy" in record:
            line += (f" | validation {100 * record['val_accuracy']:.2f} +- "
                     f"{100 * record['val_ci95']:.2f} %")
        return line
