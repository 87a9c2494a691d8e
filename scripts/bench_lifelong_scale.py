"""Scale of the life-long memory's top-k read (`fewshot_mann.lifelong.index.KeyIndex`) against
the dense read of the episodic memories, at 10^3 .. 10^6 stored keys.

    OMP_NUM_THREADS=2 python scripts/bench_lifelong_scale.py --threads 2

Keys: the 32,460 Omniglot images embedded by a ProtoNets checkpoint (64-d, L2-normalised,
cached in data/cache/lifelong/), spread to n keys by drawing an embedding at random and adding
Gaussian noise of expected norm --noise before normalising again; queries are --recall-queries
more such keys, held out (never stored). Uniform random unit keys are the hard case (no
clusters for an index to exploit). Per size and kind:

    add_ms          wall ms per key of filling the index in batches of --batch (refits included)
    add_single_ms   median ms of one add of one key, on the filled index (--single of them)
    set_ms          median ms of overwriting one key; remove_ms of removing one
    query_ms        median ms of one query (batch of 1, top-5) over --queries queries
    recall_at_1     share of the --recall-queries queries whose top-1 is the exact top-1 (a
                    key of the same inner product counts: duplicates)
    bytes_per_key   the growth of the bytes allocated (malloc) over building the index, per
                    key; and the length of KeyIndex.to_bytes per key
    dense_read_ms   median ms of the read w = softmax(beta cos(K, q)), r = w^T K over all n keys
                    (`memory.fused.content_weights`), in torch, batch of 1, on --threads
                    threads and on one (torch's threads, idle on a loaded machine, can cost
                    far more than they give)

Once per run, auto_switch_seconds: the add that takes an "auto" index to its threshold (the
approximate index built from the exact one's keys).
Timings are wall time on a shared machine: the record holds the load average before and after.
"""

from __future__ import annotations

import argparse
import ctypes
import gc
import hashlib
import json
import os
import platform
import sys
import time
from pathlib import Path
from typing import Any

import faiss
import numpy as np
import torch

from fewshot_mann.data.omniglot import load_omniglot
from fewshot_mann.inference.predictor import Predictor
from fewshot_mann.lifelong import index as key_index
from fewshot_mann.lifelong.index import KeyIndex
from fewshot_mann.memory.fused import content_weights
from fewshot_mann.runtime import device_name

CHECKPOINT = "results/compare-runs/protonet-1shot-trainval/model.pt"
TOP_K = 5


# ---- keys ------------------------------------------------------------------------------------
def omniglot_embeddings(checkpoint: str, data_root: str, cache_dir: Path) -> np.ndarray:
    """(32460, E) float32 L2-normalised embeddings of every Omniglot image, cached by the
    checkpoint's sha256."""
    digest = hashlib.sha256(Path(checkpoint).read_bytes()).hexdigest()[:16]
    cache = cache_dir / "lifelong" / f"omniglot-embeddings-{digest}.npy"
    if cache.exists():
        return np.load(cache)
    predictor = Predictor.from_checkpoint(checkpoint, device="cpu")
    images = load_omniglot(data_root, cache_dir, image_size=predictor.prepare.shape[1]).images
    with torch.no_grad():
        embedded = torch.cat([predictor.model.embed(images[i:i + 1024].flatten(1).float() / 255)
                              for i in range(0, len(images), 1024)]).numpy()
    embedded /= np.linalg.norm(embedded, axis=1, keepdims=True)
    cache.parent.mkdir(parents=True, exist_ok=True)
    np.save(cache, embedded)
    return embedded


def unit_rows(x: np.ndarray) -> np.ndarray:
    return (x / np.linalg.norm(x, axis=1, keepdims=True)).astype(np.float32)


def make_keys(base: np.ndarray | None, n: int, noise: float, dim: int,
              rng: np.random.Generator) -> np.ndarray:
    """(n, dim) unit keys: a random row of `base` plus noise of expected norm `noise`
    (per coordinate noise / sqrt(dim)), or, without `base`, uniform on the sphere."""
    out = np.empty((n, dim), np.float32)
    for i in range(0, n, 100_000):  # in chunks: the float64 noise of 10^6 keys is 0.5 GB
        m = min(100_000, n - i)
        gauss = rng.standard_normal((m, dim), dtype=np.float32)
        out[i:i + m] = unit_rows(gauss if base is None else
                                 base[rng.integers(0, len(base), m)] + gauss * noise / dim ** 0.5)
    return out


def nearest_distance(keys: np.ndarray, sample: int = 2000) -> float:
    """Median Euclidean distance of a key to its nearest other key (on `sample` keys)."""
    flat = faiss.IndexFlatIP(keys.shape[1])
    flat.add(keys)
    sims, _ = flat.search(keys[:sample], 2)
    return float(np.median(np.sqrt(np.maximum(2 - 2 * sims[:, 1], 0))))


# ---- measurements ----------------------------------------------------------------------------
class _MallInfo2(ctypes.Structure):
    _fields_ = [(name, ctypes.c_size_t) for name in (
        "arena", "ordblks", "smblks", "hblks", "hblkhd", "usmblks", "fsmblks", "uordblks",
        "fordblks", "keepcost")]


def allocated_bytes() -> int:
    """Bytes the process holds from malloc now (glibc's mallinfo2: heap chunks in use plus
    mmapped ones), unlike the resident set blind to memory freed and reused in between."""
    libc = ctypes.CDLL("libc.so.6")
    libc.mallinfo2.restype = _MallInfo2
    info = libc.mallinfo2()
    return info.uordblks + info.hblkhd


def median_ms(call: Any, args: list[Any]) -> tuple[float, float]:
    """Median and 90th percentile ms of call(a) over the args."""
    times = []
    for a in args:
        start = time.perf_counter()
        call(a)
        times.append(time.perf_counter() - start)
    return float(np.median(times)) * 1e3, float(np.quantile(times, 0.9)) * 1e3


def dense_read_ms(keys: np.ndarray, queries: np.ndarray, beta: float = 10.0) -> float:
    """The episodic memories' read over every slot, one query at a time."""
    memory = torch.from_numpy(keys).unsqueeze(0)  # (1, n, E)
    strength = torch.full((1, 1), beta)

    def read(q: np.ndarray) -> torch.Tensor:
        w = content_weights(memory, torch.from_numpy(q).view(1, 1, -1), strength, 1e-8)
        return torch.bmm(w, memory)  # (1, 1, E): r = w^T K

    with torch.no_grad():
        return median_ms(read, list(queries))[0]


def measure(kind: str, keys: np.ndarray, spare: np.ndarray, queries: np.ndarray,
            truth: np.ndarray, args: argparse.Namespace) -> dict[str, Any]:
    """One record: fill an index of `kind` with `keys`, time single operations with the
    `spare` keys, time and score the queries against `truth` (exact top-1 sims)."""
    n = len(keys)
    gc.collect()
    before = allocated_bytes()
    index = KeyIndex(keys.shape[1], kind)
    start = time.perf_counter()
    for i in range(0, n - args.single, args.batch):
        index.add(keys[i:min(i + args.batch, n - args.single)])
    batched = (time.perf_counter() - start) / (n - args.single) * 1e3
    single = median_ms(index.add, [k[None] for k in keys[n - args.single:]])[0]
    gc.collect()
    memory = (allocated_bytes() - before) / n
    serialised = len(index.to_bytes()) / n
    query, query_p90 = median_ms(lambda q: index.search(q[None], TOP_K),
                                 list(queries[:args.queries]))
    sims, _ = index.search(queries, 1)
    recall = float(np.mean(sims[:, 0] >= truth - 1e-6))
    rng = np.random.default_rng(1)
    ids = rng.choice(n, 2 * args.single, replace=False)
    set_ms = median_ms(lambda i: index.set(np.array([i]), spare[i % len(spare)][None]),
                       list(ids[:args.single]))[0]
    remove_ms = median_ms(lambda i: index.remove(np.array([min(i, len(index) - 1)])),
                          list(ids[args.single:]))[0]
    auto = key_index.AUTO_APPROXIMATE if n >= key_index.AUTO_THRESHOLD else "exact"
    return {"keys": n, "index": kind, "params": index.params, "auto_kind": auto,
            "query_ms": round(query, 4),
            "query_p90_ms": round(query_p90, 4), "add_ms": round(batched, 5),
            "add_batch": args.batch, "add_single_ms": round(single, 4), "set_ms": round(set_ms, 4),
            "remove_ms": round(remove_ms, 4), "recall_at_1": recall,
            "bytes_per_key": round(memory, 1), "bytes_per_key_serialised": round(serialised, 1)}


def auto_switch_seconds(base: np.ndarray, args: argparse.Namespace) -> float:
    """Wall seconds of the single add that takes an "auto" index to the threshold: the
    exact index is rebuilt as the approximate one."""
    keys = make_keys(base, key_index.AUTO_THRESHOLD, args.noise, args.dim,
                     np.random.default_rng(0))
    index = KeyIndex(args.dim)
    index.add(keys[:-1])
    start = time.perf_counter()
    index.add(keys[-1:])
    assert index.kind == key_index.AUTO_APPROXIMATE
    return time.perf_counter() - start


def run_size(n: int, data: str, base: np.ndarray | None, args: argparse.Namespace,
             ) -> list[dict[str, Any]]:
    rng = np.random.default_rng(n)
    keys = make_keys(base, n, args.noise, args.dim, rng)
    queries = make_keys(base, args.recall_queries, args.noise, args.dim, rng)
    spare = make_keys(base, args.single, args.noise, args.dim, rng)
    flat = faiss.IndexFlatIP(args.dim)
    flat.add(keys)
    truth = flat.search(queries, 1)[0][:, 0]
    del flat
    dense = {}
    for threads in (args.threads, 1):
        torch.set_num_threads(threads)
        dense[threads] = round(dense_read_ms(keys, queries[:args.queries]), 4)
    torch.set_num_threads(args.threads)
    records = []
    for kind in args.kinds.split(","):
        record = {"data": data, **measure(kind, keys, spare, queries, truth, args),
                  "dense_read_ms": dense[args.threads], "dense_read_1_thread_ms": dense[1]}
        print(json.dumps(record), flush=True)
        records.append(record)
    return records


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="1000,10000,32768,100000,1000000",
                        help="stored key counts, comma-separated (default: 10^3, 10^4, 2^15 (the "
                             "auto threshold), 10^5, 10^6)")
    parser.add_argument("--kinds", default="exact,ivf,hnsw",
                        help="KeyIndex kinds measured at each size (default: exact,ivf,hnsw)")
    parser.add_argument("--data", default="omniglot,uniform",
                        help="key sets: omniglot (perturbed embeddings), uniform (default: both)")
    parser.add_argument("--checkpoint", default=CHECKPOINT,
                        help=f"the ProtoNets checkpoint embedding Omniglot (default: {CHECKPOINT})")
    parser.add_argument("--data-root", default=os.environ.get("FEWSHOT_MANN_DATA", "data"),
                        help="folder holding omniglot-py/ (default: $FEWSHOT_MANN_DATA or data)")
    parser.add_argument("--cache-dir", default="data/cache",
                        help="decoded images and embeddings (default: data/cache)")
    parser.add_argument("--noise", type=float, default=0.15,
                        help="expected norm of the noise added to an embedding (default: 0.15)")
    parser.add_argument("--queries", type=int, default=200,
                        help="single queries timed per record (default: 200)")
    parser.add_argument("--recall-queries", type=int, default=2000,
                        help="held-out queries scored for recall@1 (default: 2000)")
    parser.add_argument("--batch", type=int, default=10_000,
                        help="keys per add while filling an index (default: 10000)")
    parser.add_argument("--single", type=int, default=200,
                        help="single adds, sets and removes timed per record (default: 200)")
    parser.add_argument("--threads", type=int, default=2,
                        help="faiss OpenMP and torch threads (default: 2)")
    parser.add_argument("--out", default="results/lifelong/scale.json",
                        help="where the records go (default: results/lifelong/scale.json)")
    args = parser.parse_args()
    faiss.omp_set_num_threads(args.threads)
    torch.set_num_threads(args.threads)
    load_before, start = os.getloadavg(), time.time()
    base = omniglot_embeddings(args.checkpoint, args.data_root, Path(args.cache_dir))
    args.dim = base.shape[1]
    switch = auto_switch_seconds(base, args)
    records = []
    for data in args.data.split(","):
        for n in (int(s) for s in args.sizes.split(",")):
            records += run_size(n, data, base if data == "omniglot" else None, args)
    result = {
        "command": " ".join([Path(sys.executable).name, *sys.argv]),
        "machine": f"{device_name(torch.device('cpu'))}, {os.cpu_count()} cores, "
                   f"faiss {faiss.__version__}, torch {torch.__version__}, "
                   f"python {platform.python_version()}",
        "threads": args.threads, "omp_num_threads": os.environ.get("OMP_NUM_THREADS"),
        "load_average_before": [round(x, 2) for x in load_before],
        "load_average_after": [round(x, 2) for x in os.getloadavg()],
        "seconds": round(time.time() - start, 1),
        "keys": {"omniglot": f"{len(base)} Omniglot images embedded by {args.checkpoint}, "
                             f"L2-normalised, a random one + Gaussian noise of expected norm "
                             f"{args.noise}, normalised again; queries: {args.recall_queries} "
                             f"more such keys, not stored",
                 "omniglot_nearest_distance": round(nearest_distance(base), 4),
                 "uniform": "standard normal, normalised: uniform on the unit sphere"},
        "auto_threshold": key_index.AUTO_THRESHOLD, "auto_switch_seconds": round(switch, 2),
        "top_k": TOP_K,
        "records": records,
    }
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(result, indent=1) + "\n")
    print(f"wrote {args.out} ({result['seconds']} s)")


if __name__ == "__main__":
    main()
