"""Evaluate a saved checkpoint on the held-out classes of its own split, or on the classes of
any dataset (`classes=`)."""

from __future__ import annotations

import json
import warnings
from pathlib import Path
from typing import Any

import torch
from torch import nn

from ..checkpoint import checkpoint_data, load_checkpoint, model_from_checkpoint
from ..config import SUPPORT_QUERY, ConfigError
from ..data import ImageSet, SplitError, invert_custom, load_dataset, resolve
from ..data.splits import base_name
from ..methods.tasks import Score, Setting, eval_episodes, score
from ..runtime import pick_device
from ..training.run import make_sampler
from .scoring import EvalResult, evaluate, format_table, write_outputs


def evaluate_checkpoint(checkpoint: str | Path, episodes: int, out_dir: str | Path,
                        presentations: int | None = None, batch_size: int = 250,
                        seed: int = 12345, device: str = "auto", backend: str | None = None,
                        data_overrides: dict[str, Any] | None = None,
                        progress: bool = True, classes: str | None = None,
                        invert: bool | None = None, n_way: int | None = None,
                        shots: int | None = None) -> EvalResult | Score:
    """On the split's *test* classes, which the checkpoint never trained on, or on the
    `classes` of the data: "all", or a file naming them one a line (cross-dataset
    evaluation; images at the checkpoint's size and channels). `invert`: decode custom images
    light on dark; None: when the checkpoint was trained on Omniglot (`invert_custom`).

    Sequence models: episodes have max(training presentations, 11) presentations per class
    unless told otherwise (or fewer, when the test classes have fewer images), so that 1-, 5-
    and 10-shot accuracies all exist. ProtoNets and MAML: the accuracy on the queries of
    K-shot N-way episodes (`n_way`, `shots`; default: as trained), the ones the comparison
    scores every method on (`methods.tasks.eval_episodes`).
    """
    payload = load_checkpoint(checkpoint)
    model, cfg, split = model_from_checkpoint(payload, checkpoint)
    support_query = cfg.model.kind in SUPPORT_QUERY
    if not support_query and (n_way is not None or shots is not None):
        raise ConfigError(f"--n-way and --shots set the tasks of a protonet or maml "
                          f"checkpoint; a {cfg.model.kind} is scored at every presentation "
                          f"of its trained N-way episodes (--presentations)")
    trained_on = cfg.data.dataset
    cfg = checkpoint_data(cfg, checkpoint, payload, data_overrides)
    if backend is not None and hasattr(model, "set_backend"):
        model.set_backend(backend)
    dev = pick_device(device)
    model.to(dev)
    imageset = load_dataset(cfg.data, invert_custom(trained_on, cfg.data.dataset, invert),
                            progress)
    if classes is None:
        test, name = split.test, split.name
        try:
            index, _ = resolve(imageset, test)
        except SplitError as err:
            raise SplitError(f"{err} To score the model on this data's own classes, pass "
                             f"--classes all (or --classes FILE)") from None
    else:
        test, name = chosen_classes(classes, imageset), f"classes:{classes}"
        index, _ = resolve(imageset, test)
        if cfg.data.dataset == trained_on:
            seen = sorted({base_name(c) for c in split.train + split.val}
                          & {base_name(c) for c in test})
            if seen:
                warnings.warn(f"{len(seen)} of the {len(test)} classes were training or "
                              f"validation classes of this checkpoint (split {split.name!r}), "
                              f"e.g. {seen[:3]}: their accuracy is not held-out accuracy",
                              stacklevel=2)
    extra = {"split": name, "checkpoint": str(checkpoint), "trained_steps": payload["step"],
             "model": cfg.model.kind, "labels": cfg.episodes.labels, "seed": seed,
             "test_classes": len(test), "dataset": cfg.data.dataset,
             # what the run's held-out decisions (curves, stop, curriculum, collapse) read
             "training_decisions": split.decides}
    if support_query:
        setting = Setting(cfg.episodes.n_way if n_way is None else n_way,
                          cfg.episodes.shots if shots is None else shots)
        return score_support_query(model, setting, imageset, test, episodes, seed, dev, out_dir,
                                   extra, progress)
    if presentations is None:  # 11 when the test classes have enough images for 10-shot
        presentations = max(cfg.episodes.presentations, min(11, int(imageset.counts[index].min())))
    K = presentations
    sampler = make_sampler(cfg, imageset, test, side="test", device=dev, seed=seed,
                           presentations=K)
    result = evaluate(model, sampler, episodes, batch_size=batch_size, progress=progress)
    paths = write_outputs(result, out_dir, extra, title=cfg.model.kind)
    if progress:
        print(format_table(result))
        print(f"held-out decisions while training read {split.decides}")
        print("wrote " + ", ".join(str(p) for p in paths.values()))
    return result


def score_support_query(model: nn.Module, setting: Setting, imageset: ImageSet,
                        test: list[str], episodes: int, seed: int, device: torch.device,
                        out_dir: str | Path, extra: dict[str, Any], progress: bool) -> Score:
    """A ProtoNet's or MAML network's accuracy on the queries of `episodes` K-shot N-way
    episodes of the `test` classes, with its 95 % CI over episodes, into metrics.json."""
    if episodes < 1 or setting.n_way < 2 or setting.shots < 1:
        raise ConfigError("need at least one episode, 2 ways and 1 shot")
    ways = getattr(model, "ways", setting.n_way)  # MAML: one output per class slot
    if setting.n_way != ways:
        raise ConfigError(f"this MAML network has {ways} outputs: it takes {ways}-way tasks, "
                          f"not --n-way {setting.n_way}")
    result = score(model, eval_episodes(imageset, test, setting, episodes, seed, device),
                   setting.shots)
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    metrics = {"accuracy": result.mean, "ci95": result.ci95, "episodes": result.episodes,
               "n_way": setting.n_way, "shots": setting.shots, **extra}
    (out / "metrics.json").write_text(json.dumps(metrics, indent=1) + "\n")
    if progress:
        print(f"{extra['model']}, {setting.n_way}-way {setting.shots}-shot, {result.episodes} "
              f"held-out episodes: {100 * result.mean:.2f} +- {100 * result.ci95:.2f} % (mean "
              f"+- 95% CI over episodes)")
        print(f"wrote {out / 'metrics.json'}")
    return result


def chosen_classes(spec: str, imageset: ImageSet) -> list[str]:
    """`all`: every class of the data; otherwise a file naming classes one a line (blank lines
    and lines starting with # ignored), each of which the data must have."""
    if spec == "all":
        return list(imageset.class_names)
    path = Path(spec)
    if not path.is_file():
        raise SplitError(f"--classes takes 'all' or a file naming classes one a line; "
                         f"{spec} is neither")
    names = [line.strip() for line in path.read_text().splitlines()
             if line.strip() and not line.lstrip().startswith("#")]
    if not names:
        raise SplitError(f"{path} names no classes")
    twice = sorted({n for n in names if names.count(n) > 1})
    missing = [n for n in names if base_name(n) not in imageset]
    if twice or missing:
        problem = (f"names {len(missing)} classes the data lacks, e.g. {missing[:3]}" if missing
                   else f"lists {len(twice)} classes more than once, e.g. {twice[:3]}")
        raise SplitError(f"--classes {path} {problem}")
    return names
