"""Prototypical Networks (Snell et al. 2017) on learn2learn's Omniglot CNN.

    embedding   f(x): learn2learn's Omniglot CNN feature extractor (`ConvBase`: four blocks of
                3x3 conv with 64 channels and stride 2, batch norm, ReLU; Finn et al. 2017; or
                with `max_pool`, stride-1 convs each followed by 2x2 max pooling, as Snell et al.
                built it), then the mean over space: a `hidden`-d vector per image
    prototypes  c_n = (1/K) sum_k f(x_{n,k})                          (Snell et al., eq. 1)
    classifier  p(y = n | x) = softmax_n(-||f(x) - c_n||^2)            (eq. 2, squared Euclidean)
    training    minimise -log p(y = true class | x) over the queries of training episodes
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn

from ..models.encoder import mean_pooled
from ..third_party import ConvBase
from .tasks import Tasks


class ProtoNet(nn.Module):
    def __init__(self, image_size: int = 28, hidden: int = 64, layers: int = 4,
                 channels: int = 1, max_pool: bool = False) -> None:
        super().__init__()
        self.image_shape = (channels, image_size, image_size)
        self.encoder = ConvBase(hidden=hidden, channels=channels, max_pool=max_pool,
                                layers=layers)

    def embed(self, images: torch.Tensor) -> torch.Tensor:
        """(..., D) flat images -> (..., hidden) embeddings."""
        return mean_pooled(self.encoder, images, self.image_shape)

    def class_logits(self, support: torch.Tensor, query: torch.Tensor) -> torch.Tensor:
        """support (B, N, K, D), query (B, M, D) -> (B, M, N): minus the squared distance of
        each query to each class prototype."""
        prototypes = self.embed(support).mean(2)  # (B, N, E)
        return -(self.embed(query).unsqueeze(2) - prototypes.unsqueeze(1)).pow(2).sum(-1)

    def meta_loss(self, tasks: Tasks) -> tuple[torch.Tensor, torch.Tensor]:
        """Cross-entropy and accuracy on the queries of a batch of training tasks."""
        B, N, Q, _ = tasks.query.shape
        logits = self.class_logits(tasks.support, tasks.query.flatten(1, 2))  # (B, N*Q, N)
        target = torch.arange(N, device=logits.device).repeat_interleave(Q).expand(B, -1)
        loss = F.cross_entropy(logits.flatten(0, 1), target.flatten())
        return loss, (logits.argmax(-1) == target).float().mean()

    @torch.no_grad()
    def predict(self, support: torch.Tensor, support_labels: torch.Tensor,
                query: torch.Tensor) -> torch.Tensor:
        """The `FewShotClassifier` interface; puts the network in eval mode."""
        self.eval()
        slot = self.class_logits(support, query).argmax(-1)  # (B, M): nearest prototype
        return support_labels[:, :, 0].gather(1, slot)

    @torch.no_grad()
    def class_probabilities(self, support: Sequence[torch.Tensor],
                            query: torch.Tensor) -> torch.Tensor:
        """Any number of classes, each with any number of images: support[n] (K_n, D), query
        (M, D) -> (M, N) softmax over minus the squared distance to each prototype (eq. 2)."""
        self.eval()
        prototypes = torch.stack([self.embed(s).mean(0) for s in support])  # (N, E)
        distance = (self.embed(query).unsqueeze(1) - prototypes.unsqueeze(0)).pow(2).sum(-1)
        return torch.softmax(-distance, dim=-1)
