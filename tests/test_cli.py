"""The command line, end to end on real Omniglot: train, resume, evaluate, and clear errors."""

from __future__ import annotations

import argparse
import json
import subprocess
import sys

import pytest

from fewshot_mann.cli import build_parser, main

TINY = ["--controller-size", "32", "--memory-slots", "16", "--memory-width", "8",
        "--read-heads", "2", "--batch-size", "4", "--eval-every", "2", "--eval-episodes", "8",
        "--checkpoint-every", "2", "--log-every", "1", "--device", "cpu", "--quiet"]


def test_help_lists_the_commands():
    out = subprocess.run([sys.executable, "-m", "fewshot_mann.cli", "--help"], check=True,
                         capture_output=True, text=True).stdout
    for command in ("train", "evaluate"):
        assert command in out


def subcommands(parser: argparse.ArgumentParser | None = None,
                prefix: str = "") -> dict[str, argparse.ArgumentParser]:
    """Every command's parser by its full name, nested ones too ("memory add")."""
    commands = {}
    for action in (parser or build_parser())._actions:
        if isinstance(action, argparse._SubParsersAction):
            for name, sub in action.choices.items():
                commands[prefix + name] = sub
                commands.update(subcommands(sub, f"{prefix}{name} "))
    return commands


def test_every_option_of_every_command_has_help_and_its_default():
    """Each option says what it does and, when it takes a value and is not required, its
    default; no unexpanded '%%' or '%(' is left in what --help prints."""
    commands = subcommands()
    assert set(commands) >= {"train", "evaluate", "predict", "inspect", "bench", "memory",
                             "memory create", "memory forget"}
    for name, parser in commands.items():
        formatter = parser._get_formatter()
        for action in parser._actions:
            if isinstance(action, argparse._HelpAction):
                continue
            flag = f"{name} {(action.option_strings or [action.dest])[0]}"
            assert action.help and action.help != argparse.SUPPRESS, f"{flag} has no help"
            text = formatter._expand_help(action)
            if action.nargs != 0 and not action.required:
                assert "default" in text, f"{flag} does not show its default: {text!r}"
        rendered = parser.format_help()
        assert "%%" not in rendered and "%(" not in rendered, rendered
    train = commands["train"].format_help()
    assert "optimiser updates (default: 20,000)" in " ".join(train.split())
    assert "95% CIs" in commands["evaluate"].format_help()


def test_version_names_the_package_torch_and_python(capsys):
    import platform

    import torch

    import fewshot_mann
    with pytest.raises(SystemExit) as done:  # argparse exits after printing
        main(["--version"])
    assert done.value.code == 0
    out = capsys.readouterr().out
    assert out.startswith(f"fewshot-mann {fewshot_mann.__version__} (torch {torch.__version__}")
    assert f"Python {platform.python_version()}" in out


@pytest.mark.train
def test_learn2learn_import_prints_no_gym_notice(tmp_path, data_root, cache_dir):
    """A convbase encoder is learn2learn's ConvBase; learn2learn imports gym, whose import
    prints a notice about Gym being unmaintained: the user sees only the package's output."""
    done = subprocess.run(
        [sys.executable, "-m", "fewshot_mann.cli", "train", "--data-root", str(data_root),
         "--cache-dir", str(cache_dir), *TINY, "--encoder", "convbase", "--steps", "1",
         "--out", str(tmp_path / "run")], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    assert (tmp_path / "run" / "model.pt").exists()
    gym_lines = [line for line in done.stderr.splitlines() if "gym" in line.lower()]
    assert not gym_lines, gym_lines


def test_train_resume_evaluate(tmp_path, data_root, cache_dir, capsys):
    run = tmp_path / "run"
    common = ["--data-root", str(data_root), "--cache-dir", str(cache_dir), *TINY]
    assert main(["train", *common, "--steps", "2", "--out", str(run)]) == 0
    assert main(["train", *common, "--steps", "4", "--out", str(run), "--resume"]) == 0
    log = [json.loads(line) for line in (run / "train_log.jsonl").read_text().splitlines()]
    assert [r["step"] for r in log] == [1, 2, 2, 3, 4]
    assert log[2]["event"] == "resume" and log[2]["changed"] == {"train.steps": [2, 4]}
    out = tmp_path / "eval"
    assert main(["evaluate", "--checkpoint", str(run / "checkpoint.pt"), "--episodes", "20",
                 "--batch-size", "8", "--data-root", str(data_root), "--cache-dir",
                 str(cache_dir), "--out", str(out), "--quiet"]) == 0
    metrics = json.loads((out / "metrics.json").read_text())
    for key in ("instance_accuracy", "instance_ci95", "shot_accuracy", "episodes", "n_way",
                "split", "checkpoint"):
        assert key in metrics
    assert metrics["episodes"] == 20 and metrics["n_way"] == 5 and metrics["split"] == "santoro"
    assert len(metrics["instance_accuracy"]) == 11  # the evaluator asks for 11 presentations
    assert set(metrics["shot_accuracy"]) == {"1", "5", "10"}
    assert (out / "instance_accuracy.csv").read_text().startswith("presentation,accuracy,ci95")
    assert (out / "instance_accuracy.png").stat().st_size > 1000


def test_pause_at_a_step_between_checkpoints_and_resume(tmp_path, data_root, cache_dir, capsys):
    """--pause-at STEP: the run's state at that step, checkpointed (here between checkpoints
    every 2 steps), as an uninterrupted run has it; a step already passed is one clear line."""
    import torch

    from fewshot_mann.checkpoint import load_checkpoint

    common = ["--data-root", str(data_root), "--cache-dir", str(cache_dir), *TINY,
              "--steps", "4"]
    assert main(["train", *common, "--out", str(tmp_path / "a")]) == 0
    assert main(["train", *common, "--out", str(tmp_path / "b"), "--pause-at", "3"]) == 0
    paused = load_checkpoint(tmp_path / "b" / "checkpoint.pt")
    assert paused["step"] == 3 and not (tmp_path / "b" / "model.pt").exists()
    assert main(["train", *common, "--out", str(tmp_path / "b"), "--resume",
                 "--pause-at", "2"]) == 2
    assert "--pause-at 2: the run is at step 3 already" in capsys.readouterr().err
    assert main(["train", *common, "--out", str(tmp_path / "b"), "--resume"]) == 0
    a, b = (load_checkpoint(tmp_path / run / "checkpoint.pt")["model"] for run in "ab")
    assert all(torch.equal(a[name], b[name]) for name in a)


def test_flags_override_a_toml_config(tmp_path, data_root, cache_dir):
    config = tmp_path / "run.toml"
    config.write_text('[episodes]\nn_way = 3\npresentations = 4\n[train]\nlr = 0.002\n')
    run = tmp_path / "run"
    assert main(["train", "--config", str(config), "--data-root", str(data_root),
                 "--cache-dir", str(cache_dir), *TINY, "--steps", "1", "--lr", "0.003",
                 "--out", str(run)]) == 0
    saved = (run / "config.toml").read_text()
    assert "n_way = 3" in saved and "presentations = 4" in saved and "lr = 0.003" in saved


@pytest.mark.parametrize("args, message", [
    (["--n-way", "0"], "episodes.n_way must be a positive integer"),
    (["--read-heads", "20", "--memory-slots", "16"], "cannot exceed model.memory_slots"),
    (["--labels", "five-hot", "--n-way", "4000"], "at most 3125"),
    (["--memory-width", "-3"], "model.memory_width must be a positive integer"),
    (["--split", "nonsense"], "unknown Omniglot split"),
    (["--data-root", "/nonexistent/place"], "Omniglot not found"),
    (["--presentations", "25"], "fewer than 25 images"),
])
def test_bad_input_is_one_clear_line(tmp_path, data_root, cache_dir, capsys, args, message):
    base = ["--data-root", str(data_root), "--cache-dir", str(cache_dir), *TINY, "--steps", "1"]
    code = main(["train", *base, *args, "--out", str(tmp_path / "r")])
    err = capsys.readouterr().err
    assert code == 2 and message in err and "Traceback" not in err


def test_bf16_autocast_trains_and_evaluates(tmp_path, data_root, cache_dir):
    run = tmp_path / "run"
    assert main(["train", "--data-root", str(data_root), "--cache-dir", str(cache_dir), *TINY,
                 "--steps", "2", "--precision", "bf16", "--out", str(run)]) == 0
    log = [json.loads(line) for line in (run / "train_log.jsonl").read_text().splitlines()]
    assert all(r["loss"] == r["loss"] for r in log)  # finite, not NaN
    assert "bf16" in (run / "config.toml").read_text()


def test_a_bug_is_a_traceback_not_a_user_error(monkeypatch):
    """Only the package's own error types (and OSError) are reported as one line: a ValueError
    from inside the code is a bug and must surface with its traceback."""
    from fewshot_mann import cli

    def broken(args):
        raise ValueError("a bug, not bad input")

    monkeypatch.setattr(cli, "cmd_evaluate", broken)
    with pytest.raises(ValueError, match="a bug"):
        cli.main(["evaluate", "--checkpoint", "x.pt", "--out", "unused"])
