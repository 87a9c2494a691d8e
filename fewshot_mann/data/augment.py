"""Random affine distortions of training images: each image rotated, scaled, sheared and
shifted by small amounts drawn independently, as Omniglot's drawers vary one character
(Lake et al. 2015 model the strokes; here the whole image moves).

At strength 1: rotation up to +-10 degrees, scale 0.9-1.1, shear up to +-0.1, shift up to
+-3/28 of the image on each axis; `strength` scales every range (0: the identity).
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

ROTATION = math.radians(10.0)
SCALE = 0.1
SHEAR = 0.1
SHIFT = 3.0 / 14.0  # in grid units, where the image spans [-1, 1]: 3 px of 28


def random_maps(count: int, strength: float, generator: torch.Generator,
                device: torch.device | str = "cpu") -> torch.Tensor:
    """`count` random affine maps (count, 2, 3), in the grid units of `F.affine_grid`."""

    def uniform(*shape: int) -> torch.Tensor:  # in [-strength, strength)
        return (2 * torch.rand(*shape, generator=generator, device=device) - 1) * strength

    angle, scale = uniform(count) * ROTATION, 1 + uniform(count) * SCALE
    shear, shift = uniform(count) * SHEAR, uniform(count, 2) * SHIFT
    cos, sin = torch.cos(angle) / scale, torch.sin(angle) / scale
    return torch.stack([torch.stack([cos, shear - sin, shift[:, 0]], 1),
                        torch.stack([sin, cos, shift[:, 1]], 1)], 1)


def distort(images: torch.Tensor, maps: torch.Tensor) -> torch.Tensor:
    """images (B, C, H, W), each under its own map (B, 2, 3), or all under one (1, 2, 3):
    bilinear, zeros outside."""
    grid = F.affine_grid(maps.expand(len(images), 2, 3), list(images.shape),
                         align_corners=False)
    return F.grid_sample(images, grid, align_corners=False, padding_mode="zeros")


def random_affine(images: torch.Tensor, strength: float, generator: torch.Generator
                  ) -> torch.Tensor:
    """images (B, C, H, W) -> the same images, each under its own random affine map drawn
    from `generator`."""
    if strength == 0:
        return images
    return distort(images, random_maps(len(images), strength, generator, images.device))
