"""What a trained MANN's memory does over an episode: the post-mortem tool for a diverged run.

For each checkpoint (model.pt, checkpoint.pt or a trainer's diverged-stepN.pt), runs a batch of
training episodes of its own configuration and prints, at some steps t, the mean over episodes
of: the largest slot norm of M_t, the read-vector norm, the key strength beta_t and the write
gate sigma(alpha_t) (models/mann.py), plus the fraction of saturated LSTM gates (|pre-activation|
> 5). Compare a diverged checkpoint with the last good one to see which of them ran away.

    python scripts/diagnose_memory.py results/santoro-5way/model.pt RUN/diverged-step1075.pt
"""

from __future__ import annotations

import argparse
from pathlib import Path

import torch

from fewshot_mann.checkpoint import load_checkpoint, model_from_checkpoint
from fewshot_mann.config import replace
from fewshot_mann.data import load_dataset
from fewshot_mann.run import make_sampler


@torch.no_grad()
def memory_trace(path: Path, data_root: str | None, episodes: int) -> list[dict[str, float]]:
    """Per time step: slot norm, read norm, key strength, write gate, saturated LSTM gates."""
    model, cfg, split = model_from_checkpoint(load_checkpoint(path), path)
    if data_root:
        cfg = replace(cfg, data={"data_root": data_root})
    sampler = make_sampler(cfg, load_dataset(cfg.data), split.train, side="train",
                           device=torch.device("cpu"), seed=0)
    batch = sampler.sample(episodes)
    trace: list[dict[str, float]] = []
    memory_step, controller_step = model.memory.step, model.controller.step

    def record_memory(state, keys, write_gates, strengths):
        reads, new = memory_step(state, keys, write_gates, strengths)
        trace[-1].update(slot_norm=new.memory.norm(dim=-1).amax(-1).mean().item(),
                         read_norm=reads.norm(dim=-1).mean().item(),
                         key_strength=strengths.mean().item(),
                         write_gate=write_gates.mean().item())
        return reads, new

    def record_controller(projected, feedback, state):
        gates = projected + model.controller.recurrent(
            state[0] if feedback is None else torch.cat([feedback, state[0]], dim=-1))
        trace.append({"saturated_gates": (gates.abs() > 5).float().mean().item()})
        return controller_step(projected, feedback, state)

    model.memory.step, model.controller.step = record_memory, record_controller
    model.eval()
    model(batch.images, batch.prev_labels)
    return trace


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("checkpoints", type=Path, nargs="+")
    parser.add_argument("--data-root", default=None)
    parser.add_argument("--episodes", type=int, default=32)
    args = parser.parse_args()
    for path in args.checkpoints:
        trace = memory_trace(path, args.data_root, args.episodes)
        print(f"{path}: {len(trace)} steps, means over {args.episodes} training episodes")
        print("   t  slot norm  read norm  key strength  write gate  saturated LSTM gates")
        for t in sorted({0, 4, 9, 24, 49, 99, 149, len(trace) - 1}):
            if t < len(trace):
                s = trace[t]
                print(f"{t + 1:4d}  {s['slot_norm']:9.2f}  {s['read_norm']:9.2f}  "
                      f"{s['key_strength']:12.1f}  {s['write_gate']:10.2f}  "
                      f"{s['saturated_gates']:20.3f}")


if __name__ == "__main__":
    main()
