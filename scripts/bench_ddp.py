"""Training episodes/s on this machine's CPUs: 2 data-parallel processes (gloo, 1 thread each)
against 1 process with 2 threads and 1 process with 1 thread, at the same global batch.

    python scripts/bench_ddp.py --out results/bench/ddp-cpu.json

Each setting runs in fresh processes (torchrun for the 2-process one): a Trainer on real
Omniglot episodes at paper sizes (LSTM 200, 128 x 40 memory, 4 heads, 5-way x 10
presentations), `--warmup` updates, then `--steps` timed updates (sampling, forward, backward,
gradient all-reduce, Adam). Prints the ratios of this run; writes the records, the machine and
its load average (other processes share these cores) to --out.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def worker(args: argparse.Namespace) -> None:
    import torch

    from fewshot_mann.config import Config, replace
    from fewshot_mann.runtime import device_name, set_process_flags
    from fewshot_mann.training.distributed import shutdown
    from fewshot_mann.training.trainer import Trainer

    with tempfile.TemporaryDirectory() as out:
        cfg = replace(Config(), train={
            "batch_size": args.batch_size, "threads": args.threads, "device": "cpu",
            "steps": 10**6, "eval_every": 10**6, "checkpoint_every": 10**6})
        if args.data_root:
            cfg.data.data_root = args.data_root
        set_process_flags(args.threads, "fp32")
        trainer = Trainer.build(cfg, out, progress=False)
        for _ in range(args.warmup):
            trainer.train_step()
        trainer.dist.mean(torch.zeros(1))  # every process starts the clock together
        started = time.perf_counter()
        for _ in range(args.steps):
            trainer.train_step()
        trainer.dist.mean(torch.zeros(1))
        seconds = time.perf_counter() - started
        if trainer.dist.is_main:
            world = trainer.dist.world_size
            print(json.dumps({
                "processes": world, "threads_per_process": torch.get_num_threads(),
                "batch_per_process": args.batch_size, "global_batch": args.batch_size * world,
                "steps": args.steps, "seconds": round(seconds, 3),
                "episodes_per_s": round(args.steps * args.batch_size * world / seconds, 1),
                "machine": device_name(torch.device("cpu")).rsplit(" (", 1)[0]}))
        shutdown()


def run(processes: int, threads: int, args: argparse.Namespace) -> dict:
    per_process = args.global_batch // processes
    worker_args = ["--worker", "--batch-size", str(per_process), "--threads", str(threads),
                   "--steps", str(args.steps), "--warmup", str(args.warmup)]
    if args.data_root:
        worker_args += ["--data-root", args.data_root]
    launcher = [sys.executable]
    if processes > 1:
        launcher += ["-m", "torch.distributed.run", "--nproc_per_node", str(processes),
                     "--master_port", str(args.port)]
    env = {**os.environ, "OMP_NUM_THREADS": str(threads),
           "PYTHONPATH": f"{REPO}{os.pathsep}{os.environ.get('PYTHONPATH', '')}"}
    done = subprocess.run([*launcher, __file__, *worker_args], env=env, cwd=REPO,
                          capture_output=True, text=True, check=False)
    if done.returncode != 0:
        sys.exit(f"bench_ddp: {processes} x {threads} failed:\n{done.stderr[-2000:]}")
    record = json.loads(done.stdout.strip().splitlines()[-1])
    print(f"{processes} process(es) x {threads} thread(s), batch {per_process} each: "
          f"{record['episodes_per_s']:.1f} episodes/s", flush=True)
    return record


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--global-batch", type=int, default=256)
    parser.add_argument("--steps", type=int, default=15, help="timed updates per setting")
    parser.add_argument("--warmup", type=int, default=3)
    parser.add_argument("--data-root", default=None, help="default $FEWSHOT_MANN_DATA")
    parser.add_argument("--port", type=int, default=29511, help="torchrun's master port")
    parser.add_argument("--out", type=Path, default=None, help="JSON file for the records")
    parser.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--batch-size", type=int, default=256, help=argparse.SUPPRESS)
    parser.add_argument("--threads", type=int, default=1, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        worker(args)
        return
    load_before = os.getloadavg()
    started = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
    records = [run(1, 1, args), run(1, 2, args), run(2, 1, args)]
    one, two_threads, two_processes = (r["episodes_per_s"] for r in records)
    ratios = {"2 processes / 1 process 1 thread": round(two_processes / one, 2),
              "2 processes / 1 process 2 threads": round(two_processes / two_threads, 2),
              "1 process 2 threads / 1 thread": round(two_threads / one, 2)}
    for name, value in ratios.items():
        print(f"{name}: {value}x")
    result = {"command": "python scripts/bench_ddp.py " + " ".join(sys.argv[1:]),
              "started_utc": started, "machine": records[0]["machine"],
              "cpus": os.cpu_count(), "load_average_1_5_15_before": load_before,
              "load_average_1_5_15_after": os.getloadavg(), "records": records,
              "ratios": ratios}
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps(result, indent=1) + "\n")
        print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
