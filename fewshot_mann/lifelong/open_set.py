"""The threshold below which a life-long memory answers "unknown", and how well it separates.

A query's score is the cosine of its key and the nearest stored entry. On classes the model
never trained on, some are written into a memory ("known") and others are not ("unknown");
their held-out drawings are queried. The threshold is the score that a chosen share of the
unknown queries reach (the false-accept rate, 5 % by default):

    threshold = quantile_{1 - far}(scores of unknown queries)

AUROC is the probability that a known query scores above an unknown one (ties count half).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from ..errors import ConfigError

DEFAULT_FAR = 0.05


def threshold_for(unknown_scores: Sequence[float], far: float = DEFAULT_FAR) -> float:
    """The score at or above which a share `far` of the unknown queries is accepted."""
    if not 0.0 < far < 1.0:
        raise ConfigError(f"the false-accept rate is a fraction in (0, 1), got {far}")
    scores = np.asarray(unknown_scores, np.float64)
    if scores.size == 0:
        raise ConfigError("calibrating a threshold needs scores of unknown queries")
    return float(np.quantile(scores, 1.0 - far, method="higher"))


def auroc(known_scores: Sequence[float], unknown_scores: Sequence[float]) -> float:
    """P(score of a known query > score of an unknown one), ties half (Mann-Whitney U)."""
    known = np.asarray(known_scores, np.float64)
    unknown = np.sort(np.asarray(unknown_scores, np.float64))
    below = np.searchsorted(unknown, known, side="left")  # unknown strictly below each known
    ties = np.searchsorted(unknown, known, side="right") - below
    return float((below + 0.5 * ties).sum() / (known.size * unknown.size))


@dataclass
class OpenSetScore:
    threshold: float
    auroc: float
    false_accept: float  # unknown queries answered with a class
    known_accuracy: float  # known queries answered with their own class (not unknown)
    known_accuracy_closed: float  # the same with no threshold
    known_rejected: float  # known queries answered unknown

    @classmethod
    def measure(cls, threshold: float, known_scores: Sequence[float],
                known_correct: Sequence[bool], unknown_scores: Sequence[float]) -> OpenSetScore:
        known, correct = np.asarray(known_scores), np.asarray(known_correct, bool)
        unknown = np.asarray(unknown_scores)
        accepted = known >= threshold
        return cls(threshold, auroc(known, unknown), float((unknown >= threshold).mean()),
                   float((accepted & correct).mean()), float(correct.mean()),
                   float((~accepted).mean()))
