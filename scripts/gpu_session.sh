#!/usr/bin/env bash
# Every GPU measurement of results/ in one script, for a machine with a CUDA GPU and the
# CUDA PyTorch image (torch, torchvision, tqdm, pillow, scikit-learn, matplotlib installed;
# learn2learn is not needed). Run from the repository root:
#
#     OUT=results/gpu bash scripts/gpu_session.sh [TTA_BATCH] [TTA_LR] [TTA_MAX_SECONDS]
#
# Omniglot is taken from $FEWSHOT_MANN_DATA, or unpacked from .gpu/omniglot.tgz (a tar of
# omniglot-py/ made with `tar --format=posix -czf .gpu/omniglot.tgz omniglot-py`, which keeps
# the files' mtimes, so a decoded cache in data/cache/ made from the same files stays valid).
# Each phase has its own time limit, so one failure does not cost the others.
set -u
OUT=${OUT:?set OUT to the folder for the results}
TTA_BATCH=${1:-64}
TTA_LR=${2:-3e-3}
TTA_MAX_SECONDS=${3:-120}
PY=${PYTHON:-python3}
export PYTHONPATH=$PWD${PYTHONPATH:+:$PYTHONPATH} PYTHONUNBUFFERED=1
mkdir -p "$OUT"
if [ -z "${FEWSHOT_MANN_DATA:-}" ]; then
    mkdir -p /tmp/omniglot && tar xzf .gpu/omniglot.tgz -C /tmp/omniglot
    export FEWSHOT_MANN_DATA=/tmp/omniglot
fi
phase() { echo; echo "=== $1 ($(date -u +%T))"; }

phase machine
nvidia-smi --query-gpu=name,memory.total,driver_version,clocks.max.sm --format=csv
$PY -c "import torch, sys; print(sys.version.split()[0], torch.__version__, torch.cuda.get_device_name())"

phase "CUDA tests"
timeout 240 $PY -m pytest -q -p no:cacheprovider tests/test_cuda.py 2>&1 | tee "$OUT/test_cuda.log"

phase "bench, eager"
timeout 300 $PY -m fewshot_mann.cli bench --device cuda --seconds 0.5 \
    --batch-sizes 16,64,256,1024,4096,16384 --reference-max-batch 16 \
    --out "$OUT/bench-eager.json"

phase "bench, CUDA graphs"
timeout 240 $PY -m fewshot_mann.cli bench --device cuda --seconds 0.5 --cuda-graph \
    --backends batched --batch-sizes 16,64,256,1024,4096,16384 --memory-slots 128 \
    --out "$OUT/bench-cuda-graph.json"

phase "time to 82.8 %"
timeout $((TTA_MAX_SECONDS + 150)) $PY scripts/time_to_accuracy.py --device cuda --cuda-graph \
    --batch-size "$TTA_BATCH" --lr "$TTA_LR" --eval-every 100 --max-seconds "$TTA_MAX_SECONDS" \
    --run-dir /tmp/tta --out "$OUT/time-to-accuracy.json" 2>&1 | tr '\r' '\n' | grep -v "^train:"
phase done
