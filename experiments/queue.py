"""The comparison's training queues, generated from `experiments.compare.PLAN`: the commands of
one stage, one queue per core (pinned with taskset, one torch thread per run), run or printed.

    python -m experiments.queue RUNS_DIR STAGE [--budget cpu|full] [--data-root DIR] [--print]

--budget cpu (the default) trains each run with its budget cut to fit a CPU, as the
checkpoints of results/compare-runs were trained; --budget full with the plan's full budget
(about 22 core-hours in all). Stages and queues: `experiments.compare.STAGES` and `QUEUES`.
Queue q writes RUNS_DIR/queue_q.log; it goes on after a run that fails, and the exit status
says whether any did.
"""

from __future__ import annotations

import argparse
import os
import shlex
import shutil
import subprocess
import sys
import threading
import time
from pathlib import Path

from .compare import NOT_ON_CPU, PLAN, STAGES, Run

DATA = os.environ.get("FEWSHOT_MANN_DATA", "../shared/data/omniglot")


def command(run: Run, runs: Path, data_root: str, budget: str = "cpu") -> list[str]:
    """The arguments that train `run` into runs/<its folder>: on a CPU queue, its CPU budget
    (ValueError if it has none); else the plan's full-budget command."""
    if budget == "cpu":
        if run.cpu_steps is None:
            raise ValueError(f"{run.folder} has no CPU budget")
        head, steps, options = ["--threads", "1", "--quiet"], run.cpu_steps, run.cpu_options
    else:
        head, steps, options = ["--quiet"], run.steps, run.options
    return [*shlex.split(run.program), "--data-root", data_root, *head,
            *(arg.format(runs=runs) for arg in shlex.split(run.args)), "--steps", str(steps),
            *shlex.split(options), "--out", str(runs / run.folder)]


def stage_runs(stage: int, budget: str = "cpu") -> tuple[dict[str, list[Run]], list[Run]]:
    """The runs of a stage, queue by queue in order, and those left out (no CPU budget)."""
    queues: dict[str, list[Run]] = {name: [] for name in STAGES[stage]}
    left_out = []
    for run in sorted(PLAN, key=lambda r: r.place):
        if run.queue in queues:
            if budget == "cpu" and run.cpu_steps is None:
                left_out.append(run)
            else:
                queues[run.queue].append(run)
    return queues, left_out


def stage_commands(stage: int, runs: Path, data_root: str = DATA,
                   budget: str = "cpu") -> dict[str, list[list[str]]]:
    """queue name -> the commands it runs, in order."""
    queues, _ = stage_runs(stage, budget)
    return {name: [command(run, runs, data_root, budget) for run in queue]
            for name, queue in queues.items()}


def run_queues(queues: dict[str, list[list[str]]], runs: Path) -> list[str]:
    """Each queue in a process chain of its own, queue i pinned to core i; the failures."""
    runs.mkdir(parents=True, exist_ok=True)
    taskset = shutil.which("taskset")
    if taskset is None:
        print("taskset not found: the queues run unpinned", file=sys.stderr)
    failed: list[str] = []

    def work(core: int, name: str, commands: list[list[str]]) -> None:
        with open(runs / f"queue_{name}.log", "w") as log:
            for argv in commands:
                log.write(f"$ {shlex.join(argv)}\n")
                log.flush()
                pin = [taskset, "-c", str(core)] if taskset else []
                code = subprocess.run([*pin, *_executable(argv)], stdout=log,
                                      stderr=subprocess.STDOUT, check=False).returncode
                if code:
                    failed.append(f"queue {name}: exit status {code}: {shlex.join(argv)}")

    threads = [threading.Thread(target=work, args=(core, name, commands))
               for core, (name, commands) in enumerate(queues.items())]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return failed


def _executable(argv: list[str]) -> list[str]:
    """`fewshot-mann` and `python` of this interpreter's environment."""
    if argv[0] == "fewshot-mann":
        return [sys.executable, "-m", "fewshot_mann.cli", *argv[1:]]
    if argv[0] == "python":
        return [sys.executable, *argv[1:]]
    return argv


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("runs", type=Path, metavar="RUNS_DIR", help="one sub-folder per run")
    parser.add_argument("stage", type=int, choices=sorted(STAGES), metavar="STAGE",
                        help=f"one of {', '.join(map(str, sorted(STAGES)))}")
    parser.add_argument("--budget", choices=("cpu", "full"), default="cpu")
    parser.add_argument("--data-root", default=DATA,
                        help="folder holding omniglot-py/ (default $FEWSHOT_MANN_DATA or "
                             "../shared/data/omniglot)")
    parser.add_argument("--print", action="store_true", help="print the commands, run nothing")
    args = parser.parse_args(argv)
    queues = stage_commands(args.stage, args.runs, args.data_root, args.budget)
    for run in stage_runs(args.stage, args.budget)[1]:
        print(f"# {run.folder}: not on a CPU queue ({NOT_ON_CPU[run.folder]})",
              file=sys.stdout if args.print else sys.stderr)
    if args.print:
        for core, (name, commands) in enumerate(queues.items()):
            print(f"# queue {name}, core {core}, log {args.runs / f'queue_{name}.log'}")
            print("\n".join(shlex.join(c) for c in commands))
        return 0
    started = time.monotonic()
    failed = run_queues({name: commands for name, commands in queues.items() if commands},
                        args.runs)
    print(f"comparison runs done in {time.monotonic() - started:.0f} s")
    for line in failed:
        print(f"failed: {line}", file=sys.stderr)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
