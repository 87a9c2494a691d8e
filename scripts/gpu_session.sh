#!/usr/bin/env bash
# Every GPU measurement of results/, for a machine with a CUDA GPU and the CUDA PyTorch image
# (torch, torchvision, tqdm, pillow, scikit-learn, matplotlib; learn2learn is not needed).
# Two parts, each well inside a 10-minute call; run from the repository root:
#
#     OUT=DIR bash scripts/gpu_session.sh measure [TTA_BATCH] [TTA_LR] [TTA_MAX_SECONDS]
#         CUDA tests, `fewshot-mann bench` eager and with CUDA graphs, time to 82.8 %
#     OUT=DIR bash scripts/gpu_session.sh conv [MAX_SECONDS_PER_RUN]
#         MANN + conv encoder, Vinyals split, 5-way and 20-way (the comparison's runs);
#         writes DIR/conv-runs.tar (each run folder)
#
# Omniglot comes from $FEWSHOT_MANN_DATA, or is unpacked from .gpu/omniglot.tgz (made with
# `tar --format=posix -czf .gpu/omniglot.tgz omniglot-py`, which keeps the files' mtimes, so
# the decoded caches .gpu/omniglot-<size>px.pt.gz made here from the same files stay valid).
# Each phase has its own time limit, so one failure does not cost the others.
set -u
OUT=${OUT:?set OUT to the folder for the results}
PART=${1:?measure or conv}
PY=${PYTHON:-python3}
export PYTHONPATH=$PWD${PYTHONPATH:+:$PYTHONPATH} PYTHONUNBUFFERED=1
mkdir -p "$OUT"
if [ -z "${FEWSHOT_MANN_DATA:-}" ]; then
    mkdir -p /tmp/omniglot data/cache
    [ -d /tmp/omniglot/omniglot-py ] || tar xzf .gpu/omniglot.tgz -C /tmp/omniglot
    for gz in .gpu/omniglot-*px.pt.gz; do
        [ -e "$gz" ] && gunzip -c "$gz" > "data/cache/$(basename "${gz%.gz}")"
    done
    export FEWSHOT_MANN_DATA=/tmp/omniglot
fi
phase() { echo; echo "=== $1 ($(date -u +%T))"; }
quiet() { tr '\r' '\n' | grep -av "^train:"; }

phase machine
nvidia-smi --query-gpu=name,memory.total,driver_version,clocks.max.sm --format=csv
$PY -c "import torch, sys; print(sys.version.split()[0], torch.__version__, torch.cuda.get_device_name())"

if [ "$PART" = measure ]; then
    TTA_BATCH=${2:-64} TTA_LR=${3:-3e-3} TTA_MAX_SECONDS=${4:-100}
    phase "CUDA tests"
    timeout 180 $PY -m pytest -q -p no:cacheprovider tests/test_cuda.py 2>&1 \
        | tee "$OUT/test_cuda.log"
    GRAPH=--cuda-graph
    grep -q " failed\| error" "$OUT/test_cuda.log" && GRAPH=""  # time to accuracy: eager then

    phase "bench, eager"
    timeout 180 $PY -m fewshot_mann.cli bench --device cuda --seconds 0.3 \
        --batch-sizes 16,64,256,1024,4096,16384 --reference-max-batch 16 \
        --out "$OUT/bench-eager.json"

    phase "bench, CUDA graphs"
    timeout 120 $PY -m fewshot_mann.cli bench --device cuda --seconds 0.3 --cuda-graph \
        --backends batched --batch-sizes 16,64,256,1024,4096,16384 --memory-slots 128 \
        --out "$OUT/bench-cuda-graph.json"

    phase "time to 82.8 % ($GRAPH)"
    timeout $((TTA_MAX_SECONDS + 150)) $PY scripts/time_to_accuracy.py --device cuda $GRAPH \
        --batch-size "$TTA_BATCH" --lr "$TTA_LR" --eval-every 100 \
        --max-seconds "$TTA_MAX_SECONDS" --run-dir /tmp/gpu-session-tta --overwrite \
        --out "$OUT/time-to-accuracy.json" 2>&1 | quiet
elif [ "$PART" = conv ]; then
    MAX_SECONDS=${2:-150}
    # the comparison's step budgets (fewshot_mann/compare.py); --time-limit is the safety net
    for run in "5 6000" "20 1500"; do
        set -- $run
        phase "MANN + conv encoder, vinyals $1-way, $2 steps"
        timeout $((MAX_SECONDS + 60)) $PY -m fewshot_mann.cli train --model mann \
            --encoder conv --split vinyals --image-size 28 --no-rotate --n-way "$1" \
            --labels one-hot --steps "$2" --device cuda --cuda-graph --eval-every 250 \
            --checkpoint-every 250 \
            --time-limit "$MAX_SECONDS" --out "/tmp/runs/mann-conv-vinyals$1" 2>&1 | quiet
    done
    tar cf "$OUT/conv-runs.tar" -C /tmp/runs .
fi
phase done
