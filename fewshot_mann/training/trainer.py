"""Episodic training of the sequence models (MANN, LSTM, feedforward) on the shared loop.

`Trainer.build(cfg, out_dir).run()` writes into `out_dir`:
    config.toml       the full configuration of the run (rewritten when a resume changes it)
    split.json        the pinned class split (training never sees its test classes)
    checkpoint.pt     config + split + model + optimiser + RNG states + step, written atomically
    model.pt          at the end: config + split + weights only (small; `evaluate` takes it)
    train_log.jsonl   one JSON record per log interval and per held-out evaluation
A run resumes from `checkpoint.pt` with `resume=True` and then continues exactly as if it had
never stopped: same batches, same parameters. `build` assembles the run (`run.build_run`); the
schedule, logs, checkpoints, resume and divergence handling are the loop's (`loop.py`); what is
the sequence models' own is here: a batch's loss, the cosine schedule, the held-out
per-presentation accuracy, the curriculum, CUDA graphs, and the checkpoint's format.

Distributed (`torchrun ... -m fewshot_mann.cli train`): the trainer asks `distributed.py`, which
alone knows about ranks. Each process draws its own episodes (`rank_seed`), the gradients are
averaged (DDP, or one flat all-reduce after a CUDA-graphed step), the logged and guarded loss is
the mean over the global batch, the held-out evaluation runs on rank 0 and is broadcast, and
rank 0 alone writes; a checkpoint holds the world size and every rank's RNG states and resumes
only with the same world size.

Curriculum (`train.curriculum`, e.g. "5,10" for a 20-way run): training episodes start at the
first width; each held-out evaluation at the current width that reaches
`train.curriculum_accuracy` at the 2nd presentation moves on to the next width (a record
{"event": "widen", ...}), up to `episodes.n_way`. The label code is sized for episodes.n_way from
the start, so a narrow episode uses a random subset of the labels.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
from tqdm import tqdm

from ..checkpoint import save_checkpoint
from ..config import SUPPORT_QUERY, Config, TrainConfig, curriculum_widths
from ..data.splits import ClassSplit
from ..errors import ConfigError
from ..evaluation.scoring import evaluate
from ..metrics import episode_loss, pooled_presentation_accuracy, step_correct
from ..runtime import device_name
from . import health
from .cuda_graphs import GraphedInference, graph_training_forward
from .distributed import shutdown
from .loop import TrainingLoop
from .run import Run, build_run


def cosine_lr(t: TrainConfig, step: int) -> float:
    """Linear warm-up, then cosine decay from t.lr to t.lr_min at the last step."""
    if step < t.warmup_steps:
        return t.lr * (step + 1) / t.warmup_steps
    progress = (step - t.warmup_steps) / max(1, t.steps - t.warmup_steps)
    return t.lr_min + 0.5 * (t.lr - t.lr_min) * (1 + math.cos(math.pi * min(1.0, progress)))


def refuse_heldout_decisions(cfg: Config, split: ClassSplit, stop_accuracy: float = 0.0
                             ) -> None:
    """ConfigError when a run on `split`, which has no validation classes, asks for a decision
    that reads held-out accuracy (it would read test classes): a curriculum or a stop at an
    accuracy."""
    asked = (["--curriculum"] if cfg.train.curriculum.strip() else []) + (
        ["--stop-accuracy"] if stop_accuracy > 0 else [])
    if asked:
        raise ConfigError(f"{' and '.join(asked)} read validation accuracy, and split "
                          f"{split.name!r} has no validation classes: use a split with them "
                          f"(santoro, vinyals, lake, ratio:F, lists:DIR with val.txt)")


class Trainer(TrainingLoop):
    """The loop over episodes of a sequence model; `Trainer.build(cfg, out_dir, ...)`."""

    def __init__(self, run: Run, *, stop_accuracy: float = 0.0, time_limit_s: float = 0.0,
                 progress: bool = True) -> None:
        cfg = self.cfg = run.cfg
        if type(self) is Trainer and cfg.model.kind in SUPPORT_QUERY:
            raise ConfigError(f"a {cfg.model.kind} run trains with its own trainer: "
                              f"fewshot_mann.trainers.build_trainer picks it")
        self.device, self.imageset, self.split = run.device, run.imageset, run.split
        self.train_sampler, self.heldout = run.train_sampler, run.heldout
        if self.heldout is None:
            refuse_heldout_decisions(cfg, self.split, stop_accuracy)
        self.code = run.train_sampler.code
        self.widths = curriculum_widths(cfg)
        self.changed = run.changed  # settings a resume changed (run.build_run)
        super().__init__(model=run.model, optimizer=run.optimizer, settings=cfg.train,
                         out_dir=run.out_dir, dist=run.dist,
                         eval_samples=cfg.train.eval_episodes * min(self.widths),
                         payload=run.payload, stop_accuracy=stop_accuracy,
                         time_limit_s=time_limit_s, progress=progress)
        self.forward_model = run.forward_model
        # one captured graph per episode shape (a curriculum changes the episode length)
        self._graphed: dict[torch.Size, Callable[[torch.Tensor, torch.Tensor], torch.Tensor]] = {}
        # the held-out evaluations replayed from CUDA graphs too (eager, they cost a training
        # step's launches for every batch)
        self.eval_model = GraphedInference(self.model) if cfg.train.cuda_graph else self.model
        # absent from checkpoints written before the curriculum
        self._set_stage(int((run.payload or {}).get("curriculum_stage", 0)))

    @classmethod
    def build(cls, cfg: Config, out_dir: str | Path, *, resume: bool = False,
              requested: dict[str, dict[str, Any]] | None = None, **options: Any) -> Trainer:
        """The run of `cfg` in `out_dir` (`run.build_run`), ready to `run()`; `options`:
        stop_accuracy, time_limit_s, progress. `fewshot_mann.trainers.build_trainer` picks the
        trainer of any method."""
        return cls(build_run(cfg, out_dir, resume=resume, requested=requested,
                             progress=options.get("progress", True)), **options)

    # ---- the curriculum ----------------------------------------------------------------------
    def _set_stage(self, stage: int) -> None:
        """Episodes of the stage's width, for training and for the held-out evaluation."""
        self.stage = stage
        self.train_sampler.n_way = self.widths[stage]
        if self.heldout is not None:
            self.heldout.n_way = self.widths[stage]

    @property
    def n_way(self) -> int:
        return self.widths[self.stage]

    def own_state(self) -> dict[str, Any]:
        return {"stage": self.stage}

    def set_own_state(self, state: dict[str, Any]) -> None:
        self._set_stage(state["stage"])

    def after_evaluation(self, record: dict[str, Any], bar: tqdm) -> bool:
        accuracy = self.heldout_accuracy(record)  # None without validation classes
        if (self.stage + 1 < len(self.widths) and accuracy is not None
                and accuracy >= self.settings.curriculum_accuracy):
            self._set_stage(self.stage + 1)
            self.guard.reset()  # another task, another loss scale
            self.log({"step": self.step, "event": "widen", "n_way": self.n_way,
                      "elapsed_s": record["elapsed_s"]}, bar)
            return False
        return self.stage + 1 == len(self.widths)

    # ---- a batch -----------------------------------------------------------------------------
    def lr_at(self, step: int) -> float:
        return cosine_lr(self.cfg.train, step)

    def batch_loss(self) -> tuple[torch.Tensor, torch.Tensor]:
        """This rank's episodes through the model: (loss, accuracy by presentation (K,))."""
        batch = self.train_sampler.sample(self.cfg.train.batch_size)
        forward = self.forward_model
        if self.cfg.train.cuda_graph:
            shape = batch.images.shape
            if shape not in self._graphed:  # captured once per shape, from its first batch
                with self.autocast(cache_enabled=False):
                    self._graphed[shape] = graph_training_forward(self.model, batch.images,
                                                                  batch.prev_labels)
            forward = self._graphed[shape]
        with self.autocast(cache_enabled=not self.cfg.train.cuda_graph):
            logits = forward(batch.images, batch.prev_labels)
        loss = episode_loss(logits.float(), batch.targets)
        if getattr(self.model, "auxiliary_loss", None) is not None:  # the kv memory's margin loss
            loss = loss + self.model.auxiliary_loss
        accuracy = pooled_presentation_accuracy(step_correct(logits, batch.targets),
                                                batch.presentation,
                                                self.cfg.episodes.presentations)
        return loss, accuracy

    def autocast(self, cache_enabled: bool = True) -> torch.autocast:
        """bf16 autocast when train.precision is "bf16", else a no-op context (CUDA graphs
        need `cache_enabled=False`)."""
        return torch.autocast(self.device.type, dtype=torch.bfloat16,
                              enabled=self.cfg.train.precision == "bf16",
                              cache_enabled=cache_enabled)

    # ---- records -----------------------------------------------------------------------------
    @property
    def global_batch(self) -> int:
        """Episodes per update, over every process."""
        return self.cfg.train.batch_size * self.dist.world_size

    def progress_fields(self) -> dict[str, Any]:
        return {"episodes": self.step * self.global_batch, "n_way": self.n_way}

    def train_fields(self, metrics: torch.Tensor) -> dict[str, Any]:
        return {"train_instance_accuracy": self.dist.mean(metrics).tolist()}  # global batch

    def evaluate(self) -> dict[str, Any]:
        """The held-out evaluation on validation classes: the same episodes each time (none
        without validation classes)."""
        t = self.cfg.train
        if self.heldout is None:
            return {}
        self.heldout.generator.manual_seed(t.seed + 1)
        with self.autocast():
            # graphed: one batch, one captured shape (one compilation with train.compile)
            result = evaluate(self.eval_model, self.heldout, t.eval_episodes,
                              batch_size=t.eval_episodes if t.cuda_graph
                              else min(t.eval_episodes, 256))
        return {"heldout_instance_accuracy": result.instance_accuracy,
                "heldout_loss": result.loss, **self.health()}

    def health(self) -> dict[str, Any]:
        """{"health": the MANN's signs (fewshot_mann/training/health.py) on train.health_episodes
        held-out episodes drawn from the evaluation's seed}; {} for other models or with 0."""
        t = self.cfg.train
        if not t.health_episodes or self.cfg.model.kind != "mann" or self.heldout is None:
            return {}
        self.heldout.generator.manual_seed(t.seed + 1)
        probe = self.heldout.sample(t.health_episodes)
        signs = health.trace(self.model, probe.images, probe.prev_labels)[1]
        return {"health": {name: round(value, 4) for name, value in signs.items()}}

    def heldout_accuracy(self, record: dict[str, Any]) -> float | None:
        """At the 2nd presentation: the first that memory can answer."""
        accuracy = record.get("heldout_instance_accuracy")
        return accuracy[1] if accuracy is not None and len(accuracy) > 1 else None

    def postfix(self, record: dict[str, Any], seconds: float) -> dict[str, str]:
        episodes = (self.step - self._start_step) * self.global_batch
        return {"loss": f"{record['loss']:.3f}", "eps": f"{episodes / seconds:.0f}/s",
                "inst2": f"{record['train_instance_accuracy'][1]:.3f}"}

    def describe(self, record: dict[str, Any]) -> str:
        if record.get("event") == "widen":
            return f"step {record['step']}: curriculum moves on to {record['n_way']}-way"
        if "event" in record:
            return super().describe(record)
        parts = [f"step {record['step']}", f"loss {record['loss']:.4f}",
                 "train " + " ".join(f"{a:.2f}" for a in record["train_instance_accuracy"])]
        if "heldout_instance_accuracy" in record:
            parts.append("held-out " + " ".join(f"{a:.2f}"
                                                for a in record["heldout_instance_accuracy"]))
        return " | ".join(parts)

    # ---- files -------------------------------------------------------------------------------
    def start(self) -> None:
        super().start()  # the folder and an empty log
        (self.out_dir / "config.toml").write_text(self.cfg.to_toml())
        self.split.save(self.out_dir / "split.json")
        if self.heldout is None:  # said once, in the log and on the console
            self.log({"step": 0, "event": "no_validation", "elapsed_s": 0.0,
                      "reason": f"split {self.split.name!r} has no validation classes: no "
                                f"held-out evaluation or decision during training"}, None)

    def on_resume(self, bar: tqdm) -> None:
        """A run resumed with other settings (the resumable ones: run.RESUMABLE) says so:
        config.toml is rewritten with the settings it now trains with, and the log gets
        {"event": "resume", "changed": {"train.grad_clip": [10.0, 1.0], ...}}."""
        if not self.changed:
            return
        if self.dist.is_main:
            (self.out_dir / "config.toml").write_text(self.cfg.to_toml())
        self.log({"step": self.step, "event": "resume", "changed": self.changed,
                  "elapsed_s": round(self.elapsed(), 2)}, bar)

    def write(self, path: Path, resumable: bool) -> None:
        """A checkpoint (config, split, weights; `resumable`: with optimiser, history, every
        rank's RNG states), by rank 0; resumable ones are written by a collective call."""
        description = {"config": self.cfg.to_dict(), "split": self.split.to_dict(),
                       "image_shape": list(self.imageset.image_shape), "step": self.step,
                       "model": self.model.state_dict(), "machine": device_name(self.device),
                       "torch": str(torch.__version__),
                       # where relative paths of the config (data root, folder: datasets)
                       # were read from: evaluate finds the data from elsewhere
                       "trained_in": str(Path.cwd())}
        if not resumable:
            if self.dist.is_main:
                save_checkpoint(path, **description)
            return
        rng_states = self.dist.gather((self.train_sampler.generator.get_state(),
                                       torch.get_rng_state()))
        if self.dist.is_main:
            save_checkpoint(path, **description, **self.loop_state(),
                            curriculum_stage=self.stage, sampler_rng=rng_states[0][0],
                            torch_rng=rng_states[0][1], world_size=self.dist.world_size,
                            rank_rng_states=rng_states)

    def close(self, *, wait: bool = True) -> None:
        """Leave the process group, if any (`distributed.shutdown`), first dropping the DDP
        wrapper: it holds the group, and a group freed while the interpreter exits can abort
        the process ("terminate called without an active exception")."""
        self.forward_model = self.model
        shutdown(wait=wait)
