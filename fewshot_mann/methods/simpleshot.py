"""SimpleShot (Wang et al. 2019): a CNN trained to tell all training classes apart at once,
then the nearest class mean of L2-normalised features.

    embedding   f(x) = g(x) / ||g(x)||, g the ProtoNet's CNN (methods/protonet.py)
    training    normalised softmax over the C training classes with an additive cosine margin
                (NormFace, Wang et al. 2017; CosFace, Wang et al. 2018), one learned unit
                vector w_c a class:
                    p(y | x) = softmax_c(s (f(x) . w_c / ||w_c|| - m [c = y]))
                on images drawn uniformly from the training classes, each distorted by a small
                random affine map (`data.augment`)
    few-shot    the ProtoNet's prototypes and distances (Snell et al., eqs. 1-2) on f: the
                nearest mean of unit features, as SimpleShot's "L2N" classifier

One softmax over thousands of classes trains the features to separate many classes at once,
which is what a memory of hundreds of classes (`fewshot_mann.lifelong`) asks of its key space;
an N-way episode asks for N at a time.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from .protonet import ProtoNet

SCALE = 16.0  # s: the softmax's inverse temperature on cosines
MARGIN = 0.1  # m: subtracted from the true class's cosine while training


class SimpleShot(ProtoNet):
    def __init__(self, classes: int, image_size: int = 28, hidden: int = 64, layers: int = 4,
                 channels: int = 1, max_pool: bool = False) -> None:
        super().__init__(image_size, hidden, layers, channels, max_pool)
        self.class_weights = nn.Parameter(0.01 * torch.randn(classes, hidden))  # (C, hidden)

    def embed(self, images: torch.Tensor) -> torch.Tensor:
        """(..., D) flat images -> (..., hidden) unit vectors."""
        return F.normalize(super().embed(images), dim=-1)

    def classification_loss(self, images: torch.Tensor, classes: torch.Tensor
                            ) -> tuple[torch.Tensor, torch.Tensor]:
        """images (B, D), their training classes (B,) -> cross-entropy of the margin softmax
        over all training classes, and the accuracy of its arg max."""
        cosine = self.embed(images) @ F.normalize(self.class_weights, dim=-1).T  # (B, C)
        margin = MARGIN * F.one_hot(classes, cosine.shape[-1])
        loss = F.cross_entropy(SCALE * (cosine - margin), classes)
        return loss, (cosine.argmax(-1) == classes).float().mean()
