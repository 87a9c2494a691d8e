"""The comparison's training queues come from the one plan: on the CPU budget they are the very
commands that trained the committed checkpoints of results/compare-runs (the former
scripts/run_comparison.sh; its ProtoNets and MAML commands in today's `fewshot-mann train
--method` form, the same settings), and every run of the plan has exactly one queue."""

from __future__ import annotations

import shlex
import sys
from pathlib import Path

from experiments.compare import NOT_ON_CPU, PLAN, QUEUES, STAGES
from experiments.queue import main, run_queues, stage_commands, stage_runs

T = "fewshot-mann train --data-root D --threads 1 --quiet"
P = "--model mann --encoder convbase --encoder-init R/protonet-1shot/model.pt --freeze-encoder"
MAML5 = "--batch-size 32 --fast-lr 0.4 --adapt-steps 1 --test-adapt-steps 3"
MAML20 = "--batch-size 16 --fast-lr 0.1 --adapt-steps 5 --test-adapt-steps 5 --first-order"
VINYALS = "--split vinyals --image-size 28 --no-rotate"
# scripts/run_comparison.sh before the queues were generated, with RUNS=R and DATA=D, a line a run
# ruff: noqa: E501
SHELL_SCRIPT = {
    "a": [f"{T} --model lstm --split santoro-trainval --n-way 5 --labels one-hot --steps 10000 --out R/lstm-santoro5",
          f"{T} --model feedforward --split santoro-trainval --n-way 5 --labels one-hot --steps 2000 --out R/feedforward-santoro5",
          f"{T} --model feedforward --split santoro-trainval --n-way 15 --labels five-hot --steps 1000 --out R/feedforward-santoro15",
          f"{T} --model lstm --split santoro-trainval --n-way 15 --labels five-hot --steps 4000 --out R/lstm-santoro15",
          f"{T} --model mann --split santoro-trainval --n-way 15 --labels five-hot --steps 5000 --out R/mann-santoro15",
          f"{T} --method protonet --shots 1 --steps 5000 --out R/protonet-1shot"],
    "b": [f"{T} --model mann --encoder none {VINYALS} --n-way 5 --labels one-hot --steps 10000 --out R/mann-vinyals5",
          f"{T} --method protonet --shots 5 --steps 4000 --out R/protonet-5shot",
          f"{T} --method maml --n-way 5 --shots 1 {MAML5} --steps 1500 --out R/maml-5w1s",
          f"{T} --method maml --n-way 5 --shots 5 {MAML5} --steps 600 --out R/maml-5w5s"],
    "c": [f"{T} --model mann --encoder none {VINYALS} --n-way 20 --labels one-hot --steps 10000 --out R/mann-vinyals20"],
    "d": [f"{T} --method maml --n-way 20 --shots 1 {MAML20} --steps 7000 --out R/maml-20w1s"],
    "e": [f"{T} --method maml --n-way 20 --shots 5 {MAML20} --steps 1000 --out R/maml-20w5s"],
    "f": [f"{T} --model mann --encoder conv {VINYALS} --n-way 5 --labels one-hot --steps 4500 --time-limit 8400 --out R/mann-conv-vinyals5"],
    "g": [f"{T} {P} {VINYALS} --n-way 5 --labels one-hot --steps 5000 --out R/mann-pretrained-vinyals5",
          f"{T} {P} {VINYALS} --n-way 20 --presentations 6 --labels one-hot --steps 8000 --out R/mann-pretrained-vinyals20"],
}


def test_cpu_queues_are_what_trained_the_committed_checkpoints():
    generated = {}
    for stage in (1, 2, 3, 4):
        generated.update(stage_commands(stage, Path("R"), "D", "cpu"))
    assert {q: [shlex.join(c) for c in commands] for q, commands in generated.items()} \
        == SHELL_SCRIPT
    assert stage_commands(5, Path("R"), "D", "cpu") == {"h": []}  # the GPU run


def test_every_run_has_one_queue_and_both_budgets_or_a_reason():
    queued = [run.folder for stage in STAGES for queue in stage_runs(stage, "full")[0].values()
              for run in queue]
    trained = [run.folder for run in PLAN if run.folder is not None]
    assert sorted(queued) == sorted(trained) and len(set(trained)) == len(trained)
    assert sorted(q for queues in STAGES.values() for q in queues) == sorted(QUEUES)
    for run in PLAN:
        if run.folder is None:  # scikit-learn: nothing to train
            assert run.queue == "" and run.command == ""
            continue
        assert run.steps > 0 and run.place >= 1
        assert (run.cpu_steps is None) == (run.folder in NOT_ON_CPU), run.folder
        if run.cpu_steps is not None:
            assert run.cpu_steps <= run.steps, run.folder  # a cut budget, never a longer one
        assert f"--steps {run.steps} " in run.command


def test_full_budget_queues_run_the_plan_commands():
    runs = {run.folder: run for run in PLAN}
    for stage in STAGES:
        for commands in stage_commands(stage, Path("R"), "D", "full").values():
            for argv in commands:
                run = runs[Path(argv[-1]).name]
                plan = shlex.split(run.command.format(out="R/" + run.folder, runs="R"))
                program = len(shlex.split(run.program))
                assert argv == [*plan[:program], "--data-root", "D", "--quiet",
                                *plan[program:]]


def test_print_and_run(tmp_path, capsys):
    assert main([str(tmp_path / "runs"), "4", "--data-root", "D", "--print"]) == 0
    printed = capsys.readouterr().out
    assert "mann-conv-vinyals20: not on a CPU queue" in printed
    assert "--steps 4500 --time-limit 8400" in printed and not (tmp_path / "runs").exists()

    ok = [sys.executable, "-c", "print('trained')"]
    failing = [sys.executable, "-c", "raise SystemExit(3)"]
    failed = run_queues({"x": [failing, ok], "y": [ok]}, tmp_path / "runs")
    assert len(failed) == 1 and failed[0].startswith("queue x: exit status 3")
    log = (tmp_path / "runs" / "queue_x.log").read_text()
    assert log.endswith("trained\n")  # the queue goes on after a failure
    assert (tmp_path / "runs" / "queue_y.log").read_text().count("trained") == 2  # $ line too
