"""`fewshot-mann` command line: train, evaluate, predict, inspect, memory, models, bench.

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

from .config import BACKENDS, MEMORY_NAMES

DEBUG_ENV = "FEWSHOT_MANN_DEBUG"  # set to get the traceback of an expected error

# flag -> (config section, field, type, help)
TRAIN_FLAGS: dict[str, tuple[str, str, type, str]] = {
    "--dataset": ("data", "dataset", str, "omniglot, folder:PATH[,PATH...] or csv:PATH"),
    "--data-root": ("data", "data_root", str,
                    "folder holding omniglot-py/ (default: $FEWSHOT_MANN_DATA, else data/)"),
    "--cache-dir": ("data", "cache_dir", str,
                    "where decoded image tensors are cached (default: $FEWSHOT_MANN_CACHE, "
                    "else data/cache)"),
    "--split": ("data", "split", str, "omniglot: santoro (default; 1,100 train / 100 "
                "validation / 423 test) | vinyals | lake, or santoro-trainval | "
                "vinyals-trainval | lake-trainval (validation classes trained on: no held-out "
                "decision while training); custom data: auto (default: 20 %% test, 10 %% "
                "validation, seeded by --split-seed), ratio:F[,V] or lists:DIR"),
    "--split-seed": ("data", "split_seed", int, "seed of a ratio split (custom data)"),
    "--image-size": ("data", "image_size", int, "images are resized to this square size"),
    "--channels": ("data", "channels", int, "1 (grayscale) or 3 (RGB), custom data"),
    "--min-images": ("data", "min_images", str,
                     "custom data, a class with fewer images than presentations: error | skip"),
    "--bad-files": ("data", "bad_files", str, "custom data, unreadable files: skip | error"),
    "--n-way": ("episodes", "n_way", int, "classes per episode"),
    "--presentations": ("episodes", "presentations", int, "presentations of each class"),
    "--labels": ("episodes", "labels", str, "one-hot | five-hot"),
    "--class-counts": ("episodes", "class_counts", str,
                       "training episodes: equal (each class --presentations times) | random"),
    "--method": ("model", "kind", str,
                 "mann (default) | lstm | feedforward | protonet | simpleshot | maml; the "
                 "last three start from their papers' settings (fewshot_mann/config.py "
                 "METHOD_DEFAULTS)"),
    "--model": ("model", "kind", str, "the same as --method"),
    "--shots": ("episodes", "shots", int,
                "protonet, simpleshot, maml: support images a class (K) in their episodes"),
    "--queries": ("episodes", "queries", int,
                  "protonet, maml: query images a class in training episodes (default: "
                  "protonet 5, maml as many as --shots)"),
    "--backend": ("model", "backend", str, "memory backend: " + " | ".join(BACKENDS)),
    "--memory": ("model", "memory", str, "external memory: " + " | ".join(MEMORY_NAMES)),
    "--conv-width": ("model", "conv_width", int,
                     "protonet, simpleshot: channels of each conv block (the embedding "
                     "size)"),
    "--conv-pool": ("model", "conv_pool", str,
                    "protonet, simpleshot: stride (stride-2 convs) | max (stride-1 convs, 2x2 "
                    "max pooling)"),
    "--augment": ("train", "augment", float,
                  "simpleshot: strength of the random affine distortion of training images, "
                  "0 = none (default 1: up to 10 degrees, 10 %% scale, 3 px shift)"),
    "--write-heads": ("model", "write_heads", int, "ntm, dnc: write heads"),
    "--shift-range": ("model", "shift_range", int, "ntm: shifts over -S..S slots"),
    "--kv-neighbours": ("model", "kv_neighbours", int, "kv: nearest keys read"),
    "--kv-margin": ("model", "kv_margin", float, "kv: margin of the memory loss"),
    "--kv-query": ("model", "kv_query", str, "kv: query from the controller or the encoder"),
    "--encoder": ("model", "encoder", str, "none (flat pixels) | conv | convbase"),
    "--encoder-init": ("model", "encoder_init", str,
                       "ProtoNets checkpoint (model.pt) that starts a convbase encoder"),
    "--controller-size": ("model", "controller_size", int, "LSTM units"),
    "--memory-slots": ("model", "memory_slots", int, "memory rows"),
    "--memory-width": ("model", "memory_width", int, "memory row size"),
    "--read-heads": ("model", "read_heads", int, "read heads"),
    "--cosine-eps": ("model", "cosine_eps", float,
                     "added to |k||M(i)| in the memory's cosines (>= 1e-3: less float32 noise)"),
    "--fast-lr": ("model", "fast_lr", float, "maml: inner-loop step size"),
    "--adapt-steps": ("model", "adapt_steps", int, "maml: inner steps while meta-training"),
    "--test-adapt-steps": ("model", "test_adapt_steps", int,
                           "maml: inner steps at test time (evaluate, predict)"),
    "--steps": ("train", "steps", int, "optimiser updates"),
    "--batch-size": ("train", "batch_size", int, "episodes per update"),
    "--optimizer": ("train", "optimizer", str, "adam | rmsprop"),
    "--lr": ("train", "lr", float, "peak learning rate"),
    "--lr-min": ("train", "lr_min", float, "learning rate at the last step (cosine decay)"),
    "--lr-halve-every": ("train", "lr_halve_every", int,
                         "protonet, maml: halve the learning rate every this many steps, 0 "
                         "never (default: protonet 2000, maml 0)"),
    "--warmup-steps": ("train", "warmup_steps", int, "linear warm-up steps"),
    "--grad-clip": ("train", "grad_clip", float, "max gradient norm (0 = off)"),
    "--skip-grad-spikes": ("train", "skip_grad_spikes", float,
                           "skip the update when the gradient norm is above this x the median "
                           "of the last 100 steps' (0 = never)"),
    "--seed": ("train", "seed", int, "seed of the whole run"),
    "--device": ("train", "device", str, "auto | cpu | cuda | cuda:N"),
    "--threads": ("train", "threads", int, "torch CPU threads (0: torch's own number)"),
    "--precision": ("train", "precision", str, "fp32 | tf32 (CUDA matmuls) | bf16 (autocast)"),
    "--eval-every": ("train", "eval_every", int, "steps between held-out evaluations"),
    "--eval-episodes": ("train", "eval_episodes", int, "episodes per held-out evaluation"),
    "--health-episodes": ("train", "health_episodes", int,
                          "held-out episodes whose memory and controller signs (slot norms, "
                          "key strengths, gates, ...) each evaluation logs; 0: none"),
    "--checkpoint-every": ("train", "checkpoint_every", int, "steps between checkpoints"),
    "--log-every": ("train", "log_every", int, "steps between log lines"),
    "--curriculum": ("train", "curriculum", str,
                     "N-way curriculum, e.g. 5,10: train these widths first, then --n-way"),
    "--curriculum-accuracy": ("train", "curriculum_accuracy", float,
                              "held-out 2nd-presentation accuracy that moves the curriculum on"),
    "--on-divergence": ("train", "on_divergence", str,
                        "rollback (to the last good state, lower lr; default) | stop"),
}
# switch -> (config section, field, the value it sets, help): flags that take no value
TRAIN_SWITCHES: dict[str, tuple[str, str, bool, str]] = {
    "--download": ("data", "download", True,
                   "download Omniglot with torchvision if it is absent"),
    "--no-rotate": ("data", "rotate_classes", False,
                    "no random 90-degree class rotation during training"),
    "--no-key-strength": ("model", "key_strength", False,
                          "plain softmax of the cosine (eq. 18 as printed, no sharpening)"),
    "--read-norm": ("model", "read_norm", True,
                    "layer-normalise each read vector (bounds what memory feeds back)"),
    "--freeze-encoder": ("model", "freeze_encoder", True,
                         "keep the --encoder-init weights fixed (no gradient, BN frozen)"),
    "--freeze-query": ("model", "freeze_query", True,
                       "kv, --kv-query encoder: keep W_q at its initialisation (the identity "
                       "where the widths agree): queries are the encoder's metric"),
    "--first-order": ("model", "first_order", True, "maml: first-order meta-gradient"),
    "--compile": ("train", "compile", True,
                  "torch.compile each MANN time step (tens of seconds to compile)"),
    "--cuda-graph": ("train", "cuda_graph", True,
                     "capture the unrolled episode as a CUDA graph (CUDA only)"),
}


class _Help(argparse.HelpFormatter):
    """Help that shows each option's default: the parser's, where it has one; a default that
    comes from the config (parser default None) is written into the help text itself."""

    def _get_help_string(self, action: argparse.Action) -> str | None:
        text = action.help or ""
        if (action.default not in (None, argparse.SUPPRESS) and action.nargs != 0
                and "default" not in text):
            shown = (",".join(map(str, action.default))
                     if isinstance(action.default, tuple) else action.default)
            text += f" (default: {str(shown).replace('%', '%%')})"
        return text


def _config_default(section: str, name: str) -> str:
    """The default of a config field as the help shows it."""
    from .config import Config

    value = getattr(getattr(Config(), section), name)
    if isinstance(value, bool):
        return "on" if value else "off"
    return f"{value:,}" if isinstance(value, int) else str(value) if value != "" else "none"


def _train_help(section: str, name: str, text: str) -> str:
    """A train flag's help with the default of its config field, unless the text says it."""
    if "default" in text:
        return text
    return f"{text} (default: {_config_default(section, name)})"


INVERT = ("turn custom images light on dark as Omniglot is decoded: auto (when the model was "
          "trained on Omniglot), yes, no")

MODELS = ("The model zoo: each model's name (usable as --checkpoint), the classes, shots and "
          "images it handles, its held-out accuracy with the command that measured it, its "
          "calibration, file size and sha256.")
CHECKPOINT = "a checkpoint file, or a zoo model's name (`fewshot-mann models` lists them)"

MEMORY = ("A life-long memory: a key-value memory (Kaiser et al. 2017) kept in a folder, whose "
          "keys are a trained model's embeddings of labelled images. Add images, query it, "
          "forget a class, a tag or an image (removed from the files), or show what it holds.")

DEVICE = "auto (CUDA when present) | cpu | cuda | cuda:N"
QUIET = "no progress bars, no lines on stdout"


def _invert(choice: str) -> bool | None:
    return {"auto": None, "yes": True, "no": False}[choice]


class _Version(argparse.Action):
    """--version: the package's version and the versions a bug report needs beside it (torch is
    imported only when asked, so that --help stays fast)."""

    def __init__(self, option_strings: Sequence[str], dest: str, **kwargs: Any) -> None:
        super().__init__(option_strings, dest, nargs=0, help="print versions and exit")

    def __call__(self, parser: argparse.ArgumentParser, *_: Any) -> None:
        import platform

        import torch

        from . import __version__
        cuda = f", CUDA {torch.version.cuda}" if torch.version.cuda else ""
        print(f"fewshot-mann {__version__} (torch {torch.__version__}{cuda}, "
              f"Python {platform.python_version()})")
        parser.exit()


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="fewshot-mann",
        description="Few-shot classification with Memory-Augmented Neural Networks "
                    "(Santoro et al. 2016) on Omniglot or your own images.", formatter_class=_Help)
    parser.add_argument("--version", action=_Version)
    commands = parser.add_subparsers(dest="command", required=True)

    def sub(name: str, **kwargs: Any) -> argparse.ArgumentParser:
        return commands.add_parser(name, formatter_class=_Help, **kwargs)

    train = sub("train", help="train a model on episodes",
                description="Train a MANN, LSTM, feedforward network, ProtoNet or MAML "
                            "(--method) on episodes of the training classes; evaluate on the "
                            "split's validation classes as it goes; checkpoint to --out.")
    train.add_argument("--config", type=Path,
                       help="TOML config (flags override it; default: none, every setting "
                            "at its default)")
    for flag, (section, name, kind, text) in TRAIN_FLAGS.items():
        train.add_argument(flag, type=kind, help=_train_help(section, name, text))
    for flag, (_, _, _, text) in TRAIN_SWITCHES.items():
        train.add_argument(flag, action="store_true", help=text)
    train.add_argument("--out", type=Path, required=True, help="run folder")
    train.add_argument("--resume", action="store_true", help="continue the run in --out")
    train.add_argument("--stop-accuracy", type=float, default=0.0,
                       help="stop once held-out 2nd-presentation accuracy reaches this (0-1; 0: "
                            "never)")
    train.add_argument("--time-limit", type=float, default=0.0, metavar="SECONDS",
                       help="pause (checkpointed, resumable) at the first held-out evaluation "
                            "after this many seconds")
    train.add_argument("--pause-at", type=int, default=None, metavar="STEP",
                       help="pause (checkpointed, resumable) after this step: e.g. a run's "
                            "state at a step between its checkpoints, regenerated exactly "
                            "(default: none, run to --steps)")
    train.add_argument("--quiet", action="store_true", help="no progress bar or log lines")

    ev = sub("evaluate", help="evaluate a checkpoint on held-out classes",
                        description="Per-instance and k-shot accuracy on the checkpoint's "
                                    "held-out (test) classes, with 95% CIs over episodes; "
                                    "for ProtoNets, SimpleShot and MAML, the accuracy on "
                                    "K-shot N-way "
                                    "tasks of those classes.")
    ev.add_argument("--checkpoint", type=Path, required=True, help=CHECKPOINT)
    ev.add_argument("--episodes", type=int, default=1000,
                    help="test episodes scored (the CIs shrink as 1/sqrt of this)")
    ev.add_argument("--out", type=Path, required=True, help="folder for metrics.json/.csv/.png")
    ev.add_argument("--presentations", type=int, default=None,
                    help="presentations per class (default: max(training value, 11), so that "
                         "10-shot accuracy exists)")
    ev.add_argument("--batch-size", type=int, default=250, help="episodes per forward pass")
    ev.add_argument("--seed", type=int, default=12345, help="seed of the test episodes")
    ev.add_argument("--backend", choices=["reference", "batched"], default=None,
                    help="memory backend (default: the one it was trained with)")
    ev.add_argument("--n-way", type=int, default=None,
                    help="protonet, simpleshot, maml: classes per test episode (default: as "
                         "trained)")
    ev.add_argument("--shots", type=int, default=None,
                    help="protonet, simpleshot, maml: support images a class (default: as "
                         "trained)")
    _data_flags(ev)
    ev.add_argument("--min-images", choices=["error", "skip"], default=None,
                    help="test classes with fewer images than the presentations: stop, or "
                         "leave them out (default: as in training)")
    ev.add_argument("--quiet", action="store_true", help=QUIET)

    pr = sub("predict", help="classify new images from a few labelled ones",
                        description="Classify query images among the classes of a support "
                                    "folder (one sub-folder of 1..K labelled images per "
                                    "class) with a trained checkpoint (MANN, LSTM, "
                                    "feedforward, ProtoNets, SimpleShot or MAML).")
    pr.add_argument("--checkpoint", type=Path, default=None,
                    help=f"{CHECKPOINT}; default: the zoo model that fits the support set, or "
                         f"the model of --memory")
    pr.add_argument("--support", type=Path, default=None,
                    help="folder holding one sub-folder of labelled images per class "
                         "(default: none; give it or --memory)")
    pr.add_argument("--memory", type=Path, default=None, metavar="DIR",
                    help="a life-long memory (`fewshot-mann memory create`) as the support "
                         "set: each query answered by its nearest stored keys, with cosine "
                         "similarities where a support set gives probabilities (default: none)")
    pr.add_argument("--query", type=Path, nargs="+", required=True,
                    help="image files, or folders of them")
    pr.add_argument("--out", type=Path, required=True, help="CSV (or JSON) file to write")
    pr.add_argument("--format", choices=["csv", "json"], default=None,
                    help="default: json for an --out ending in .json, else csv")
    pr.add_argument("--top-k", type=int, default=3, help="classes listed per query")
    pr.add_argument("--orders", type=int, default=1,
                    help="average over this many random support orders; MANN, LSTM and "
                         "feedforward models only: ProtoNets and MAML ignore the order, so "
                         "more than 1 is ignored for them with a warning")
    pr.add_argument("--seed", type=int, default=0, help="seed of the support orders")
    pr.add_argument("--max-shots", type=int, default=None,
                    help="use at most this many support images a class (drawn per order; "
                         "default: all)")
    pr.add_argument("--explain", type=Path, default=None, metavar="DIR",
                    help="write per query a PNG of the support images the model leaned on "
                         "(MANN, ProtoNets; default: none)")
    pr.add_argument("--invert", choices=["auto", "yes", "no"], default="auto", help=INVERT)
    pr.add_argument("--device", default="auto", help=DEVICE)
    pr.add_argument("--quiet", action="store_true", help="no lines on stdout")

    ins = sub("inspect", help="draw a MANN's memory over one held-out episode",
                         description="Heatmaps of one held-out episode's read weights, write "
                                     "weights and usage over time (memory.png), and how often "
                                     "the most-read support image is of the predicted class "
                                     "on held-out N-way 1-shot tasks (inspect.json).")
    ins.add_argument("--checkpoint", type=Path, required=True, help=CHECKPOINT)
    ins.add_argument("--out", type=Path, required=True, help="folder for memory.png, "
                     "inspect.json")
    ins.add_argument("--tasks", type=int, default=200, help="held-out 1-shot tasks to measure")
    ins.add_argument("--seed", type=int, default=12345,
                     help="seed of the drawn episode and tasks")
    _data_flags(ins)
    ins.add_argument("--quiet", action="store_true", help=QUIET)

    _memory_parser(sub("memory", help="a life-long memory of labelled images, kept on disk",
                       description=MEMORY))

    models = sub("models", help="list the named pretrained models",
                 description=MODELS)
    models.add_argument("--json", action="store_true", help="the manifest entries as JSON")

    bench = sub("bench", help="throughput of both memory backends",
                           description="Training and inference episodes/s for the reference "
                                       "and batched backends across batch sizes and memory "
                                       "sizes, each record in a fresh process; prints the "
                                       "batched/reference ratios of this run.")
    bench.add_argument("--quick", action="store_true", help="a small grid, under a minute")
    bench.add_argument("--device", default="auto", help=DEVICE)
    bench.add_argument("--out", type=Path, default=None,
                       help="JSON path (default: results/bench/<device>.json); a PNG is written "
                            "beside it")
    bench.add_argument("--seconds", type=float, default=None,
                       help="timed seconds per record (default: 3, 0.5 with --quick)")
    bench.add_argument("--compile", action="store_true", help="torch.compile each time step")
    bench.add_argument("--cuda-graph", action="store_true",
                       help="capture each step as a CUDA graph (CUDA only)")
    bench.add_argument("--batch-sizes", type=_int_list, default=None, metavar="B,B,...",
                       help="batch sizes to time (default: 16,64,256,1024)")
    bench.add_argument("--memory-slots", type=_int_list, default=None, metavar="N,N,...",
                       help="memory sizes to time (default: 128,512,2048)")
    bench.add_argument("--backends", type=_names_of(BACKENDS, "backend(s)"),
                       default=BACKENDS, metavar="NAME,NAME",
                       help=f"memory backends to time: {','.join(BACKENDS)} (default: all)")
    bench.add_argument("--memories", type=_names_of(MEMORY_NAMES, "memory variant(s)"),
                       default=("lrua",), metavar="NAME,...",
                       help=f"memory variants to time: {','.join(MEMORY_NAMES)} "
                            f"(default: lrua)")
    bench.add_argument("--reference-max-batch", type=int, default=256,
                       help="largest batch timed with the (slow, per-episode) reference backend")
    return parser


def _memory_parser(memory: argparse.ArgumentParser) -> None:
    """`fewshot-mann memory create | add | query | forget | stats`."""
    from .zoo import default_keyspace

    actions = memory.add_subparsers(dest="action", required=True, metavar="ACTION",
                                    help="create | add | query | forget | stats")

    def action(name: str, text: str, needs_model: bool = True) -> argparse.ArgumentParser:
        parser = actions.add_parser(name, help=text, description=text[0].upper() + text[1:]
                                    + ".", formatter_class=_Help)
        parser.add_argument("dir", type=Path, metavar="DIR", help="the memory's folder")
        if needs_model:
            parser.add_argument("--device", default="auto", help=DEVICE)
        return parser

    def own_model(parser: argparse.ArgumentParser) -> None:
        parser.add_argument("--checkpoint", default=None,
                            help="the memory's model, where its file has moved (default: the "
                                 "zoo name or file it was created with; another model is "
                                 "refused)")
        parser.add_argument("--quiet", action="store_true", help=QUIET)

    create = action("create", "make an empty memory in a new or empty folder, bound to one "
                              "model's keys")
    create.add_argument("--checkpoint", default=None,
                        help=f"{CHECKPOINT}; a ProtoNets model, whose embeddings are the keys "
                             f"(default: the zoo's key-space model, {default_keyspace().name})")
    create.add_argument("--capacity", type=int, default=None,
                        help="most entries; when full, a new entry replaces the one unused "
                             "longest (default: no limit, nothing is replaced)")
    create.add_argument("--no-merge", action="store_true",
                        help="every image its own entry (default: an image joins its nearest "
                             "entry when that entry is of its class)")
    create.add_argument("--threshold", type=_threshold, default="calibrated",
                        help="a query whose best cosine similarity is below this is answered "
                             "'unknown': a number, 'calibrated' (the zoo's threshold for the "
                             "model, 5 %% false accepts on classes it never saw; none when the "
                             "zoo has none) or 'none' (never unknown)")
    create.add_argument("--views", type=int, default=None,
                        help="distorted copies of each image (small random shifts, turns and "
                             "scalings, the same for every image) whose embeddings are averaged "
                             "into its key, for images written and queries alike; costs V+1 "
                             "embeddings an image (default: as many as the zoo's threshold of "
                             "the model was calibrated with, else 0)")
    add = action("add", "write labelled images into the memory: new classes or more images "
                        "of known ones")
    add.add_argument("--support", required=True,
                     help="a folder of class sub-folders of images, or csv:FILE with columns "
                          "path,label")
    add.add_argument("--tag", default=None,
                     help="a tag for these images, e.g. to forget them together (default: none)")
    own_model(add)
    query = action("query", "classify images by their nearest stored keys")
    query.add_argument("--query", type=Path, nargs="+", required=True,
                       help="image files, or folders of them")
    query.add_argument("--out", type=Path, required=True, help="CSV (or JSON) file to write")
    query.add_argument("--format", choices=["csv", "json"], default=None,
                       help="default: json for an --out ending in .json, else csv")
    query.add_argument("--top-k", type=int, default=5, help="classes listed per query")
    query.add_argument("--touch", action="store_true",
                       help="mark the entry each query read as just used, so that a full "
                            "memory replaces it last (writes the memory)")
    own_model(query)
    forget = action("forget", "remove a class, the images of a tag, or one image from the "
                              "memory's files")
    which = forget.add_mutually_exclusive_group(required=True)
    which.add_argument("--class", dest="class_name", default=None,
                       help="a class name (default: none; one of --class, --tag, --image)")
    which.add_argument("--tag", default=None, help="a tag given to `memory add` (default: none)")
    which.add_argument("--image", default=None,
                       help="an image, by the path it was added under (default: none)")
    own_model(forget)
    stats = action("stats", "what the memory holds and what it is", needs_model=False)
    stats.add_argument("--json", action="store_true", help="as JSON")


def _data_flags(parser: argparse.ArgumentParser) -> None:
    """Where a checkpoint's classes are read from (evaluate, inspect)."""
    parser.add_argument("--device", default="auto", help=DEVICE)
    parser.add_argument("--data-root", default=None,
                        help="folder holding omniglot-py/ (default: $FEWSHOT_MANN_DATA, else "
                             "where the checkpoint was trained from, else data/)")
    parser.add_argument("--download", action="store_true",
                        help="download Omniglot with torchvision into --data-root (default: "
                             "data/) if it is nowhere to be found")
    parser.add_argument("--cache-dir", default=None,
                        help="where decoded image tensors are cached (default: "
                             "$FEWSHOT_MANN_CACHE, else the checkpoint's)")
    parser.add_argument("--dataset", default=None, help="override the dataset, e.g. "
                        "folder:PATH on another machine (the classes must match the split), "
                        "or another dataset with --classes (default: the checkpoint's)")
    parser.add_argument("--classes", default=None, metavar="all|FILE",
                        help="use these classes of the data instead of the split's test "
                             "classes: all, or a file naming them one a line (default: the "
                             "split's test classes)")
    parser.add_argument("--invert", choices=["auto", "yes", "no"], default="auto", help=INVERT)


def _data_overrides(args: argparse.Namespace) -> dict[str, Any]:
    return {"data_root": args.data_root, "cache_dir": args.cache_dir, "dataset": args.dataset,
            "download": args.download or None,
            **({"min_images": args.min_images} if "min_images" in args else {})}


def _int_list(text: str) -> tuple[int, ...]:
    try:
        values = tuple(int(v) for v in text.split(","))
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"expected comma-separated integers, got {text!r}") from None
    if any(v <= 0 for v in values):
        raise argparse.ArgumentTypeError(f"expected positive integers, got {text!r}")
    return values


def _names_of(choices: tuple[str, ...], what: str) -> Callable[[str], tuple[str, ...]]:
    """An argparse type: comma-separated names, each one of `choices`."""
    def parse(text: str) -> tuple[str, ...]:
        names = tuple(text.split(","))
        unknown = [n for n in names if n not in choices]
        if unknown:
            raise argparse.ArgumentTypeError(f"unknown {what} {unknown}: {', '.join(choices)}")
        return names
    return parse


def requested_settings(args: argparse.Namespace) -> dict[str, dict[str, Any]]:
    """The settings a train command line names: its --config file's, then its flags' (which
    win), by config section. Settings it does not name keep their defaults."""
    from .config import ConfigError, read_toml

    if args.method and args.model and args.method != args.model:
        raise ConfigError(f"--method {args.method} and --model {args.model} name two methods "
                          f"(--model is another name for --method): give one")
    sections = read_toml(args.config) if args.config else {}
    for name, values in sections.items():
        if not isinstance(values, dict):
            raise ConfigError(f"{args.config}: [{name}] must be a table")
    for flag, (section, name, _, _) in TRAIN_FLAGS.items():
        value = getattr(args, flag.lstrip("-").replace("-", "_"))
        if value is not None:
            sections.setdefault(section, {})[name] = value
    for flag, (section, name, value, _) in TRAIN_SWITCHES.items():
        if getattr(args, flag.lstrip("-").replace("-", "_")):
            sections.setdefault(section, {})[name] = value
    return sections


def _threshold(text: str) -> float | str | None:
    """--threshold: a cosine, "calibrated" or "none"."""
    if text in ("calibrated", "none"):
        return None if text == "none" else text
    try:
        return float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number, 'calibrated' or 'none', not "
                                         f"{text!r}") from None


def cmd_train(args: argparse.Namespace) -> int:
    from .config import Config, ConfigError
    from .runtime import set_process_flags
    from .trainers import build_trainer
    from .training.distributed import shutdown

    requested = requested_settings(args)
    trainer = None
    try:  # under torchrun each process runs this; the trainer asks distributed.py its rank
        trainer = build_trainer(Config.from_dict(requested), args.out, resume=args.resume,
                                requested=requested, stop_accuracy=args.stop_accuracy,
                                time_limit_s=args.time_limit, progress=not args.quiet)
        set_process_flags(trainer.cfg.train.threads, trainer.cfg.train.precision)
        if (not requested.get("data", {}).get("split") and not args.resume
                and trainer.dist.is_main):
            split = trainer.split
            print(f"split: {split.name}, chosen as no --split was given: {len(split.train)} "
                  f"training, {len(split.val)} validation, {len(split.test)} test classes "
                  f"(saved in {Path(args.out) / 'split.json'})")
        if args.pause_at is not None and not trainer.step < args.pause_at:
            raise ConfigError(f"--pause-at {args.pause_at}: the run is at step {trainer.step} "
                              f"already")
        history = trainer.run(stop_at=args.pause_at)
    except BaseException:  # leave the process group, if any, without waiting: others may be gone
        if trainer is None:
            shutdown(wait=False)
        else:
            trainer.close(wait=False)
        raise
    trainer.close()
    if not trainer.dist.is_main:
        return 0
    last = next((r for r in reversed(history)
                 if "heldout_instance_accuracy" in r or "val_accuracy" in r), None)
    if last and not args.quiet:
        if "val_accuracy" in last:  # protonet, maml
            print(f"done: step {trainer.step}, validation accuracy "
                  f"{100 * last['val_accuracy']:.2f} +- {100 * last['val_ci95']:.2f} %")
        else:
            acc = last["heldout_instance_accuracy"]
            print(f"done: step {trainer.step}, validation accuracy by presentation: "
                  + " ".join(f"{a:.3f}" for a in acc))
    print(f"checkpoint: {Path(args.out) / 'checkpoint.pt'}")
    return 0


def cmd_evaluate(args: argparse.Namespace) -> int:
    from .evaluation.heldout import evaluate_checkpoint

    evaluate_checkpoint(args.checkpoint, episodes=args.episodes, out_dir=args.out,
                        presentations=args.presentations, batch_size=args.batch_size,
                        seed=args.seed, device=args.device, backend=args.backend,
                        data_overrides=_data_overrides(args),
                        progress=not args.quiet, classes=args.classes,
                        invert=_invert(args.invert), n_way=args.n_way, shots=args.shots)
    return 0


def cmd_predict(args: argparse.Namespace) -> int:
    from .config import ConfigError
    from .inference.predictor import Predictor

    if (args.support is None) == (args.memory is None):
        raise ConfigError("predict takes a support set: --support FOLDER or --memory DIR "
                          "(one of them)")
    if args.memory is not None:
        if args.orders != 1 or args.max_shots is not None or args.explain is not None:
            raise ConfigError("--orders, --max-shots and --explain work on a support folder; a "
                              "--memory is answered by its stored keys")
        return _answer_from_memory(args, args.memory)
    checkpoint = args.checkpoint
    if checkpoint is None:
        from .inference.predictor import support_shape
        from .zoo import choose

        classes, shots = support_shape(args.support)
        chosen, why = choose(classes, min(shots, args.max_shots or shots))
        checkpoint = chosen.name
        print(f"fewshot-mann predict: {why}", file=sys.stderr)
    predictor = Predictor.from_checkpoint(checkpoint, device=args.device,
                                          invert=_invert(args.invert))
    result = predictor.predict(args.support, args.query, orders=args.orders, seed=args.seed,
                               top_k=args.top_k, max_shots=args.max_shots,
                               explain=args.explain is not None)
    fmt = args.format or ("json" if args.out.suffix.lower() == ".json" else "csv")
    path = result.write(args.out, fmt)
    if args.explain is not None:
        result.draw_explanations(args.explain)
    if not args.quiet:
        for q in result.queries[:20]:
            spread = f" +- {q.probability_sd:.2f}" if result.orders > 1 else ""
            print(f"{q.query}: {q.predicted} ({q.probability:.2f}{spread})")
        if len(result.queries) > 20:
            print(f"... and {len(result.queries) - 20} more")
        print(f"{len(result.queries)} queries classified among {len(result.classes)} classes"
              + (f", {len(result.skipped)} skipped" if result.skipped else "")
              + f"; wrote {path}" + (f" and {args.explain}/" if args.explain else ""))
    return 0


def _open_memory(args: argparse.Namespace, folder: Path) -> Any:
    from .lifelong.memory import LifelongMemory

    return LifelongMemory.open(folder, checkpoint=args.checkpoint, device=args.device,
                               progress=not args.quiet)


def _answer_from_memory(args: argparse.Namespace, folder: Path) -> int:
    """Classify --query by the memory's stored keys and write --out (predict --memory, memory
    query)."""
    from .lifelong.answers import write_answers

    memory = _open_memory(args, folder)
    answers = memory.query(args.query, top_k=args.top_k, touch=getattr(args, "touch", False))
    s = memory.settings
    fmt = args.format or ("json" if args.out.suffix.lower() == ".json" else "csv")
    path = write_answers(answers, args.out, fmt,
                         {"memory": str(folder), "model": s.model_name,
                          "model_sha256": s.model_sha256, "threshold": s.threshold,
                          "classes": memory.classes()})
    if not args.quiet:
        read = [a for a in answers if not a.skipped]
        for a in read[:20]:
            print(f"{a.query}: {a.prediction} ({a.similarity:.2f})")
        if len(read) > 20:
            print(f"... and {len(read) - 20} more")
        skipped = len(answers) - len(read)
        print(f"{len(read)} queries classified among the {len(memory.classes())} classes of "
              f"memory {folder}" + (f", {skipped} skipped" if skipped else "")
              + f"; wrote {path}")
    return 0


def _holds(stats: dict[str, Any]) -> str:
    return (f"memory {stats['folder']} holds {stats['classes']} classes, {stats['entries']} "
            f"entries, {stats['images']} images")


def cmd_memory(args: argparse.Namespace) -> int:
    from .lifelong.memory import LifelongMemory

    if args.action == "create":
        memory = LifelongMemory.create(args.dir, checkpoint=args.checkpoint,
                                       capacity=args.capacity, merge=not args.no_merge,
                                       threshold=args.threshold, views=args.views,
                                       device=args.device)
        s = memory.settings
        print(f"created memory {args.dir}: keys of {s.model_name} (sha256 "
              f"{s.model_sha256[:12]}..., {s.dim}-d), capacity {s.capacity or 'no limit'}, "
              f"merge {'on' if s.merge else 'off'}, threshold {s.threshold}, views {s.views}")
    elif args.action == "add":
        memory = _open_memory(args, args.dir)
        added = memory.add(args.support, tag=args.tag)
        if not args.quiet:
            print(f"added {added.images} images ({added.new_classes} new classes): "
                  f"{added.merged} merged into entries of their class, {added.new_entries} new "
                  f"entries, {added.replaced} replaced; {_holds(memory.stats())}")
    elif args.action == "query":
        return _answer_from_memory(args, args.dir)
    elif args.action == "forget":
        memory = _open_memory(args, args.dir)
        gone = memory.forget(class_name=args.class_name, tag=args.tag, image=args.image)
        if not args.quiet:
            print(f"forgot {gone.images} images: {gone.entries} entries removed, "
                  f"{gone.reduced} merged entries reduced; {_holds(memory.stats())}")
    else:
        _print_stats(args)
    return 0


def _print_stats(args: argparse.Namespace) -> None:
    """`memory stats`: read from the folder alone (no model is loaded)."""
    import json

    from .lifelong.memory import stored_stats

    stats = stored_stats(args.dir)
    if args.json:
        print(json.dumps(stats, indent=1))
    else:
        for key, value in stats.items():
            print(f"{key:<14} {value}")


def cmd_inspect(args: argparse.Namespace) -> int:
    from .inference.inspection import inspect_checkpoint

    inspect_checkpoint(args.checkpoint, args.out, tasks=args.tasks, seed=args.seed,
                       device=args.device, classes=args.classes, invert=_invert(args.invert),
                       data_overrides=_data_overrides(args),
                       progress=not args.quiet)
    return 0


def cmd_models(args: argparse.Namespace) -> int:
    from .zoo import describe, listing, models

    if args.json:
        import json

        print(json.dumps([describe(m) for m in models()], indent=1))
    else:
        print(listing())
    return 0


def cmd_bench(args: argparse.Namespace) -> int:

    from .bench import run_bench
    from .runtime import device_slug, pick_device

    out = args.out
    if out is None:
        slug = device_slug(pick_device(args.device))
        out = Path("results") / "bench" / f"{slug}{'-quick' if args.quick else ''}.json"
    run_bench(args.device, quick=args.quick, out=out, min_seconds=args.seconds,
              compile=args.compile, reference_max_batch=args.reference_max_batch,
              cuda_graph=args.cuda_graph, batch_sizes=args.batch_sizes,
              memory_slots=args.memory_slots, backends=args.backends,
              memories=args.memories)
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    from .errors import USER_ERRORS

    args = build_parser().parse_args(argv)
    handlers = {"train": cmd_train, "evaluate": cmd_evaluate, "bench": cmd_bench,
                "predict": cmd_predict, "inspect": cmd_inspect, "models": cmd_models,
                "memory": cmd_memory}
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
