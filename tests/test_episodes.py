"""Episode sampler invariants, on the real Omniglot images."""

from __future__ import annotations

import pytest
import torch

from fewshot_mann.config import Config, replace
from fewshot_mann.data.splits import omniglot_split, resolve
from fewshot_mann.episodes import EpisodeSampler, LabelCode
from fewshot_mann.metrics import pooled_presentation_accuracy, presentation_accuracy
from fewshot_mann.training.run import make_sampler


@pytest.fixture(scope="module")
def train_classes(omniglot):
    return resolve(omniglot, omniglot_split("santoro", omniglot).train)


def sampler(omniglot, classes, n_way=5, presentations=10, labels="one-hot", **kw):
    return EpisodeSampler(omniglot, *classes, n_way, presentations,
                          LabelCode.make(labels, n_way), **kw)


def test_each_class_exactly_k_times_with_one_label(omniglot, train_classes):
    e = sampler(omniglot, train_classes, seed=3).sample(64)
    assert e.images.shape == (64, 50, 400) and e.targets.shape == (64, 50, 1)
    counts = torch.nn.functional.one_hot(e.classes, 5).sum(1)
    assert (counts == 10).all()
    # one label per class, and the N classes of an episode carry N different labels
    for b in range(64):
        labels = {c: set(e.targets[b, e.classes[b] == c, 0].tolist()) for c in range(5)}
        assert all(len(v) == 1 for v in labels.values())
        assert sorted(v.pop() for v in labels.values()) == [0, 1, 2, 3, 4]
    # presentation index counts earlier showings of the same class
    for b in range(4):
        seen = [0] * 5
        for t in range(50):
            c = int(e.classes[b, t])
            assert int(e.presentation[b, t]) == seen[c]
            seen[c] += 1


def test_previous_label_offset(omniglot, train_classes):
    e = sampler(omniglot, train_classes, seed=4).sample(16)
    assert (e.prev_labels[:, 0] == 0).all()
    onehot = torch.nn.functional.one_hot(e.targets[..., 0], 5).float()
    assert torch.equal(e.prev_labels[:, 1:], onehot[:, :-1])


def test_images_of_a_class_are_distinct_drawings_of_one_character(omniglot, train_classes):
    s = sampler(omniglot, train_classes, seed=5)
    e = s.sample(8)
    for b in range(8):
        for c in range(5):
            imgs = e.images[b, e.classes[b] == c]
            assert len({tuple(i.tolist()) for i in imgs}) == 10  # no drawing twice
    # without rotation, every image is a row of the ImageSet belonging to a training class
    allowed = set(train_classes[0].tolist())
    flat = omniglot.images.flatten(1).float() / 255
    owner = torch.repeat_interleave(torch.arange(omniglot.num_classes), omniglot.counts)
    img = e.images[0, 0]
    match = (flat == img).all(1).nonzero()
    assert len(match) >= 1 and int(owner[match[0, 0]]) in allowed


def test_labels_are_permuted_across_episodes(omniglot, train_classes):
    e = sampler(omniglot, train_classes, seed=6).sample(500)
    # the label of the first step's class is uniform over 0..4
    freq = torch.bincount(e.targets[:, 0, 0], minlength=5).float() / 500
    assert (freq - 0.2).abs().max() < 0.07


def test_seeded_and_different_seeds_differ(omniglot, train_classes):
    a = sampler(omniglot, train_classes, seed=7).sample(4)
    b = sampler(omniglot, train_classes, seed=7).sample(4)
    c = sampler(omniglot, train_classes, seed=8).sample(4)
    assert torch.equal(a.images, b.images) and torch.equal(a.targets, b.targets)
    assert not torch.equal(a.images, c.images)


def test_a_sampler_holds_the_images_of_its_classes_alone(omniglot, train_classes):
    """Only its classes' images, a quarter turn each when asked: the same episodes as a sampler
    over a dataset of those classes alone."""
    index, rotation = train_classes[0][::7].sort().values, train_classes[1][::7]
    alone = omniglot.subset({omniglot.class_names[i] for i in index.tolist()})
    for rotate in (False, True):
        a = sampler(omniglot, (index, rotation), rotate_classes=rotate, seed=2)
        b = sampler(alone, (torch.arange(len(index)), rotation), rotate_classes=rotate, seed=2)
        assert a.pixels.shape == (4 if rotate else 1, int(omniglot.counts[index].sum()), 400)
        x, y = a.sample(8), b.sample(8)
        assert torch.equal(x.images, y.images) and torch.equal(x.targets, y.targets)


def test_five_hot_strings(omniglot, train_classes):
    e = sampler(omniglot, train_classes, n_way=15, labels="five-hot", seed=9).sample(32)
    assert e.targets.shape == (32, 150, 5) and e.prev_labels.shape == (32, 150, 25)
    assert (e.prev_labels[:, 1:].sum(-1) == 5).all()  # five characters, one hot each
    for b in range(32):
        strings = {tuple(e.targets[b, e.classes[b] == c][0].tolist()) for c in range(15)}
        assert len(strings) == 15  # 15 distinct label strings per episode


def test_rotation_augmentation_turns_whole_classes(omniglot, train_classes):
    e = sampler(omniglot, train_classes, rotate_classes=True, seed=10).sample(32)
    upright = {image.numpy().tobytes() for image in omniglot.images.flatten(1)}
    turned = 0
    for b in range(4):
        for c in range(5):
            # the step's image back in uint8 (it is pixels / 255), looked up among the dataset's
            found = [(img * 255).round().to(torch.uint8).numpy().tobytes() in upright
                     for img in e.images[b, e.classes[b] == c]]
            assert len(set(found)) == 1  # a class is turned as a whole: all upright or none
            turned += not found[0]
    assert turned > 0


def test_errors_for_impossible_episodes(omniglot, train_classes):
    with pytest.raises(ValueError, match="at least 2000 classes"):
        sampler(omniglot, train_classes, n_way=2000)
    with pytest.raises(ValueError, match="fewer than 21 images"):
        sampler(omniglot, train_classes, presentations=21)
    with pytest.raises(ValueError, match="at most 3125"):
        LabelCode.make("five-hot", 4000)


def test_random_class_counts_draw_the_steps_from_a_larger_pool(omniglot, train_classes):
    """pool 20 > presentations 10: still 50 steps of 5 classes, each class shown a random
    number of times (10 on average), every drawing at most once, labels and presentation
    indices as in equal episodes."""
    e = sampler(omniglot, train_classes, seed=6, pool=20).sample(256)
    assert e.images.shape == (256, 50, 400)
    counts = torch.nn.functional.one_hot(e.classes, 5).sum(1)  # (B, N)
    assert (counts.sum(1) == 50).all() and counts.max() <= 20
    assert counts.float().mean() == 10 and len(counts.unique()) > 5  # unequal, 10 on average
    for b in range(8):
        for c in range(5):
            imgs = e.images[b, e.classes[b] == c]
            assert len({tuple(i.tolist()) for i in imgs}) == len(imgs)
            assert len(set(e.targets[b, e.classes[b] == c, 0].tolist())) <= 1
        seen = [0] * 5
        for t in range(50):
            assert int(e.presentation[b, t]) == seen[int(e.classes[b, t])]
            seen[int(e.classes[b, t])] += 1
    with pytest.raises(ValueError, match="cannot be smaller"):
        sampler(omniglot, train_classes, pool=5)
    with pytest.raises(ValueError, match="fewer than 21 images"):
        sampler(omniglot, train_classes, pool=21)


def test_random_class_counts_apply_to_training_episodes_only(omniglot):
    cfg = replace(Config(), episodes={"class_counts": "random"})
    split = omniglot_split("santoro", omniglot)
    train = make_sampler(cfg, omniglot, split.train, side="train", device="cpu", seed=0)
    test = make_sampler(cfg, omniglot, split.test, side="test", device="cpu", seed=0)
    assert (train.pool, test.pool) == (20, 10)  # min(2 x 10, 20 images a class)
    with pytest.raises(ValueError, match="only 20: lower --presentations"):
        make_sampler(replace(cfg, episodes={"presentations": 20}), omniglot, split.train,
                     side="train", device="cpu", seed=0)


def test_pooled_presentation_accuracy():
    # equal counts: the mean over episodes of the per-episode accuracy
    presentation = torch.tensor([[0, 0, 1, 1], [0, 1, 0, 1]])
    correct = torch.tensor([[True, False, True, True], [False, True, True, True]])
    torch.testing.assert_close(pooled_presentation_accuracy(correct, presentation, 2),
                               presentation_accuracy(correct, presentation, 2).mean(0))
    # unequal counts: pooled over showings; showings past the K-th left out
    presentation = torch.tensor([[0, 1, 2, 0], [0, 0, 0, 1]])
    correct = torch.tensor([[False, True, True, True], [True, False, True, False]])
    torch.testing.assert_close(pooled_presentation_accuracy(correct, presentation, 2),
                               torch.tensor([3 / 5, 1 / 2]))
