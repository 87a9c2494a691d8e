"""Where the time of the trainer's step goes, beyond the model: `Trainer.train_step` (episode
sampling, the forward and backward, loss and accuracy, clipping, the finite check, the
optimiser) on the paper's configuration (the defaults of `Config`, as
scripts/time_to_accuracy.py trains it), against the step's GPU work. The loop's log records
are not part of it (one read-back each; with the fused Adam of CUDA the step itself reads
nothing back, `TrainingLoop.defer_checks`).

    python scripts/profile_training.py --device cuda --cuda-graph --compile --batch-size 64

Prints ms a step over --steps timed steps (after --warm-steps that capture and compile), then
torch.profiler over --profiled-steps more: the time the GPU's kernels take a step (on CUDA) and
the top operators by self CPU time. Wall time well above the kernels' time means the GPU waits
for the host (launches, Python, a read-back).
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

import torch
from torch.profiler import ProfilerActivity, profile

from fewshot_mann.config import Config, replace
from fewshot_mann.runtime import device_name, set_process_flags
from fewshot_mann.training.trainer import Trainer


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data-root", default=None)
    parser.add_argument("--device", default="auto")
    parser.add_argument("--threads", type=int, default=0)
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--precision", default="fp32", choices=["fp32", "tf32", "bf16"])
    parser.add_argument("--cuda-graph", action="store_true")
    parser.add_argument("--compile", action="store_true")
    parser.add_argument("--warm-steps", type=int, default=20)
    parser.add_argument("--steps", type=int, default=100, help="timed steps")
    parser.add_argument("--profiled-steps", type=int, default=10)
    parser.add_argument("--rows", type=int, default=20)
    parser.add_argument("--json", type=Path, default=None, help="append a summary line here")
    args = parser.parse_args(argv)

    data = {"data_root": args.data_root} if args.data_root else {}
    train = {"batch_size": args.batch_size, "device": args.device, "threads": args.threads,
             "precision": args.precision, "cuda_graph": args.cuda_graph,
             "compile": args.compile, "health_episodes": 0}
    cfg = replace(Config(), data=data, train=train)
    with tempfile.TemporaryDirectory() as run_dir:
        trainer = Trainer.build(cfg, Path(run_dir) / "run", progress=False)
        set_process_flags(trainer.cfg.train.threads, trainer.cfg.train.precision)
        device = trainer.device
        cuda = device.type == "cuda"

        def sync() -> None:
            if cuda:
                torch.cuda.synchronize(device)

        trainer.model.train()
        for _ in range(args.warm_steps):
            trainer.train_step()
        sync()
        started = time.perf_counter()
        for _ in range(args.steps):
            trainer.train_step()
        sync()
        step_ms = (time.perf_counter() - started) / args.steps * 1e3
        activities = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if cuda else [])
        with profile(activities=activities) as prof:
            for _ in range(args.profiled_steps):
                trainer.train_step()
            sync()
    averages = prof.key_averages()
    # kernels only: device time of the CPU-side operators would count each kernel again
    kernel_ms = sum(e.self_device_time_total for e in averages
                    if e.device_type == torch.autograd.DeviceType.CUDA) / 1e3
    kernel_ms /= args.profiled_steps
    setting = (f"batch {args.batch_size}, {args.precision}"
               f"{', CUDA graph' if args.cuda_graph else ''}"
               f"{', compiled step' if args.compile else ''}; {device_name(device)}, "
               f"torch {torch.__version__}")
    print(f"# trainer step: {step_ms:.2f} ms over {args.steps} steps "
          f"({args.batch_size * 1e3 / step_ms:,.0f} episodes/s); {setting}")
    if cuda:
        print(f"# GPU kernels: {kernel_ms:.2f} ms a step ({kernel_ms / step_ms:.0%} of the wall "
              f"time; profiled over {args.profiled_steps} steps)")
    print(averages.table(sort_by="self_cpu_time_total", row_limit=args.rows,
                         max_name_column_width=50))
    if args.json:
        with open(args.json, "a") as f:
            f.write(json.dumps({"batch_size": args.batch_size, "precision": args.precision,
                                "cuda_graph": args.cuda_graph, "compile": args.compile,
                                "device": device_name(device), "torch": str(torch.__version__),
                                "trainer_step_ms": step_ms,
                                "kernel_ms_per_step": kernel_ms if cuda else None}) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
