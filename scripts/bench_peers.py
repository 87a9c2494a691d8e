"""Training throughput of this package's batched DNC and NTM against two public PyTorch
implementations, timed back to back in one process:

    ixaxaar/pytorch-dnc        DNC(405, 200, nr_cells=128, cell_size=40, read_heads=4), its
                               other arguments at their defaults (a 2-layer LSTM controller), and
                               a linear layer from its 405 outputs to the 5 classes
    loudinthecloud/pytorch-ntm EncapsulatedNTM(405, 5, 200, 1 layer, 1 read + 1 write head,
                               N = 128, M = 40); its sigmoid outputs taken as the logits

Ours: the paper configuration (LSTM 200, memory 128 x 40, 4 read heads, 1 write head,
`fewshot_mann.bench.training_step`). Every side runs the same training step on random 5-way
episodes of 50 steps, 20x20 images with the previous label (405 inputs): forward, cross-entropy
over the 50 steps, backward, an Adam step. The checkouts are read from the paths given (the
peers are not part of this repository); they run unmodified on torch 2.14 (no shims).

Load from other processes moves both sides' times, so each round times ours, then the peer,
with about --seconds each, alternating; episodes/s are the medians over --rounds rounds, and
the load average is recorded before and after.

    python scripts/bench_peers.py --pytorch-dnc /work/peers/pytorch-dnc \\
        --pytorch-ntm /work/peers/pytorch-ntm            # writes results/bench/peers.json
"""

from __future__ import annotations

import argparse
import json
import math
import os
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path

import torch

from fewshot_mann.bench import random_episodes, training_step
from fewshot_mann.config import ModelConfig
from fewshot_mann.episodes import LabelCode
from fewshot_mann.models import MANN
from fewshot_mann.runtime import adam, device_name, set_process_flags

PEERS = {"dnc": "ixaxaar/pytorch-dnc", "ntm": "loudinthecloud/pytorch-ntm"}
STEPS, CLASSES, PIXELS = 50, 5, 400


def ours(memory: str, images: torch.Tensor, prev: torch.Tensor, targets: torch.Tensor
         ) -> Callable[[], None]:
    code = LabelCode.make("one-hot", CLASSES)
    model = MANN(ModelConfig(memory=memory), (1, 20, 20), code)
    optimizer = adam(model.parameters(), lr=1e-4)
    return lambda: training_step(model, model, optimizer, images, prev, targets)


def peer(memory: str, path: Path, inputs: torch.Tensor, labels: torch.Tensor
         ) -> Callable[[], None]:
    """The peer's training step on inputs (B, T, 405), labels (B, T)."""
    sys.path.insert(0, str(path))
    batch = inputs.shape[0]
    if memory == "dnc":
        from dnc import DNC

        net = DNC(inputs.shape[-1], 200, nr_cells=128, cell_size=40, read_heads=4,
                  batch_first=True)
        head = torch.nn.Linear(inputs.shape[-1], CLASSES)
        params = [*net.parameters(), *head.parameters()]

        def forward() -> torch.Tensor:
            outputs, _ = net(inputs, (None, None, None), reset_experience=True)  # (T, B, 405)
            return head(outputs.transpose(0, 1))
    else:
        from ntm.aio import EncapsulatedNTM

        net = EncapsulatedNTM(inputs.shape[-1], CLASSES, 200, 1, 1, 128, 40)
        params = list(net.parameters())

        def forward() -> torch.Tensor:
            net.init_sequence(batch)
            return torch.stack([net(x)[0] for x in inputs.unbind(1)], dim=1)

    optimizer = torch.optim.Adam(params, lr=1e-4)

    def step() -> None:
        logits = forward()  # (B, T, 5)
        loss = torch.nn.functional.cross_entropy(logits.reshape(-1, CLASSES), labels.reshape(-1))
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
    return step


def timed(step: Callable[[], None], count: int) -> float:
    """Seconds per step over `count` steps."""
    start = time.perf_counter()
    for _ in range(count):
        step()
    return (time.perf_counter() - start) / count


def compare(memory: str, path: Path, batch: int, rounds: int, seconds: float) -> dict:
    torch.manual_seed(0)
    code = LabelCode.make("one-hot", CLASSES)
    images, prev, targets = random_episodes(code, batch, STEPS, PIXELS)
    sides = {"ours": ours(memory, images, prev, targets),
             "peer": peer(memory, path, torch.cat([images, prev], -1), targets[..., 0])}
    # one warm-up step each; how many steps make about `seconds` of a round
    counts = {name: max(1, math.ceil(seconds / timed(step, 1))) for name, step in sides.items()}
    rates: dict[str, list[float]] = {"ours": [], "peer": []}
    for _ in range(rounds):
        for name, step in sides.items():
            rates[name].append(batch / timed(step, counts[name]))
    ours_eps, peer_eps = (statistics.median(rates[name]) for name in ("ours", "peer"))
    return {"memory": memory, "peer": PEERS[memory], "batch_size": batch,
            "ours_eps": round(ours_eps, 1), "peer_eps": round(peer_eps, 1),
            "ratio": round(ours_eps / peer_eps, 2), "steps_per_round": counts,
            "ours_eps_rounds": [round(r, 1) for r in rates["ours"]],
            "peer_eps_rounds": [round(r, 1) for r in rates["peer"]]}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--pytorch-dnc", type=Path, required=True,
                        help="a checkout of ixaxaar/pytorch-dnc (the folder holding dnc/)")
    parser.add_argument("--pytorch-ntm", type=Path, required=True,
                        help="a checkout of loudinthecloud/pytorch-ntm (the folder holding ntm/)")
    parser.add_argument("--batch-sizes", default="16,64", help="comma-separated (default: 16,64)")
    parser.add_argument("--threads", type=int, default=2, help="torch threads (default: 2)")
    parser.add_argument("--rounds", type=int, default=5,
                        help="alternating rounds per setting (default: 5)")
    parser.add_argument("--seconds", type=float, default=1.0,
                        help="about how long each side runs in a round (default: 1.0)")
    parser.add_argument("--out", type=Path, default=Path("results/bench/peers.json"),
                        help="the JSON written (default: results/bench/peers.json)")
    args = parser.parse_args(argv)
    for flag, path, package in (("--pytorch-dnc", args.pytorch_dnc, "dnc"),
                                ("--pytorch-ntm", args.pytorch_ntm, "ntm")):
        if not (path / package / "__init__.py").is_file():
            parser.error(f"{flag} {path}: no {package}/__init__.py there")
    set_process_flags(args.threads, "fp32")
    load_before = os.getloadavg()
    records = []
    for memory, path in (("dnc", args.pytorch_dnc), ("ntm", args.pytorch_ntm)):
        for batch in (int(b) for b in args.batch_sizes.split(",")):
            record = compare(memory, path, batch, args.rounds, args.seconds)
            records.append(record)
            print(f"{memory} batch {batch:3}: ours {record['ours_eps']:7.1f}, "
                  f"{record['peer']} {record['peer_eps']:6.1f} episodes/s, "
                  f"{record['ratio']:.2f}x", flush=True)
    doc = {"command": "python " + " ".join([sys.argv[0], *(argv or sys.argv[1:])]),
           "machine": f"{device_name(torch.device('cpu'))}, {os.cpu_count()} CPUs, "
                      f"torch {torch.__version__}",
           "load": {"before": [round(x, 2) for x in load_before],
                    "after": [round(x, 2) for x in os.getloadavg()]},
           "records": records}
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(doc, indent=1) + "\n")
    print(f"wrote {args.out} (load average before {doc['load']['before']}, "
          f"after {doc['load']['after']})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
