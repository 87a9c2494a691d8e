"""Where the time of a training step goes: torch.profiler over a few MANN training steps
(paper sizes, random inputs), the top operators (kernels, on CUDA) by self time, with input
shapes, after a timed run that gives episodes/s.

    python scripts/profile_step.py --batch-size 256 --threads 2 > results/bench/profile.txt
    python scripts/profile_step.py --memory dnc --batch-size 16 --threads 2 --timed-steps 5
    python scripts/profile_step.py --device cuda --cuda-graph --batch-size 16384 \\
        --precision tf32 --json profile.json         # scripts/gpu_measurements.sh profile

The step is `fewshot_mann.bench.training_step`, the benchmark's, with the gradient clipping
of `train` (norm 10). With --cuda-graph it is the one `train --cuda-graph` runs: forward and
backward replayed from a CUDA graph (fewshot_mann/training/cuda_graphs.py), loss, clipping and Adam
eager (Adam as the trainer steps it: one fused kernel on CUDA, unless --multi-tensor-adam).
--precision tf32 turns on TF32 matmuls, bf16 runs the forward under bf16 autocast, as
`train --precision` does.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import torch
from torch.profiler import ProfilerActivity, profile

from fewshot_mann.bench import random_episodes, training_step
from fewshot_mann.config import BACKENDS, MEMORY_NAMES, ModelConfig
from fewshot_mann.episodes import LabelCode
from fewshot_mann.models import MANN
from fewshot_mann.runtime import adam, device_name, set_process_flags
from fewshot_mann.training.cuda_graphs import graph_training_forward


def calls_summary(averages: list, steps: int, small_us: float = 20.0) -> str:
    """How many operator calls a training step makes (nested calls included) and the share of
    the self CPU time spent in calls that take under `small_us` on average (for their name and
    input shapes): the cost of launching many small kernels, as against computing."""
    operators = [e for e in averages if e.key.startswith("aten::")]
    total = sum(e.self_cpu_time_total for e in averages)
    small = sum(e.self_cpu_time_total for e in averages
                if e.count and e.self_cpu_time_total / e.count < small_us)
    return (f"# {sum(e.count for e in operators) / steps:,.0f} operator calls per training "
            f"step; {100 * small / total:.0f} % of the self CPU time in calls under "
            f"{small_us:.0f} us on average")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--memory", default="lrua", choices=MEMORY_NAMES,
                        help="the memory variant profiled (default: lrua)")
    parser.add_argument("--backend", default="batched", choices=BACKENDS,
                        help="its backend (default: batched)")
    parser.add_argument("--batch-size", type=int, default=256)
    parser.add_argument("--threads", type=int, default=0)
    parser.add_argument("--device", default="cpu", help="cpu | cuda")
    parser.add_argument("--cuda-graph", action="store_true", help="graphed forward + backward")
    parser.add_argument("--precision", default="fp32", choices=["fp32", "tf32", "bf16"])
    parser.add_argument("--compile", action="store_true",
                        help="torch.compile the time step (MANN.compile_step), under the graph "
                             "with --cuda-graph")
    parser.add_argument("--multi-tensor-adam", action="store_true",
                        help="torch's multi-tensor Adam, not the fused kernel the trainer steps "
                             "on CUDA (runtime.adam)")
    parser.add_argument("--steps", type=int, default=3, help="profiled steps")
    parser.add_argument("--timed-steps", type=int, default=0,
                        help="steps timed before profiling")
    parser.add_argument("--rows", type=int, default=20)
    parser.add_argument("--by-name", action="store_true",
                        help="group the operators by name only, not by name and input shapes")
    parser.add_argument("--json", type=Path, default=None, help="append a summary line here")
    args = parser.parse_args(argv)
    set_process_flags(args.threads, args.precision)
    device = torch.device(args.device)
    cuda = device.type == "cuda"

    B, T = args.batch_size, 50
    code = LabelCode.make("one-hot", 5)
    model = MANN(ModelConfig(memory=args.memory, backend=args.backend), (1, 20, 20),
                 code).to(device)
    if args.compile:
        model.compile_step()
    optimizer = adam(model.parameters(), lr=1e-3, fused=False if args.multi_tensor_adam else None)
    images, prev, targets = random_episodes(code, B, T, device=device)  # (B, T, 400), (B, T, 5)

    def autocast() -> torch.autocast:
        return torch.autocast(device.type, dtype=torch.bfloat16,
                              enabled=args.precision == "bf16", cache_enabled=not args.cuda_graph)

    forward = model
    if args.cuda_graph:
        with autocast():
            forward = graph_training_forward(model, images, prev)

    def step() -> None:  # the benchmark's training step, with train's clipping and precision
        training_step(model, forward, optimizer, images, prev, targets, clip_norm=10.0,
                      autocast=autocast)

    def sync() -> None:
        if cuda:
            torch.cuda.synchronize(device)

    step()
    sync()
    rate = None
    if args.timed_steps:
        started = time.perf_counter()
        for _ in range(args.timed_steps):
            step()
        sync()
        rate = args.timed_steps * B / (time.perf_counter() - started)
    activities = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if cuda else [])
    with profile(activities=activities, record_shapes=True) as prof:
        for _ in range(args.steps):
            step()
        sync()
    setting = (f"{args.memory} ({args.backend}), batch {B}, T = {T}, paper sizes, "
               f"{args.precision}"
               f"{', CUDA graph' if args.cuda_graph else ''}"
               f"{', compiled step' if args.compile else ''}"
               f"{', multi-tensor Adam' if args.multi_tensor_adam else ''}; "
               f"{device_name(device)}, "
               f"torch {torch.__version__}")
    if rate is not None:
        print(f"# {args.timed_steps} timed training steps: {rate:,.0f} episodes/s; {setting}")
    print(f"# {args.steps} profiled training steps, {setting}")
    sort = "self_device_time_total" if cuda else "self_cpu_time_total"
    averages = prof.key_averages(group_by_input_shape=not (cuda or args.by_name))
    print(averages.table(sort_by=sort, row_limit=args.rows, max_name_column_width=40,
                         max_shapes_column_width=60))
    if not cuda:
        print(calls_summary(prof.key_averages(group_by_input_shape=True), args.steps))
    if args.json:
        top = sorted(averages, key=lambda e: getattr(e, sort), reverse=True)[:args.rows]
        with open(args.json, "a") as f:
            f.write(json.dumps({
                "memory": args.memory, "backend": args.backend,
                "batch_size": B, "precision": args.precision, "cuda_graph": args.cuda_graph,
                "compile": args.compile,
                "adam": "fused" if optimizer.param_groups[0]["fused"] else "multi-tensor",
                "device": device_name(device), "torch": str(torch.__version__),
                "episodes_per_s": rate, "timed_steps": args.timed_steps,
                "profiled_steps": args.steps,
                "top": [{"name": e.key, "count": e.count,
                         "self_us": getattr(e, sort)} for e in top],
            }) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
