"""ProtoNets and MAML networks built from a run's config, and the checkpoints of their former
trainer read as the package's own.

Runs of `fewshot-mann train --method protonet|maml` write the package's checkpoint format
(`fewshot_mann.checkpoint`: config, split, image shape, step, weights). Checkpoints written
before, by `python -m fewshot_mann.baselines.train`, have the format "fewshot-mann-baseline-v1":
the network's constructor arguments ("network") and the run's settings ("train": method,
shots, ways, queries, batch, classes, ...). `from_legacy` turns such a payload into the
package's: its settings as a `Config`, its classes as the shipped Vinyals split, its command
in today's form; weights, optimiser, RNG states, step and history stay as they were, so an old
checkpoint loads, evaluates, predicts and resumes like a new one.
"""

from __future__ import annotations

import shlex
from typing import Any

from torch import nn

from ..config import Config, ModelConfig
from ..data.splits import shipped_split
from ..episodes import LabelCode
from ..errors import CheckpointError, ConfigError

LEGACY_PROGRAM = ["python", "-m", "fewshot_mann.baselines.train"]
# the former trainer's flags that are named otherwise by `fewshot-mann train`
LEGACY_FLAGS = {"--ways": "--n-way", "--batch": "--batch-size", "--val-episodes": "--eval-episodes"}


def build_network(cfg: ModelConfig, image_shape: tuple[int, int, int],
                  code: LabelCode) -> nn.Module:
    """The ProtoNet, SimpleShot or MAML network of `cfg` for images of `image_shape`; a MAML
    network has one output per symbol of the one-hot label code (the episode's N class
    slots)."""
    from .maml import MAML  # learn2learn, imported only when one of them is built
    from .protonet import ProtoNet
    from .simpleshot import SimpleShot

    channels, height, width = image_shape
    if height != width:
        raise ConfigError(f"{cfg.kind} takes square images, got {height}x{width}")
    if cfg.kind == "protonet":
        return ProtoNet(image_size=height, hidden=cfg.conv_width, channels=channels,
                        max_pool=cfg.conv_pool == "max")
    if cfg.kind == "simpleshot":
        if not cfg.classes:
            raise ConfigError("a simpleshot network needs model.classes, its number of "
                              "training classes")
        return SimpleShot(cfg.classes, image_size=height, hidden=cfg.conv_width,
                          channels=channels, max_pool=cfg.conv_pool == "max")
    if channels != 1:
        raise ConfigError("MAML's network (learn2learn's OmniglotCNN) takes grayscale images "
                          "(--channels 1)")
    return MAML(code.symbols, image_size=height, fast_lr=cfg.fast_lr,
                adapt_steps=cfg.adapt_steps, test_adapt_steps=cfg.test_adapt_steps,
                first_order=cfg.first_order)


def from_legacy(payload: dict[str, Any], path: str) -> dict[str, Any]:
    """A "fewshot-mann-baseline-v1" payload as a package checkpoint payload (see the module
    doc); CheckpointError when its settings are unreadable."""
    try:
        t = payload["train"]
        split = "vinyals-trainval" if t["classes"] == "trainval" else "vinyals"
        cfg = Config.from_dict({
            "data": {"split": split, "image_size": t["image_size"], "data_root": t["data_root"],
                     "cache_dir": t["cache_dir"]},
            "episodes": {"n_way": t["ways"], "shots": t["shots"], "queries": t["queries"]},
            "model": {"kind": t["method"], "fast_lr": float(t["fast_lr"]),
                      "adapt_steps": t["adapt_steps"], "test_adapt_steps": t["test_adapt_steps"],
                      "first_order": t["first_order"]},
            "train": {"steps": t["steps"], "batch_size": t["batch"], "lr": float(t["lr"]),
                      "lr_halve_every": t["lr_halve_every"], "seed": t["seed"],
                      "device": t["device"], "log_every": t["log_every"],
                      "eval_every": t["eval_every"], "eval_episodes": t["val_episodes"],
                      "checkpoint_every": t["checkpoint_every"]}}).validate()
    except (KeyError, TypeError, ValueError) as err:  # ConfigError is a ValueError
        raise CheckpointError(f"{path}: the settings of this ProtoNets/MAML checkpoint are "
                              f"unreadable: {err}") from err
    kept = {key: value for key, value in payload.items() if key not in ("train", "network")}
    size = cfg.data.image_size
    return {**kept, "config": cfg.to_dict(),
            "split": shipped_split(split).to_dict(), "image_shape": [1, size, size],
            "command": modern_command(str(payload.get("command", "")))}


def modern_command(command: str) -> str:
    """A command line of the former trainer (`python -m fewshot_mann.baselines.train ...`, or
    several joined by " && ") as the `fewshot-mann train` command of the same settings; other
    commands unchanged."""
    if not command:
        return command
    return " && ".join(_modern(part) for part in command.split(" && "))


def _modern(command: str) -> str:
    argv = shlex.split(command)
    if argv[:3] != LEGACY_PROGRAM:
        return command
    out = ["fewshot-mann", "train"]
    args = iter(argv[3:])
    for arg in args:
        flag, eq, value = arg.partition("=")
        if flag == "--classes":
            classes = value if eq else next(args, "")
            out += ["--split", "vinyals-trainval" if classes == "trainval" else "vinyals"]
        else:
            flag = LEGACY_FLAGS.get(flag, flag)
            out.append(f"{flag}={value}" if eq else flag)
    return shlex.join(out)
