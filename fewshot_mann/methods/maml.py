"""MAML (Finn et al. 2017) with learn2learn (`l2l.algorithms.MAML`) on its Omniglot CNN.

    inner loop   per task i, from the shared initialisation theta:
                 theta'_i = theta - alpha * grad_theta L_support,i(theta)   (Finn et al., eq. 1),
                 `adapt_steps` times while meta-training, `test_adapt_steps` times at test
    outer loop   min_theta sum_i L_query,i(theta'_i)                       (eq. 2), through the
                 inner steps (second order) unless `first_order` (first-order MAML)

The network's N outputs are the episode's class slots, whose assignment to classes is random.
Batch norm always normalises with the statistics of the batch at hand, at test time too (the
support set while adapting, the N queries when predicting): the transductive setting of Finn
et al. and of learn2learn's Omniglot example.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn

from ..errors import ConfigError, PredictError
from ..third_party import OmniglotCNN, l2l
from .tasks import Tasks


def support_batch(support: Sequence[torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-class image lists support[n] (K_n, D) -> images (S, D) and class slots (S,)."""
    slots = [torch.full((len(s),), n, dtype=torch.long, device=s.device)
             for n, s in enumerate(support)]
    return torch.cat(list(support)), torch.cat(slots)


class MAML(nn.Module):
    def __init__(self, ways: int, image_size: int = 28, fast_lr: float = 0.4,
                 adapt_steps: int = 1, test_adapt_steps: int = 3,
                 first_order: bool = False) -> None:
        super().__init__()
        if image_size != 28:
            raise ConfigError("learn2learn's OmniglotCNN takes 28x28 images (--image-size 28)")
        self.ways, self.adapt_steps, self.test_adapt_steps = ways, adapt_steps, test_adapt_steps
        self.maml = l2l.algorithms.MAML(OmniglotCNN(ways), lr=fast_lr, first_order=first_order)

    def adapted(self, support: torch.Tensor, steps: int, first_order: bool | None = None
                ) -> nn.Module:
        """A clone of the network after `steps` gradient steps on support (N, K, D)."""
        ways, shots, _ = support.shape
        if ways != self.ways:
            raise PredictError(f"this MAML network has {self.ways} outputs, the task has {ways} "
                             f"ways")
        x = support.flatten(0, 1)
        y = torch.arange(ways, device=x.device).repeat_interleave(shots)
        return self.fit(x, y, steps, first_order)

    def fit(self, x: torch.Tensor, y: torch.Tensor, steps: int,
            first_order: bool | None = None) -> nn.Module:
        """A clone of the network after `steps` gradient steps on images x (S, D) with class
        slots y (S,) in 0..ways-1."""
        learner = self.maml.clone(first_order=first_order)
        for _ in range(steps):
            learner.adapt(F.cross_entropy(learner(x), y), first_order=first_order)
        return learner

    def meta_loss(self, tasks: Tasks) -> tuple[torch.Tensor, torch.Tensor]:
        """Query cross-entropy after adaptation, and query accuracy, averaged over tasks."""
        losses, accuracies = [], []
        for support, query in zip(tasks.support, tasks.query, strict=True):
            N, Q, _ = query.shape
            logits = self.adapted(support, self.adapt_steps)(query.flatten(0, 1))
            target = torch.arange(N, device=logits.device).repeat_interleave(Q)
            losses.append(F.cross_entropy(logits, target))
            accuracies.append((logits.argmax(-1) == target).float().mean())
        return torch.stack(losses).mean(), torch.stack(accuracies).mean().detach()

    def predict(self, support: torch.Tensor, support_labels: torch.Tensor,
                query: torch.Tensor) -> torch.Tensor:
        """The `FewShotClassifier` interface: adapt a clone per episode (first order: no
        meta-gradient is needed at test time), then classify that episode's queries."""
        self.train()  # batch statistics in batch norm, see the module doc
        predictions = []
        for s, labels, q in zip(support, support_labels, query, strict=True):
            with torch.enable_grad():
                learner = self.adapted(s, self.test_adapt_steps, first_order=True)
            with torch.no_grad():
                predictions.append(labels[:, 0][learner(q).argmax(-1)])
        return torch.stack(predictions)

    def class_probabilities(self, support: Sequence[torch.Tensor],
                            query: torch.Tensor) -> torch.Tensor:
        """Any classes up to `ways`, each with any number of images: support[n] (K_n, D),
        query (M, D) -> (M, N) probabilities. The clone adapts on the whole support set (first
        order) and the M queries form one batch (batch norm on their statistics)."""
        if len(support) > self.ways:
            raise PredictError(f"this MAML network has {self.ways} outputs: it can tell at most "
                             f"{self.ways} classes apart, the support set has {len(support)}")
        self.train()  # batch statistics in batch norm, see the module doc
        x, y = support_batch(support)
        with torch.enable_grad():
            learner = self.fit(x, y, self.test_adapt_steps, first_order=True)
        with torch.no_grad():
            return torch.softmax(learner(query)[:, :len(support)], dim=-1)
