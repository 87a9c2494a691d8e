"""Random affine distortion of training images (fewshot_mann/data/augment.py) on Omniglot."""

from __future__ import annotations

import torch

from fewshot_mann.data.augment import random_affine


def test_strength_zero_is_the_identity_and_a_seed_fixes_the_distortion(omniglot28):
    images = omniglot28.images[:64].float() / 255  # (64, 1, 28, 28)
    assert random_affine(images, 0.0, torch.Generator().manual_seed(0)) is images
    a = random_affine(images, 1.0, torch.Generator().manual_seed(0))
    b = random_affine(images, 1.0, torch.Generator().manual_seed(0))
    c = random_affine(images, 1.0, torch.Generator().manual_seed(1))
    assert a.shape == images.shape and torch.equal(a, b) and not torch.equal(a, c)
    assert a.min() >= 0 and a.max() <= 1


def test_a_distortion_moves_the_strokes_a_little(omniglot28):
    """Each image changes, but its nearest undistorted drawing is mostly one of its own
    character: the character is still the character."""
    images = omniglot28.images[:60].float() / 255  # 3 characters, 20 drawings each
    out = random_affine(images, 1.0, torch.Generator().manual_seed(0))
    moved = (out - images).abs().flatten(1).sum(1)
    assert (moved > 0).all()
    # ink kept: bilinear resampling of a map with scale 0.9-1.1 keeps the stroke mass
    ratio = out.flatten(1).sum(1) / images.flatten(1).sum(1)
    assert ((ratio > 0.7) & (ratio < 1.4)).all(), ratio
    distance = torch.cdist(out.flatten(1), images.flatten(1))  # (60, 60)
    same = distance.argmin(1) // 20 == torch.arange(60) // 20
    assert same.float().mean() > 0.8, same.float().mean()
