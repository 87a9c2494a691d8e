"""Image encoders applied to every step of an episode: (B, T, C*S*S) -> (B, T, features).

    none      the paper's input, the flat pixels
    conv      four 3x3 conv blocks with 2x2 max-pooling (Vinyals et al. 2016), trained with the
              rest of the model
    convbase  learn2learn's Omniglot CNN feature extractor (`ConvBase`, stride-2 convs, then the
              mean over space: 64 features), the network of the ProtoNets baseline, so that
              `model.encoder_init` can start it from a trained ProtoNets checkpoint
              (fewshot_mann/pretrained.py); `model.freeze_encoder` then keeps it fixed
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import torch
from torch import nn

from ..config import ModelConfig
from ..errors import ConfigError

if TYPE_CHECKING:
    from learn2learn.vision.models import ConvBase


class FlatPixels(nn.Module):
    """The paper's input: the flattened image itself."""

    def __init__(self, image_shape: tuple[int, int, int]) -> None:
        super().__init__()
        self.out_features = image_shape[0] * image_shape[1] * image_shape[2]

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return images


class ConvEncoder(nn.Module):
    """Four 3x3 conv blocks (64 channels, BatchNorm, ReLU, 2x2 max-pool), the standard few-shot
    Omniglot backbone (Vinyals et al. 2016), then flatten."""

    def __init__(self, image_shape: tuple[int, int, int], channels: int = 64) -> None:
        super().__init__()
        self.image_shape = image_shape
        blocks, c_in, size = [], image_shape[0], image_shape[1]
        for _ in range(4):
            blocks += [nn.Conv2d(c_in, channels, 3, padding=1), nn.BatchNorm2d(channels),
                       nn.ReLU(), nn.MaxPool2d(2, ceil_mode=True)]
            c_in, size = channels, (size + 1) // 2
        self.net = nn.Sequential(*blocks, nn.Flatten())
        self.out_features = channels * size * size

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        B, T, _ = images.shape
        features = self.net(images.reshape(B * T, *self.image_shape))
        return features.view(B, T, -1)


def mean_pooled(net: ConvBase, images: torch.Tensor, image_shape: tuple[int, int, int]
                ) -> torch.Tensor:
    """(..., C*S*S) flat images -> (..., hidden): ConvBase, then the mean over space."""
    features = net(images.reshape(-1, *image_shape)).mean(dim=(2, 3))
    return features.view(*images.shape[:-1], -1)


class ConvBaseEncoder(nn.Module):
    """learn2learn's ConvBase (4 blocks, 64 channels, stride 2) with mean pooling: 64 features."""

    def __init__(self, image_shape: tuple[int, int, int], hidden: int = 64) -> None:
        from ..third_party import ConvBase  # imported here: learn2learn takes seconds to import

        super().__init__()
        self.image_shape = image_shape
        self.net = ConvBase(hidden=hidden, channels=image_shape[0], max_pool=False, layers=4)
        self.out_features = hidden

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return mean_pooled(self.net, images, self.image_shape)


class Frozen(nn.Module):
    """An encoder kept as it is: no gradients, batch norm on its running statistics even while
    the model around it trains."""

    def __init__(self, encoder: nn.Module) -> None:
        super().__init__()
        self.encoder = encoder.requires_grad_(False)
        self.out_features = encoder.out_features

    def train(self, mode: bool = True) -> Frozen:
        super().train(mode)
        self.encoder.eval()
        return self

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        with torch.no_grad():
            return self.encoder(images)


def bare(encoder: nn.Module) -> nn.Module:
    """The encoder itself, without its Frozen wrapper if it has one."""
    return encoder.encoder if isinstance(encoder, Frozen) else encoder


ENCODERS: dict[str, type[nn.Module]] = {"none": FlatPixels, "conv": ConvEncoder,
                                        "convbase": ConvBaseEncoder}


def make_encoder(cfg: ModelConfig, image_shape: tuple[int, int, int]) -> nn.Module:
    if cfg.encoder not in ENCODERS:
        raise ConfigError(f"unknown encoder {cfg.encoder!r}; choose one of {list(ENCODERS)}")
    encoder = ENCODERS[cfg.encoder](image_shape)
    return Frozen(encoder) if cfg.freeze_encoder else encoder
