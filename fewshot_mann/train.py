"""Episodic training: sample a batch of episodes, one optimiser step, repeat.

`Trainer(cfg, out_dir).run()` writes into `out_dir`:
    config.toml       the full configuration of the run
    split.json        the pinned class split (training never sees its test classes)
    checkpoint.pt     config + split + model + optimiser + RNG states + step, written atomically
    model.pt          at the end: config + split + weights only (small; `evaluate` takes it)
    train_log.jsonl   one JSON record per log interval and per held-out evaluation
A run resumes from `checkpoint.pt` with `resume=True` and then continues exactly as if it had
never stopped: same batches, same parameters.

Divergence (`train.on_divergence`). A NaN or infinite loss or gradient is caught before the bad
update; a loss spike or a collapse of held-out accuracy is caught at the next log record
(`divergence.DivergenceGuard`). With "rollback" (the default) the trainer restores the last good
state (weights, optimiser, curriculum stage: the one of the last held-out evaluation that passed
the guard, also what checkpoint.pt holds), multiplies the learning rate by
`train.rollback_lr_factor`, saves the diverged weights as `diverged-stepN.pt` for a post-mortem,
logs a record {"event": "rollback", ...} and goes on with fresh batches; after
`train.max_rollbacks` rollbacks, or with "stop", the run stops with `TrainingDiverged`, leaving
the last checkpoint as it was.

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

import copy
import json
import math
import time
import warnings
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from tqdm import tqdm

from .checkpoint import (
    CheckpointError,
    checkpoint_config,
    load_checkpoint,
    load_weights,
    save_checkpoint,
)
from .config import Config, ConfigError, curriculum_widths, replace
from .cuda_graphs import graph_training_forward
from .data import DatasetError, ImageSet, default_split, load_dataset, make_split, resolve
from .distributed import DistributedError, rank_seed, shutdown
from .distributed import init as init_distributed
from .divergence import DivergenceGuard
from .episodes import EpisodeSampler, LabelCode
from .errors import TrainingDiverged
from .evaluate import EvalResult, evaluate
from .metrics import episode_loss, presentation_accuracy, step_correct
from .models import build_model
from .runtime import device_name, pick_device

CHECKPOINT = "checkpoint.pt"
MODEL = "model.pt"
LOG = "train_log.jsonl"
# what a resumed run may change: where it runs and finds its data, its schedule and cadence
RESUMABLE = {("data", key) for key in ("data_root", "cache_dir", "download")} | {
    ("train", key) for key in ("steps", "lr", "lr_min", "warmup_steps", "grad_clip", "device",
                               "threads", "compile", "cuda_graph", "precision", "eval_every",
                               "eval_episodes", "checkpoint_every", "log_every",
                               "curriculum_accuracy", "on_divergence", "spike_factor",
                               "collapse_drop", "rollback_lr_factor", "max_rollbacks")}


@dataclass
class Snapshot:
    """The last good state, in memory: what a rollback restores."""

    step: int
    stage: int
    model: dict[str, torch.Tensor]
    optimizer: dict[str, Any]
    guard: dict[str, Any]



def make_sampler(cfg: Config, imageset: ImageSet, class_ids: list[str], *, side: str,
                 device: torch.device, seed: int, presentations: int | None = None
                 ) -> EpisodeSampler:
    """Episodes over the `side` ("train", "val" or "test") classes of a split.

    Training samplers add the random-rotation class augmentation. Classes with fewer images
    than the presentations per class stop the run or are left out (data.min_images).
    """
    e = cfg.episodes
    need = presentations or e.presentations
    class_ids = usable_classes(imageset, class_ids, need, cfg.data.min_images, side)
    if len(class_ids) < e.n_way:
        raise DatasetError(f"{e.n_way}-way episodes need at least {e.n_way} {side} classes; "
                           f"the split has {len(class_ids)} usable ones")
    index, rotation = resolve(imageset, class_ids)
    return EpisodeSampler(imageset, index, rotation, e.n_way, need,
                          LabelCode.make(e.labels, e.n_way),
                          rotate_classes=side == "train" and cfg.data.rotate_classes,
                          device=device, seed=seed)


def usable_classes(imageset: ImageSet, class_ids: list[str], need: int, policy: str,
                   side: str) -> list[str]:
    index, _ = resolve(imageset, class_ids)
    short = (imageset.counts[index] < need).tolist()
    if not any(short):
        return class_ids
    examples = [c for c, s in zip(class_ids, short, strict=True) if s][:5]
    message = (f"{sum(short)} of {len(class_ids)} {side} classes have fewer than {need} images "
               f"(the presentations per class), e.g. {examples}")
    if policy == "error":
        raise DatasetError(message + "; pass --min-images skip to leave them out, or lower "
                                     "--presentations")
    warnings.warn(message + "; left out", stacklevel=3)
    return [c for c, s in zip(class_ids, short, strict=True) if not s]


def lr_at(cfg: Config, step: int) -> float:
    """Linear warm-up, then cosine decay from train.lr to train.lr_min at the last step."""
    t = cfg.train
    if step < t.warmup_steps:
        return t.lr * (step + 1) / t.warmup_steps
    progress = (step - t.warmup_steps) / max(1, t.steps - t.warmup_steps)
    return t.lr_min + 0.5 * (t.lr - t.lr_min) * (1 + math.cos(math.pi * min(1.0, progress)))


@dataclass
class Trainer:
    cfg: Config
    out_dir: Path
    resume: bool = False
    stop_accuracy: float = 0.0  # stop once held-out 2nd-presentation accuracy reaches this
    time_limit_s: float = 0.0  # > 0: pause (checkpointed) at the first evaluation after this
    # many seconds of this call of run(); --resume continues
    progress: bool = True
    # on resume, the settings asked for by section (the CLI's flags and --config); None: all of
    # cfg. They must agree with the checkpoint's, except the RESUMABLE ones, which are adopted.
    requested: dict[str, dict[str, Any]] | None = None
    step: int = 0
    saved_step: int | None = None  # the step checkpoint.pt holds
    history: list[dict[str, Any]] = field(default_factory=list)
    stage: int = 0  # index into the curriculum's widths
    lr_scale: float = 1.0  # times the scheduled rate; lowered by each rollback
    rollbacks: int = 0

    def __post_init__(self) -> None:
        self.out_dir = Path(self.out_dir)
        if not self.cfg.data.split:  # saved as chosen: santoro, or ratio:0.8 for custom data
            self.cfg = replace(self.cfg, data={"split": default_split(self.cfg.data.dataset)})
        ckpt_path = self.out_dir / CHECKPOINT
        payload, saved_split = None, None
        if self.resume:
            payload = load_checkpoint(ckpt_path)
            saved, saved_split = checkpoint_config(payload, ckpt_path)
            self._adopt_checkpoint_config(saved)
        elif ckpt_path.exists():
            raise FileExistsError(f"{ckpt_path} exists: pass --resume to continue that run, or "
                                  f"choose another --out")
        cfg = self.cfg.validate()
        if cfg.train.threads:
            torch.set_num_threads(cfg.train.threads)
        # under torchrun: this process's rank and device (distributed.py); else rank 0 of 1
        self.dist, self.device = init_distributed(pick_device(cfg.train.device))
        if cfg.train.cuda_graph and self.device.type != "cuda":
            raise ConfigError(f"train.cuda_graph needs a CUDA device; this run is on "
                              f"{self.device}")
        torch.manual_seed(cfg.train.seed)

        self.imageset = load_dataset(cfg.data)
        self.split = saved_split or make_split(cfg.data, self.imageset)
        self.train_sampler = make_sampler(cfg, self.imageset, self.split.train, side="train",
                                          device=self.device,
                                          seed=rank_seed(cfg.train.seed, self.dist.rank))
        self.heldout = make_sampler(cfg, self.imageset, self.split.heldout,
                                    side="val" if self.split.val else "test",
                                    device=self.device, seed=cfg.train.seed + 1)
        self.code = self.train_sampler.code
        self.widths = curriculum_widths(cfg)
        self.guard = DivergenceGuard(cfg.train.spike_factor, cfg.train.collapse_drop,
                                     eval_samples=cfg.train.eval_episodes * min(self.widths))
        self.model = build_model(cfg.model, self.imageset.image_shape, self.code).to(self.device)
        # TF32 matmuls are a process-wide CUDA switch; bf16 is an autocast around each forward
        torch.backends.cuda.matmul.allow_tf32 = cfg.train.precision == "tf32"
        torch.backends.cudnn.allow_tf32 = cfg.train.precision == "tf32"
        if cfg.train.compile:
            if not hasattr(self.model, "compile_step"):
                raise ConfigError(f"train.compile applies to the MANN, not to {cfg.model.kind}")
            self.model.compile_step()
        # one captured graph per episode shape (a curriculum changes the episode length)
        self._graphed: dict[torch.Size, Callable[[torch.Tensor, torch.Tensor], torch.Tensor]] = {}
        self.optimizer = self._make_optimizer()
        if payload:
            self._restore(payload)
        elif cfg.model.encoder_init:  # resumed runs have these weights in their checkpoint
            from .pretrained import init_encoder  # learn2learn: gym's import notice

            init_encoder(self.model, cfg.model.encoder_init, self.split)
        # what the training forward runs: DDP in a process group, else the model itself
        self.forward_model = self.dist.wrap(self.model, graphed=cfg.train.cuda_graph)
        self._set_stage(self.stage)
        self.snapshot = self._snapshot()  # after encoder_init: a rollback keeps those weights
        if not payload and self.dist.is_main:
            self.out_dir.mkdir(parents=True, exist_ok=True)
            (self.out_dir / "config.toml").write_text(cfg.to_toml())
            self.split.save(self.out_dir / "split.json")
            (self.out_dir / LOG).write_text("")

    # ---- set-up ------------------------------------------------------------------------------
    def _adopt_checkpoint_config(self, saved: Config) -> None:
        """On resume the checkpoint's config rules: the RESUMABLE settings requested replace
        its own, any other requested setting must equal its own."""
        requested = self.cfg.to_dict() if self.requested is None else self.requested
        have = saved.to_dict()
        conflicts = [f"{section}.{key} = {value!r} (the run has {have[section][key]!r})"
                     for section, values in requested.items() for key, value in values.items()
                     if (section, key) not in RESUMABLE and value != have[section][key]]
        if conflicts:
            raise ConfigError(f"{self.out_dir} was trained with another configuration; a "
                              f"resumed run keeps its own, so drop or fix "
                              f"{', '.join(conflicts)}")
        adopted = {section: {key: value for key, value in values.items()
                             if (section, key) in RESUMABLE}
                   for section, values in requested.items()}
        self.cfg = replace(saved, **adopted)

    def _make_optimizer(self) -> torch.optim.Optimizer:
        t = self.cfg.train
        params = [p for p in self.model.parameters() if p.requires_grad]  # not a frozen encoder
        if t.optimizer == "adam":
            return torch.optim.Adam(params, lr=t.lr)
        return torch.optim.RMSprop(params, lr=t.lr, momentum=0.9, eps=1e-5)

    def _restore(self, payload: dict[str, Any]) -> None:
        path = self.out_dir / CHECKPOINT
        saved_world = int(payload.get("world_size", 1))  # absent: written by a single process
        if saved_world != self.dist.world_size:
            raise ConfigError(
                f"{path} was written by a run of {saved_world} training process(es) and this "
                f"one has {self.dist.world_size}: resume with the same number (torchrun "
                f"--nnodes x --nproc_per_node = {saved_world}; 1: plain fewshot-mann train), "
                f"since each process continues its own stream of episodes and the global "
                f"batch is batch_size x processes")
        load_weights(self.model, payload["model"], path)
        # each process's own RNG states (older checkpoints: rank 0's alone)
        sampler_rng, torch_rng = payload.get("rank_rng_states", [
            (payload.get("sampler_rng"), payload.get("torch_rng"))])[self.dist.rank]
        try:
            self.optimizer.load_state_dict(payload["optimizer"])
            self.train_sampler.generator.set_state(sampler_rng)
            torch.set_rng_state(torch_rng)
        except (KeyError, ValueError, RuntimeError) as err:
            raise CheckpointError(f"{path}: optimiser or RNG state unusable: {err}") from err
        self.step = self.saved_step = int(payload["step"])
        self.history = list(payload.get("history", []))
        # absent from checkpoints written before the curriculum and the divergence guard
        self.stage = int(payload.get("curriculum_stage", 0))
        self.lr_scale = float(payload.get("lr_scale", 1.0))
        self.rollbacks = int(payload.get("rollbacks", 0))
        if "guard" in payload:
            self.guard.load_state_dict(payload["guard"])
        if self.dist.is_main:
            self._truncate_log("history" in payload)

    def _truncate_log(self, has_history: bool) -> None:
        """Drop log records written after the checkpoint (they will be written again), and a
        last line cut short by a crash: the log keeps the checkpoint's own history (older
        checkpoints without one: the records up to its step)."""
        log = self.out_dir / LOG
        if not log.exists():
            return
        lines = log.read_text().splitlines()
        if has_history:
            kept = lines[:len(self.history)]
        else:
            kept = [line for line in lines if _logged_step(line) <= self.step]
        log.write_text("".join(line + "\n" for line in kept))

    def _set_stage(self, stage: int) -> None:
        """Episodes of the stage's width, for training and for the held-out evaluation."""
        self.stage = stage
        self.train_sampler.n_way = self.heldout.n_way = self.widths[stage]

    @property
    def n_way(self) -> int:
        return self.widths[self.stage]

    def _snapshot(self) -> Snapshot:
        return Snapshot(self.step, self.stage, copy.deepcopy(self.model.state_dict()),
                        copy.deepcopy(self.optimizer.state_dict()), self.guard.state_dict())

    # ---- the loop ----------------------------------------------------------------------------
    def train_step(self) -> tuple[float, float, torch.Tensor, torch.Tensor]:
        """One update. Returns (loss, gradient norm before clipping, per-step correctness
        (B, T), presentation index (B, T)); TrainingDiverged before a non-finite update."""
        lr = lr_at(self.cfg, self.step) * self.lr_scale
        for group in self.optimizer.param_groups:
            group["lr"] = lr
        batch = self.train_sampler.sample(self.cfg.train.batch_size)  # this rank's episodes
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
        self.optimizer.zero_grad(set_to_none=True)
        with self.dist.failures("in the backward pass"):  # DDP all-reduces gradients in it
            loss.backward()
        if self.forward_model is self.model:  # no DDP (graphed, or one process): a no-op or
            self.dist.average_gradients(self.model.parameters())  # one flat all-reduce
        # clipping at +inf (grad_clip = 0) scales by exactly 1: the norm, for the check, alone
        norm = torch.nn.utils.clip_grad_norm_(self.model.parameters(),
                                              self.cfg.train.grad_clip or math.inf)
        # the mean loss of the global batch; the norm of the averaged gradients is the same on
        # every rank: every rank takes the same decision below
        loss_value, norm_value = self.dist.mean(torch.stack([loss.detach(), norm])).tolist()
        if not (math.isfinite(loss_value) and math.isfinite(norm_value)):
            what = (f"the loss became {loss_value}" if not math.isfinite(loss_value)
                    else f"the gradient norm became {norm_value}")
            raise TrainingDiverged(f"{what} at step {self.step + 1} (caught before that update)")
        self.optimizer.step()
        self.step += 1
        return loss_value, norm_value, step_correct(logits, batch.targets), batch.presentation

    def autocast(self, cache_enabled: bool = True) -> torch.autocast:
        """bf16 autocast when train.precision is "bf16", else a no-op context (CUDA graphs
        need `cache_enabled=False`)."""
        return torch.autocast(self.device.type, dtype=torch.bfloat16,
                              enabled=self.cfg.train.precision == "bf16",
                              cache_enabled=cache_enabled)

    def _stop_message(self, what: str,
                      advice: str = "with a lower --lr or a --grad-clip") -> str:
        if self.saved_step is None:
            kept = f"no checkpoint had been written yet: start again {advice}"
        else:
            kept = (f"{self.out_dir / CHECKPOINT} keeps step {self.saved_step}, the last good "
                    f"checkpoint: --resume from it {advice}")
        return f"{what}; training stopped. {kept}"

    def _rollback(self, reason: str, elapsed: float, bar: tqdm) -> None:
        """Back to the last good snapshot with a lower learning rate, logged, the progress bar
        set back. Raises TrainingDiverged when rollbacks are off or used up."""
        t = self.cfg.train
        if t.on_divergence == "stop":
            raise TrainingDiverged(self._stop_message(reason))
        if self.rollbacks >= t.max_rollbacks:
            raise TrainingDiverged(self._stop_message(
                f"{reason} (after {self.rollbacks} rollbacks, train.max_rollbacks)"))
        diverged = self.out_dir / f"diverged-step{self.step}.pt"
        if self.dist.is_main:
            save_checkpoint(diverged, **self._description())  # for a post-mortem
        snap, from_step = self.snapshot, self.step
        self.model.load_state_dict(snap.model)  # in place: CUDA graphs keep their parameters
        self.optimizer.load_state_dict(copy.deepcopy(snap.optimizer))
        self.guard.load_state_dict(snap.guard)
        self.step = snap.step
        self._set_stage(snap.stage)
        self.rollbacks += 1
        self.lr_scale *= t.rollback_lr_factor
        self._log({"step": self.step, "event": "rollback", "from_step": from_step,
                   "reason": reason, "lr_scale": self.lr_scale, "rollbacks": self.rollbacks,
                   "diverged_weights": diverged.name, "elapsed_s": round(elapsed, 2)}, bar)
        bar.reset(total=self.cfg.train.steps)
        bar.update(self.step)

    def run(self, stop_at: int | None = None) -> list[dict[str, Any]]:
        """Train to `train.steps` (or pause at step `stop_at`, checkpointed); returns the log.
        DistributedError when another training process is lost."""
        try:
            return self._train(stop_at)
        except DistributedError as err:
            raise DistributedError(self._stop_message(
                str(err), f"with the same number of processes ({self.dist.world_size})")
            ) from err

    def _train(self, stop_at: int | None) -> list[dict[str, Any]]:
        t = self.cfg.train
        global_batch = t.batch_size * self.dist.world_size  # episodes per update
        last = min(t.steps, stop_at or t.steps)
        reached = False
        K = self.cfg.episodes.presentations
        window: list[tuple[float, float, torch.Tensor]] = []  # loss, grad norm, accuracy by K
        started, start_step = time.perf_counter(), self.step
        elapsed_before = self.history[-1]["elapsed_s"] if self.history else 0.0
        bar = tqdm(total=t.steps, initial=self.step, unit="step",
                   disable=not (self.progress and self.dist.is_main),
                   dynamic_ncols=True, desc="train")
        self.model.train()
        while self.step < last:
            try:
                loss, norm, correct, presentation = self.train_step()
            except TrainingDiverged as err:  # non-finite: caught before the update
                self._rollback(str(err), elapsed_before + time.perf_counter() - started, bar)
                window.clear()
                continue
            window.append((loss, norm, presentation_accuracy(correct, presentation, K).mean(0)))
            bar.update(1)
            log_now = self.step % t.log_every == 0 or self.step == last
            eval_now = self.step % t.eval_every == 0 or self.step == last
            if not (log_now or eval_now):
                continue
            elapsed = elapsed_before + time.perf_counter() - started
            record: dict[str, Any] = {
                "step": self.step, "episodes": self.step * global_batch,
                "elapsed_s": round(elapsed, 2), "n_way": self.n_way,
                "lr": lr_at(self.cfg, self.step - 1) * self.lr_scale,
                "loss": sum(w[0] for w in window) / len(window),
                "grad_norm_max": max(w[1] for w in window),  # before clipping
                "train_instance_accuracy": self.dist.mean(  # over the global batch
                    torch.stack([w[2] for w in window]).mean(0)).tolist(),
            }
            window.clear()
            out_of_time = False
            if eval_now:  # on rank 0; every rank decides (curriculum, guard, pause) from it
                result, out_of_time = self.dist.from_main(lambda: (
                    self._evaluate(), time.perf_counter() - started >= self.time_limit_s > 0))
                record["heldout_instance_accuracy"] = result.instance_accuracy
                record["heldout_loss"] = result.loss
            reason = self.guard.check(record)
            self._log(record, bar)  # a diverged record too: the log keeps what happened
            if reason:
                self._rollback(reason, elapsed, bar)
                continue
            self.guard.accept(record)
            rate = (self.step - start_step) * global_batch / (time.perf_counter() - started)
            bar.set_postfix(loss=f"{record['loss']:.3f}", eps=f"{rate:.0f}/s",
                            inst2=f"{record['train_instance_accuracy'][1]:.3f}")
            if eval_now:
                accuracy = record["heldout_instance_accuracy"][1]
                if self.stage + 1 < len(self.widths) and accuracy >= t.curriculum_accuracy:
                    self._set_stage(self.stage + 1)
                    self.guard.reset()  # another task, another loss scale
                    self._log({"step": self.step, "event": "widen", "n_way": self.n_way,
                               "elapsed_s": record["elapsed_s"]}, bar)
                elif self.stage + 1 == len(self.widths):
                    reached = accuracy >= self.stop_accuracy > 0
                self.snapshot = self._snapshot()
            if self.step % t.checkpoint_every == 0 or self.step == last or reached or out_of_time:
                self.save()
            if reached or out_of_time:
                break
        bar.close()
        if self.step >= t.steps or reached:
            self.save_model()
        return self.history

    def close(self, *, wait: bool = True) -> None:
        """Leave the process group, if any (`distributed.shutdown`), first dropping the DDP
        wrapper: it holds the group, and a group freed while the interpreter exits can abort
        the process ("terminate called without an active exception")."""
        self.forward_model = self.model
        shutdown(wait=wait)

    def _evaluate(self) -> EvalResult:
        """The held-out evaluation: the same episodes each time."""
        t = self.cfg.train
        self.heldout.generator.manual_seed(t.seed + 1)
        with self.autocast():
            result = evaluate(self.model, self.heldout, t.eval_episodes,
                              batch_size=min(t.eval_episodes, 256))
        self.model.train()
        return result

    def _log(self, record: dict[str, Any], bar: tqdm) -> None:
        self.history.append(record)  # every rank: the same records (elapsed_s aside)
        if not self.dist.is_main:
            return
        with open(self.out_dir / LOG, "a") as f:
            f.write(json.dumps(record) + "\n")
        if not self.progress:
            return
        if record.get("event") == "rollback":
            bar.write(f"step {record['from_step']}: {record['reason']}; rolled back to step "
                      f"{record['step']}, learning rate x{record['lr_scale']:g}")
            return
        if record.get("event") == "widen":
            bar.write(f"step {record['step']}: curriculum moves on to {record['n_way']}-way")
            return
        parts = [f"step {record['step']}", f"loss {record['loss']:.4f}",
                 "train " + " ".join(f"{a:.2f}" for a in record["train_instance_accuracy"])]
        if "heldout_instance_accuracy" in record:
            parts.append("held-out " + " ".join(f"{a:.2f}"
                                                for a in record["heldout_instance_accuracy"]))
        bar.write(" | ".join(parts))

    def _description(self) -> dict[str, Any]:
        return {"config": self.cfg.to_dict(), "split": self.split.to_dict(),
                "image_shape": list(self.imageset.image_shape), "step": self.step,
                "model": self.model.state_dict(), "machine": device_name(self.device),
                "torch": str(torch.__version__)}

    def save(self) -> None:
        """Everything needed to resume, atomically, by rank 0; the RNG states of every rank."""
        rng_states = self.dist.gather((self.train_sampler.generator.get_state(),
                                       torch.get_rng_state()))
        if self.dist.is_main:
            save_checkpoint(self.out_dir / CHECKPOINT, **self._description(),
                            optimizer=self.optimizer.state_dict(), history=self.history,
                            curriculum_stage=self.stage, lr_scale=self.lr_scale,
                            rollbacks=self.rollbacks, guard=self.guard.state_dict(),
                            sampler_rng=rng_states[0][0], torch_rng=rng_states[0][1],
                            world_size=self.dist.world_size, rank_rng_states=rng_states)
        self.saved_step = self.step

    def save_model(self) -> None:
        """The trained model alone (config, split, weights; no optimiser): small enough to share,
        and accepted by `evaluate` like a full checkpoint."""
        if self.dist.is_main:
            save_checkpoint(self.out_dir / MODEL, **self._description())


def _logged_step(line: str) -> float:
    """The step of a train_log.jsonl record; +inf for a blank or unreadable (cut) line."""
    try:
        return float(json.loads(line)["step"])
    except (ValueError, KeyError, TypeError):
        return math.inf
