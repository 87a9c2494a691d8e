"""Throughput benchmark: episodes/s of training and inference for each memory variant
(lrua, ntm, dnc, kv) in both of its forms (reference, batched).

Every record runs in a fresh subprocess, so its peak memory is its own: on CUDA
`torch.cuda.max_memory_allocated`, on the CPU the growth of the process's peak resident set
from just before the first (warm-up) step to the end of the timed steps. Inputs are random
tensors of the paper's shapes (5-way one-hot, T = 50, 20x20 images); the episode sampler is
benchmarked on its own (`mode: "sample"`).
Compare backends only within one run: these machines are noisy.
"""

from __future__ import annotations

import json
import os
import resource
import subprocess
import sys
import time
from collections.abc import Callable
from contextlib import AbstractContextManager, nullcontext
from pathlib import Path
from typing import Any

import torch

from .config import BACKENDS
from .episodes import LabelCode
from .errors import ConfigError
from .metrics import episode_loss
from .runtime import adam, device_name, pick_device

BATCH_SIZES = (16, 64, 256, 1024)
MEMORY_SLOTS = (128, 512, 2048)
QUICK_BATCH_SIZES = (16, 256)
QUICK_MEMORY_SLOTS = (128,)


def random_episodes(code: LabelCode, batch_size: int, steps: int = 50, pixels: int = 400,
                    device: torch.device | str = "cpu",
                    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Random inputs of an episode batch's shapes, for timing and profiling: images (B, T, D)
    in [0, 1), prev_labels (B, T, G*S) = the targets shifted one step (zeros at step 0),
    targets (B, T, G) digits."""
    images = torch.rand(batch_size, steps, pixels, device=device)
    targets = torch.randint(0, code.symbols, (batch_size, steps, code.groups), device=device)
    prev = torch.cat([torch.zeros(batch_size, 1, code.input_size, device=device),
                      code.encode(targets)[:, :-1]], 1)
    return images, prev, targets


def training_step(model: torch.nn.Module, forward: Callable[..., torch.Tensor],
                  optimizer: torch.optim.Optimizer, images: torch.Tensor, prev: torch.Tensor,
                  targets: torch.Tensor, clip_norm: float | None = None,
                  autocast: Callable[[], AbstractContextManager] = nullcontext,
                  ) -> None:
    """One training step on a fixed episode batch, as the benchmark times it: `forward` (the
    model, or its CUDA-graphed forward) under `autocast`, the episode loss plus the memory's
    auxiliary loss, backward, the gradient norm clipped to `clip_norm` if given, the optimiser
    step."""
    with autocast():
        logits = forward(images, prev)  # (B, T, G, S)
    loss = episode_loss(logits.float(), targets)
    if model.auxiliary_loss is not None:
        loss = loss + model.auxiliary_loss
    optimizer.zero_grad(set_to_none=True)
    loss.backward()
    if clip_norm is not None:
        torch.nn.utils.clip_grad_norm_(model.parameters(), clip_norm)
    optimizer.step()


def measure(spec: dict[str, Any]) -> dict[str, Any]:
    """One record, in this process: spec has memory, backend, mode, batch_size, memory_slots,
    device, min_seconds, compile."""
    from .config import ModelConfig
    from .models import MANN
    from .training.cuda_graphs import graph_inference, graph_training_forward

    device = torch.device(spec["device"])
    B, T = spec["batch_size"], 50
    code = LabelCode.make("one-hot", 5)
    if spec["mode"] == "sample":
        return _measure_sampler(spec, code, device)
    torch.manual_seed(0)
    model = MANN(ModelConfig(memory=spec.get("memory", "lrua"), memory_slots=spec["memory_slots"],
                             backend=spec["backend"]), (1, 20, 20), code).to(device)
    if spec.get("compile"):
        model.compile_step()
    optimizer = adam(model.parameters(), lr=1e-4)
    images, prev, targets = random_episodes(code, B, T, device=device)
    train = spec["mode"] == "train"
    model.train(train)
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
    rss_before = _peak_rss_mb()
    setup = time.perf_counter()
    forward = model
    if spec.get("cuda_graph"):
        capture = graph_training_forward if train else graph_inference
        forward = capture(model, images, prev)

    def train_step() -> None:
        training_step(model, forward, optimizer, images, prev, targets)

    @torch.inference_mode()
    def infer_step() -> None:
        forward(images, prev)

    step = train_step if train else infer_step
    step()  # warm-up (and compilation)
    _sync(device)
    setup_s = time.perf_counter() - setup
    iterations, start = 0, time.perf_counter()
    while True:
        step()
        iterations += 1
        _sync(device)
        elapsed = time.perf_counter() - start
        if elapsed >= spec["min_seconds"] or iterations >= 1000:
            break
    peak = (torch.cuda.max_memory_allocated(device) / 2**20 if device.type == "cuda"
            else _peak_rss_mb() - rss_before)
    return {"episodes_per_s": iterations * B / elapsed, "peak_mem_mb": round(peak, 1),
            "seconds": round(elapsed, 3), "iterations": iterations,
            "setup_s": round(setup_s, 2)}


def _measure_sampler(spec: dict[str, Any], code, device: torch.device) -> dict[str, Any]:
    from .data.imageset import ImageSet
    from .episodes import EpisodeSampler

    g = torch.Generator().manual_seed(0)
    images = torch.randint(0, 256, (1623 * 20, 1, 20, 20), dtype=torch.uint8, generator=g)
    imageset = ImageSet(images, [f"c{i}" for i in range(1623)], torch.full((1623,), 20),
                        ["synthetic"] * 1623)
    sampler = EpisodeSampler(imageset, torch.arange(1200), torch.zeros(1200, dtype=torch.long),
                             5, 10, code, rotate_classes=True, device=device)
    sampler.sample(spec["batch_size"])
    iterations, start = 0, time.perf_counter()
    while time.perf_counter() - start < spec["min_seconds"]:
        sampler.sample(spec["batch_size"])
        iterations += 1
    _sync(device)
    elapsed = time.perf_counter() - start
    return {"episodes_per_s": iterations * spec["batch_size"] / elapsed, "peak_mem_mb": None,
            "seconds": round(elapsed, 3), "iterations": iterations}


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # Linux: KiB


def run_bench(device: str = "auto", quick: bool = False, out: str | Path | None = None,
              min_seconds: float | None = None, compile: bool = False,
              backends: tuple[str, ...] = BACKENDS,
              reference_max_batch: int = 256, progress: bool = True,
              batch_sizes: tuple[int, ...] | None = None,
              memory_slots: tuple[int, ...] | None = None,
              cuda_graph: bool = False, memories: tuple[str, ...] = ("lrua",)) -> dict[str, Any]:
    """The whole grid (memories x batch sizes x memory sizes x train/infer x backends, plus the
    sampler).
    On the CPU each record runs in a subprocess; on CUDA in this process, where
    `max_memory_allocated` gives each record's own peak and an out-of-memory error is caught.
    Returns (and writes) the JSON document."""
    from .evaluation.plots import plot_throughput

    dev = pick_device(device)
    if cuda_graph and dev.type != "cuda":
        raise ConfigError(f"--cuda-graph needs a CUDA device, not {dev}")
    batch_sizes = batch_sizes or (QUICK_BATCH_SIZES if quick else BATCH_SIZES)
    slots_list = memory_slots or (QUICK_MEMORY_SLOTS if quick else MEMORY_SLOTS)
    seconds = min_seconds if min_seconds is not None else (0.5 if quick else 3.0)
    if quick:  # the per-episode reference is slow: time it at the smallest batch only
        reference_max_batch = min(reference_max_batch, min(batch_sizes))
    specs = [{"memory": "-", "backend": "-", "mode": "sample", "batch_size": b,
              "memory_slots": 0} for b in batch_sizes]
    specs += [{"memory": memory, "backend": backend, "mode": mode, "batch_size": b,
               "memory_slots": m}
              for memory in memories for m in slots_list for b in batch_sizes
              for mode in ("train", "infer") for backend in backends
              if backend != "reference" or b <= reference_max_batch]
    records = []
    for spec in specs:
        spec.update(device=str(dev), min_seconds=seconds, compile=compile, cuda_graph=cuda_graph)
        result = _in_this_process(spec) if dev.type == "cuda" else _in_subprocess(spec)
        record = {k: spec[k] for k in ("memory", "backend", "mode", "batch_size",
                                       "memory_slots")}
        record.update(result)
        records.append(record)
        if progress:
            head = (f"{record['memory']:4} {record['mode']:6} {record['backend']:9} "
                    f"batch {record['batch_size']:5} slots {record['memory_slots']:5}  ")
            if record.get("error"):
                print(head + "failed: " + record["error"], flush=True)
            else:
                print(head + f"{record['episodes_per_s']:10.1f} episodes/s"
                      + (f"  peak {record['peak_mem_mb']} MB" if record["mode"] != "sample"
                         else ""), flush=True)
    doc = {"device": device_name(dev), "torch": torch.__version__, "compile": compile,
           "cuda_graph": cuda_graph,
           "threads": torch.get_num_threads(), "min_seconds": seconds, "quick": quick,
           "records": records, "ratios": ratios(records)}
    if progress:
        print(format_ratios(doc["ratios"]))
    if out is not None:
        out = Path(out)
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(json.dumps(doc, indent=1) + "\n")
        plot_throughput(records, out.with_suffix(".png"), title=doc["device"])
        if progress:
            print(f"wrote {out} and {out.with_suffix('.png')}")
    return doc


def ratios(records: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """batched / reference episodes/s for every setting measured with both, in this run.
    Records from before the memory choice (no "memory" key) are LRUA's."""
    by_key = {(r.get("memory", "lrua"), r["backend"], r["mode"], r["batch_size"],
               r["memory_slots"]): r["episodes_per_s"] for r in records if r["episodes_per_s"]}
    out = []
    for (memory, backend, mode, b, m), eps in by_key.items():
        ref = by_key.get((memory, "reference", mode, b, m))
        if backend == "batched" and ref:
            out.append({"memory": memory, "mode": mode, "batch_size": b, "memory_slots": m,
                        "batched_over_reference": round(eps / ref, 2)})
    return out


def format_ratios(rows: list[dict[str, Any]]) -> str:
    lines = ["batched / reference (same run):"]
    lines += [f"  {r.get('memory', 'lrua'):4} {r['mode']:6} batch {r['batch_size']:5} "
              f"slots {r['memory_slots']:5}: {r['batched_over_reference']:.2f}x" for r in rows]
    return "\n".join(lines)


def _in_this_process(spec: dict[str, Any]) -> dict[str, Any]:
    """`measure(spec)` on CUDA; a grid point too big for the card is recorded, not fatal."""
    try:
        return measure(spec)
    except RuntimeError as err:  # torch.cuda.OutOfMemoryError is one
        kind = "out of memory" if isinstance(err, torch.cuda.OutOfMemoryError) else "failed"
        why = f"{kind}: {type(err).__name__}: {str(err).splitlines()[0]}"
        return {"episodes_per_s": None, "peak_mem_mb": None, "error": why[:300]}
    finally:
        torch.cuda.empty_cache()


def _in_subprocess(spec: dict[str, Any]) -> dict[str, Any]:
    """Run `measure(spec)` in a fresh interpreter whose data segment is capped at 80 % of the
    machine's memory, so that a grid point too big for it fails on its own (recorded as an
    error) instead of bringing the machine down."""
    code = ("import json, resource, sys; limit = int(sys.argv[2]); "
            "resource.setrlimit(resource.RLIMIT_DATA, (limit, limit)); "
            "from fewshot_mann.bench import measure; "
            "print(json.dumps(measure(json.loads(sys.argv[1]))))")
    limit = int(0.8 * _total_memory_bytes())
    done = subprocess.run([sys.executable, "-c", code, json.dumps(spec), str(limit)],
                          capture_output=True, text=True)
    if done.returncode != 0:
        lines = [line for line in done.stderr.strip().splitlines() if line.strip()]
        why = lines[-1] if lines else f"exit status {done.returncode}"
        if "memory" in why.lower() or done.returncode in (-9, 137):
            why = f"out of memory (limit {limit / 2**30:.1f} GiB): {why}"
        return {"episodes_per_s": None, "peak_mem_mb": None, "error": why[:300]}
    return json.loads(done.stdout.strip().splitlines()[-1])


def _total_memory_bytes() -> int:
    try:
        return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (ValueError, OSError, AttributeError):
        return 16 * 2**30
