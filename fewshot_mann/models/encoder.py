"""Image encoders applied to every step of an episode: (B, T, C*S*S) -> (B, T, features)."""

from __future__ import annotations

import torch
from torch import nn


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


def make_encoder(kind: str, image_shape: tuple[int, int, int]) -> nn.Module:
    if kind == "none":
        return FlatPixels(image_shape)
    if kind == "conv":
        return ConvEncoder(image_shape)
    raise ValueError(f"unknown encoder {kind!r}; choose 'none' or 'conv'")
