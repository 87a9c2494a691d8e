"""A run of any method built in one straight line:

    config -> device -> data -> split -> samplers -> model -> optimiser -> restore

`build_run(cfg, out_dir)` reads files (the dataset, a checkpoint to resume, a pretrained
encoder) and writes none; the loop (`trainer.Trainer`) writes the run's files. What it does set
for the process: the global torch seed (model initialisation draws from it) and, under torchrun,
the process group (`distributed.init`). Threads and TF32 are the caller's (the CLI:
`runtime.set_process_flags`).
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn

from ..checkpoint import checkpoint_config, load_checkpoint, load_weights
from ..config import Config, ConfigError, replace
from ..data import DatasetError, ImageSet, default_split, load_training_data, resolve
from ..data.splits import ClassSplit
from ..episodes import EpisodeSampler, LabelCode
from ..errors import RunExistsError
from ..models import build_model
from ..runtime import adam, pick_device
from .distributed import Dist, rank_seed
from .distributed import init as init_distributed
from .loop import CHECKPOINT, restore_training_state

# what a resumed run may change: where it runs and finds its data, its schedule and cadence
RESUMABLE = {("data", key) for key in ("data_root", "cache_dir", "download")} | {
    ("train", key) for key in ("steps", "lr", "lr_min", "warmup_steps", "grad_clip",
                               "skip_grad_spikes", "device", "threads", "compile",
                               "cuda_graph", "precision", "eval_every",
                               "eval_episodes", "health_episodes", "checkpoint_every", "log_every",
                               "curriculum_accuracy", "on_divergence", "spike_factor",
                               "collapse_drop", "rollback_lr_factor", "max_rollbacks")}
SPLIT_ADVICE = ("lower --n-way, or name a --split with more classes on that side (custom data: "
                "ratio:F with another F, or lists:DIR)")


@dataclass
class Run:
    """Everything a training loop needs, built and (on resume) restored."""

    cfg: Config
    out_dir: Path
    dist: Dist
    device: torch.device
    imageset: ImageSet
    split: ClassSplit
    train_sampler: EpisodeSampler  # this process's training episodes
    # validation episodes; None when the split has no validation classes: then the run takes
    # no held-out decision (no held-out curve, stop, curriculum or collapse check)
    heldout: EpisodeSampler | None
    model: nn.Module
    forward_model: nn.Module  # what the training forward runs: DDP in a process group
    optimizer: torch.optim.Optimizer
    payload: dict[str, Any] | None  # the checkpoint resumed from
    # on resume, the settings adopted from the request that differ from the checkpoint's:
    # {"train.grad_clip": [10.0, 1.0], ...}; empty for a new run
    changed: dict[str, list[Any]]


def build_run(cfg: Config, out_dir: str | Path, *, resume: bool = False,
              requested: dict[str, dict[str, Any]] | None = None, progress: bool = True) -> Run:
    """The run `cfg` describes, in `out_dir`; with `resume`, the one checkpointed there.

    On resume the checkpoint's config rules: `requested` (the settings asked for by section;
    None: all of cfg) must agree with it except the RESUMABLE settings, which are adopted.
    `progress`: a bar on stderr while the data is decoded (rank 0).
    """
    out_dir = Path(out_dir)
    if not cfg.data.split:  # saved as chosen: santoro, or auto for custom data
        cfg = replace(cfg, data={"split": default_split(cfg.data.dataset)})
    ckpt_path = out_dir / CHECKPOINT
    payload, saved_split, changed = None, None, {}
    if resume:
        payload = load_checkpoint(ckpt_path)
        saved, saved_split = checkpoint_config(payload, ckpt_path)
        cfg = adopt_checkpoint_config(saved, cfg.to_dict() if requested is None else requested,
                                      out_dir)
        changed = {f"{section}.{key}": [old, new] for (section, key), (old, new)
                   in differences(saved.to_dict(), cfg.to_dict()).items()}
    elif ckpt_path.exists():
        raise RunExistsError(f"{ckpt_path} exists: pass --resume to continue that run, or "
                             f"choose another --out")
    cfg = cfg.validate()
    # under torchrun: this process's rank and device (distributed.py); else rank 0 of 1
    dist, device = init_distributed(pick_device(cfg.train.device))
    if cfg.train.cuda_graph and device.type != "cuda":
        raise ConfigError(f"train.cuda_graph needs a CUDA device; this run is on {device}")
    if cfg.train.precision == "bf16" and cfg.train.compile and device.type == "cuda":
        # tests/test_cuda.py::test_compiled_step_under_the_graph_trains_in_bf16 (xfail)
        raise ConfigError("train.precision bf16 with train.compile fails on CUDA inside the "
                          "compiled backward (torch 2.11: a float32 matmul into a bf16 "
                          "buffer); use --precision tf32 with --compile, or bf16 "
                          "without --compile")
    torch.manual_seed(cfg.train.seed)

    # the split's training and validation images alone: the test classes are not loaded
    imageset, split = load_training_data(cfg.data, cfg.episodes.n_way, saved_split,
                                        progress=progress and dist.is_main)
    if len(split.test) < cfg.episodes.n_way:  # counted by name: no test image is read
        raise DatasetError(f"{cfg.episodes.n_way}-way episodes need at least "
                           f"{cfg.episodes.n_way} test classes; the split has "
                           f"{len(split.test)}: {SPLIT_ADVICE}")
    train_sampler = make_sampler(cfg, imageset, split.train, side="train", device=device,
                                 seed=rank_seed(cfg.train.seed, dist.rank))
    heldout = (make_sampler(cfg, imageset, split.val, side="validation", device=device,
                            seed=cfg.train.seed + 1) if split.val else None)
    if cfg.model.kind == "simpleshot" and not cfg.model.classes:  # one output a class
        cfg = replace(cfg, model={"classes": len(split.train)})
    model = build_model(cfg.model, imageset.image_shape, train_sampler.code).to(device)
    if cfg.train.compile:
        if not hasattr(model, "compile_step"):
            raise ConfigError(f"train.compile applies to the MANN, not to {cfg.model.kind}")
        model.compile_step()
    optimizer = make_optimizer(cfg, model)
    if payload:
        restore(payload, ckpt_path, model, optimizer, train_sampler, dist)
    elif cfg.model.encoder_init:  # resumed runs have these weights in their checkpoint
        from ..pretrained import init_encoder  # learn2learn: seconds to import

        init_encoder(model, cfg.model.encoder_init, split)
    return Run(cfg, out_dir, dist, device, imageset, split, train_sampler, heldout, model,
               dist.wrap(model, graphed=cfg.train.cuda_graph), optimizer, payload, changed)


def differences(have: dict[str, dict[str, Any]], want: dict[str, dict[str, Any]]
                ) -> dict[tuple[str, str], tuple[Any, Any]]:
    """{(section, key): (have's value, want's value)} for each setting of `want` (config
    dicts, `want` possibly partial) whose value differs from `have`'s."""
    return {(section, key): (have[section][key], value)
            for section, values in want.items() for key, value in values.items()
            if value != have[section][key]}


def adopt_checkpoint_config(saved: Config, requested: dict[str, dict[str, Any]],
                            out_dir: Path) -> Config:
    """The checkpoint's config with the RESUMABLE settings of `requested` in it; ConfigError
    when `requested` asks for any other setting to change."""
    conflicts = [f"{section}.{key} = {value!r} (the run has {old!r})"
                 for (section, key), (old, value) in differences(saved.to_dict(),
                                                                 requested).items()
                 if (section, key) not in RESUMABLE]
    if conflicts:
        raise ConfigError(f"{out_dir} was trained with another configuration; a resumed run "
                          f"keeps its own, so drop or fix {', '.join(conflicts)}")
    adopted = {section: {key: value for key, value in values.items()
                         if (section, key) in RESUMABLE}
               for section, values in requested.items()}
    return replace(saved, **adopted)


def make_optimizer(cfg: Config, model: nn.Module) -> torch.optim.Optimizer:
    """Adam (fused on CUDA: runtime.adam) or RMSprop over the trainable parameters."""
    t = cfg.train
    params = [p for p in model.parameters() if p.requires_grad]  # not a frozen encoder
    if t.optimizer == "adam":
        return adam(params, lr=t.lr)
    return torch.optim.RMSprop(params, lr=t.lr, momentum=0.9, eps=1e-5)


def restore(payload: dict[str, Any], path: Path, model: nn.Module,
            optimizer: torch.optim.Optimizer, sampler: EpisodeSampler, dist: Dist) -> None:
    """Weights, optimiser and this process's RNG states from a checkpoint (the loop takes its
    step, history and guard from the payload)."""
    saved_world = int(payload.get("world_size", 1))  # absent: written by a single process
    if saved_world != dist.world_size:
        raise ConfigError(
            f"{path} was written by a run of {saved_world} training process(es) and this one "
            f"has {dist.world_size}: resume with the same number (torchrun --nnodes x "
            f"--nproc_per_node = {saved_world}; 1: plain fewshot-mann train), since each "
            f"process continues its own stream of episodes and the global batch is "
            f"batch_size x processes")
    load_weights(model, payload["model"], path)
    # each process's own RNG states (older checkpoints: rank 0's alone)
    rng = payload.get("rank_rng_states", [
        (payload.get("sampler_rng"), payload.get("torch_rng"))])[dist.rank]
    restore_training_state(payload, path, optimizer, sampler.generator, rng)


def make_sampler(cfg: Config, imageset: ImageSet, class_ids: list[str], *, side: str,
                 device: torch.device | str, seed: int, presentations: int | None = None
                 ) -> EpisodeSampler:
    """Episodes over the `side` ("train", "val" or "test") classes of a split.

    Training samplers add the random-rotation class augmentation and, with
    episodes.class_counts = "random", random class counts. Classes with fewer images
    than the presentations per class stop the run or are left out (data.min_images).
    """
    e = cfg.episodes
    need = presentations or e.presentations
    class_ids = usable_classes(imageset, class_ids, need, cfg.data.min_images, side)
    if len(class_ids) < e.n_way:
        raise DatasetError(f"{e.n_way}-way episodes need at least {e.n_way} {side} classes; "
                           f"the split has {len(class_ids)} usable ones: {SPLIT_ADVICE}")
    index, rotation = resolve(imageset, class_ids)
    pool = need
    if side == "train" and e.class_counts == "random":
        pool = min(2 * need, int(imageset.counts[index].min()))
        if pool == need:
            raise DatasetError(f"random class counts draw the {need} presentations of a class "
                               f"from more of its images; the smallest {side} class has only "
                               f"{pool}: lower --presentations or use --class-counts equal")
    return EpisodeSampler(imageset, index, rotation, e.n_way, need,
                          LabelCode.make(e.labels, e.n_way),
                          rotate_classes=side == "train" and cfg.data.rotate_classes,
                          device=device, seed=seed, pool=pool)


def usable_classes(imageset: ImageSet, class_ids: list[str], need: int, policy: str,
                   side: str) -> list[str]:
    index, _ = resolve(imageset, class_ids)
    short = (imageset.counts[index] < need).tolist()
    if not any(short):
        return class_ids
    examples = [c for c, s in zip(class_ids, short, strict=True) if s][:5]
    message = (f"{sum(short)} of {len(class_ids)} {side} classes have fewer than {need} images "
               f"(the presentations per class), e.g. {examples}")
    if policy == "error":
        raise DatasetError(message + "; pass --min-images skip to leave them out, or lower "
                                     "--presentations")
    warnings.warn(message + "; left out", stacklevel=3)
    return [c for c, s in zip(class_ids, short, strict=True) if not s]
