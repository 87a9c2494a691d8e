"""Episodes: batches of N-way sequences built with tensor operations, on the training device.

An episode (Santoro et al. 2016, sec. 4.1) draws N classes, gives them a fresh random label
each, and shows every class `presentations` times in a shuffled order of T = N * presentations
steps. With a `pool` larger than `presentations` the T steps are instead a random subset of
N * pool (class, image) pairs: a class is shown `presentations` times on average, more or fewer
in a given episode (see `EpisodeConfig.class_counts`). At step t the network sees image x_t
together with the *correct label of step t-1* (zeros at t = 0), and must output the label of
x_t.

Labels are drawn from a `LabelCode`:
    one-hot   N symbols, one output softmax.
    five-hot  Santoro's strings: 5 characters over a 5-letter alphabet (3,125 codes, any
              N <= 3,125), five output softmaxes; a step is correct when all five are.

Everything below is batched over episodes: no Python loop per episode or per step.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from .data.imageset import ImageSet
from .errors import ConfigError, DatasetError


@dataclass
class LabelCode:
    """Labels as `groups` digits, each over `symbols` values (one softmax per group)."""

    name: str
    groups: int
    symbols: int

    @classmethod
    def make(cls, name: str, n_way: int) -> LabelCode:
        if name == "one-hot":
            return cls(name, 1, n_way)
        if name == "five-hot":
            if n_way > 5**5:
                raise ConfigError(f"five-hot strings express at most 3125 classes, not {n_way}")
            return cls(name, 5, 5)
        raise ConfigError(f"unknown label code {name!r}; choose 'one-hot' or 'five-hot'")

    @property
    def input_size(self) -> int:
        return self.groups * self.symbols

    def draw(self, batch: int, n_way: int, generator: torch.Generator,
             device: torch.device) -> torch.Tensor:
        """A fresh class -> label assignment per episode: (batch, n_way, groups) digits."""
        if self.name == "one-hot":  # n_way of the symbols in a random order, per episode
            perm = torch.rand(batch, self.symbols, generator=generator, device=device).argsort(-1)
            return perm[:, :n_way].unsqueeze(-1)
        # N distinct strings out of symbols**groups per episode, then their base-5 digits
        space = self.symbols ** self.groups
        codes = torch.rand(batch, space, generator=generator, device=device).topk(n_way).indices
        place = self.symbols ** torch.arange(self.groups - 1, -1, -1, device=device)
        return codes.unsqueeze(-1) // place % self.symbols

    def encode(self, digits: torch.Tensor) -> torch.Tensor:
        """(..., groups) digits -> (..., groups * symbols) multi-hot float input."""
        hot = torch.nn.functional.one_hot(digits, self.symbols)
        return hot.flatten(-2).float()


@dataclass
class Episodes:
    """A batch of B episodes of T steps."""

    images: torch.Tensor  # (B, T, D) float in [0, 1]
    targets: torch.Tensor  # (B, T, G) long: label digits of step t
    prev_labels: torch.Tensor  # (B, T, G*S) float: encoded label of step t-1, zeros at t = 0
    classes: torch.Tensor  # (B, T) long: which of the episode's N classes step t shows
    presentation: torch.Tensor  # (B, T) long: 0 for a class's first showing, 1 for second, ...

    @property
    def batch_size(self) -> int:
        return self.images.shape[0]

    def to(self, device: torch.device | str) -> Episodes:
        return Episodes(*(t.to(device) for t in (self.images, self.targets, self.prev_labels,
                                                 self.classes, self.presentation)))


def shift_labels(code: LabelCode, targets: torch.Tensor) -> torch.Tensor:
    """(B, T, G) targets -> (B, T, G*S) input carrying the label of step t-1 (zeros at t=0)."""
    encoded = code.encode(targets)
    return torch.cat([torch.zeros_like(encoded[:, :1]), encoded[:, :-1]], dim=1)


def presentation_index(classes: torch.Tensor, n_way: int) -> torch.Tensor:
    """(B, T) class of each step -> how many times that class was shown before, (B, T)."""
    hot = torch.nn.functional.one_hot(classes, n_way)  # (B, T, N)
    return ((hot.cumsum(1) - 1) * hot).sum(-1)


class EpisodeSampler:
    """Draws batches of episodes from some classes of an `ImageSet`.

    `class_index`/`rotation` (each (C,) long) list the classes this sampler may use, e.g. the
    training side of a split; `rotate_classes` additionally turns each drawn class by a random
    multiple of 90 degrees (a new class as far as the episode is concerned, Santoro et al.).
    `n_way` may be lowered below the code's size (a curriculum): episodes then use a random
    subset of the labels.
    """

    def __init__(self, imageset: ImageSet, class_index: torch.Tensor, rotation: torch.Tensor,
                 n_way: int, presentations: int, code: LabelCode, *,
                 rotate_classes: bool = False, device: torch.device | str = "cpu",
                 seed: int = 0, pool: int | None = None) -> None:
        pool = presentations if pool is None else pool
        if n_way < 1 or presentations < 1:
            raise ConfigError("n_way and presentations must be positive")
        if pool < presentations:
            raise ConfigError(f"the pool of images a class ({pool}) cannot be smaller than its "
                              f"presentations ({presentations})")
        if len(class_index) < n_way:
            raise DatasetError(f"{n_way}-way episodes need at least {n_way} classes; this side "
                             f"of the split has {len(class_index)}")
        counts = imageset.counts[class_index]
        if int(counts.min()) < pool:
            short = int((counts < pool).sum())
            raise DatasetError(f"{short} classes have fewer than {pool} images "
                             f"(the presentations per class, or the pool they are drawn "
                             f"from); the smallest has {int(counts.min())}")
        if code.name == "one-hot" and code.symbols < n_way:
            raise ConfigError(f"a one-hot code of {code.symbols} symbols cannot label {n_way} "
                             f"classes")
        self.device = torch.device(device)
        self.n_way, self.presentations, self.code = n_way, presentations, code
        self.pool = pool  # images drawn per class; the episode's steps are T of the N * pool
        self.rotate_classes = rotate_classes
        self.class_index = class_index.to(self.device)
        self.rotation = rotation.to(self.device)
        self.counts = counts.to(self.device)
        self.max_count = int(counts.max())
        # the images of this sampler's classes alone (a test-side sampler holds the test
        # classes, not the whole dataset), each class's rows contiguous from offsets[c]
        used, slot = torch.unique(class_index, return_inverse=True)  # (U,), (C,)
        rows, starts = imageset.class_rows(used)  # (M,), (U,)
        self.offsets = starts[slot].to(self.device)  # (C,)
        images = imageset.images[rows]  # (M, channels, H, W)
        # (4, M, D): the images under 0..3 quarter turns, only as many as can be asked
        turns = 4 if rotate_classes or bool((rotation != 0).any()) else 1
        self.pixels = torch.stack([torch.rot90(images, k, dims=(2, 3)).flatten(1)
                                   for k in range(turns)]).to(self.device)
        self.generator = torch.Generator(self.device)
        self.generator.manual_seed(seed)

    def sample_images(self, batch_size: int) -> tuple[torch.Tensor, torch.Tensor]:
        """Images drawn uniformly from all of this sampler's classes (with replacement), for
        a method trained to classify every class at once: images (B, D) float in [0, 1] and
        their classes (B,), positions in `class_index`. A class keeps its own rotation:
        `rotate_classes` turns whole episodes and does not apply here."""
        g, dev = self.generator, self.device
        ends = torch.cumsum(self.counts, 0)  # (C,): class c owns draws ends[c-1] .. ends[c]-1
        draw = torch.randint(int(ends[-1]), (batch_size,), generator=g, device=dev)
        classes = torch.searchsorted(ends, draw, right=True)  # (B,)
        image = self.offsets[classes] + draw - (ends[classes] - self.counts[classes])
        return self.pixels[self.rotation[classes], image].float().div_(255.0), classes

    @property
    def steps(self) -> int:
        return self.n_way * self.presentations

    @property
    def input_size(self) -> int:
        return self.pixels.shape[-1]

    def sample(self, batch_size: int) -> Episodes:
        B, N, K, g, dev = batch_size, self.n_way, self.pool, self.generator, self.device
        # N distinct classes per episode: the N largest of C uniform numbers
        pick = torch.rand(B, len(self.class_index), generator=g, device=dev).topk(N).indices
        turns = self.rotation[pick]  # (B, N)
        if self.rotate_classes:
            turns = (turns + torch.randint(0, 4, (B, N), generator=g, device=dev)) % 4
        # K distinct images per class: the K smallest uniforms, images past a class's count
        # pushed out of reach with a value > 1
        counts = self.counts[pick].unsqueeze(-1)  # (B, N, 1)
        u = torch.rand(B, N, self.max_count, generator=g, device=dev)
        u = u.masked_fill(torch.arange(self.max_count, device=dev) >= counts, 2.0)
        local = u.topk(K, largest=False).indices  # (B, N, K)
        image = self.offsets[pick].unsqueeze(-1) + local  # (B, N, K) rows of self.pixels
        # shuffle the N*K (class, image) pairs of each episode and keep the first T (all of
        # them unless the pool is larger than the presentations)
        order = torch.rand(B, N * K, generator=g, device=dev).argsort(-1)[:, :self.steps]
        classes = order // K  # position in 0..N*K-1 -> class slot (pairs are class-major)
        image = image.flatten(1).gather(1, order)  # (B, T)
        step_turns = turns.gather(1, classes)  # (B, T)
        images = self.pixels[step_turns, image].float().div_(255.0)  # (B, T, D)
        return label_episodes(images, classes, N, self.code, g)


def label_episodes(images: torch.Tensor, classes: torch.Tensor, n_way: int, code: LabelCode,
                   generator: torch.Generator) -> Episodes:
    """Episodes from shuffled steps: images (B, T, D) showing classes (B, T) in 0..n_way-1.

    Draws a fresh label per class and episode from `code` and builds the label inputs."""
    labels = code.draw(images.shape[0], n_way, generator, images.device)  # (B, N, G)
    targets = labels.gather(1, classes.unsqueeze(-1).expand(-1, -1, code.groups))
    return Episodes(images, targets, shift_labels(code, targets), classes,
                    presentation_index(classes, n_way))
