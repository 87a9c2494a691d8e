"""A MANN checkpoint evaluated on a learn2learn task pipeline over real Omniglot images."""

from __future__ import annotations

import random

import learn2learn as l2l
import pytest
import torch
from learn2learn.data.transforms import KShots, LoadData, NWays, RemapLabels

from fewshot_mann.checkpoint import load_checkpoint, model_from_checkpoint
from fewshot_mann.cli import main
from fewshot_mann.episodes import LabelCode, shift_labels
from fewshot_mann.evaluation.scoring import evaluate, evaluate_episodes
from fewshot_mann.interop import episodes_from_l2l
from fewshot_mann.training.run import make_sampler

TINY = ["--controller-size", "32", "--memory-slots", "16", "--memory-width", "8",
        "--read-heads", "2", "--batch-size", "4", "--eval-every", "2", "--eval-episodes", "8",
        "--checkpoint-every", "2", "--device", "cpu", "--quiet"]


class CharacterImages(torch.utils.data.Dataset):
    """Some real Omniglot characters as a plain (image (1, 20, 20) float, class id) dataset,
    the kind of dataset a learn2learn user already has."""

    def __init__(self, imageset, names):
        self.images = torch.cat([imageset.class_images(n) for n in names]).float() / 255
        self.labels = [c for c, n in enumerate(names) for _ in range(len(imageset.class_images(n)))]

    def __len__(self):
        return len(self.labels)

    def __getitem__(self, i):
        return self.images[i], self.labels[i]


@pytest.fixture(scope="module")
def taskset_and_data(omniglot):
    data = CharacterImages(omniglot, omniglot.class_names[-8:])  # 8 evaluation characters
    meta = l2l.data.MetaDataset(data)
    taskset = l2l.data.Taskset(meta, task_transforms=[
        NWays(meta, 5), KShots(meta, 10), LoadData(meta), RemapLabels(meta)])
    return taskset, data


@pytest.fixture(scope="module")
def mann(tmp_path_factory, data_root, cache_dir):
    run = tmp_path_factory.mktemp("mann")
    assert main(["train", "--data-root", str(data_root), "--cache-dir", str(cache_dir), *TINY,
                 "--steps", "2", "--out", str(run)]) == 0
    payload = load_checkpoint(run / "checkpoint.pt")
    return model_from_checkpoint(payload)


def test_l2l_tasks_become_episodes(taskset_and_data):
    taskset, data = taskset_and_data
    random.seed(0)  # learn2learn draws its tasks with Python's random module
    code = LabelCode.make("one-hot", 5)
    episodes = episodes_from_l2l(taskset, 6, 10, code, torch.Generator().manual_seed(0))
    assert episodes.images.shape == (6, 50, 400) and episodes.targets.shape == (6, 50, 1)
    assert torch.equal(episodes.prev_labels, shift_labels(code, episodes.targets))
    flat = data.images.flatten(1)
    owner = torch.tensor(data.labels)
    for b in range(6):
        for n in range(5):
            steps = (episodes.classes[b] == n).nonzero().flatten()
            assert episodes.presentation[b, steps].tolist() == list(range(10))
            assert len(set(episodes.targets[b, steps, 0].tolist())) == 1  # one label a class
            # every image of the class slot is an image of one and the same character
            match = (episodes.images[b, steps].unsqueeze(1) == flat).all(-1).float().argmax(1)
            assert len(set(owner[match].tolist())) == 1
        assert not torch.equal(episodes.classes[b], episodes.classes[b].sort().values)  # mixed


def test_a_mann_checkpoint_evaluates_on_l2l_tasks(taskset_and_data, mann):
    model, cfg, _ = mann
    taskset, _ = taskset_and_data
    code = LabelCode.make(cfg.episodes.labels, cfg.episodes.n_way)
    g = torch.Generator().manual_seed(1)
    batches = [episodes_from_l2l(taskset, 4, 10, code, g) for _ in range(2)]
    result = evaluate_episodes(model, batches, n_way=5, presentations=10)
    assert result.episodes == 8 and len(result.instance_accuracy) == 10
    assert all(0 <= a <= 1 for a in result.instance_accuracy)
    assert set(result.shot_accuracy) == {"1", "5"}


def test_evaluate_is_evaluate_episodes_on_sampled_batches(omniglot, mann):
    model, cfg, split = mann
    sampler = make_sampler(cfg, omniglot, split.test, side="test", device="cpu", seed=5)
    direct = evaluate(model, sampler, 10, batch_size=4)
    sampler.generator.manual_seed(5)
    batches = [sampler.sample(size) for size in (4, 4, 2)]
    again = evaluate_episodes(model, batches, sampler.n_way, sampler.presentations)
    assert direct.instance_accuracy == again.instance_accuracy and direct.loss == again.loss


def test_tasks_of_the_wrong_size_are_refused(taskset_and_data):
    taskset, _ = taskset_and_data
    with pytest.raises(ValueError, match="exactly 9 images"):
        episodes_from_l2l(taskset, 1, 9, LabelCode.make("one-hot", 5), torch.Generator())
