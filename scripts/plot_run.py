"""A training run at a glance: loss, held-out accuracy and the memory's health against the step,
with rollbacks, stops and curriculum widenings marked (fewshot_mann.evaluation.plots.plot_training).

    python scripts/plot_run.py RUN [RUN ...]      # writes RUN/training.png for each
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from fewshot_mann.config import Config
from fewshot_mann.evaluation.plots import plot_training


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("runs", type=Path, nargs="+", help="run folders (with train_log.jsonl)")
    parser.add_argument("--out", type=Path, help="picture path (one run only; default "
                                                 "RUN/training.png)")
    args = parser.parse_args()
    if args.out and len(args.runs) > 1:
        parser.error("--out names the picture of a single run")
    for run in args.runs:
        log = run / "train_log.jsonl"
        if not log.is_file():
            parser.error(f"{log} does not exist")
        records = [json.loads(line) for line in log.read_text().splitlines() if line.strip()]
        config = run / "config.toml"
        n_way = Config.from_toml(config).episodes.n_way if config.is_file() else None
        print(plot_training(records, args.out or run / "training.png", title=str(run),
                            n_way=n_way))


if __name__ == "__main__":
    main()
