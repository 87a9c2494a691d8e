#!/usr/bin/env bash
# Train the runs of the comparison report (experiments/compare.py) on a 2-core CPU, with step
# budgets cut to about 50 minutes per core: two queues, one per core, one torch thread each.
# The full budgets of compare.PLAN need about 22 core-hours; the report records, for every
# checkpoint, the exact training command it came from (steps included).
#
#   scripts/run_comparison.sh [RUNS_DIR] [STAGE]     (default runs/compare, stage 1)
#
# Stage 1 is the first 50 minutes (queues a and b); stage 2 (queues c and d, about 65 minutes)
# adds the 20-way MANN and the 20-way 1-shot MAML; stage 3 (queue e, one core, about 40
# minutes) the 20-way 5-shot MAML. Stage 4 (queues f and g, about 2 hours) needs the ProtoNets
# run of stage 1: the MANN with the conv encoder, 5-way (its 20-way run, at 6.6 s a step, does
# not fit), and the MANN on the frozen ProtoNets CNN, 5-way then 20-way.
set -euo pipefail
RUNS=${1:-runs/compare}
STAGE=${2:-1}
DATA=${FEWSHOT_MANN_DATA:-../shared/data/omniglot}
T="fewshot-mann train --data-root $DATA --threads 1 --quiet"
B="python -m fewshot_mann.baselines.train --data-root $DATA --threads 1 --quiet"
mkdir -p "$RUNS"

queue_a() {
  $T --model lstm --split santoro --n-way 5 --labels one-hot --steps 10000 --out "$RUNS/lstm-santoro5"
  $T --model feedforward --split santoro --n-way 5 --labels one-hot --steps 2000 --out "$RUNS/feedforward-santoro5"
  $T --model feedforward --split santoro --n-way 15 --labels five-hot --steps 1000 --out "$RUNS/feedforward-santoro15"
  $T --model lstm --split santoro --n-way 15 --labels five-hot --steps 4000 --out "$RUNS/lstm-santoro15"
  $T --model mann --split santoro --n-way 15 --labels five-hot --steps 5000 --out "$RUNS/mann-santoro15"
  $B --method protonet --shots 1 --steps 5000 --out "$RUNS/protonet-1shot"
}

queue_b() {
  $T --model mann --encoder none --split vinyals --image-size 28 --no-rotate --n-way 5 --labels one-hot --steps 10000 --out "$RUNS/mann-vinyals5"
  $B --method protonet --shots 5 --steps 4000 --out "$RUNS/protonet-5shot"
  $B --method maml --ways 5 --shots 1 --batch 32 --fast-lr 0.4 --adapt-steps 1 --test-adapt-steps 3 --steps 1500 --out "$RUNS/maml-5w1s"
  $B --method maml --ways 5 --shots 5 --batch 32 --fast-lr 0.4 --adapt-steps 1 --test-adapt-steps 3 --steps 600 --out "$RUNS/maml-5w5s"
}

queue_c() {
  $T --model mann --encoder none --split vinyals --image-size 28 --no-rotate --n-way 20 --labels one-hot --steps 10000 --out "$RUNS/mann-vinyals20"
}

queue_d() {
  $B --method maml --ways 20 --shots 1 --batch 16 --fast-lr 0.1 --adapt-steps 5 --test-adapt-steps 5 --first-order --steps 7000 --out "$RUNS/maml-20w1s"
}

queue_e() {
  $B --method maml --ways 20 --shots 5 --batch 16 --fast-lr 0.1 --adapt-steps 5 --test-adapt-steps 5 --first-order --steps 1000 --out "$RUNS/maml-20w5s"
}

queue_f() {
  $T --model mann --encoder conv --split vinyals --image-size 28 --no-rotate --n-way 5 --labels one-hot --steps 4500 --time-limit 8400 --out "$RUNS/mann-conv-vinyals5"
}

queue_g() {
  P="--model mann --encoder convbase --encoder-init $RUNS/protonet-1shot/model.pt --freeze-encoder"
  $T $P --split vinyals --image-size 28 --no-rotate --n-way 5 --labels one-hot --steps 5000 --out "$RUNS/mann-pretrained-vinyals5"
  $T $P --split vinyals --image-size 28 --no-rotate --n-way 20 --presentations 6 --labels one-hot --steps 8000 --out "$RUNS/mann-pretrained-vinyals20"
}

case $STAGE in
  1) queues=(queue_a queue_b) ;;
  2) queues=(queue_c queue_d) ;;
  3) queues=(queue_e) ;;
  4) queues=(queue_f queue_g) ;;
  *) echo "unknown stage $STAGE: 1, 2, 3 or 4" >&2; exit 2 ;;
esac
start=$(date +%s)
pids=()
for core in "${!queues[@]}"; do  # one queue per core
  q=${queues[$core]}
  taskset -c "$core" bash -c "$(declare -f "$q"); T='$T'; B='$B'; RUNS='$RUNS'; $q" \
    > "$RUNS/$q.log" 2>&1 &
  pids+=($!)
done
for pid in "${pids[@]}"; do wait "$pid"; done
echo "comparison runs done in $(( $(date +%s) - start )) s"
