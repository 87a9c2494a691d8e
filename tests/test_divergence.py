"""The divergence guard (loss spikes, accuracy collapse, NaN: rollback or stop) and the N-way
curriculum, on real Omniglot training steps."""

from __future__ import annotations

import functools
import json
import os

import pytest
import torch

from fewshot_mann.checkpoint import load_checkpoint
from fewshot_mann.config import Config, ConfigError, curriculum_widths, replace
from fewshot_mann.errors import TrainingDiverged
from fewshot_mann.evaluation.plots import plot_training
from fewshot_mann.runtime import adam
from fewshot_mann.training import run as run_module
from fewshot_mann.training import trainer as train_module
from fewshot_mann.training.divergence import DivergenceGuard
from fewshot_mann.training.trainer import Trainer

SPIKE_AT = 20  # the step after which the parameters are blown up


def tiny_config(data_root, cache_dir, **train) -> Config:
    cfg = Config()
    cfg.data.data_root, cfg.data.cache_dir = str(data_root), str(cache_dir)
    cfg.episodes.n_way, cfg.episodes.presentations = 3, 4
    m = cfg.model
    m.controller_size, m.memory_slots, m.memory_width, m.read_heads = 32, 16, 8, 2
    return replace(cfg, train={"steps": 40, "batch_size": 8, "log_every": 2, "eval_every": 4,
                               "eval_episodes": 32, "checkpoint_every": 4, "device": "cpu",
                               "seed": 3, **train})


class SpikingTrainer(Trainer):
    """Multiplies every parameter by 30 once, before the update after step SPIKE_AT: the loss
    jumps while staying finite, as in the large-batch collapse of issue 10."""

    def train_step(self):
        if self.step == SPIKE_AT and not getattr(self, "spiked", False):
            self.spiked = True
            with torch.no_grad():
                for p in self.model.parameters():
                    p.mul_(30.0)
        return super().train_step()


def log_records(run) -> list[dict]:
    return [json.loads(line) for line in (run / "train_log.jsonl").read_text().splitlines()]


@pytest.mark.train  # 40 steps
def test_an_injected_spike_is_rolled_back_and_training_goes_on(tmp_path, data_root, cache_dir):
    run = tmp_path / "run"
    trainer = SpikingTrainer.build(tiny_config(data_root, cache_dir), run, progress=False)
    trainer.run()
    rollbacks = [r for r in log_records(run) if r.get("event") == "rollback"]
    assert len(rollbacks) == 1, rollbacks
    event = rollbacks[0]
    assert event["step"] == SPIKE_AT and event["from_step"] == SPIKE_AT + 2
    assert event["reason"].startswith("loss spike") and event["lr_scale"] == 0.5
    assert (run / event["diverged_weights"]).exists()  # kept for a post-mortem
    # and the record says what ran away: against the held-out evaluation at the spike's step,
    # the diverged model's logits and saturated LSTM gates (fewshot_mann/training/health.py)
    good = next(r for r in log_records(run) if r["step"] == SPIKE_AT and "health" in r)
    assert event["health"]["logit"] > 10 * good["health"]["logit"]
    assert event["health"]["saturated_gates"] > 0.5 > good["health"]["saturated_gates"]
    picture = plot_training(log_records(run), tmp_path / "training.png")  # scripts/plot_run.py
    assert picture.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and picture.stat().st_size > 20_000
    # the run finished from the restored state, at half the learning rate
    final = load_checkpoint(run / "checkpoint.pt")
    assert trainer.step == 40 and final["step"] == 40 and final["lr_scale"] == 0.5
    assert (run / "model.pt").exists()
    last = log_records(run)[-1]
    assert last["lr"] == pytest.approx(0.5 * trainer.lr_at(39))
    diverged = load_checkpoint(run / event["diverged_weights"])["model"]
    for name, weight in final["model"].items():
        assert torch.isfinite(weight).all()
        if weight.dtype.is_floating_point and weight.abs().max() > 0.05:
            # the blown-up weights are 30x; the trained ones are back at the normal scale
            assert weight.abs().max() < diverged[name].abs().max() / 5, name
    # the loss is back where it was before the spike
    before = next(r for r in log_records(run) if r["step"] == SPIKE_AT and "loss" in r)
    assert last["loss"] < 1.5 * before["loss"]


@pytest.mark.train  # 22 steps
def test_stop_mode_stops_at_the_spike_and_keeps_the_last_good_checkpoint(tmp_path, data_root,
                                                                          cache_dir):
    run = tmp_path / "run"
    trainer = SpikingTrainer.build(tiny_config(data_root, cache_dir, on_divergence="stop"), run,
                                   progress=False)
    with pytest.raises(TrainingDiverged, match=r"loss spike: .*\(weights: diverged-step22\.pt\)"
                       r"; training stopped.*keeps step 20"):
        trainer.run()
    assert load_checkpoint(run / "checkpoint.pt")["step"] == SPIKE_AT
    assert not (run / "model.pt").exists()
    stop = log_records(run)[-1]  # the divergence is in the log, with what ran away
    assert stop["event"] == "stop" and stop["reason"].startswith("loss spike")
    assert stop["diverged_weights"] == "diverged-step22.pt" and stop["health"]["logit"] > 10
    # the diverged weights are kept for the post-mortem: the spike's 30x parameters
    good = load_checkpoint(run / "checkpoint.pt")["model"]
    diverged = load_checkpoint(run / "diverged-step22.pt")["model"]
    name = "output.weight"
    assert diverged[name].abs().max() > 5 * good[name].abs().max()


class GradientSpikeTrainer(Trainer):
    """The update after step SPIKE_AT gets 10,000x its gradient, the loss's value unchanged: a
    gradient spike without a loss spike, as at step 2,317 of results/scaling/cpu-collapse."""

    def batch_loss(self):
        loss, metrics = super().batch_loss()
        if self.step == SPIKE_AT:
            loss = 1e4 * loss - (1e4 - 1) * loss.detach()
        return loss, metrics

    def train_step(self):
        if self.step != SPIKE_AT:
            return super().train_step()
        self.before = {n: p.clone() for n, p in self.model.named_parameters()}
        result = super().train_step()
        self.changed = [n for n, p in self.model.named_parameters()
                        if not torch.equal(p, self.before[n])]
        return result


@pytest.mark.train  # 24 steps
@pytest.mark.parametrize("skip", [20.0, 0.0])
def test_a_gradient_spike_is_skipped(tmp_path, data_root, cache_dir, skip):
    run = tmp_path / "run"
    cfg = tiny_config(data_root, cache_dir, steps=24, skip_grad_spikes=skip)
    trainer = GradientSpikeTrainer.build(cfg, run, progress=False)
    trainer.run()
    records = log_records(run)
    assert not [r for r in records if "event" in r]  # no rollback: the loss never jumped
    spike = next(r for r in records if r["step"] == SPIKE_AT + 2)
    assert spike["grad_norm_max"] > 100 * records[-1]["grad_norm_max"]
    if skip:  # the weights (and Adam's moments) stay as they were; the log counts the skip
        assert trainer.changed == []
        assert [r["skipped_updates"] for r in records] == [int(r is spike) for r in records]
    else:  # clipped to train.grad_clip, the spike's update still moves every weight
        assert len(trainer.changed) == len(trainer.before)
        assert "skipped_updates" not in spike


@pytest.mark.train  # 24 steps, twice
def test_a_resumed_run_skips_the_gradient_spike_as_an_uninterrupted_one(tmp_path, data_root,
                                                                         cache_dir):
    """The gradient norms the median is taken over travel in the checkpoint: resumed at the
    spike's step, the run still has the 20 norms it needs to see the spike."""
    cfg = tiny_config(data_root, cache_dir, steps=24, skip_grad_spikes=20.0)
    straight = GradientSpikeTrainer.build(cfg, tmp_path / "a", progress=False)
    straight.run()
    GradientSpikeTrainer.build(cfg, tmp_path / "b", progress=False).run(stop_at=SPIKE_AT)
    resumed = GradientSpikeTrainer.build(cfg, tmp_path / "b", resume=True, progress=False)
    resumed.run()
    assert resumed.changed == []
    for (name, a), (_, b) in zip(straight.model.state_dict().items(),
                                 resumed.model.state_dict().items(), strict=True):
        assert torch.equal(a, b), name


@pytest.mark.parametrize("fused, seen_at", [(False, 6), (True, 8)])
def test_a_nan_loss_is_rolled_back_by_default(tmp_path, data_root, cache_dir, monkeypatch,
                                              fused, seen_at):
    """Caught before its update: on the host (the CPU's Adam), or with the fused Adam of CUDA
    (here on the CPU) on the device, which skips the update, the rollback following at the
    next record (step 8) and naming the NaN's own step."""
    if fused:
        monkeypatch.setattr(run_module, "adam", functools.partial(adam, fused=True))
    real, calls = train_module.episode_loss, []

    def nan_once(logits, targets):
        calls.append(1)
        loss = real(logits, targets)
        return loss * float("nan") if len(calls) == 7 else loss

    monkeypatch.setattr(train_module, "episode_loss", nan_once)
    run = tmp_path / "run"
    trainer = Trainer.build(tiny_config(data_root, cache_dir, steps=12), run, progress=False)
    assert trainer.defer_checks == fused
    trainer.run()
    events = [r for r in log_records(run) if r.get("event") == "rollback"]
    assert [(e["step"], e["from_step"]) for e in events] == [(4, seen_at)]
    assert "the loss became nan at step 7" in events[0]["reason"]
    # the NaN update was never made: the weights the divergence left are finite
    diverged = load_checkpoint(run / events[0]["diverged_weights"])["model"]
    assert all(torch.isfinite(w).all() for w in diverged.values() if w.is_floating_point())
    assert load_checkpoint(run / "model.pt")["step"] == 12


def test_deferred_checks_make_the_same_updates(tmp_path, data_root, cache_dir, monkeypatch):
    monkeypatch.setattr(run_module, "adam", functools.partial(adam, fused=True))
    cfg = tiny_config(data_root, cache_dir, steps=8)
    deferred = Trainer.build(cfg, tmp_path / "deferred", progress=False)
    checked = Trainer.build(cfg, tmp_path / "checked", progress=False)
    assert deferred.defer_checks
    checked.defer_checks = False  # a read-back and a host-side check every step
    deferred.run()
    checked.run()
    for (name, a), b in zip(deferred.model.state_dict().items(),
                            checked.model.state_dict().values(), strict=True):
        assert torch.equal(a, b), name
    assert ([(r["loss"], r["grad_norm_max"]) for r in log_records(tmp_path / "deferred")]
            == [(r["loss"], r["grad_norm_max"]) for r in log_records(tmp_path / "checked")])


def test_rollbacks_are_bounded(tmp_path, data_root, cache_dir, monkeypatch):
    monkeypatch.setattr(train_module, "episode_loss", lambda logits, targets: logits.sum() * 0
                        + float("nan"))
    with pytest.raises(TrainingDiverged, match=r"after 2 rollbacks, train.max_rollbacks"):
        Trainer.build(tiny_config(data_root, cache_dir, max_rollbacks=2), tmp_path / "run",
                      progress=False).run()


def test_guard_sees_a_spike_and_a_collapse_but_not_noise():
    guard = DivergenceGuard(spike_factor=2.0, collapse_drop=0.25, eval_samples=1280)
    for loss in (6.4, 6.3, 6.5, 6.2, 6.3, 6.26):  # the 15-way run before its collapse
        assert guard.check(loss) is None
        guard.accept(loss)
    assert guard.check(32.8).startswith("loss spike: 32.800")
    assert guard.check(7.0) is None
    guard.accept(6.2, 0.6)
    assert guard.check(6.2, 0.5) is None
    assert "collapse" in guard.check(6.2, 0.02)
    guard.reset()
    assert guard.check(32.8, 0.02) is None
    # an evaluation of 16 samples cannot tell 0.6 -> 0.3 from noise
    small = DivergenceGuard(eval_samples=16)
    small.accept(1.0, 0.6)
    assert small.check(1.0, 0.3) is None


def test_curriculum_widens_and_resumes_at_its_stage(tmp_path, data_root, cache_dir):
    cfg = tiny_config(data_root, cache_dir, steps=8, curriculum="2", curriculum_accuracy=0.01)
    cfg.episodes.n_way = 4
    run = tmp_path / "run"
    trainer = Trainer.build(cfg, run, progress=False)
    assert trainer.train_sampler.n_way == 2 and trainer.code.symbols == 4
    batch = trainer.train_sampler.sample(16)
    assert batch.images.shape[1] == 2 * 4  # 2 classes x 4 presentations
    assert all(len(set(t.tolist())) == 2 for t in batch.targets[..., 0])  # 2 labels of 0..3
    assert int(batch.targets.max()) <= 3
    trainer.run(stop_at=4)
    widen = [r for r in log_records(run) if r.get("event") == "widen"]
    assert widen == [{"step": 4, "event": "widen", "n_way": 4, "elapsed_s": widen[0]["elapsed_s"]}]
    assert load_checkpoint(run / "checkpoint.pt")["curriculum_stage"] == 1
    resumed = Trainer.build(cfg, run, resume=True, progress=False)
    assert resumed.train_sampler.n_way == resumed.heldout.n_way == 4
    resumed.run()
    assert [r["n_way"] for r in log_records(run) if "loss" in r] == [2, 2, 4, 4]


@pytest.mark.parametrize("curriculum, message", [
    ("5,x", "comma-separated class counts"),
    ("10,5", "widths must increase"),
    ("5,25", "stay below episodes.n_way"),
    ("1", "from >= 2"),
])
def test_bad_curriculum_is_refused(curriculum, message):
    cfg = replace(Config(), episodes={"n_way": 20}, train={"curriculum": curriculum})
    with pytest.raises(ConfigError, match=message):
        cfg.validate()


def test_curriculum_widths():
    cfg = replace(Config(), episodes={"n_way": 20}, train={"curriculum": "5,10"})
    assert curriculum_widths(cfg) == [5, 10, 20]
    assert curriculum_widths(replace(cfg, train={"curriculum": "5,10,20"})) == [5, 10, 20]
    assert curriculum_widths(Config()) == [5]


@pytest.mark.train
def test_a_replay_retraces_the_run_exactly_and_keeps_the_chosen_steps(tmp_path, data_root,
                                                                       cache_dir):
    """scripts/replay_divergence.py: from a run's step-4 checkpoint to step 8, every step
    logged, the step-6 checkpoint kept; the same weights as the run's own step 8, bit for bit,
    and other weights with the memory's cosine eps changed."""
    import shutil
    import subprocess
    import sys
    from pathlib import Path

    repo = Path(__file__).resolve().parents[1]
    run, mid = tmp_path / "run", tmp_path / "mid"
    trainer = Trainer.build(tiny_config(data_root, cache_dir, steps=8, threads=1), run,
                            progress=False)
    trainer.run(stop_at=4)
    shutil.copytree(run, mid)
    trainer.run()

    def replay(out, *extra):
        return subprocess.run([sys.executable, "scripts/replay_divergence.py", str(mid),
                               "--to", "8", "--out", str(out), *extra], cwd=repo,
                              capture_output=True, text=True, timeout=300,
                              env={**os.environ, "PYTHONPATH": str(repo)})

    done = replay(tmp_path / "replay", "--keep", "6")
    assert done.returncode == 0, done.stderr
    assert "replayed steps 5-8: largest gradient norm" in done.stdout
    steps = [r["step"] for r in log_records(tmp_path / "replay") if r["step"] > 4]
    assert steps[:4] == [5, 6, 7, 8]  # a record per step (then the evaluation's)
    assert load_checkpoint(tmp_path / "replay" / "step-6" / "checkpoint.pt")["step"] == 6
    replayed = load_checkpoint(tmp_path / "replay" / "checkpoint.pt")["model"]
    original = load_checkpoint(run / "checkpoint.pt")["model"]
    assert all(torch.equal(replayed[name], original[name]) for name in original)

    changed = replay(tmp_path / "eps", "--set", "model.cosine_eps=1e-2")  # the run: 1e-8
    assert changed.returncode == 0, changed.stderr
    weights = load_checkpoint(tmp_path / "eps" / "checkpoint.pt")["model"]
    assert not torch.equal(weights["output.weight"], original["output.weight"])

    refused = replay(tmp_path / "batch", "--set", "train.batch_size=3")
    assert refused.returncode != 0 and "batch_size" in refused.stderr
    other_model = replay(tmp_path / "gamma", "--set", "model.gamma=0.9")  # not dropped silently
    assert other_model.returncode == 2 and "model.cosine_eps" in other_model.stderr
