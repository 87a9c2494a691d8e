#!/usr/bin/env bash
# The device tool carries the working tree to a lent GPU machine within 64 MiB (tracked files,
# untracked files git does not ignore, and the carried paths such as .gpu/). The committed
# checkpoints under results/ alone come near that, so before a GPU call take them out of the
# working tree (not out of git), and put them back after:
#
#     bash scripts/gpu_tree.sh slim      # delete tracked files under results/ over 200 KB,
#                                        # except the ones scripts/gpu_session.sh reads
#     bash scripts/gpu_tree.sh size      # bytes that would travel, with .gpu/
#     bash scripts/gpu_tree.sh restore   # git checkout -- results: every file back from git
#
# `slim` refuses while results/ has uncommitted changes, so that it never deletes work.
set -eu
cd "$(git rev-parse --show-toplevel)"
KEEP="results/compare-runs/protonet-1shot/model.pt"  # gpu_session.sh: scale, kv
LIMIT=$((64 * 1024 * 1024))

travelling_bytes() {
    { git ls-files -z; git ls-files -z --others --exclude-standard; } \
        | xargs -0 -r stat -c %s 2>/dev/null | awk '{s += $1} END {print s + 0}'
}

case "${1:-}" in
  slim)
    if ! git diff --quiet -- results || [ -n "$(git ls-files --others --exclude-standard results)" ]
    then
        echo "results/ has uncommitted changes: commit them first" >&2
        exit 1
    fi
    git ls-files -z results | while IFS= read -r -d '' path; do
        [ -f "$path" ] && [ ! -L "$path" ] || continue
        [ "$(stat -c %s "$path")" -gt 204800 ] || continue
        case " $KEEP " in *" $path "*) continue ;; esac
        rm -- "$path"
    done
    bash "$0" size ;;
  size)
    tree=$(travelling_bytes)
    gpu=$(du -sb .gpu 2>/dev/null | cut -f1 || true)
    total=$((tree + ${gpu:-0}))
    echo "working tree $tree bytes + .gpu ${gpu:-0} bytes = $total of $LIMIT"
    [ "$total" -le "$LIMIT" ] || { echo "over the device tool's limit" >&2; exit 1; } ;;
  restore)
    git checkout -- results
    echo "results/ restored from git" ;;
  *)
    echo "usage: bash scripts/gpu_tree.sh slim|size|restore" >&2
    exit 2 ;;
esac
