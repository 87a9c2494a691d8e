"""Standard support/query tasks and the baselines, on the real Omniglot files (Vinyals split)."""

from __future__ import annotations

import json

import pytest
import torch

from fewshot_mann.baselines.checkpoint import load_baseline
from fewshot_mann.baselines.pixels import PIXEL_BASELINES
from fewshot_mann.baselines.tasks import (
    Setting,
    eval_episodes,
    score,
    split_support_query,
    task_sampler,
)
from fewshot_mann.baselines.train import main as train_main
from fewshot_mann.data.splits import omniglot_split
from fewshot_mann.episodes import EpisodeSampler, LabelCode


@pytest.fixture(scope="module")
def test_classes(omniglot28):
    return omniglot_split("vinyals", omniglot28).test


def train_args(method, out, data_root, cache_dir, *extra):
    return ["--method", method, "--data-root", str(data_root), "--cache-dir", str(cache_dir),
            "--device", "cpu", "--log-every", "1", "--eval-every", "2", "--val-episodes", "10",
            "--checkpoint-every", "2", "--quiet", "--out", str(out), *extra]


@pytest.mark.parametrize("shots, presentations", [(1, 2), (3, 4), (2, 5)])
def test_support_is_the_first_presentations_and_query_the_next(omniglot28, test_classes,
                                                               shots, presentations):
    sampler = task_sampler(omniglot28, test_classes, 5, presentations, seed=3)
    episodes = sampler.sample(4)
    tasks = split_support_query(episodes, shots)
    Q = presentations - shots
    assert tasks.support.shape == (4, 5, shots, 28 * 28)
    assert tasks.query.shape == (4, 5, Q, 28 * 28)
    for b in range(4):
        for n in range(5):
            steps = (episodes.classes[b] == n).nonzero().flatten()  # in the order shown
            assert episodes.presentation[b, steps].tolist() == list(range(presentations))
            shown = episodes.images[b, steps]
            assert torch.equal(tasks.support[b, n], shown[:shots])
            assert torch.equal(tasks.query[b, n], shown[shots:])  # query = presentation K...
            label = episodes.targets[b, steps[0], 0]
            assert (tasks.support_labels[b, n] == label).all()
            assert (tasks.query_labels[b, n] == label).all()
        # ...and every class keeps its own label, a random permutation of 0..N-1
        assert sorted(tasks.support_labels[b, :, 0].tolist()) == list(range(5))


def test_split_refuses_what_it_cannot_split(omniglot28, test_classes):
    episodes = task_sampler(omniglot28, test_classes, 5, 3, seed=0).sample(2)
    for shots in (0, 3):
        with pytest.raises(ValueError, match="shots"):
            split_support_query(episodes, shots)
    index = torch.arange(10)
    five_hot = EpisodeSampler(omniglot28, index, torch.zeros(10, dtype=torch.long), 5, 3,
                              LabelCode.make("five-hot", 5)).sample(2)
    with pytest.raises(ValueError, match="one-hot"):
        split_support_query(five_hot, 1)


@pytest.mark.train
def test_test_episodes_do_not_depend_on_the_image_size(omniglot, omniglot28, test_classes):
    """A MANN trained on 20 px images is scored on the same episodes as the 28 px methods."""
    setting = Setting(5, 1)
    small = list(eval_episodes(omniglot, test_classes, setting, 60))
    large = list(eval_episodes(omniglot28, test_classes, setting, 60))
    assert [b.batch_size for b in large] == [50, 10]
    for a, b in zip(small, large, strict=True):
        assert torch.equal(a.classes, b.classes) and torch.equal(a.targets, b.targets)
        assert a.images.shape[-1] == 400 and b.images.shape[-1] == 784


def test_pixel_knn_is_well_above_chance(omniglot28, test_classes):
    """5-way 1-shot Vinyals test episodes (chance 0.2): cosine 1-NN on raw pixels measured
    0.485 +- 0.029 on 200 episodes, logistic regression 0.468 +- 0.029 (and 0.46 on these 50)."""
    setting = Setting(5, 1)
    knn = score(PIXEL_BASELINES["sklearn-knn"],
                eval_episodes(omniglot28, test_classes, setting, 200), setting.shots)
    assert knn.episodes == 200 and 0 < knn.ci95 < 0.05
    assert knn.mean > 0.4, knn
    logreg = score(PIXEL_BASELINES["sklearn-logreg"],
                   eval_episodes(omniglot28, test_classes, setting, 50), setting.shots)
    assert logreg.mean > 0.35, logreg


def test_protonet_trains_resumes_and_round_trips(tmp_path, data_root, cache_dir, omniglot28,
                                                 test_classes):
    """A few steps of 5-way 1-shot ProtoNet training: the log, the checkpoints, resuming (which
    continues exactly as an uninterrupted run) and loading with weights_only=True."""
    common = ("--shots", "1", "--ways", "5", "--queries", "2", "--batch", "2")
    straight, paused = tmp_path / "straight", tmp_path / "paused"
    assert train_main(train_args("protonet", straight, data_root, cache_dir, *common,
                                 "--steps", "4")) == 0
    assert train_main(train_args("protonet", paused, data_root, cache_dir, *common,
                                 "--steps", "2")) == 0
    assert train_main(train_args("protonet", paused, data_root, cache_dir, *common,
                                 "--steps", "4", "--resume")) == 0
    log = [json.loads(line) for line in (paused / "train_log.jsonl").read_text().splitlines()]
    assert [r["step"] for r in log] == [1, 2, 3, 4]
    assert "val_accuracy" in log[1] and "val_accuracy" in log[3]
    model, payload = load_baseline(straight / "model.pt")
    resumed, resumed_payload = load_baseline(paused / "model.pt")
    first, then = resumed_payload["command"].split(" && ")
    assert "--steps 2" in first and "--steps 4 --resume" in then
    for key, value in model.state_dict().items():
        assert torch.equal(value, resumed.state_dict()[key]), key
    assert payload["step"] == 4 and payload["network"] == {"method": "protonet",
                                                           "image_size": 28}
    assert payload["train"]["ways"] == 5 and payload["train"]["classes"] == "train"
    assert payload["command"].startswith("python -m fewshot_mann.baselines.train --method")
    assert payload["elapsed_s"] > 0 and payload["machine"]
    setting = Setting(20, 1)  # trained 5-way, tested 20-way: prototypes work for any N
    result = score(model, eval_episodes(omniglot28, test_classes, setting, 10), setting.shots)
    assert result.episodes == 10 and 0 <= result.mean <= 1


def test_a_baseline_nan_is_rolled_back_by_the_shared_loop(tmp_path, data_root, cache_dir,
                                                          monkeypatch):
    """The baselines train on the MANN's loop: a NaN loss at step 3 is caught before that
    update, the run goes back to its last good state (step 2) at half the learning rate,
    logs it, and finishes."""
    from fewshot_mann.baselines.protonet import ProtoNet

    real, calls = ProtoNet.meta_loss, []

    def nan_once(self, tasks):
        loss, accuracy = real(self, tasks)
        calls.append(1)
        return (loss * float("nan") if len(calls) == 3 else loss), accuracy

    monkeypatch.setattr(ProtoNet, "meta_loss", nan_once)
    run = tmp_path / "nan"
    assert train_main(train_args("protonet", run, data_root, cache_dir, "--ways", "5",
                                 "--queries", "1", "--steps", "4")) == 0
    log = [json.loads(line) for line in (run / "train_log.jsonl").read_text().splitlines()]
    events = [r for r in log if r.get("event") == "rollback"]
    assert len(events) == 1 and events[0]["step"] == 2 and events[0]["lr_scale"] == 0.5
    assert "the loss became nan at step 3" in events[0]["reason"]
    _, payload = load_baseline(run / "model.pt")
    assert payload["step"] == 4
    assert log[-1]["step"] == 4 and log[-1]["lr"] == pytest.approx(0.5e-3)


@pytest.mark.train
def test_protonet_learns_in_a_hundred_steps(tmp_path, data_root, cache_dir, omniglot28,
                                            test_classes):
    """100 steps of 20-way 1-shot episodes (3 s): on 100 5-way 1-shot test episodes this
    measured 0.74 and 0.71 (seeds 0 and 1, +- 0.04), against 0.41 untrained and 0.485 for
    pixel 1-NN."""
    run = tmp_path / "learn"
    assert train_main(train_args("protonet", run, data_root, cache_dir, "--shots", "1",
                                 "--ways", "20", "--steps", "100", "--log-every", "100",
                                 "--eval-every", "100")) == 0
    model, _ = load_baseline(run / "model.pt")
    setting = Setting(5, 1)
    result = score(model, eval_episodes(omniglot28, test_classes, setting, 100), setting.shots)
    assert result.mean > 0.6, result


def test_maml_meta_step_and_prediction(tmp_path, data_root, cache_dir, omniglot28,
                                       test_classes):
    run = tmp_path / "maml"
    assert train_main(train_args("maml", run, data_root, cache_dir, "--shots", "1",
                                 "--batch", "2", "--steps", "1", "--test-adapt-steps", "2")) == 0
    model, payload = load_baseline(run / "model.pt")
    assert payload["network"]["ways"] == 5 and payload["network"]["test_adapt_steps"] == 2
    assert payload["train"]["queries"] == 1  # MAML queries default to the shots
    before = {k: v.clone() for k, v in model.state_dict().items()}
    setting = Setting(5, 1)
    result = score(model, eval_episodes(omniglot28, test_classes, setting, 6), setting.shots)
    assert result.episodes == 6 and 0 <= result.mean <= 1
    weights = [k for k in before if "running" not in k and "num_batches" not in k]
    assert all(torch.equal(before[k], model.state_dict()[k]) for k in weights)  # test: clones
    with pytest.raises(ValueError, match="5 outputs"):
        score(model, eval_episodes(omniglot28, test_classes, Setting(20, 1), 2), 1)
