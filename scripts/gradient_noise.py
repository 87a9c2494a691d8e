"""How much of a float32 MANN gradient is rounding noise, for each value of the cosine's eps.

For a freshly initialised paper-size MANN (LRUA) and N real Omniglot training episodes, the
gradient norm of each episode's loss in float32; then the episodes with the largest norms again
in float64. Where float32 is far above float64, the float32 gradient is rounding noise, not
signal (results/scaling/README.md, "Gradient spikes"; tests/test_stability.py):

    python scripts/gradient_noise.py --data-root ../shared/data/omniglot --episodes 512 \\
        --cosine-eps 1e-8,1e-4,1e-3,1e-2

--checkpoint PATH: the trained MANN of a checkpoint (its weights, model and episode settings
and its split's training classes) instead of a fresh one: the noise along training, e.g. at the
last good state before a divergence (scripts/gpu_measurements.sh collapse brings that back).
--first-step SEED: the first training step of `fewshot-mann train --seed SEED --batch-size B`
(santoro, --n-way, --labels): its initial MANN and its first batch of B episodes, so that
batch_B_float32 is the gradient norm that run logs at step 1 and batch_B_float64 its float64
value.
--next-step RUN: the next training step of a run folder of `fewshot-mann train` (its
checkpoint.pt): the MANN it holds and the batch its training draws next (resuming restores the
sampler), so that batch_B_float32 (B: the run's batch size) is the gradient norm that run logs
at the checkpoint's step + 1: a divergence replayed step by step (results/scaling/README.md).
--batch B (64): also the gradient of the first B episodes' mean loss, as one training step
computes it, in float32 and float64.
--trace T: for the worst episode of each eps, the first T time steps in float32, then in float64:
the norm of the loss gradient with respect to the memory M_t, the smallest non-zero row norm of
M_t and the median key norm (where the rows' 1 / |M(i)| factors come from), and the norms of the
gradients with respect to the step's controls (keys, write gates, strengths), read vectors,
controller gate pre-activations and logits (a gradient that grows backward through time shows
as d_controller far above d_logits).
--by-parameter: the worst episode's float64 gradient norm for each parameter tensor.
--episode I: trace (and --by-parameter) episode I of the batch instead of the worst.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

import torch

from fewshot_mann.checkpoint import checkpoint_config, load_checkpoint, model_from_checkpoint
from fewshot_mann.config import Config, replace
from fewshot_mann.data import load_dataset
from fewshot_mann.data.splits import omniglot_split
from fewshot_mann.episodes import Episodes, LabelCode
from fewshot_mann.metrics import episode_loss
from fewshot_mann.models import MANN
from fewshot_mann.training.loop import CHECKPOINT
from fewshot_mann.training.run import Run, build_run, make_sampler


def gradient_norm(model: MANN, batch: Episodes, i: int, dtype: torch.dtype, n: int = 1
                  ) -> float:
    """The norm of the loss gradient of episodes i..i+n-1 (their mean loss, as in training),
    with the model and the episodes in dtype."""
    model.to(dtype).zero_grad(set_to_none=True)
    logits = model(batch.images[i:i + n].to(dtype), batch.prev_labels[i:i + n].to(dtype))
    episode_loss(logits, batch.targets[i:i + n]).backward()
    norm = torch.sqrt(sum((p.grad.double() ** 2).sum() for p in model.parameters()))
    model.float()
    return float(norm)


def trace(model: MANN, batch: Episodes, i: int, steps: int, dtype: torch.dtype = torch.float32
          ) -> list[dict[str, float]]:
    """Per time step of episode i, in dtype: |dL/dM_t|, the smallest non-zero |M_t(i)|, the
    median |k_t|, and the norm of the loss gradient with respect to each of the step's controls
    (d_keys, d_write_gates, d_strengths), its read vectors (d_reads), the controller's gate
    pre-activations (d_controller: what the LSTM's weights get from this step) and the step's
    logits (d_logits: what the loss puts in directly): where a large gradient enters the
    episode, and how it grows backward through time."""
    states, controls_t, reads_t, gates_t = [], [], [], []
    step, gates = model.memory.step, model.controller.gates

    def recording(state, controls):  # the memory's step, keeping its tensors' gradients
        for value in controls:
            if value.requires_grad:
                value.retain_grad()
        reads, new = step(state, controls)
        new.memory.retain_grad()
        reads.retain_grad()
        states.append(new.memory)
        controls_t.append(controls)
        reads_t.append(reads)
        return reads, new

    def recording_gates(*args):  # the controller's gate pre-activations, gradient kept
        pre = gates(*args)
        pre.retain_grad()
        gates_t.append(pre)
        return pre

    # instance attributes over the methods, removed below
    model.memory.step, model.controller.gates = recording, recording_gates
    try:
        model.to(dtype).zero_grad(set_to_none=True)
        logits = model(batch.images[i:i + 1].to(dtype), batch.prev_labels[i:i + 1].to(dtype))
        logits.retain_grad()
        episode_loss(logits, batch.targets[i:i + 1]).backward()
    finally:
        del model.memory.step, model.controller.gates
        model.float()
    rows = []
    for t, (memory, controls, reads, pre) in enumerate(zip(
            states[:steps], controls_t[:steps], reads_t[:steps], gates_t[:steps], strict=True)):
        norms = memory.detach()[0].norm(dim=-1)  # (N,) the rows of M_t
        rows.append({"t": t + 1, "dtype": str(dtype).removeprefix("torch."),
                     "memory_gradient": float(memory.grad.norm()),
                     "smallest_row": float(norms[norms > 0].min()),
                     "key_norm": float(controls.keys.detach().norm(dim=-1).median()),
                     **{f"d_{name}": float(value.grad.norm())
                        for name, value in controls._asdict().items() if value.grad is not None},
                     "d_reads": float(reads.grad.norm()),
                     "d_controller": float(pre.grad.norm()),
                     "d_logits": float(logits.grad[0, t].norm())})
    return rows


def parameter_gradients(model: MANN, batch: Episodes, i: int, dtype: torch.dtype
                        ) -> dict[str, float]:
    """The norm of episode i's loss gradient for each parameter tensor, in dtype."""
    gradient_norm(model, batch, i, dtype)
    return {name: round(float(p.grad.norm()), 4) for name, p in model.named_parameters()
            if p.grad is not None}


def from_run(run: Run, batch_size: int, which: str
             ) -> tuple[Config, LabelCode, Episodes, dict[str, torch.Tensor], tuple[int, ...], str]:
    """source()'s answer for a run built as `fewshot-mann train` builds it: its settings, its
    model's weights and the next `batch_size` episodes its training draws."""
    return (run.cfg, run.train_sampler.code, run.train_sampler.sample(batch_size),
            run.model.state_dict(), run.imageset.image_shape, which)


def source(args: argparse.Namespace, parser: argparse.ArgumentParser, data: dict[str, str]
           ) -> tuple[Config, LabelCode, Episodes, dict[str, torch.Tensor] | None,
                      tuple[int, ...], str]:
    """The settings, label code, episodes and starting weights (None: fresh, seeded by --seed)
    of --first-step, --checkpoint or a fresh MANN, the image shape, and a line saying which."""
    episodes = {"n_way": args.n_way, "labels": args.labels}
    if args.first_step is not None:  # what `fewshot-mann train` builds (run.py), on the CPU
        cfg = replace(Config(), data=data, episodes=episodes,
                      train={"seed": args.first_step, "batch_size": args.batch,
                             "device": "cpu", "threads": args.threads})
        with tempfile.TemporaryDirectory() as out:
            run = build_run(cfg, out)  # builds the run, writes nothing
        return from_run(run, args.batch, f"the initial MANN of `fewshot-mann train --seed "
                                         f"{args.first_step} --batch-size {args.batch}` and its "
                                         f"first batch")
    if args.next_step is not None:  # the run as `--resume` rebuilds it, on the CPU
        folder = args.next_step
        saved, _ = checkpoint_config(load_checkpoint(folder / CHECKPOINT), folder)
        if saved.model.kind != "mann" or saved.model.memory != "lrua":
            parser.error(f"{folder} holds no LRUA MANN")
        cfg = replace(saved, data=data, train={"device": "cpu", "threads": args.threads})
        run = build_run(cfg, folder, resume=True)  # restores the sampler; writes nothing
        step = run.payload["step"]
        return from_run(run, cfg.train.batch_size, f"the MANN of {folder / CHECKPOINT} (step "
                                                   f"{step}) and the batch of its step {step + 1}")
    split = None
    if args.checkpoint:
        trained, saved, split = model_from_checkpoint(load_checkpoint(args.checkpoint),
                                                      args.checkpoint)
        if not isinstance(trained, MANN) or saved.model.memory != "lrua":
            parser.error(f"{args.checkpoint} holds no LRUA MANN")
        cfg = replace(saved, data=data)  # this machine's data paths
        weights, which = trained.state_dict(), f"the MANN of {args.checkpoint}"
    else:
        cfg = replace(Config(), data=data, episodes=episodes)
        weights, which = None, f"a fresh paper-size MANN (seed {args.seed})"
    imageset = load_dataset(cfg.data)
    split = split or omniglot_split("santoro", imageset)
    sampler = make_sampler(cfg, imageset, split.train, side="train", device="cpu",
                           seed=args.sampler_seed)
    return (cfg, sampler.code, sampler.sample(args.episodes), weights, imageset.image_shape,
            which)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data-root", default=None)
    parser.add_argument("--cache-dir", default=None)
    parser.add_argument("--episodes", type=int, default=512)
    parser.add_argument("--checkpoint", default=None,
                        help="a trained MANN's checkpoint or model.pt (default: a fresh MANN)")
    parser.add_argument("--first-step", type=int, default=None, metavar="SEED",
                        help="the initial MANN and first --batch episodes of `fewshot-mann "
                             "train --seed SEED` (santoro split) instead of a fresh MANN of "
                             "--seed on --sampler-seed's episodes")
    parser.add_argument("--next-step", type=Path, default=None, metavar="RUN",
                        help="the MANN of RUN/checkpoint.pt and the batch its training draws "
                             "next (--batch is the run's batch size)")
    parser.add_argument("--n-way", type=int, default=15, help="(not with --checkpoint)")
    parser.add_argument("--labels", default="five-hot", help="(not with --checkpoint)")
    parser.add_argument("--cosine-eps", default="1e-8,1e-3", help="comma-separated values")
    parser.add_argument("--worst", type=int, default=3, help="episodes recomputed in float64")
    parser.add_argument("--seed", type=int, default=0, help="of the model's initialisation")
    parser.add_argument("--sampler-seed", type=int, default=7)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--trace", type=int, default=0, help="time steps traced (worst episode)")
    parser.add_argument("--by-parameter", action="store_true",
                        help="the worst episode's float64 gradient norm per parameter tensor")
    parser.add_argument("--episode", type=int, default=None,
                        help="--trace and --by-parameter this episode instead of the worst")
    parser.add_argument("--batch", type=int, default=64,
                        help="also the gradient of the first BATCH episodes' mean loss, as a "
                             "training step has it, in float32 and float64 (0: not)")
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    data = {k: v for k, v in {"data_root": args.data_root, "cache_dir": args.cache_dir}.items()
            if v}
    if sum(x is not None for x in (args.checkpoint, args.first_step, args.next_step)) > 1:
        parser.error("one of --checkpoint, --first-step and --next-step")
    if args.first_step is not None and args.batch < 1:
        parser.error("--first-step needs the step's --batch (>= 1)")
    cfg, code, batch, weights, image_shape, which = source(args, parser, data)
    episodes = batch.images.shape[0]
    if args.episode is not None and not 0 <= args.episode < episodes:
        parser.error(f"--episode must lie in 0..{episodes - 1}, got {args.episode}")
    if args.next_step is not None:
        args.batch = episodes  # the step's own batch
    print(f"{episodes} {cfg.episodes.n_way}-way {cfg.episodes.labels} training episodes, "
          f"{which}, float32 gradient norm per episode; the {args.worst} largest again in "
          f"float64")
    for eps in (float(e) for e in args.cosine_eps.split(",")):
        started = time.perf_counter()
        torch.manual_seed(args.seed)
        model = MANN(replace(cfg, model={"cosine_eps": eps}).model, image_shape, code)
        if weights is not None:
            model.load_state_dict(weights)
        norms = torch.tensor([gradient_norm(model, batch, i, torch.float32)
                              for i in range(episodes)])
        worst = norms.topk(args.worst).indices.tolist()
        record = {
            "cosine_eps": eps, "median": float(norms.median()), "max": float(norms.max()),
            "over_100": int((norms > 100).sum()), "over_1000": int((norms > 1000).sum()),
            "worst_episodes": worst, "worst_float32": [float(norms[i]) for i in worst],
            "worst_float64": [gradient_norm(model, batch, i, torch.float64) for i in worst],
            **({f"batch_{args.batch}_float32": gradient_norm(model, batch, 0, torch.float32,
                                                             args.batch),
                f"batch_{args.batch}_float64": gradient_norm(model, batch, 0, torch.float64,
                                                             args.batch)}
               if args.batch else {}),
            "seconds": round(time.perf_counter() - started, 1)}
        print(json.dumps(record), flush=True)
        traced = worst[0] if args.episode is None else args.episode
        if args.by_parameter:
            print(json.dumps({"episode": traced, "parameter_gradients": parameter_gradients(
                model, batch, traced, torch.float64)}), flush=True)
        for dtype in (torch.float32, torch.float64) if args.trace else ():
            for row in trace(model, batch, traced, args.trace, dtype):
                print(json.dumps(row), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
