"""Accuracy of a life-long memory as classes accumulate: the continual few-shot benchmark.

The 423 test characters of the Vinyals et al. split (unrotated) are written into one
`LifelongMemory` in a seeded random order. As in ANML (Beaulieu et al. 2020), each class's 20
drawings are shuffled with the order's seed: the first 15 (or the first one) are written, the
last 5 are held out. After 10, 50, 100, 200 and 423 classes, every held-out drawing of every
class written so far is queried, and the accuracy is the share answered with its class (a
closed set: no "unknown" threshold). Mean and 95 % CI (Student's t) over the orders.

    python scripts/lifelong_accuracy.py --data-root ../shared/data/omniglot --out results/lifelong

writes accuracy.json ({"15": {"10": acc, ..., "423": acc}, "1": {...}}, fractions),
accuracy_runs.json (every order, the CIs, the bounded memory, command, machine, seconds) and
accuracy.png. `--capacity N` adds the 15-image curve of a memory bounded to N entries.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import statistics
import sys
import tempfile
import time
from pathlib import Path

import torch

from fewshot_mann import LifelongMemory
from fewshot_mann.data.omniglot import character_files
from fewshot_mann.data.splits import unrotated_characters
from fewshot_mann.runtime import device_name
from fewshot_mann.zoo import default_keyspace

CHECKPOINTS = (10, 50, 100, 200, 423)
HELD_OUT = 5  # drawings of each class queried, never written
T95 = {2: 12.706, 3: 4.303, 4: 3.182, 5: 2.776, 6: 2.571, 7: 2.447, 8: 2.365, 9: 2.306,
       10: 2.262}  # two-sided 95 % Student's t for n samples (n - 1 degrees of freedom)
# reference points of the plot: ANML (Beaulieu et al. 2020, 15 images a class)
ANML = {200: 0.80, 400: 0.71}


def one_order(chars: list[list[Path]], seed: int, shots: int, checkpoint: str | None,
              capacity: int | None, views: int = 0) -> dict[int, float]:
    """Accuracy on the held-out drawings of the classes written so far, at each checkpoint."""
    rng = random.Random(seed)
    order = list(range(len(chars)))
    rng.shuffle(order)
    drawings = []
    for c in order:
        files = list(chars[c])
        rng.shuffle(files)
        drawings.append((f"class{c:03d}", files[:shots], files[-HELD_OUT:]))
    accuracy = {}
    with tempfile.TemporaryDirectory() as folder:
        memory = LifelongMemory.create(folder, checkpoint, capacity=capacity, threshold=None,
                                       views=views, progress=False)
        done = 0
        for upto in (n for n in CHECKPOINTS if n <= len(chars)):
            memory.add({name: support for name, support, _ in drawings[done:upto]})
            done = upto
            queries = [(name, q) for name, _, held in drawings[:upto] for q in held]
            answers = memory.query([q for _, q in queries], top_k=1)
            right = sum(a.prediction == name for a, (name, _) in zip(answers, queries,
                                                                      strict=True))
            accuracy[upto] = right / len(queries)
    return accuracy


def summary(runs: list[dict[int, float]]) -> dict[str, dict[str, float]]:
    n = len(runs)
    out: dict[str, dict[str, float]] = {"mean": {}, "ci95": {}}
    for k in runs[0]:
        values = [r[k] for r in runs]
        out["mean"][str(k)] = statistics.fmean(values)
        out["ci95"][str(k)] = (T95[n] * statistics.stdev(values) / n ** 0.5 if n > 1
                               else float("nan"))
    return out


def plot(curves: dict[str, dict], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6.4, 4.2))
    for label, s in curves.items():
        xs = [int(k) for k in s["mean"]]
        ax.errorbar(xs, [100 * v for v in s["mean"].values()],
                    yerr=[100 * v for v in s["ci95"].values()], marker="o", capsize=3,
                    label=label)
    ax.plot(list(ANML), [100 * v for v in ANML.values()], "k^", label="ANML, 15 images")
    ax.set_xscale("log")
    ax.set_xlabel("classes written so far")
    ax.set_ylabel("accuracy on held-out drawings (%)")
    ax.set_title("Omniglot test characters written into one life-long memory")
    ax.grid(alpha=0.3)
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=120)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--data-root", default="../shared/data/omniglot")
    p.add_argument("--checkpoint", default=None,
                   help="key space: a ProtoNets checkpoint or zoo name (default: the zoo's)")
    p.add_argument("--orders", type=int, default=5, help="seeded class orders (seeds 0..N-1)")
    p.add_argument("--shots", default="15,1", help="images written a class, comma-separated")
    p.add_argument("--capacity", type=int, default=0,
                   help="also the 15-image curve of a memory bounded to this many entries")
    p.add_argument("--views", type=int, default=0,
                   help="distorted copies averaged into each key (LifelongMemory views)")
    p.add_argument("--classes", type=int, default=423, help="first N characters (a quick run)")
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--out", default="results/lifelong")
    args = p.parse_args(argv)
    torch.set_num_threads(args.threads)
    started = time.time()
    chars = character_files(args.data_root, unrotated_characters("vinyals", "test"))[:args.classes]
    checkpoint = args.checkpoint or default_keyspace().name
    settings = [(f"{s} image{'s' if s != '1' else ''} a class", int(s), None)
                for s in args.shots.split(",")]
    if args.capacity:
        settings.append((f"15 images a class, capacity {args.capacity}", 15, args.capacity))
    curves, runs = {}, {}
    for label, shots, capacity in settings:
        per_order = []
        for seed in range(args.orders):
            per_order.append(one_order(chars, seed, shots, checkpoint, capacity, args.views))
            print(f"{label}, order {seed}: "
                  + ", ".join(f"{k}: {100 * v:.1f} %" for k, v in per_order[-1].items()),
                  flush=True)
        curves[label] = summary(per_order)
        runs[label] = {"shots": shots, "capacity": capacity,
                       "orders": [{str(k): v for k, v in r.items()} for r in per_order]}
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    plain = {str(shots): curves[label]["mean"] for label, shots, cap in settings if cap is None}
    (out / "accuracy.json").write_text(json.dumps(plain, indent=1) + "\n")
    record = {
        "command": "python scripts/lifelong_accuracy.py " + " ".join(sys.argv[1:]),
        "checkpoint": checkpoint, "views": args.views, "classes": len(chars),
        "held_out_per_class": HELD_OUT,
        "machine": f"{device_name(torch.device('cpu'))}, torch {torch.__version__}, "
                   f"load average {os.getloadavg()[0]:.1f} at the end",
        "seconds": round(time.time() - started, 1),
        "curves": {label: {**curves[label], **runs[label]} for label in curves},
    }
    (out / "accuracy_runs.json").write_text(json.dumps(record, indent=1) + "\n")
    plot(curves, out / "accuracy.png")
    print(f"wrote {out / 'accuracy.json'}, {out / 'accuracy_runs.json'}, {out / 'accuracy.png'} "
          f"in {record['seconds']} s")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
