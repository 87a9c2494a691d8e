"""The training loop every trainable model shares: the MANN family (`trainer.Trainer`) and, through
it, ProtoNets and MAML (`methods.trainer.SupportQueryTrainer`).

The loop owns what is the same for all of them: the learning-rate schedule applied each step
(scaled down by rollbacks), the update (backward, gradient averaging over processes, clipping,
a NaN/inf check before the update), log records (`train_log.jsonl`, one per `log_every` steps,
with a held-out evaluation every `eval_every`), checkpoints (every `checkpoint_every` steps,
atomically, by rank 0), resume (log records after the checkpoint dropped), the divergence guard
and its rollbacks, the pause after `time_limit_s` and the stop at `stop_accuracy`.

A subclass says what is its own:
    lr_at(step)               the scheduled learning rate
    batch_loss()              draw this process's batch, forward: (loss, metrics), metrics a
                              1-d tensor averaged over the log interval
    train_fields(metrics)     the record's training fields from those averaged metrics
    evaluate()                the record's held-out fields
    heldout_accuracy(record)  the one held-out number the guard, the curriculum and
                              stop_accuracy watch (None when the record has none)
    write(path, resumable)    a checkpoint in its own format, from `loop_state()`
and may hook `progress_fields()`, `after_evaluation(record)`, `start()` and the snapshot.

Divergence (`TrainConfig.on_divergence`). A NaN or infinite loss or gradient is caught before
the bad update (with a fused Adam, as on CUDA, on the device: the update is skipped there and
the divergence handled at the next log record, so that the host never waits for the device
within a log interval); a loss spike or a collapse of held-out accuracy is caught at the next
log record (`divergence.DivergenceGuard`). Held-out accuracy is that of validation classes; a run
whose split has none evaluates nothing and its guard watches the loss alone. With "rollback"
(the default) the loop restores the last good state (the one of the last evaluation point, every
`eval_every` steps, that passed the guard: weights, optimiser,
the subclass's own, such as a curriculum stage), multiplies the learning rate by
`rollback_lr_factor`, logs a record {"event": "rollback", ...} and goes on with fresh batches;
after `max_rollbacks` rollbacks, or with "stop", the run logs {"event": "stop", ...} and stops
with `TrainingDiverged`, leaving the last checkpoint as it was. Either way the diverged weights
are saved as `diverged-stepN.pt` and the record of the divergence carries the subclass's
`health()` fields (for a MANN: what its memory and controller did, fewshot_mann/training/health.py).
With `skip_grad_spikes` > 0, an update whose gradient norm is a spike against the last steps'
(`DivergenceGuard.skip_update`) is skipped before it happens; the records count the skips.
"""

from __future__ import annotations

import copy
import json
import math
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn
from tqdm import tqdm

from ..config import TrainConfig
from ..errors import CheckpointError, DistributedError, TrainingDiverged
from .distributed import Dist
from .divergence import DivergenceGuard

CHECKPOINT = "checkpoint.pt"
MODEL = "model.pt"
LOG = "train_log.jsonl"


@dataclass
class Snapshot:
    """The last good state, in memory: what a rollback restores."""

    step: int
    model: dict[str, torch.Tensor]
    optimizer: dict[str, Any]
    guard: dict[str, Any]
    own: dict[str, Any]  # the subclass's (`own_state`)


class TrainingLoop:
    """Train `model` with `optimizer` under `settings`, writing into `out_dir`.

    `payload`: the checkpoint a resumed run continues from (its model and optimiser already
    restored by whoever built the run); the loop takes its step, history, learning-rate scale,
    rollbacks and guard from it. Construction has no side effects: files are written by `run`.
    """

    def __init__(self, *, model: nn.Module, optimizer: torch.optim.Optimizer,
                 settings: TrainConfig, out_dir: str | Path, dist: Dist | None = None,
                 eval_samples: int = 256, payload: dict[str, Any] | None = None,
                 stop_accuracy: float = 0.0, time_limit_s: float = 0.0,
                 progress: bool = True) -> None:
        self.model, self.optimizer, self.settings = model, optimizer, settings
        self.forward_model = model  # what the training forward runs (DDP may wrap the model)
        self.out_dir, self.dist = Path(out_dir), dist or Dist()
        self.stop_accuracy = stop_accuracy  # stop once the held-out accuracy reaches this
        self.time_limit_s = time_limit_s  # > 0: pause (checkpointed) at the first evaluation
        # after this many seconds of this call of run(); --resume continues
        self.progress = progress
        self.guard = DivergenceGuard(settings.spike_factor, settings.collapse_drop,
                                     eval_samples=eval_samples,
                                     skip_factor=settings.skip_grad_spikes)
        # with a fused Adam (CUDA) a non-finite update is skipped on the device and the loss and
        # norm are read back once a log record instead of once a step (`train_step`); the spike
        # skip decides on the host from every step's norm, so it keeps the read-back
        self.defer_checks = (bool(optimizer.param_groups[0].get("fused"))
                             and not settings.skip_grad_spikes)
        self.resumed = payload is not None
        payload = payload or {}
        self.history: list[dict[str, Any]] = list(payload.get("history", []))
        self.step = int(payload.get("step", 0))
        self.saved_step: int | None = self.step if self.resumed else None  # in checkpoint.pt
        # absent from checkpoints written before the divergence guard
        self.lr_scale = float(payload.get("lr_scale", 1.0))  # lowered by each rollback
        self.rollbacks = int(payload.get("rollbacks", 0))
        if "guard" in payload:
            self.guard.load_state_dict(payload["guard"])
        self._elapsed_before = (self.history[-1]["elapsed_s"] if self.history
                                else float(payload.get("elapsed_s", 0.0)))
        self._has_history = "history" in payload
        self.snapshot: Snapshot | None = None  # taken when run() starts
        self._start_step = self.step  # where this call of run() started
        self._started: float | None = None  # and when (time.perf_counter())

    # ---- what a subclass says ----------------------------------------------------------------
    def lr_at(self, step: int) -> float:
        raise NotImplementedError

    def batch_loss(self) -> tuple[torch.Tensor, torch.Tensor]:
        raise NotImplementedError

    def train_fields(self, metrics: torch.Tensor) -> dict[str, Any]:
        raise NotImplementedError

    def evaluate(self) -> dict[str, Any]:
        raise NotImplementedError

    def heldout_accuracy(self, record: dict[str, Any]) -> float | None:
        raise NotImplementedError

    def write(self, path: Path, resumable: bool) -> None:
        raise NotImplementedError

    def progress_fields(self) -> dict[str, Any]:
        """Fields of every record after the step (e.g. episodes seen)."""
        return {}

    def after_evaluation(self, record: dict[str, Any], bar: tqdm) -> bool:
        """Called after each healthy held-out evaluation; True when `stop_accuracy` applies
        (a curriculum says no before its last stage)."""
        return True

    def postfix(self, record: dict[str, Any], seconds: float) -> dict[str, str]:
        """What the progress bar shows after a healthy record (`seconds` into this call)."""
        return {"loss": f"{record['loss']:.3f}"}

    def health(self) -> dict[str, Any]:
        """Fields that say what ran away, for the log record of a divergence (computed on rank
        0 from the diverged model; none by default)."""
        return {}

    def on_resume(self, bar: tqdm) -> None:
        """Called once when a resumed run starts training again, on every rank (e.g. to log
        the settings the resume changed)."""

    def own_state(self) -> dict[str, Any]:
        """What of the subclass a rollback restores (`set_own_state`)."""
        return {}

    def set_own_state(self, state: dict[str, Any]) -> None:
        pass

    def start(self) -> None:
        """A new run's files, before its first step (rank 0)."""
        self.out_dir.mkdir(parents=True, exist_ok=True)
        (self.out_dir / LOG).write_text("")

    def elapsed(self) -> float:
        """Seconds of training so far, over every call of run() (resumed runs included)."""
        running = time.perf_counter() - self._started if self._started is not None else 0.0
        return self._elapsed_before + running

    # ---- the state a checkpoint holds ---------------------------------------------------------
    def loop_state(self) -> dict[str, Any]:
        """What a resumable checkpoint needs of the loop, besides the step and the weights."""
        return {"optimizer": self.optimizer.state_dict(),
                "history": self.history, "lr_scale": self.lr_scale,
                "rollbacks": self.rollbacks, "guard": self.guard.state_dict()}

    def save(self) -> None:
        """Everything needed to resume, atomically, by rank 0."""
        self.write(self.out_dir / CHECKPOINT, resumable=True)
        self.saved_step = self.step

    def save_model(self) -> None:
        """The trained model alone (no optimiser): small enough to share."""
        if self.dist.is_main:
            self.write(self.out_dir / MODEL, resumable=False)

    # ---- the update ---------------------------------------------------------------------------
    def train_step(self) -> tuple[torch.Tensor, bool, torch.Tensor]:
        """One update. Returns ([loss, gradient norm before clipping] of the global batch (2,),
        whether the update was skipped as a gradient spike, metrics). A non-finite loss or norm
        never updates: TrainingDiverged here, or with `defer_checks` the fused Adam skips the
        update on the device and `check_finite` raises at the next log record."""
        lr = self.lr_at(self.step) * self.lr_scale
        for group in self.optimizer.param_groups:
            group["lr"] = lr
        loss, metrics = self.batch_loss()
        self.optimizer.zero_grad(set_to_none=True)
        with self.dist.failures("in the backward pass"):  # DDP all-reduces gradients in it
            loss.backward()
        if self.forward_model is self.model:  # no DDP (graphed, or one process): a no-op or
            self.dist.average_gradients(self.model.parameters())  # one flat all-reduce
        # clipping at +inf (grad_clip = 0) scales by exactly 1: the norm, for the check, alone
        norm = torch.nn.utils.clip_grad_norm_(self.model.parameters(),
                                              self.settings.grad_clip or math.inf)
        # the mean loss of the global batch; the norm of the averaged gradients is the same on
        # every rank: every rank takes the same decision below
        values = self.dist.mean(torch.stack([loss.detach(), norm]))  # (2,)
        if self.defer_checks:
            # torch.amp.GradScaler's mechanism: with found_inf 1 the fused kernel leaves the
            # weights, moments and step count alone. Without a read-back the host queues the
            # next step while the device runs this one, instead of waiting for it each step
            self.optimizer.found_inf = (~values.isfinite().all()).float()  # ()
            self.optimizer.step()
            self.step += 1
            return values, False, metrics
        loss_value, norm_value = values.tolist()
        self.check_finite([[loss_value, norm_value]], self.step + 1)
        skipped = self.guard.skip_update(norm_value)
        if not skipped:
            self.optimizer.step()
        self.step += 1  # a skipped step still spends its batch and its place in the schedule
        return values, skipped, metrics

    @staticmethod
    def check_finite(values: list[list[float]], first_step: int) -> None:
        """TrainingDiverged at the first step of `values` ([loss, norm] of consecutive steps
        from `first_step` on) whose loss or gradient norm is not finite."""
        for step, (loss_value, norm_value) in enumerate(values, start=first_step):
            if not (math.isfinite(loss_value) and math.isfinite(norm_value)):
                what = (f"the loss became {loss_value}" if not math.isfinite(loss_value)
                        else f"the gradient norm became {norm_value}")
                raise TrainingDiverged(f"{what} at step {step} (caught before that update)")

    # ---- divergence ---------------------------------------------------------------------------
    def _snapshot(self) -> Snapshot:
        return Snapshot(self.step, copy.deepcopy(self.model.state_dict()),
                        copy.deepcopy(self.optimizer.state_dict()), self.guard.state_dict(),
                        copy.deepcopy(self.own_state()))

    def _stop_message(self, what: str,
                      advice: str = "with a lower --lr or a --grad-clip") -> str:
        if self.saved_step is None:
            kept = f"no checkpoint had been written yet: start again {advice}"
        else:
            kept = (f"{self.out_dir / CHECKPOINT} keeps step {self.saved_step}, the last good "
                    f"checkpoint: --resume from it {advice}")
        return f"{what}; training stopped. {kept}"

    def _rollback(self, reason: str, bar: tqdm) -> None:
        """Back to the last good snapshot with a lower learning rate, logged, the progress bar
        set back. Raises TrainingDiverged when rollbacks are off or used up."""
        s = self.settings
        diverged = self.out_dir / f"diverged-step{self.step}.pt"
        if self.dist.is_main:  # for a post-mortem (scripts/diagnose_memory.py), in either mode
            self.write(diverged, resumable=False)
        signs = self.dist.from_main(self.health)  # of the diverged model, before any restore
        if s.on_divergence == "stop" or self.rollbacks >= s.max_rollbacks:
            if s.on_divergence == "rollback":
                reason += f" (after {self.rollbacks} rollbacks, train.max_rollbacks)"
            self.log({"step": self.step, "event": "stop", "reason": reason,
                      "diverged_weights": diverged.name, **signs,
                      "elapsed_s": round(self.elapsed(), 2)}, bar)
            raise TrainingDiverged(self._stop_message(f"{reason} (weights: {diverged.name})"))
        snap, from_step = self.snapshot, self.step
        self.model.load_state_dict(snap.model)  # in place: CUDA graphs keep their parameters
        self.optimizer.load_state_dict(copy.deepcopy(snap.optimizer))
        self.guard.load_state_dict(snap.guard)
        self.step = snap.step
        self.set_own_state(snap.own)
        self.rollbacks += 1
        self.lr_scale *= s.rollback_lr_factor
        self.log({"step": self.step, "event": "rollback", "from_step": from_step,
                  "reason": reason, "lr_scale": self.lr_scale, "rollbacks": self.rollbacks,
                  "diverged_weights": diverged.name, **signs,
                  "elapsed_s": round(self.elapsed(), 2)}, bar)
        bar.reset(total=s.steps)
        bar.update(self.step)

    # ---- the loop -----------------------------------------------------------------------------
    def run(self, stop_at: int | None = None) -> list[dict[str, Any]]:
        """Train to `settings.steps` (or pause at step `stop_at`, checkpointed); returns the
        log. DistributedError when another training process is lost."""
        try:
            return self._train(stop_at)
        except DistributedError as err:
            raise DistributedError(self._stop_message(
                str(err), f"with the same number of processes ({self.dist.world_size})")
            ) from err

    def _train(self, stop_at: int | None) -> list[dict[str, Any]]:
        s = self.settings
        first_call = self.snapshot is None
        if first_call:
            if self.dist.is_main and self.resumed:
                self._truncate_log()
            elif self.dist.is_main:
                self.start()
            self.snapshot = self._snapshot()
        last = min(s.steps, stop_at or s.steps)
        reached = False
        # [loss, grad norm], skipped, metrics of each step since the last record
        window: list[tuple[torch.Tensor, bool, torch.Tensor]] = []
        if self.history:  # a second call of run() goes on from the first one's clock
            self._elapsed_before = self.history[-1]["elapsed_s"]
        started = self._started = time.perf_counter()
        self._start_step = self.step
        bar = tqdm(total=s.steps, initial=self.step, unit="step",
                   disable=not (self.progress and self.dist.is_main),
                   dynamic_ncols=True, desc="train")
        if first_call and self.resumed:
            self.on_resume(bar)
        self.model.train()
        while self.step < last:
            try:
                window.append(self.train_step())
            except TrainingDiverged as err:  # non-finite: caught before the update
                self._rollback(str(err), bar)
                window.clear()
                continue
            bar.update(1)
            log_now = self.step % s.log_every == 0 or self.step == last
            eval_now = self.step % s.eval_every == 0 or self.step == last
            if not (log_now or eval_now):
                continue
            values = torch.stack([w[0] for w in window]).tolist()  # one read-back a record
            try:  # steps whose update the device skipped (`defer_checks`)
                self.check_finite(values, self.step - len(window) + 1)
            except TrainingDiverged as err:
                self._rollback(str(err), bar)
                window.clear()
                continue
            record: dict[str, Any] = {
                "step": self.step, **self.progress_fields(),
                "elapsed_s": round(self.elapsed(), 2),
                "lr": self.lr_at(self.step - 1) * self.lr_scale,
                "loss": sum(v[0] for v in values) / len(values),
                "grad_norm_max": max(v[1] for v in values),  # before clipping
                **self.train_fields(torch.stack([w[2] for w in window]).mean(0)),
            }
            if s.skip_grad_spikes:
                record["skipped_updates"] = sum(w[1] for w in window)
            window.clear()
            out_of_time = False
            if eval_now:  # on rank 0; every rank decides (curriculum, guard, pause) from it
                fields, out_of_time = self.dist.from_main(lambda: (
                    self.evaluate(), time.perf_counter() - started >= self.time_limit_s > 0))
                self.model.train()
                record.update(fields)
            accuracy = self.heldout_accuracy(record)
            reason = self.guard.check(record["loss"], accuracy)
            self.log(record, bar)  # a diverged record too: the log keeps what happened
            if reason:
                self._rollback(reason, bar)
                continue
            self.guard.accept(record["loss"], accuracy)
            bar.set_postfix(self.postfix(record, time.perf_counter() - started))
            if eval_now:
                final_stage = self.after_evaluation(record, bar)
                reached = (final_stage and accuracy is not None
                           and accuracy >= self.stop_accuracy > 0)
                self.snapshot = self._snapshot()
            if self.step % s.checkpoint_every == 0 or self.step == last or reached or out_of_time:
                self.save()
            if reached or out_of_time:
                break
        bar.close()
        if self.step >= s.steps or reached:
            self.save_model()
        return self.history

    def _truncate_log(self) -> None:
        """Drop log records written after the checkpoint (they will be written again), and a
        last line cut short by a crash: the log keeps the checkpoint's own history (older
        checkpoints without one: the records up to its step). A stop for divergence after
        the checkpoint stays (and joins the history): it will not be written again."""
        log = self.out_dir / LOG
        if not log.exists():
            return
        lines = log.read_text().splitlines()
        if self._has_history:
            kept, dropped = lines[:len(self.history)], lines[len(self.history):]
        else:
            kept = [line for line in lines if _logged_step(line) <= self.step]
            dropped = lines[len(kept):]
        stops = [json.loads(line) for line in dropped if _is_stop(line)]
        self.history += stops
        log.write_text("".join(line + "\n" for line in kept)
                       + "".join(json.dumps(record) + "\n" for record in stops))

    def log(self, record: dict[str, Any], bar: tqdm | None) -> None:
        """Add a record to the history and, on rank 0, to the log file and the console (through
        the progress bar, when there is one)."""
        self.history.append(record)  # every rank: the same records (elapsed_s aside)
        if not self.dist.is_main:
            return
        with open(self.out_dir / LOG, "a") as f:
            f.write(json.dumps(record) + "\n")
        line = self.describe(record) if self.progress else None
        if line:
            (bar or tqdm).write(line)

    def describe(self, record: dict[str, Any]) -> str | None:
        """A log record as one console line (None: not shown)."""
        if record.get("event") == "rollback":
            return (f"step {record['from_step']}: {record['reason']}; rolled back to step "
                    f"{record['step']}, learning rate x{record['lr_scale']:g}")
        if record.get("event") == "stop":
            return f"step {record['step']}: {record['reason']}; stopped"
        if record.get("event") == "resume":
            return f"step {record['step']}: resumed with " + ", ".join(
                f"{name} = {new!r} (was {old!r})" for name, (old, new) in record["changed"].items())
        if "reason" in record:  # any other event says why it happened
            return f"step {record['step']}: {record['reason']}"
        return f"step {record['step']} | loss {record['loss']:.4f}"


def restore_training_state(payload: dict[str, Any], path: Path,
                           optimizer: torch.optim.Optimizer, generator: torch.Generator,
                           rng: tuple[Any, Any]) -> None:
    """The optimiser of a resumable checkpoint, and the RNG states `rng` (the sampler's
    generator's, torch's) it holds for this process; CheckpointError when unusable."""
    # the fused kernel follows this run's device (see run.make_optimizer), not the checkpoint's
    fused = [group.get("fused") for group in optimizer.param_groups]
    try:
        optimizer.load_state_dict(payload["optimizer"])
        for group, choice in zip(optimizer.param_groups, fused, strict=True):
            if "fused" in group:
                group["fused"] = choice
        generator.set_state(rng[0])
        torch.set_rng_state(rng[1])
    except (KeyError, ValueError, RuntimeError, TypeError) as err:
        raise CheckpointError(f"{path}: optimiser or RNG state unusable: {err}") from err


def _is_stop(line: str) -> bool:
    """Whether a train_log.jsonl line is a stop for divergence (False for a cut line)."""
    try:
        return json.loads(line).get("event") == "stop"
    except (ValueError, AttributeError):
        return False


def _logged_step(line: str) -> float:
    """The step of a train_log.jsonl record; +inf for a blank or unreadable (cut) line."""
    try:
        return float(json.loads(line)["step"])
    except (ValueError, KeyError, TypeError):
        return math.inf
