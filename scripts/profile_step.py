"""Where the time of a training step goes: torch.profiler over a few MANN training steps
(paper sizes, random inputs), the top operators by self CPU time, with input shapes.

    python scripts/profile_step.py --batch-size 256 --threads 2 > results/bench/profile.txt
"""

from __future__ import annotations

import argparse

import torch
from torch.profiler import ProfilerActivity, profile

from fewshot_mann.bench import device_name, random_episodes
from fewshot_mann.config import ModelConfig
from fewshot_mann.episodes import LabelCode
from fewshot_mann.metrics import episode_loss
from fewshot_mann.models import MANN

parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
parser.add_argument("--batch-size", type=int, default=256)
parser.add_argument("--threads", type=int, default=0)
parser.add_argument("--steps", type=int, default=3)
parser.add_argument("--rows", type=int, default=20)
args = parser.parse_args()
if args.threads:
    torch.set_num_threads(args.threads)

B, T = args.batch_size, 50
code = LabelCode.make("one-hot", 5)
model = MANN(ModelConfig(), (1, 20, 20), code)
optimizer = torch.optim.Adam(model.parameters())
images, prev, targets = random_episodes(code, B, T)


def step() -> None:
    loss = episode_loss(model(images, prev), targets)
    optimizer.zero_grad(set_to_none=True)
    loss.backward()
    optimizer.step()


step()
with profile(activities=[ProfilerActivity.CPU], record_shapes=True) as prof:
    for _ in range(args.steps):
        step()
print(f"# {args.steps} training steps, batch {B}, T = {T}, paper sizes; "
      f"{device_name(torch.device('cpu'))}, torch {torch.__version__}")
print(prof.key_averages(group_by_input_shape=True).table(
    sort_by="self_cpu_time_total", row_limit=args.rows, max_name_column_width=28,
    max_shapes_column_width=60))
