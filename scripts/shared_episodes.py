"""Score any checkpoint on the shared N-way K-shot test episodes of results/REPORT.md, without
adding it to the comparison's plan: a MANN (LSTM, feedforward) `model.pt` reads each episode as
a sequence and is scored on presentation K+1; a ProtoNets or MAML checkpoint classifies that
same presentation from the K before it.

    python scripts/shared_episodes.py CHECKPOINT [--settings 5w1s,5w5s] [--episodes 1000]
        [--nearest-neighbour]

--nearest-neighbour scores the checkpoint's image embedding instead: how good it is as the
metric of a memory that reads the keys nearest to its query. The embedding of a ProtoNets
checkpoint is its CNN's; of a MANN with an image encoder, the encoder's features and, with
`--kv-query encoder`, the query projection W_q (the key-value memory's query). Each query takes
the label of the support class whose mean embedding has the largest cosine similarity (1-shot:
its one image).
"""

from __future__ import annotations

import argparse
from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch import nn

from experiments.compare import STANDARD, Context
from fewshot_mann.checkpoint import load_checkpoint, model_from_checkpoint
from fewshot_mann.config import SUPPORT_QUERY, default_cache_dir, default_data_root
from fewshot_mann.data.splits import omniglot_split
from fewshot_mann.evaluation.scoring import evaluate_episodes
from fewshot_mann.methods.tasks import eval_episodes, score

Embed = Callable[[torch.Tensor], torch.Tensor]  # (..., D) flat images -> (..., E)


def mann_embedding(model: nn.Module) -> Embed:
    """A MANN's encoder, followed by its key-value query projection W_q when it has one."""
    project = getattr(model.head_params, "query_projection", None)

    def embed(images: torch.Tensor) -> torch.Tensor:
        features = model.encoder(images.reshape(1, -1, images.shape[-1]))[0]  # (M, E)
        features = features if project is None else project(features)
        return features.view(*images.shape[:-1], -1)

    return embed


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
    p.add_argument("--settings", default="5w1s,5w5s", help=f"of {', '.join(STANDARD)}")
    p.add_argument("--episodes", type=int, default=1000)
    p.add_argument("--nearest-neighbour", action="store_true",
                   help="score the cosine nearest neighbour of the checkpoint's embedding")
    p.add_argument("--data-root", default=default_data_root())
    p.add_argument("--cache-dir", default=default_cache_dir())
    p.add_argument("--threads", type=int, default=1)
    args = p.parse_args(argv)
    settings = args.settings.split(",")
    unknown = [s for s in settings if s not in STANDARD]
    if unknown:
        p.error(f"unknown settings {unknown}; choose from {list(STANDARD)}")
    torch.set_num_threads(args.threads)
    model, cfg, _ = model_from_checkpoint(load_checkpoint(args.checkpoint), args.checkpoint)
    size, classifier = cfg.data.image_size, None
    if cfg.model.kind in SUPPORT_QUERY:
        classifier, model = model, None  # its modes as the report's
        if args.nearest_neighbour:
            if not hasattr(classifier, "embed"):
                p.error(f"{args.checkpoint}: a MAML network has no embedding to score")
            classifier = CosineNearest(classifier.eval().embed)
    elif args.nearest_neighbour:
        classifier = CosineNearest(mann_embedding(model.eval()))
    imageset = Context(runs=None, results=None, data_root=args.data_root,
                       cache_dir=args.cache_dir).imageset(size)
    test = omniglot_split("vinyals", imageset).test
    for name in settings:
        s = STANDARD[name]
        episodes = eval_episodes(imageset, test, s, args.episodes)
        if classifier is not None:
            result = score(classifier, episodes, s.shots)
            mean, ci95, count = result.mean, result.ci95, result.episodes
        else:  # the sequence model itself, scored on presentation K+1
            sequences = evaluate_episodes(model, episodes, s.n_way, s.presentations)
            mean, ci95 = sequences.instance_accuracy[s.shots], sequences.instance_ci95[s.shots]
            count = sequences.episodes
        method = ", cosine nearest neighbour" if args.nearest_neighbour else ""
        print(f"{args.checkpoint} {name}: {100 * mean:.2f} +- {100 * ci95:.2f} % "
              f"({count} episodes{method})")


if __name__ == "__main__":
    main()
