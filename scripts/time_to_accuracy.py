"""Time to accuracy: train the paper's configuration until held-out 2nd-presentation accuracy
reaches a target (Santoro et al. 2016: 82.8 %), then report wall-clock and episodes used.

Paper configuration: 5-way, 10 presentations, one-hot labels, 20x20 images, santoro split,
LSTM controller 200, memory 128 x 40, 4 read heads. Training recipe: the package defaults
(Adam 3e-3, batch 16, gradient clipping 10, key strength starting at 11).

The stop reads validation classes only: accuracy is measured every --eval-every steps on the
same 500 episodes of the split's validation classes (santoro: 100 of the paper's 1,200 training
characters, set aside), and the wall-clock includes those evaluations. The model is then scored
once on 1,000 episodes of the 423 test classes, which no decision read; both numbers are
written.

    python scripts/time_to_accuracy.py --data-root ../shared/data/omniglot
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import time
from pathlib import Path

import torch

from fewshot_mann.config import Config, replace
from fewshot_mann.evaluation.heldout import evaluate_checkpoint
from fewshot_mann.runtime import device_name, device_slug, pick_device, set_process_flags
from fewshot_mann.training.trainer import Trainer


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data-root", default=None)
    parser.add_argument("--cache-dir", default=None)
    parser.add_argument("--device", default="auto")
    parser.add_argument("--threads", type=int, default=0)
    parser.add_argument("--target", type=float, default=0.828)
    parser.add_argument("--max-steps", type=int, default=20_000)
    parser.add_argument("--batch-size", type=int, default=None)
    parser.add_argument("--lr", type=float, default=None)
    parser.add_argument("--grad-clip", type=float, default=None,
                        help="clip of the gradient norm (default: the config's, 10)")
    parser.add_argument("--eval-every", type=int, default=250)
    parser.add_argument("--max-seconds", type=float, default=0.0,
                        help="give up at the first evaluation after this many seconds (0: never)")
    parser.add_argument("--precision", default="fp32", help="fp32 | tf32 | bf16")
    parser.add_argument("--cuda-graph", action="store_true",
                        help="capture each training step's episode as a CUDA graph (CUDA only)")
    parser.add_argument("--compile", action="store_true",
                        help="torch.compile each time step (under the graphs with --cuda-graph); "
                             "compilation counts in the wall-clock")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--split", default="santoro",
                        help="a split with validation classes (the stop reads them)")
    parser.add_argument("--run-dir", type=Path, default=Path("runs/time-to-accuracy"),
                        help="training run folder; must not exist unless --overwrite")
    parser.add_argument("--overwrite", action="store_true", help="delete --run-dir first")
    parser.add_argument("--out", type=Path, default=None,
                        help="JSON path (default results/time_to_accuracy/<device>.json)")
    args = parser.parse_args(argv)

    data = {k: v for k, v in {"data_root": args.data_root, "cache_dir": args.cache_dir,
                              "split": args.split}.items() if v}
    train = {"steps": args.max_steps, "lr_min": 1e-4, "seed": args.seed, "device": args.device,
             "threads": args.threads, "eval_every": args.eval_every, "eval_episodes": 500,
             "precision": args.precision, "cuda_graph": args.cuda_graph,
             "compile": args.compile,
             "checkpoint_every": args.eval_every, "log_every": args.eval_every,
             "health_episodes": 0}  # the clock counts evaluations: none of the health probe
    if args.batch_size:
        train["batch_size"] = args.batch_size
    if args.lr:
        train["lr"] = args.lr
    if args.grad_clip is not None:
        train["grad_clip"] = args.grad_clip
    cfg = replace(Config(), data=data, train=train)
    if args.run_dir.exists():
        if not args.overwrite:
            parser.error(f"{args.run_dir} exists: pass --overwrite to delete it, or another "
                         f"--run-dir")
        shutil.rmtree(args.run_dir)

    started = time.perf_counter()
    trainer = Trainer.build(cfg, args.run_dir, stop_accuracy=args.target,
                            time_limit_s=args.max_seconds)
    set_process_flags(trainer.cfg.train.threads, trainer.cfg.train.precision)
    setup_s = time.perf_counter() - started
    history = trainer.run()
    evals = [r for r in history if "heldout_instance_accuracy" in r]
    last = evals[-1]
    reached = last["heldout_instance_accuracy"][1] >= args.target
    confirm = evaluate_checkpoint(args.run_dir / "checkpoint.pt", episodes=1000,
                                  out_dir=args.run_dir / "confirm", presentations=10,
                                  device=args.device, progress=False)

    device = device_name(pick_device(args.device))
    doc = {
        "device": device, "torch": torch.__version__, "threads": torch.get_num_threads(),
        "target_2nd_presentation": args.target, "reached": reached,
        "wall_clock_s": last["elapsed_s"], "setup_s": round(setup_s, 1),
        "episodes": last["episodes"], "steps": last["step"],
        "stop_decided_on": trainer.split.decides,
        "validation_2nd_at_stop": last["heldout_instance_accuracy"][1],
        "test_1000_episodes": {"instance_accuracy": confirm.instance_accuracy,
                               "instance_ci95": confirm.instance_ci95},
        "curve": [{"step": r["step"], "episodes": r["episodes"], "elapsed_s": r["elapsed_s"],
                   "validation_2nd": r["heldout_instance_accuracy"][1]} for r in evals],
        "config": cfg.to_dict(),
        "command": "python scripts/time_to_accuracy.py " + " ".join(
            f"--{k.replace('_', '-')}" + ("" if v is True else f" {v}")
            for k, v in vars(args).items()
            if v is not None and v is not False and k not in ("out", "run_dir", "overwrite")),
    }
    slug = device_slug(pick_device(args.device))
    out = args.out or Path("results/time_to_accuracy") / f"{slug}.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(doc, indent=1) + "\n")
    verdict = "reached" if reached else "did NOT reach"
    print(f"{verdict} {args.target:.1%} at the 2nd presentation (validation classes) after "
          f"{last['episodes']} episodes, {last['elapsed_s']:.0f} s on {device}; on 1,000 test "
          f"episodes: "
          f"{confirm.instance_accuracy[1]:.1%} +- {confirm.instance_ci95[1]:.1%}; wrote {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
