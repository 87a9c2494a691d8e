"""Cosine nearest-neighbour accuracy of a checkpoint's image embedding on the shared test episodes
of results/REPORT.md: how good the embedding is as the metric of a memory that reads the keys
nearest to its query.

    python scripts/nearest_neighbour.py CHECKPOINT [--settings 5w1s,20w1s] [--episodes 1000]

CHECKPOINT is a ProtoNets checkpoint (its CNN's embedding) or a MANN's model.pt with an image
encoder (the encoder's features and, with `--kv-query encoder`, the query projection W_q: the
key-value memory's query). Each query takes the label of the support class whose mean
embedding has the largest cosine similarity (1-shot: its one image).
"""

from __future__ import annotations

import argparse
from collections.abc import Callable

import torch
import torch.nn.functional as F

from experiments.compare import STANDARD, Context
from fewshot_mann.baselines.checkpoint import FORMAT as BASELINE
from fewshot_mann.baselines.checkpoint import baseline_from_payload
from fewshot_mann.baselines.tasks import eval_episodes, score
from fewshot_mann.checkpoint import FORMAT, model_from_checkpoint, read_payload
from fewshot_mann.config import default_cache_dir, default_data_root
from fewshot_mann.data.splits import omniglot_split

Embed = Callable[[torch.Tensor], torch.Tensor]  # (..., D) flat images -> (..., E)


def embedding(path: str) -> tuple[Embed, int]:
    """The checkpoint's embedding (in eval mode) and the image size it was trained at."""
    payload = read_payload(path, (BASELINE, FORMAT), "a ProtoNets or MANN checkpoint")
    if payload["format"] == BASELINE:
        net = baseline_from_payload(payload, path).eval()
        return net.embed, net.image_size
    model, cfg, _ = model_from_checkpoint(payload, path)
    model.eval()
    project = getattr(model.head_params, "query_projection", None)

    def embed(images: torch.Tensor) -> torch.Tensor:
        features = model.encoder(images.reshape(1, -1, images.shape[-1]))[0]  # (M, E)
        features = features if project is None else project(features)
        return features.view(*images.shape[:-1], -1)

    return embed, cfg.data.image_size


class CosineNearest:
    """A `FewShotClassifier`: the label of the most cosine-similar support class mean."""

    def __init__(self, embed: Embed) -> None:
        self.embed = embed

    @torch.no_grad()
    def predict(self, support: torch.Tensor, support_labels: torch.Tensor,
                query: torch.Tensor) -> torch.Tensor:
        means = F.normalize(F.normalize(self.embed(support), dim=-1).mean(2), dim=-1)  # (B, N, E)
        queries = F.normalize(self.embed(query), dim=-1)  # (B, M, E)
        nearest = (queries @ means.transpose(1, 2)).argmax(-1)  # (B, M)
        return support_labels[:, :, 0].gather(1, nearest)


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("checkpoint")
    p.add_argument("--settings", default="5w1s,20w1s", help=f"of {', '.join(STANDARD)}")
    p.add_argument("--episodes", type=int, default=1000)
    p.add_argument("--data-root", default=default_data_root())
    p.add_argument("--cache-dir", default=default_cache_dir())
    p.add_argument("--threads", type=int, default=1)
    args = p.parse_args(argv)
    unknown = [s for s in args.settings.split(",") if s not in STANDARD]
    if unknown:
        p.error(f"unknown settings {unknown}; choose from {list(STANDARD)}")
    torch.set_num_threads(args.threads)
    embed, size = embedding(args.checkpoint)
    ctx = Context(runs=None, results=None, episodes=args.episodes, data_root=args.data_root,
                  cache_dir=args.cache_dir)
    imageset = ctx.imageset(size)
    test = omniglot_split("vinyals", imageset).test
    for name in args.settings.split(","):
        s = STANDARD[name]
        result = score(CosineNearest(embed), eval_episodes(imageset, test, s, args.episodes),
                       s.shots)
        print(f"{args.checkpoint} {name}: {100 * result.mean:.2f} +- {100 * result.ci95:.2f} % "
              f"({result.episodes} episodes)")


if __name__ == "__main__":
    main()
