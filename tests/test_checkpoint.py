"""Checkpoints: round trip, exact resume, and clear errors for bad files."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from fewshot_mann.checkpoint import CheckpointError, load_checkpoint, model_from_checkpoint
from fewshot_mann.cli import build_parser, main
from fewshot_mann.config import Config, ConfigError, replace
from fewshot_mann.runtime import atomic_torch_save
from fewshot_mann.training.trainer import Trainer


def tiny_config(data_root, cache_dir, steps: int) -> Config:
    return replace(
        Config(),
        data={"data_root": str(data_root), "cache_dir": str(cache_dir)},
        model={"controller_size": 32, "memory_slots": 16, "memory_width": 8, "read_heads": 2},
        train={"steps": steps, "batch_size": 4, "eval_every": 3, "eval_episodes": 8,
               "checkpoint_every": 3, "log_every": 1, "lr": 3e-3, "lr_min": 1e-3,
               "device": "cpu"},
    )


def finished_run(data_root, cache_dir, tmp_path_factory, steps: int, name: str) -> Trainer:
    """A tiny run trained for `steps` steps in a fresh folder named after `name`."""
    trainer = Trainer.build(tiny_config(data_root, cache_dir, steps=steps),
                            tmp_path_factory.mktemp(name) / "run", progress=False)
    trainer.run()
    return trainer


@pytest.fixture(scope="module")
def finished(data_root, cache_dir, tmp_path_factory) -> Trainer:
    """A finished 3-step run, shared by the tests that only read it (its out_dir)."""
    return finished_run(data_root, cache_dir, tmp_path_factory, 3, "finished")


def test_round_trip(finished):
    trainer, run = finished, finished.out_dir
    payload = load_checkpoint(run / "checkpoint.pt")
    assert payload["step"] == 3
    assert Config.from_dict(payload["config"]) == trainer.cfg
    model, cfg2, split = model_from_checkpoint(payload)
    assert split.test == trainer.split.test and cfg2 == trainer.cfg
    for (n, a), (_, b) in zip(model.state_dict().items(), trainer.model.state_dict().items(),
                              strict=True):
        assert torch.equal(a, b), n
    assert (run / "split.json").is_file()
    assert (run / "config.toml").is_file()


@pytest.fixture(scope="module")
def straight(data_root, cache_dir, tmp_path_factory) -> Trainer:
    """A 6-step run without a pause, which the resumed runs below must match."""
    return finished_run(data_root, cache_dir, tmp_path_factory, 6, "straight")


def test_resume_continues_exactly(tmp_path, data_root, cache_dir, straight):
    cfg = tiny_config(data_root, cache_dir, steps=6)
    first = Trainer.build(cfg, tmp_path / "b", progress=False)
    first.run(stop_at=4)  # pause between checkpoints (every 3 steps): resumes from step 4
    resumed = Trainer.build(cfg, tmp_path / "b", resume=True, progress=False)
    assert resumed.step == 4
    resumed.run()
    for (n, a), (_, b) in zip(straight.model.state_dict().items(),
                              resumed.model.state_dict().items(), strict=True):
        assert torch.equal(a, b), n
    logged = (tmp_path / "b" / "train_log.jsonl").read_text().splitlines()
    assert len(logged) == 6  # one record per step, none lost or doubled


def test_a_resume_that_changes_settings_says_so(tmp_path, data_root, cache_dir):
    """--resume may change the schedule and the clipping (run.RESUMABLE): the log says from
    which step, and config.toml describes the run as it now trains."""
    import json

    from fewshot_mann.config import read_toml

    cfg = tiny_config(data_root, cache_dir, steps=6)
    Trainer.build(cfg, tmp_path / "run", progress=False).run(stop_at=3)
    changed = replace(cfg, train={"grad_clip": 1.0, "skip_grad_spikes": 4.0})
    resumed = Trainer.build(changed, tmp_path / "run", resume=True, progress=False)
    resumed.run()
    records = [json.loads(line)
               for line in (tmp_path / "run" / "train_log.jsonl").read_text().splitlines()]
    assert [r["step"] for r in records] == [1, 2, 3, 3, 4, 5, 6]
    assert records[3] == {"step": 3, "event": "resume", "elapsed_s": records[3]["elapsed_s"],
                          "changed": {"train.grad_clip": [10.0, 1.0],
                                      "train.skip_grad_spikes": [0.0, 4.0]}}
    toml = read_toml(tmp_path / "run" / "config.toml")
    assert toml["train"]["grad_clip"] == 1.0 and toml["train"]["skip_grad_spikes"] == 4.0
    assert load_checkpoint(tmp_path / "run" / "checkpoint.pt")["config"]["train"][
        "grad_clip"] == 1.0


def test_a_checkpoint_written_on_cuda_resumes_with_this_devices_adam(tmp_path, data_root,
                                                                     cache_dir, straight):
    """A CUDA run steps Adam fused (run.make_optimizer) and its checkpoint says so; resumed on
    the CPU, the run steps as a CPU run does, and continues it exactly."""
    cfg = tiny_config(data_root, cache_dir, steps=6)
    Trainer.build(cfg, tmp_path / "b", progress=False).run(stop_at=3)
    path = tmp_path / "b" / "checkpoint.pt"
    payload = load_checkpoint(path)
    for group in payload["optimizer"]["param_groups"]:
        group["fused"] = True  # as a CUDA run writes it
    torch.save(payload, path)
    resumed = Trainer.build(cfg, tmp_path / "b", resume=True, progress=False)
    assert [g["fused"] for g in resumed.optimizer.param_groups] == [None]
    resumed.run()
    for (n, a), (_, b) in zip(straight.model.state_dict().items(),
                              resumed.model.state_dict().items(), strict=True):
        assert torch.equal(a, b), n


def test_time_limit_pauses_at_an_evaluation_and_resume_finishes(tmp_path, data_root, cache_dir):
    cfg = tiny_config(data_root, cache_dir, steps=6)
    paused = Trainer.build(cfg, tmp_path / "t", time_limit_s=1e-9, progress=False)
    paused.run()  # out of time at the first held-out evaluation (step 3): checkpointed there
    assert paused.step == 3 and load_checkpoint(tmp_path / "t" / "checkpoint.pt")["step"] == 3
    assert not (tmp_path / "t" / "model.pt").exists()  # not finished
    resumed = Trainer.build(cfg, tmp_path / "t", resume=True, progress=False)
    resumed.run()
    assert resumed.step == 6 and (tmp_path / "t" / "model.pt").is_file()


def test_cuda_graph_needs_cuda(tmp_path, data_root, cache_dir):
    if torch.cuda.is_available():
        pytest.skip("this machine has CUDA")
    cfg = replace(tiny_config(data_root, cache_dir, steps=3), train={"cuda_graph": True})
    with pytest.raises(ConfigError, match="needs a CUDA device"):
        Trainer.build(cfg, tmp_path / "g", progress=False)


def test_refuses_to_overwrite_a_run(finished, data_root, cache_dir):
    with pytest.raises(FileExistsError, match="--resume"):
        Trainer.build(tiny_config(data_root, cache_dir, steps=3), finished.out_dir,
                      progress=False)


def test_truncated_and_foreign_files_are_rejected(tmp_path, finished):
    good = (finished.out_dir / "checkpoint.pt").read_bytes()
    cut = tmp_path / "cut.pt"
    cut.write_bytes(good[: len(good) // 2])
    with pytest.raises(CheckpointError, match="truncated or corrupt"):
        load_checkpoint(cut)
    garbage = tmp_path / "garbage.pt"
    garbage.write_bytes(b"not a checkpoint at all")
    with pytest.raises(CheckpointError):
        load_checkpoint(garbage)
    foreign = tmp_path / "foreign.pt"
    torch.save({"weights": torch.zeros(3)}, foreign)
    with pytest.raises(CheckpointError, match="not a fewshot-mann checkpoint"):
        load_checkpoint(foreign)
    with pytest.raises(CheckpointError, match="not found"):
        load_checkpoint(tmp_path / "missing.pt")


def test_checkpoint_cannot_run_code(tmp_path):
    class Evil:
        def __reduce__(self):
            return (print, ("pwned",))

    path = tmp_path / "evil.pt"
    torch.save({"format": "fewshot-mann-checkpoint-v1", "x": Evil()}, path)
    with pytest.raises(CheckpointError):
        load_checkpoint(path)


def test_weights_of_another_configuration_are_rejected(finished):
    payload = load_checkpoint(finished.out_dir / "checkpoint.pt")
    payload["config"]["model"]["controller_size"] = 48
    with pytest.raises(CheckpointError, match="different model configuration"):
        model_from_checkpoint(payload)


# ---- where evaluate and inspect find a checkpoint's data ----------------------------------------
SANTORO = Path(__file__).resolve().parents[1] / "results" / "santoro-5way" / "model.pt"
QUICK_EVAL = ["--episodes", "5", "--batch-size", "5", "--device", "cpu", "--quiet"]


def with_data_root(out: Path, data_root: str) -> Path:
    """A copy of the committed 5-way MANN at `out` whose config names `data_root`, as an
    older checkpoint (no record of where it was trained from) would."""
    payload = load_checkpoint(SANTORO)
    payload["config"]["data"]["data_root"] = data_root
    payload.pop("trained_in", None)
    out.parent.mkdir(parents=True, exist_ok=True)
    atomic_torch_save(payload, out)
    return out


def run_cli(capsys, *argv: object) -> tuple[int, str]:
    code = main([str(a) for a in argv])
    return code, capsys.readouterr().err


@pytest.mark.train  # decodes Omniglot found through another path: seconds
def test_the_data_variable_and_flag_win_over_the_stored_root(tmp_path, data_root, cache_dir,
                                                             capsys, monkeypatch):
    checkpoint = with_data_root(tmp_path / "run" / "model.pt", "/nowhere/omniglot")
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("FEWSHOT_MANN_DATA", str(data_root))
    code, err = run_cli(capsys, "evaluate", "--checkpoint", checkpoint, "--out", "e1",
                        "--cache-dir", cache_dir, *QUICK_EVAL)
    assert code == 0, err
    monkeypatch.setenv("FEWSHOT_MANN_DATA", "/nowhere/else")
    code, err = run_cli(capsys, "evaluate", "--checkpoint", checkpoint, "--out", "e2",
                        "--cache-dir", cache_dir, "--data-root", data_root, *QUICK_EVAL)
    assert code == 0, err
    code, err = run_cli(capsys, "evaluate", "--checkpoint", checkpoint, "--out", "e3",
                        "--cache-dir", cache_dir, *QUICK_EVAL)
    assert code == 2 and "Omniglot not found under /nowhere/else" in err, err


@pytest.mark.train  # decodes Omniglot found through another path: seconds
def test_a_relative_stored_root_is_found_from_the_checkpoints_folder(tmp_path, data_root,
                                                                     cache_dir, capsys,
                                                                     monkeypatch):
    """An older checkpoint's relative data root, read elsewhere: resolved against the folders
    above the checkpoint (where it was trained from), for evaluate and inspect alike."""
    project = tmp_path / "project"
    project.mkdir()
    (project / "omni").symlink_to(data_root)
    checkpoint = with_data_root(project / "runs" / "mann" / "model.pt", "omni")
    (tmp_path / "elsewhere").mkdir()
    monkeypatch.chdir(tmp_path / "elsewhere")
    monkeypatch.delenv("FEWSHOT_MANN_DATA", raising=False)
    code, err = run_cli(capsys, "evaluate", "--checkpoint", checkpoint, "--out", "e",
                        "--cache-dir", cache_dir, *QUICK_EVAL)
    assert code == 0, err
    code, err = run_cli(capsys, "inspect", "--checkpoint", checkpoint, "--out", "i",
                        "--tasks", "2", "--cache-dir", cache_dir, "--device", "cpu", "--quiet")
    assert code == 0, err
    (project / "omni").unlink()
    code, err = run_cli(capsys, "evaluate", "--checkpoint", checkpoint, "--out", "e",
                        "--cache-dir", cache_dir, *QUICK_EVAL)
    assert code == 2 and "Traceback" not in err and len(err.splitlines()) == 1, err
    for named in (str(project / "omni"), "--data-root", "$FEWSHOT_MANN_DATA", "--download"):
        assert named in err, err
    args = build_parser().parse_args(["evaluate", "--checkpoint", "c", "--out", "o",
                                      "--download"])
    assert args.download  # every flag the hint names exists for evaluate


@pytest.mark.train  # decodes Omniglot found through another path: seconds
def test_a_new_checkpoint_records_where_it_was_trained(tmp_path, data_root, cache_dir, capsys,
                                                       monkeypatch):
    """Trained from one folder with a relative --data-root, written to a run folder outside
    it, evaluated from a third: the data is found through the recorded training folder."""
    from test_cli import TINY

    for folder in ("work", "runs", "elsewhere"):
        (tmp_path / folder).mkdir()
    (tmp_path / "work" / "omni").symlink_to(data_root)
    monkeypatch.delenv("FEWSHOT_MANN_DATA", raising=False)
    monkeypatch.chdir(tmp_path / "work")
    assert main(["train", "--data-root", "omni", "--cache-dir", str(cache_dir), *TINY,
                 "--steps", "1", "--out", str(tmp_path / "runs" / "r")]) == 0
    checkpoint = tmp_path / "runs" / "r" / "model.pt"
    assert load_checkpoint(checkpoint)["trained_in"] == str(tmp_path / "work")
    monkeypatch.chdir(tmp_path / "elsewhere")
    code, err = run_cli(capsys, "evaluate", "--checkpoint", checkpoint, "--out", "e",
                        "--cache-dir", cache_dir, *QUICK_EVAL)
    assert code == 0, err
