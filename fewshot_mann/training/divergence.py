"""Divergence guard: the failures of a training run that a NaN check does not see.

A large-batch MANN run can blow up without a single non-finite number: the training loss jumps
far above where it was, held-out accuracy falls to chance, and the run then settles on a
constant, useless output while the loss stays finite (docs/training.md). The trainer
shows every log record to a `DivergenceGuard`:

    loss spike          the record's mean training loss is above `spike_factor` x the median of
                        the last `window` accepted records, and above that median by more than
                        `MIN_RISE` nats and more than 5 robust standard deviations of those
                        records (1.4826 x their median absolute deviation): noisy small-batch
                        records do not trigger it
    accuracy collapse   its held-out accuracy (the MANN's: at the 2nd presentation) is more than
                        `collapse_drop`, and more than 4 standard errors of the evaluation
                        (binomial, `eval_samples` = episodes x classes), below the best so far

and, before each update, its gradient norm (`skip_update`, when `skip_factor` > 0):

    gradient spike      the norm before clipping is above `skip_factor` x the median of the last
                        `NORM_WINDOW` steps' norms (once `MIN_NORMS` are known): the update is
                        skipped. A collapse can begin with one batch whose exact gradient is
                        tens of times the usual: clipped to train.grad_clip it still sets
                        Adam's direction, and the next steps run away. Every norm joins the history,
                        skipped or not, so that a lasting change of scale is adopted after
                        NORM_WINDOW / 2 steps instead of stalling the run.

`check(loss, accuracy)` names what is wrong with a record's mean training loss and held-out
accuracy (None: not evaluated), or returns None; `accept` adds a healthy record to the history.
The guard's state is plain numbers (`state_dict`), saved in checkpoints and in the trainer's
last-good snapshot, so that a rollback or a resume continues with the history it had then.
"""

from __future__ import annotations

import math
import statistics
from dataclasses import dataclass, field
from typing import Any

MIN_RISE = 0.25  # nats: a jump smaller than this is noise at any loss scale
MIN_RECORDS = 5  # accepted records before a spike can be told from the loss's own noise
NORM_WINDOW = 100  # steps whose gradient norms a gradient spike is measured against
MIN_NORMS = 20  # norms known before an update can be skipped (the first steps' norms fall fast)


@dataclass
class DivergenceGuard:
    spike_factor: float = 2.0
    collapse_drop: float = 0.25
    eval_samples: int = 256 * 5  # held-out episodes x classes per evaluation
    skip_factor: float = 0.0  # 0: no update is skipped
    window: int = 10
    losses: list[float] = field(default_factory=list)  # mean loss of accepted log records
    best: float = -math.inf  # best held-out accuracy since the last reset
    grad_norms: list[float] = field(default_factory=list)  # the last NORM_WINDOW steps'

    def skip_update(self, norm: float) -> bool:
        """Whether the update of this gradient norm (before clipping) is a spike to skip; the
        norm joins the history either way."""
        recent = self.grad_norms
        spike = (self.skip_factor > 0 and len(recent) >= MIN_NORMS
                 and norm > self.skip_factor * statistics.median(recent))
        recent.append(norm)
        del recent[:-NORM_WINDOW]
        return spike

    def check(self, loss: float, accuracy: float | None = None) -> str | None:
        """What is wrong with a log record of this loss and held-out accuracy, or None when it
        looks healthy."""
        recent = self.losses[-self.window:]
        if len(recent) >= MIN_RECORDS:
            median = statistics.median(recent)
            spread = 1.4826 * statistics.median(abs(x - median) for x in recent)
            if loss > self.spike_factor * median and loss > median + max(MIN_RISE, 5 * spread):
                return (f"loss spike: {loss:.3f}, {loss / median:.1f} x the median {median:.3f} "
                        f"of the last {len(recent)} log records")
        noise = 4 * math.sqrt(max(self.best, 0.0) * (1 - min(self.best, 1.0)) / self.eval_samples)
        if accuracy is not None and self.best - accuracy > max(self.collapse_drop, noise):
            return (f"held-out accuracy collapse: {accuracy:.3f}, best so far {self.best:.3f}")
        return None

    def accept(self, loss: float, accuracy: float | None = None) -> None:
        self.losses.append(loss)
        del self.losses[:-self.window]
        if accuracy is not None:
            self.best = max(self.best, accuracy)

    def reset(self) -> None:
        """Forget the history: the task changed (a curriculum stage), so has the loss scale."""
        self.losses.clear()
        self.best = -math.inf
        self.grad_norms.clear()

    def state_dict(self) -> dict[str, Any]:
        return {"losses": list(self.losses), "best": self.best,
                "grad_norms": list(self.grad_norms)}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.losses = [float(x) for x in state["losses"]]
        self.best = float(state["best"])
        # absent from checkpoints written before train.skip_grad_spikes
        self.grad_norms = [float(x) for x in state.get("grad_norms", [])]

