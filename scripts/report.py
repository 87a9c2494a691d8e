"""Regenerate the comparison report: results/REPORT.md, results/report.json and the plots.

Evaluates every checkpoint of `experiments.compare.PLAN` found under --runs on the shared test
episodes (runs without a checkpoint are listed as "not run" with the command that trains them),
writes one record per method and setting to <out>/compare/, then the report. Nothing is
trained here: long trainings are run beforehand (or their committed checkpoints reused).

    python scripts/report.py --runs runs/compare --data-root ../shared/data/omniglot
    python scripts/report.py --reuse          # only evaluate what changed since the last time
    python scripts/report.py --episodes 100   # a quick look (the report says how many)
"""

from __future__ import annotations

import argparse
import shlex
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def main(argv: list[str] | None = None) -> int:
    if str(REPO) not in sys.path:  # experiments/ stands beside the package, not installed
        sys.path.insert(0, str(REPO))
    from experiments.compare import Context, evaluate_plan
    from experiments.report import write_report

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=Path, default=Path("runs/compare"),
                        help="folder holding one sub-folder per run (see compare.PLAN)")
    parser.add_argument("--out", type=Path, default=Path("results"))
    parser.add_argument("--episodes", type=int, default=1000, help="test episodes per setting")
    parser.add_argument("--reuse", action="store_true",
                        help="keep stored scores of unchanged checkpoints (same bytes, same "
                             "number of episodes) instead of evaluating them again")
    parser.add_argument("--data-root", default=None,
                        help="folder holding omniglot-py/ (default $FEWSHOT_MANN_DATA or data/)")
    parser.add_argument("--cache-dir", default=None)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--quiet", action="store_true")
    args = parser.parse_args(argv)
    if args.episodes < 1:
        parser.error("--episodes must be positive")
    command = shlex.join(["python", "scripts/report.py",
                          *(sys.argv[1:] if argv is None else argv)])
    ctx = Context(runs=args.runs, results=args.out, episodes=args.episodes,
                  data_root=args.data_root, cache_dir=args.cache_dir, device=args.device,
                  reuse=args.reuse, command=command, progress=not args.quiet)
    paths = write_report(evaluate_plan(ctx), args.out, command, args.episodes)
    print("wrote " + ", ".join(str(p) for p in paths.values()))
    return 0


if __name__ == "__main__":
    sys.exit(main())
