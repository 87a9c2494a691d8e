"""Re-evaluate the committed checkpoints and compare with the numbers recorded beside them.

    python -m experiments.check_results [--only SUBSTRING] [--tolerance 5e-4]

Two kinds of record, both written by commands of this repository:
    results/**/metrics.json     `fewshot-mann evaluate` of a committed model.pt (the one in the
                                same folder, or in the folder above): evaluated again with the
                                recorded episodes, presentations per class and seed
    results/compare/<method>/<setting>.json
                                experiments.compare's score of a results/compare-runs checkpoint
                                (or a scikit-learn baseline) on the shared test episodes: scored
                                again, into a temporary folder
One line per record: the largest difference between recorded and measured accuracies. Exit
status 1 when any differs by more than --tolerance (default 5e-4; one changed answer in 1,000
5-way episodes moves an accuracy by 2e-4, and the same CPU reproduces them exactly).
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys
import tempfile
from collections.abc import Sequence
from pathlib import Path
from typing import Any, NamedTuple

from fewshot_mann.config import default_cache_dir, default_data_root
from fewshot_mann.evaluation.heldout import evaluate_checkpoint
from fewshot_mann.runtime import set_process_flags

from .compare import PLAN, Context, evaluate_run

RESULTS = Path("results")


class Check(NamedTuple):
    name: str
    difference: float  # largest |recorded - measured| over the accuracies; inf: not comparable
    detail: str


def evaluation_records(results: Path = RESULTS) -> list[Path]:
    """Every metrics.json of `fewshot-mann evaluate` beside (or below) a committed model.pt."""
    return sorted(p for p in results.rglob("metrics.json")
                  if "compare" not in p.relative_to(results).parts[:1] and checkpoint_for(p))


def compare_records(results: Path = RESULTS) -> list[Path]:
    """Every scored record of the comparison (status "ok") whose checkpoint is in the tree (or
    that needs none): the checkpoints of the longer runs are not committed, and their records
    are checked once those runs are trained again (results/README.md)."""
    def scorable(record: dict[str, Any]) -> bool:
        return record.get("checkpoint") is None or Path(record["checkpoint"]).is_file()
    return sorted(p for p in (results / "compare").glob("*/*.json")
                  if (r := json.loads(p.read_text())).get("status") == "ok" and scorable(r))


def checkpoint_for(metrics: Path) -> Path | None:
    for folder in (metrics.parent, metrics.parent.parent):
        if (folder / "model.pt").is_file():
            return folder / "model.pt"
    return None


def largest_difference(recorded: dict[str, Any], measured: dict[str, Any]) -> float:
    pairs = list(zip(recorded.get("instance_accuracy") or [],
                     measured.get("instance_accuracy") or [], strict=True))
    if recorded.get("mean") is not None:
        pairs.append((recorded["mean"], measured.get("mean")))
    if not pairs or any(b is None for _, b in pairs):
        return float("inf")
    return max(abs(a - b) for a, b in pairs)


def check_evaluation(metrics: Path, data_root: str, cache_dir: str) -> Check:
    recorded = json.loads(metrics.read_text())
    checkpoint = checkpoint_for(metrics)
    with tempfile.TemporaryDirectory() as out:
        result = evaluate_checkpoint(checkpoint, episodes=recorded["episodes"], out_dir=out,
                                     presentations=recorded["presentations"],
                                     seed=recorded["seed"], device="cpu", progress=False,
                                     data_overrides={"data_root": data_root,
                                                     "cache_dir": cache_dir})
    measured = {"instance_accuracy": result.instance_accuracy}
    second = result.instance_accuracy[1]
    return Check(str(metrics), largest_difference(recorded, measured),
                 f"{checkpoint}, {recorded['episodes']} episodes: 2nd presentation "
                 f"{recorded['instance_accuracy'][1]:.4f} recorded, {second:.4f} measured")


def check_compare(record_path: Path, data_root: str, cache_dir: str) -> Check:
    recorded = json.loads(record_path.read_text())
    run = next((r for r in PLAN if r.method == recorded["method"]
                and recorded["setting"] in r.settings), None)
    if run is None:
        return Check(str(record_path), float("inf"),
                     f"no run {recorded['method']!r} for {recorded['setting']} in PLAN")
    checkpoint = recorded.get("checkpoint")
    runs = Path(checkpoint).parent.parent if checkpoint else RESULTS / "compare-runs"
    with tempfile.TemporaryDirectory() as tmp:
        ctx = Context(runs=runs, results=Path(tmp), episodes=recorded["episodes"],
                      data_root=data_root, cache_dir=cache_dir, progress=False)
        [measured] = evaluate_run(dataclasses.replace(run, settings=(recorded["setting"],)),
                                  ctx)
    measured_dict = dataclasses.asdict(measured)
    key = "mean" if recorded.get("mean") is not None else "instance_accuracy"
    shown = (lambda r: f"{r[key]:.4f}") if key == "mean" else (lambda r: f"{r[key][1]:.4f}")
    detail = (f"{recorded['method']} {recorded['setting']}: {shown(recorded)} recorded, "
              + (f"{shown(measured_dict)} measured" if measured.status == "ok"
                 else f"not scored: {measured.reason}"))
    return Check(str(record_path), largest_difference(recorded, measured_dict), detail)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--only", default="", help="check the records whose path contains this")
    parser.add_argument("--tolerance", type=float, default=5e-4)
    parser.add_argument("--data-root", default=default_data_root())
    parser.add_argument("--cache-dir", default=default_cache_dir())
    parser.add_argument("--threads", type=int, default=1, help="torch CPU threads (0: default)")
    args = parser.parse_args(argv)
    set_process_flags(args.threads, "fp32")
    todo = [(check_evaluation, p) for p in evaluation_records()] + \
        [(check_compare, p) for p in compare_records()]
    todo = [(check, p) for check, p in todo if args.only in str(p)]
    if not todo:
        parser.error(f"no record matches --only {args.only!r}")
    failed = 0
    for check, path in todo:
        result = check(path, args.data_root, args.cache_dir)
        ok = result.difference <= args.tolerance
        failed += not ok
        print(f"{'ok  ' if ok else 'FAIL'} {result.difference:.1e}  {result.name}: "
              f"{result.detail}", flush=True)
    print(f"{len(todo) - failed} of {len(todo)} records reproduced within {args.tolerance:g}")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
