#!/usr/bin/env bash
# Train the runs of the comparison report on a 2-core CPU, with the step budgets cut to fit it:
# the queues of one stage, one per core, one torch thread per run. The commands, budgets and
# stages are generated from the plan (experiments/compare.py: PLAN, QUEUES, STAGES) by
# `python -m experiments.queue`, which this calls; `--print` shows them, `--budget full` runs the
# plan's full budgets instead (about 22 core-hours). The report records, for every checkpoint,
# the exact training command it came from (steps included).
#
#   scripts/run_comparison.sh [RUNS_DIR] [STAGE] [--print] [--budget cpu|full]
#                                                  (default runs/compare, stage 1)
set -euo pipefail
REPO=$(cd "$(dirname "$0")/.." && pwd)
RUNS=${1:-runs/compare}
STAGE=${2:-1}
PYTHONPATH=$REPO${PYTHONPATH:+:$PYTHONPATH} exec "${PYTHON:-python}" -m experiments.queue \
    "$RUNS" "$STAGE" "${@:3}"
