"""`fewshot-mann` command line: train, evaluate, bench, report.

Every train flag maps onto a config field; precedence is defaults < --config TOML < flags.
Expected failures (bad input, missing data, bad checkpoint) print one clear line and exit 2
(the traceback too with FEWSHOT_MANN_DEBUG=1); warnings such as skipped files print as
"fewshot-mann <command>: warning: ...".
"""

from __future__ import annotations

import argparse
import os
import sys
import warnings
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

DEBUG_ENV = "FEWSHOT_MANN_DEBUG"  # set to get the traceback of an expected error

# flag -> (config section, field, type, help)
TRAIN_FLAGS: dict[str, tuple[str, str, type, str]] = {
    "--dataset": ("data", "dataset", str, "omniglot, folder:PATH[,PATH...] or csv:PATH"),
    "--data-root": ("data", "data_root", str,
                    "folder holding omniglot-py/ (default $FEWSHOT_MANN_DATA or data/)"),
    "--cache-dir": ("data", "cache_dir", str,
                    "where decoded image tensors are cached (default $FEWSHOT_MANN_CACHE or "
                    "data/cache)"),
    "--split": ("data", "split", str, "omniglot: santoro | vinyals | lake; custom data: "
                "ratio:0.8 or lists:DIR"),
    "--split-seed": ("data", "split_seed", int, "seed of a ratio split (custom data)"),
    "--image-size": ("data", "image_size", int, "images are resized to this square size"),
    "--channels": ("data", "channels", int, "1 (grayscale) or 3 (RGB), custom data"),
    "--min-images": ("data", "min_images", str,
                     "custom data, a class with fewer images than presentations: error | skip"),
    "--bad-files": ("data", "bad_files", str, "custom data, unreadable files: skip | error"),
    "--n-way": ("episodes", "n_way", int, "classes per episode"),
    "--presentations": ("episodes", "presentations", int, "presentations of each class"),
    "--labels": ("episodes", "labels", str, "one-hot | five-hot"),
    "--model": ("model", "kind", str, "mann | lstm | feedforward"),
    "--backend": ("model", "backend", str, "memory backend: reference | batched"),
    "--encoder": ("model", "encoder", str, "none (flat pixels) | conv | convbase"),
    "--encoder-init": ("model", "encoder_init", str,
                       "ProtoNets checkpoint (model.pt) that starts a convbase encoder"),
    "--controller-size": ("model", "controller_size", int, "LSTM units"),
    "--memory-slots": ("model", "memory_slots", int, "memory rows"),
    "--memory-width": ("model", "memory_width", int, "memory row size"),
    "--read-heads": ("model", "read_heads", int, "read heads"),
    "--steps": ("train", "steps", int, "optimiser updates"),
    "--batch-size": ("train", "batch_size", int, "episodes per update"),
    "--optimizer": ("train", "optimizer", str, "adam | rmsprop"),
    "--lr": ("train", "lr", float, "peak learning rate"),
    "--lr-min": ("train", "lr_min", float, "learning rate at the last step (cosine decay)"),
    "--warmup-steps": ("train", "warmup_steps", int, "linear warm-up steps"),
    "--grad-clip": ("train", "grad_clip", float, "max gradient norm (0 = off)"),
    "--seed": ("train", "seed", int, "seed of the whole run"),
    "--device": ("train", "device", str, "auto | cpu | cuda | cuda:N"),
    "--threads": ("train", "threads", int, "torch CPU threads (0 = torch default)"),
    "--precision": ("train", "precision", str, "fp32 | tf32 (CUDA matmuls) | bf16 (autocast)"),
    "--eval-every": ("train", "eval_every", int, "steps between held-out evaluations"),
    "--eval-episodes": ("train", "eval_episodes", int, "episodes per held-out evaluation"),
    "--checkpoint-every": ("train", "checkpoint_every", int, "steps between checkpoints"),
    "--log-every": ("train", "log_every", int, "steps between log lines"),
    "--curriculum": ("train", "curriculum", str,
                     "N-way curriculum, e.g. 5,10: train these widths first, then --n-way"),
    "--curriculum-accuracy": ("train", "curriculum_accuracy", float,
                              "held-out 2nd-presentation accuracy that moves the curriculum on"),
    "--on-divergence": ("train", "on_divergence", str,
                        "rollback (to the last good state, lower lr; default) | stop"),
}


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="fewshot-mann",
        description="Few-shot classification with Memory-Augmented Neural Networks "
                    "(Santoro et al. 2016) on Omniglot or your own images.")
    sub = parser.add_subparsers(dest="command", required=True)

    train = sub.add_parser("train", help="train a model on episodes",
                           description="Train on episodes of the training classes; evaluate on "
                                       "held-out classes as it goes; checkpoint to --out.")
    train.add_argument("--config", type=Path, help="TOML config (flags override it)")
    for flag, (_, _, kind, text) in TRAIN_FLAGS.items():
        train.add_argument(flag, type=kind, help=text)
    train.add_argument("--download", action="store_true", default=None,
                       help="download Omniglot with torchvision if it is absent")
    train.add_argument("--no-rotate", action="store_true",
                       help="no random 90-degree class rotation during training")
    train.add_argument("--no-key-strength", action="store_true",
                       help="plain softmax of the cosine (eq. 18 as printed, no sharpening)")
    train.add_argument("--read-norm", action="store_true", default=None,
                       help="layer-normalise each read vector (bounds what memory feeds back)")
    train.add_argument("--freeze-encoder", action="store_true", default=None,
                       help="keep the --encoder-init weights fixed (no gradient, BN frozen)")
    train.add_argument("--compile", action="store_true", default=None,
                       help="torch.compile each MANN time step (tens of seconds to compile)")
    train.add_argument("--out", type=Path, required=True, help="run folder")
    train.add_argument("--resume", action="store_true", help="continue the run in --out")
    train.add_argument("--stop-accuracy", type=float, default=0.0,
                       help="stop once held-out 2nd-presentation accuracy reaches this (0-1)")
    train.add_argument("--time-limit", type=float, default=0.0, metavar="SECONDS",
                       help="pause (checkpointed, resumable) at the first held-out evaluation "
                            "after this many seconds")
    train.add_argument("--cuda-graph", action="store_true", default=None,
                       help="capture the unrolled episode as a CUDA graph (CUDA only)")
    train.add_argument("--quiet", action="store_true", help="no progress bar or log lines")

    ev = sub.add_parser("evaluate", help="evaluate a checkpoint on held-out classes",
                        description="Per-instance and k-shot accuracy on the checkpoint's "
                                    "held-out (test) classes, with 95%% CIs over episodes.")
    ev.add_argument("--checkpoint", type=Path, required=True)
    ev.add_argument("--episodes", type=int, default=1000)
    ev.add_argument("--out", type=Path, required=True, help="folder for metrics.json/.csv/.png")
    ev.add_argument("--presentations", type=int, default=None,
                    help="presentations per class (default: max(training value, 11), so that "
                         "10-shot accuracy exists)")
    ev.add_argument("--batch-size", type=int, default=250)
    ev.add_argument("--seed", type=int, default=12345, help="seed of the test episodes")
    ev.add_argument("--device", default="auto")
    ev.add_argument("--backend", choices=["reference", "batched"], default=None)
    ev.add_argument("--data-root", default=None, help="override the data location")
    ev.add_argument("--cache-dir", default=None)
    ev.add_argument("--dataset", default=None, help="override the dataset location, e.g. "
                    "folder:PATH on another machine (the classes must match the split)")
    ev.add_argument("--min-images", choices=["error", "skip"], default=None,
                    help="test classes with fewer images than the presentations: stop, or "
                         "leave them out (default: as in training)")
    ev.add_argument("--quiet", action="store_true")

    bench = sub.add_parser("bench", help="throughput of both memory backends",
                           description="Training and inference episodes/s for the reference "
                                       "and batched backends across batch sizes and memory "
                                       "sizes, each record in a fresh process; prints the "
                                       "batched/reference ratios of this run.")
    bench.add_argument("--quick", action="store_true", help="a small grid, under a minute")
    bench.add_argument("--device", default="auto")
    bench.add_argument("--out", type=Path, default=None,
                       help="JSON path (default results/bench/<device>.json); a PNG is written "
                            "beside it")
    bench.add_argument("--seconds", type=float, default=None, help="timed seconds per record")
    bench.add_argument("--compile", action="store_true", help="torch.compile each time step")
    bench.add_argument("--cuda-graph", action="store_true",
                       help="capture each step as a CUDA graph (CUDA only)")
    bench.add_argument("--batch-sizes", type=_int_list, default=None, metavar="B,B,...",
                       help="batch sizes to time (default 16,64,256,1024)")
    bench.add_argument("--memory-slots", type=_int_list, default=None, metavar="N,N,...",
                       help="memory sizes to time (default 128,512,2048)")
    bench.add_argument("--backends", type=_backend_list,
                       default=("reference", "batched"), metavar="NAME,NAME",
                       help="reference,batched (default both)")
    bench.add_argument("--reference-max-batch", type=int, default=256,
                       help="largest batch timed with the (slow, per-episode) reference backend")
    return parser


def _int_list(text: str) -> tuple[int, ...]:
    try:
        values = tuple(int(v) for v in text.split(","))
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"expected comma-separated integers, got {text!r}") from None
    if any(v <= 0 for v in values):
        raise argparse.ArgumentTypeError(f"expected positive integers, got {text!r}")
    return values


def _backend_list(text: str) -> tuple[str, ...]:
    names = tuple(text.split(","))
    unknown = [n for n in names if n not in ("reference", "batched")]
    if unknown:
        raise argparse.ArgumentTypeError(f"unknown backend(s) {unknown}: reference, batched")
    return names


def requested_settings(args: argparse.Namespace) -> dict[str, dict[str, Any]]:
    """The settings a train command line names: its --config file's, then its flags' (which
    win), by config section. Settings it does not name keep their defaults."""
    from .config import ConfigError, read_toml

    sections = read_toml(args.config) if args.config else {}
    for name, values in sections.items():
        if not isinstance(values, dict):
            raise ConfigError(f"{args.config}: [{name}] must be a table")
    for flag, (section, name, _, _) in TRAIN_FLAGS.items():
        value = getattr(args, flag.lstrip("-").replace("-", "_"))
        if value is not None:
            sections.setdefault(section, {})[name] = value
    if args.download:
        sections.setdefault("data", {})["download"] = True
    if args.freeze_encoder:
        sections.setdefault("model", {})["freeze_encoder"] = True
    if args.read_norm:
        sections.setdefault("model", {})["read_norm"] = True
    if args.compile:
        sections.setdefault("train", {})["compile"] = True
    if args.cuda_graph:
        sections.setdefault("train", {})["cuda_graph"] = True
    if args.no_rotate:
        sections.setdefault("data", {})["rotate_classes"] = False
    if args.no_key_strength:
        sections.setdefault("model", {})["key_strength"] = False
    return sections


def cmd_train(args: argparse.Namespace) -> int:
    from .config import Config
    from .distributed import shutdown
    from .train import Trainer

    requested = requested_settings(args)
    trainer = None
    try:  # under torchrun each process runs this; the trainer asks distributed.py its rank
        trainer = Trainer(Config.from_dict(requested), args.out, resume=args.resume,
                          stop_accuracy=args.stop_accuracy, time_limit_s=args.time_limit,
                          progress=not args.quiet,
                          requested=requested)
        history = trainer.run()
    except BaseException:  # leave the process group, if any, without waiting: others may be gone
        if trainer is None:
            shutdown(wait=False)
        else:
            trainer.close(wait=False)
        raise
    trainer.close()
    if not trainer.dist.is_main:
        return 0
    last = next((r for r in reversed(history) if "heldout_instance_accuracy" in r), None)
    if last and not args.quiet:
        acc = last["heldout_instance_accuracy"]
        print(f"done: step {trainer.step}, held-out accuracy by presentation: "
              + " ".join(f"{a:.3f}" for a in acc))
    print(f"checkpoint: {Path(args.out) / 'checkpoint.pt'}")
    return 0


def cmd_evaluate(args: argparse.Namespace) -> int:
    from .run_eval import evaluate_checkpoint

    evaluate_checkpoint(args.checkpoint, episodes=args.episodes, out_dir=args.out,
                        presentations=args.presentations, batch_size=args.batch_size,
                        seed=args.seed, device=args.device, backend=args.backend,
                        data_overrides={"data_root": args.data_root,
                                        "cache_dir": args.cache_dir, "dataset": args.dataset,
                                        "min_images": args.min_images},
                        progress=not args.quiet)
    return 0


def cmd_bench(args: argparse.Namespace) -> int:
    import re

    from .bench import device_name, run_bench
    from .train import pick_device

    out = args.out
    if out is None:
        slug = re.sub(r"[^A-Za-z0-9]+", "-", device_name(pick_device(args.device))).strip("-")
        out = Path("results") / "bench" / f"{slug.lower()}{'-quick' if args.quick else ''}.json"
    run_bench(args.device, quick=args.quick, out=out, min_seconds=args.seconds,
              compile=args.compile, reference_max_batch=args.reference_max_batch,
              cuda_graph=args.cuda_graph, batch_sizes=args.batch_sizes,
              memory_slots=args.memory_slots, backends=args.backends)
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    from .errors import USER_ERRORS

    args = build_parser().parse_args(argv)
    handlers = {"train": cmd_train, "evaluate": cmd_evaluate, "bench": cmd_bench}
    with warnings.catch_warnings():
        warnings.showwarning = _warning_printer(args.command)
        try:
            return handlers[args.command](args)
        except USER_ERRORS as err:
            if os.environ.get(DEBUG_ENV):
                raise
            print(f"fewshot-mann {args.command}: error: {err}", file=sys.stderr)
            return 2
        except KeyboardInterrupt:
            print("interrupted", file=sys.stderr)
            return 130


def _warning_printer(command: str) -> Callable[..., None]:
    """Warnings (skipped files, left-out classes) as one plain report, not a source line."""
    def show(message: Warning | str, *_: Any, **__: Any) -> None:
        print(f"fewshot-mann {command}: warning: {message}", file=sys.stderr)
    return show


if __name__ == "__main__":
    sys.exit(main())
