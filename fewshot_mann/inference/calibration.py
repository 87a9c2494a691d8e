"""Temperature scaling (Guo et al. 2017): class probabilities p -> softmax(log p / T).

log p differs from a model's logits by a constant per query, so this is softmax(logits / T):
T > 1 softens over-confident answers, T < 1 sharpens under-confident ones, and the top class
never changes. T is fitted by minimising the negative log-likelihood of the right class on
episodes of classes the model is not tested on; expected calibration error (ECE) says how far
the top class's probability is from how often it is right.
"""

from __future__ import annotations

import torch

ECE_BINS = 15
TINY = 1e-12  # log of a probability that underflowed to 0


def temper(probabilities: torch.Tensor, temperature: float) -> torch.Tensor:
    """(..., N) class probabilities -> softmax(log p / T) over the last dimension."""
    if temperature == 1.0:
        return probabilities
    return torch.softmax(probabilities.clamp_min(TINY).log() / temperature, dim=-1)


def nll(probabilities: torch.Tensor, labels: torch.Tensor) -> float:
    """Mean negative log-likelihood of the right class: (Q, N), (Q,) -> float."""
    picked = probabilities.gather(1, labels.view(-1, 1))[:, 0]
    return float(-picked.clamp_min(TINY).log().mean())


def fit_temperature(probabilities: torch.Tensor, labels: torch.Tensor,
                    low: float = 0.05, high: float = 20.0) -> float:
    """The T that minimises the NLL of softmax(log p / T): (Q, N), (Q,) -> T.

    The NLL is convex in 1/T, so a golden-section search over log T in [low, high] finds it
    (to 1e-4 relative); no optimiser, no learning rate."""
    logp = probabilities.double().clamp_min(TINY).log()

    def loss(log_t: float) -> float:
        scaled = torch.log_softmax(logp / float(torch.tensor(log_t).exp()), dim=-1)
        return float(-scaled.gather(1, labels.view(-1, 1)).mean())

    a, b = float(torch.tensor(low).log()), float(torch.tensor(high).log())
    ratio = (5 ** 0.5 - 1) / 2
    c, d = b - ratio * (b - a), a + ratio * (b - a)
    fc, fd = loss(c), loss(d)
    while b - a > 1e-4:
        if fc < fd:
            b, d, fd = d, c, fc
            c = b - ratio * (b - a)
            fc = loss(c)
        else:
            a, c, fc = c, d, fd
            d = a + ratio * (b - a)
            fd = loss(d)
    return float(torch.tensor((a + b) / 2).exp())


def expected_calibration_error(probabilities: torch.Tensor, labels: torch.Tensor,
                               bins: int = ECE_BINS) -> float:
    """Sum over equal-width confidence bins of |accuracy - mean confidence| weighted by the
    bin's share of queries, for the top class: (Q, N), (Q,) -> 0..1."""
    confidence, predicted = probabilities.max(-1)
    correct = (predicted == labels).double()
    which = (confidence.double() * bins).ceil().clamp(1, bins).long() - 1  # (0, 1/B] -> bin 0
    ece = 0.0
    for b in range(bins):
        mask = which == b
        if mask.any():
            gap = correct[mask].mean() - confidence[mask].double().mean()
            ece += float(mask.double().mean() * gap.abs())
    return ece
