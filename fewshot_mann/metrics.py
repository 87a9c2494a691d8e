"""Loss and accuracy of episodes, per step and per presentation of a class."""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

Z95 = 1.959964  # two-sided 95% normal quantile


def episode_loss(logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """Cross-entropy summed over label groups, averaged over episodes and steps.

    logits (B, T, G, S), targets (B, T, G) -> scalar.
    """
    ce = F.cross_entropy(logits.flatten(0, 2), targets.flatten(), reduction="mean")
    return ce * targets.shape[-1]


def step_correct(logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """(B, T) bool: every group of the label right (a five-hot string is all or nothing)."""
    return (logits.argmax(-1) == targets).all(-1)


def presentation_accuracy(correct: torch.Tensor, presentation: torch.Tensor,
                          presentations: int) -> torch.Tensor:
    """Per-episode accuracy at each presentation of a class: (B, T), (B, T) -> (B, K) float.

    Entry [b, k] is the fraction of episode b's classes predicted right on their (k+1)-th showing.
    """
    hot = F.one_hot(presentation, presentations).float()  # (B, T, K)
    shown = hot.sum(1)
    return (correct.float().unsqueeze(-1) * hot).sum(1) / shown.clamp(min=1)


def pooled_presentation_accuracy(correct: torch.Tensor, presentation: torch.Tensor,
                                 presentations: int) -> torch.Tensor:
    """Accuracy at each presentation over all episodes together: (B, T), (B, T) -> (K,).
    Unlike the mean of `presentation_accuracy`, right where episodes show their classes
    unequally often (class_counts = "random"): showings past the K-th are left out."""
    hot = F.one_hot(presentation.clamp(max=presentations), presentations + 1)[..., :-1].float()
    return (correct.float().unsqueeze(-1) * hot).sum((0, 1)) / hot.sum((0, 1)).clamp(min=1)


def mean_ci95(per_episode: torch.Tensor) -> tuple[list[float], list[float]]:
    """(E, K) per-episode values -> mean and 95% CI half-width (normal approx.) per column."""
    x = per_episode.double()
    n = x.shape[0]
    mean = x.mean(0)
    if n < 2:
        return mean.tolist(), [math.nan] * x.shape[1]
    half = Z95 * x.std(0, unbiased=True) / math.sqrt(n)
    return mean.tolist(), half.tolist()
