"""Bytes that autograd keeps for the backward pass of one training episode, per memory variant
and memory size (paper shapes otherwise: 5-way one-hot, T = 50, 20x20, controller 200, width
40, 4 read heads, 1 write head): the DNC's N x N link matrices dominate at large N.

    python scripts/saved_bytes.py --slots 128,512
"""

from __future__ import annotations

import argparse

import torch

from fewshot_mann.bench import random_episodes
from fewshot_mann.config import ModelConfig
from fewshot_mann.episodes import LabelCode
from fewshot_mann.memory import MEMORIES
from fewshot_mann.models import MANN


def saved_bytes(memory: str, slots: int) -> int:
    """Bytes of the distinct tensor storages saved for backward by one episode's forward,
    the model's parameters left out."""
    code = LabelCode.make("one-hot", 5)
    model = MANN(ModelConfig(memory=memory, memory_slots=slots), (1, 20, 20), code)
    images, prev, _ = random_episodes(code, 1)
    storages: dict[int, int] = {}

    def pack(tensor: torch.Tensor) -> torch.Tensor:
        storages[tensor.untyped_storage().data_ptr()] = tensor.untyped_storage().nbytes()
        return tensor

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda tensor: tensor):
        model(images, prev)
    for p in model.parameters():
        storages.pop(p.untyped_storage().data_ptr(), None)
    return sum(storages.values())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--slots", default="128,512", help="memory sizes, comma-separated")
    args = parser.parse_args()
    torch.set_num_threads(1)
    print("memory  slots  MB per episode")
    for memory in MEMORIES:
        for slots in (int(n) for n in args.slots.split(",")):
            print(f"{memory:6} {slots:6}  {saved_bytes(memory, slots) / 1e6:8.2f}")


if __name__ == "__main__":
    main()
