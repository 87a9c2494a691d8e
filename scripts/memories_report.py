"""Per-instance curves of every memory variant on the Santoro 5-way protocol, from the
`fewshot-mann evaluate` outputs already in results/: a markdown table on stdout and
results/memories/curves.png.

    python scripts/memories_report.py
"""

from __future__ import annotations

import json
from pathlib import Path

from fewshot_mann.evaluation.plots import plot_curves

RESULTS = Path(__file__).resolve().parents[1] / "results"
RUNS = {"lrua": RESULTS / "santoro-5way", **{name: RESULTS / "memories" / name
                                              for name in ("ntm", "dnc", "kv")}}


def main() -> None:
    curves, rows = {}, []
    for name, folder in RUNS.items():
        path = folder / "metrics.json"
        if not path.is_file():
            rows.append(f"| {name} | not run | | | | | |")
            continue
        m = json.loads(path.read_text())
        acc, ci = m["instance_accuracy"], m["instance_ci95"]
        log = [json.loads(line) for line in (folder / "train_log.jsonl").read_text().splitlines()]
        episodes, minutes = log[-1]["episodes"], log[-1]["elapsed_s"] / 60
        curves[f"{name} ({episodes:,} episodes)"] = (acc, ci)
        cells = " | ".join(f"{100 * acc[k]:.1f} +- {100 * ci[k]:.1f}" for k in (0, 1, 2, 4, 9))
        rows.append(f"| {name} | {episodes:,} episodes, {minutes:.0f} min | {cells} |")
    plot_curves(curves, RESULTS / "memories" / "curves.png",
                title="Santoro 5-way, held-out classes, 1,000 episodes", n_way=5)
    print("| memory | training | 1st | 2nd | 3rd | 5th | 10th |\n|---|---|---|---|---|---|---|")
    print("\n".join(rows))


if __name__ == "__main__":
    main()
