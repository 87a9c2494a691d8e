"""Standard N-way K-shot tasks, cut from the package's own sequential episodes.

So that every method scores the very same queries, an N-way K-shot test episode is a sequential
episode (`fewshot_mann.episodes`) of N classes shown K+1 times each, drawn with a fixed seed from
the Vinyals et al. (2016) test classes (whose fixed rotations are classes of their own, so no
rotation augmentation is added):

    sequence models (MANN)   read the episode as it is; the K-shot query of a class is its
                             presentation K (0-based), the one that follows K labelled showings
    every other method       gets the same episode split per class into a support set, its
                             presentations 0..K-1, and a query, its presentation K
                             (`split_support_query`), so N queries per episode

Training episodes for the episodic baselines come from the same sampler over training classes,
with Q query presentations after the K support ones. Accuracy is averaged per episode; the 95 %
confidence interval is over episodes (`fewshot_mann.metrics.mean_ci95`).
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from typing import NamedTuple, Protocol

import torch

from ..data.imageset import ImageSet
from ..data.splits import resolve
from ..episodes import Episodes, EpisodeSampler, LabelCode
from ..errors import ConfigError
from ..metrics import mean_ci95

TEST_SEED = 12345  # the seed of every method's test episodes
TEST_BATCH = 50  # episodes drawn per sampler call; with the seed, it fixes the episodes


@dataclass(frozen=True)
class Setting:
    """N-way K-shot."""

    n_way: int
    shots: int

    @property
    def name(self) -> str:
        return f"{self.n_way}w{self.shots}s"

    @property
    def presentations(self) -> int:
        """Showings per class in a test episode: K support + 1 query."""
        return self.shots + 1


SETTINGS = (Setting(5, 1), Setting(5, 5), Setting(20, 1), Setting(20, 5))


class Tasks(NamedTuple):
    """B episodes as support/query tasks, class-major: slot n holds one class of the episode."""

    support: torch.Tensor  # (B, N, K, D)
    support_labels: torch.Tensor  # (B, N, K): the episode's label of each class
    query: torch.Tensor  # (B, N, Q, D)
    query_labels: torch.Tensor  # (B, N, Q)


class FewShotClassifier(Protocol):
    """A method that classifies queries given a labelled support set, batched over episodes."""

    def predict(self, support: torch.Tensor, support_labels: torch.Tensor,
                query: torch.Tensor) -> torch.Tensor:
        """support (B, N, K, D), support_labels (B, N, K), query (B, M, D) -> labels (B, M)."""
        ...


@dataclass
class Score:
    mean: float
    ci95: float
    episodes: int


def task_sampler(imageset: ImageSet, class_ids: list[str], n_way: int, presentations: int,
                 seed: int, device: torch.device | str = "cpu") -> EpisodeSampler:
    """Episodes over `class_ids` with one-hot labels and no rotation augmentation."""
    index, rotation = resolve(imageset, class_ids)
    return EpisodeSampler(imageset, index, rotation, n_way, presentations,
                          LabelCode.make("one-hot", n_way), rotate_classes=False,
                          device=device, seed=seed)


def eval_episodes(imageset: ImageSet, class_ids: list[str], setting: Setting, episodes: int,
                  seed: int = TEST_SEED, device: torch.device | str = "cpu"
                  ) -> Iterator[Episodes]:
    """The `episodes` test episodes of `setting`, in batches of TEST_BATCH.

    They depend on the class list, N, K, the seed and the images' class sizes only, not on
    the image resolution: a 20 px and a 28 px copy of Omniglot give the same classes, images
    and order."""
    sampler = task_sampler(imageset, class_ids, setting.n_way, setting.presentations, seed,
                           device)
    for done in range(0, episodes, TEST_BATCH):
        yield sampler.sample(min(TEST_BATCH, episodes - done))


def split_support_query(episodes: Episodes, shots: int) -> Tasks:
    """Each class's presentations 0..shots-1 -> support, the later ones -> query.

    Needs one-hot episodes (a label is one digit) with the same number of presentations P for
    every class; Q = P - shots."""
    B, T, D = episodes.images.shape
    if episodes.targets.shape[-1] != 1:
        raise ConfigError("support/query tasks need one-hot labels (one label digit per step)")
    P = int(episodes.presentation.max()) + 1
    N = T // P
    if not 0 < shots < P:
        raise ConfigError(f"need 0 < shots < presentations per class ({P}), got {shots}")
    # step t is presentation p of class c: its place in class-major order is c * P + p
    order = (episodes.classes * P + episodes.presentation).argsort(1)  # (B, T)
    images = episodes.images.gather(1, order.unsqueeze(-1).expand(-1, -1, D)).view(B, N, P, D)
    labels = episodes.targets[..., 0].gather(1, order).view(B, N, P)
    return Tasks(images[:, :, :shots], labels[:, :, :shots], images[:, :, shots:],
                 labels[:, :, shots:])


def score(classifier: FewShotClassifier, batches: Iterable[Episodes], shots: int) -> Score:
    """Accuracy of `classifier` on the queries of every episode: mean and 95 % CI over episodes."""
    per_episode = []
    for batch in batches:
        tasks = split_support_query(batch, shots)
        predicted = classifier.predict(tasks.support, tasks.support_labels,
                                       tasks.query.flatten(1, 2))
        correct = predicted.cpu() == tasks.query_labels.flatten(1).cpu()
        per_episode.append(correct.float().mean(1))
    if not per_episode:
        raise ConfigError("need at least one episode to score")
    accuracy = torch.cat(per_episode)
    mean, ci = mean_ci95(accuracy.unsqueeze(1))
    return Score(mean[0], ci[0], len(accuracy))
