"""The MANN plateau: what shortens it. Trains the paper configuration (5-way, 10 presentations,
santoro split, 20x20, LSTM 200, memory 128 x 40, 4 heads) under several recipes for the same
number of episodes and compares held-out 2nd-presentation accuracy against episodes seen.

Each variant is a plain `fewshot-mann train` run (one CPU thread each, `--jobs` at a time);
the summary goes to results/plateau/: README.md (table), ablation.json, ablation.png.

    python scripts/ablation.py --data-root ../shared/data/omniglot [--episodes 64000] [--jobs 2]
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path

import torch

from fewshot_mann.evaluation.plots import plot_learning_curves
from fewshot_mann.runtime import device_name

# name -> (description, extra flags, [model] TOML lines)
VARIANTS: dict[str, tuple[str, list[str], str]] = {
    "paper-lr1e-3-b32-beta1.7": (
        "Adam 1e-3, batch 32, key strength starting at 1.7 (softplus of a zero bias, plus 1)",
        ["--lr", "1e-3", "--lr-min", "1e-3", "--batch-size", "32"], "key_strength_init = 1.7"),
    "lr1e-3-b32-beta11": (
        "Adam 1e-3, batch 32, key strength starting at 11",
        ["--lr", "1e-3", "--lr-min", "1e-3", "--batch-size", "32"], "key_strength_init = 11.0"),
    "lr3e-3-b16-beta11": (
        "Adam 3e-3, batch 16, key strength starting at 11 (the package defaults, constant lr)",
        ["--lr", "3e-3", "--lr-min", "3e-3", "--batch-size", "16"], "key_strength_init = 11.0"),
    "lr3e-3-b16-no-strength": (
        "Adam 3e-3, batch 16, no key strength (eq. 18 exactly as printed)",
        ["--lr", "3e-3", "--lr-min", "3e-3", "--batch-size", "16"], "key_strength = false"),
}

def command(name: str, args: argparse.Namespace) -> list[str]:
    """The training command of a variant (its [model] TOML written beside its run folder)."""
    _, flags, toml = VARIANTS[name]
    run = args.runs / name
    run.mkdir(parents=True, exist_ok=True)
    (run.parent / f"{name}.toml").write_text(f"[model]\n{toml}\n")
    batch = int(flags[flags.index("--batch-size") + 1])
    steps = args.episodes // batch
    cmd = [sys.executable, "-m", "fewshot_mann.cli", "train", "--config",
           str(run.parent / f"{name}.toml"), *flags, "--steps", str(steps), "--seed",
           str(args.seed), "--threads", "1", "--eval-every", str(8000 // batch),
           "--eval-episodes", str(args.eval_episodes), "--checkpoint-every", str(steps),
           "--log-every", str(8000 // batch), "--quiet", "--out", str(run)]
    if args.data_root:
        cmd += ["--data-root", args.data_root]
    return cmd


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data-root", default=None)
    parser.add_argument("--episodes", type=int, default=64_000,
                        help="training episodes per variant")
    parser.add_argument("--eval-episodes", type=int, default=500)
    parser.add_argument("--jobs", type=int, default=2, help="variants trained at once")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--runs", type=Path, default=Path("runs/ablation"))
    parser.add_argument("--out", type=Path, default=Path("results/plateau"))
    parser.add_argument("--only", nargs="*", default=None, help="variant names to (re)run")
    args = parser.parse_args(argv)

    todo = args.only if args.only is not None else list(VARIANTS)
    for name in todo:
        if (args.runs / name / "checkpoint.pt").exists():
            (args.runs / name / "checkpoint.pt").unlink()
            (args.runs / name / "train_log.jsonl").unlink(missing_ok=True)
    running: list[tuple[str, subprocess.Popen, float]] = []
    queue = list(todo)
    while queue or running:
        while queue and len(running) < args.jobs:
            name = queue.pop(0)
            print("start", name, flush=True)
            running.append((name, subprocess.Popen(command(name, args)), time.time()))
        for item in list(running):
            name, proc, started = item
            if proc.poll() is not None:
                running.remove(item)
                if proc.returncode != 0:
                    print(f"{name} failed with exit code {proc.returncode}", file=sys.stderr)
                    return 1
                print(f"done {name} in {time.time() - started:.0f} s", flush=True)
        time.sleep(2)

    summary = {}
    for name, (description, *_rest) in VARIANTS.items():
        log = args.runs / name / "train_log.jsonl"
        if not log.exists():
            continue
        records = [json.loads(line) for line in log.read_text().splitlines()]
        evals = [r for r in records if "heldout_instance_accuracy" in r]
        summary[name] = {
            "description": description, "command": " ".join(command(name, args)[2:]),
            "curve": [{"episodes": r["episodes"], "elapsed_s": r["elapsed_s"],
                       "heldout_2nd": r["heldout_instance_accuracy"][1],
                       "heldout_10th": r["heldout_instance_accuracy"][-1]} for r in evals]}

    args.out.mkdir(parents=True, exist_ok=True)
    torch.set_num_threads(1)
    machine = device_name(torch.device("cpu"))
    (args.out / "ablation.json").write_text(json.dumps(
        {"machine": machine, "episodes": args.episodes, "seed": args.seed, "variants": summary},
        indent=1) + "\n")
    plot_learning_curves(
        {name: ([c["episodes"] for c in s["curve"]], [100 * c["heldout_2nd"] for c in s["curve"]])
         for name, s in summary.items()}, args.out / "ablation.png",
        ylabel="held-out accuracy, 2nd presentation (%)",
        references={"Santoro et al. 2016: 82.8 %": 82.8}, n_way=5)

    checkpoints = sorted({c["episodes"] for s in summary.values() for c in s["curve"]})
    marks = [e for e in checkpoints if e % 16_000 == 0] or checkpoints
    lines = ["| variant | " + " | ".join(f"{e // 1000}k ep." for e in marks) + " |",
             "|---|" + "---|" * len(marks)]
    for name, s in summary.items():
        at = {c["episodes"]: c["heldout_2nd"] for c in s["curve"]}
        lines.append(f"| `{name}` | " + " | ".join(
            f"{100 * at[e]:.1f}" if e in at else "" for e in marks) + " |")
    table = "\n".join(lines)
    descriptions = "\n".join(f"- `{n}`: {s['description']}" for n, s in summary.items())
    (args.out / "README.md").write_text(f"""# The MANN plateau: what shortens it

Held-out accuracy (%) at the 2nd presentation of a class (5-way, 10 presentations, santoro
split, {args.eval_episodes} fixed held-out episodes per point) against training episodes, for
the paper's model under different training recipes. Same seed ({args.seed}), one CPU thread per
run, on {machine}.

{table}

{descriptions}

![ablation](ablation.png)

Only episodes are compared: the wall-clock in ablation.json depends on what else shared the
machine. Regenerate: `python scripts/ablation.py --episodes {args.episodes}` (commands of each
run in ablation.json).
""")
    print(table)
    return 0


if __name__ == "__main__":
    sys.exit(main())
