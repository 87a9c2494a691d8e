"""The committed checkpoints give the numbers recorded beside them (issue 11: the layout change
leaves every number in results/ unchanged). A few records in the default run; all of them under
`-m slow` (`python -m experiments.check_results` does the same from the command line)."""

from __future__ import annotations

from pathlib import Path

import pytest

from experiments.check_results import (
    check_compare,
    check_evaluation,
    compare_records,
    evaluation_records,
)

RESULTS = Path("results")
TOLERANCE = 5e-4  # one changed answer in 1,000 5-way episodes moves an accuracy by 2e-4
QUICK = ["results/santoro-5way/metrics.json", "results/memories/kv/metrics.json",
         "results/compare/mann/santoro5.json", "results/compare/protonet/5w1s.json"]


def check(path: Path, data_root, cache_dir):
    compare = "compare" in path.parts[:2]
    return (check_compare if compare else check_evaluation)(path, str(data_root),
                                                            str(cache_dir))


def test_every_committed_record_is_found():
    evaluations, compared = evaluation_records(RESULTS), compare_records(RESULTS)
    assert {Path(p) for p in QUICK} <= set(evaluations) | set(compared)
    assert len(evaluations) >= 4 and len(compared) >= 30


@pytest.mark.train
@pytest.mark.parametrize("record", QUICK)
def test_a_committed_checkpoint_reproduces_its_record(record, data_root, cache_dir):
    result = check(Path(record), data_root, cache_dir)
    assert result.difference <= TOLERANCE, result


@pytest.mark.slow
def test_every_committed_checkpoint_reproduces_its_record(data_root, cache_dir):
    failures = [r for p in evaluation_records(RESULTS) + compare_records(RESULTS)
                if (r := check(p, data_root, cache_dir)).difference > TOLERANCE]
    assert not failures, failures


@pytest.mark.train
def test_a_record_is_checked_against_the_run_of_its_own_setting(data_root, cache_dir):
    """feedforward has one run per Santoro setting: the 15-way record must be scored by the
    15-way checkpoint (it scores 20 % on 5-way episodes, 6 % on 15-way)."""
    result = check(RESULTS / "compare/feedforward/santoro15.json", data_root, cache_dir)
    assert result.difference <= TOLERANCE, result
