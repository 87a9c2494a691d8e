"""Score any checkpoint on the shared N-way K-shot test episodes of results/REPORT.md, without
adding it to the comparison's plan: a MANN (LSTM, feedforward) `model.pt` reads each episode as
a sequence and is scored on presentation K+1; a ProtoNets or MAML checkpoint classifies that
same presentation from the K before it.

    python scripts/shared_episodes.py CHECKPOINT [--settings 5w1s,5w5s] [--episodes 1000]
"""

from __future__ import annotations

import argparse

import torch

from experiments.compare import STANDARD, Context
from fewshot_mann.baselines.checkpoint import FORMAT as BASELINE
from fewshot_mann.baselines.checkpoint import baseline_from_payload
from fewshot_mann.baselines.tasks import eval_episodes, score
from fewshot_mann.checkpoint import FORMAT, model_from_checkpoint, read_payload
from fewshot_mann.config import default_cache_dir, default_data_root
from fewshot_mann.data.splits import omniglot_split
from fewshot_mann.evaluate import evaluate_episodes


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("checkpoint")
    p.add_argument("--settings", default="5w1s,5w5s", help=f"of {', '.join(STANDARD)}")
    p.add_argument("--episodes", type=int, default=1000)
    p.add_argument("--data-root", default=default_data_root())
    p.add_argument("--cache-dir", default=default_cache_dir())
    p.add_argument("--threads", type=int, default=1)
    args = p.parse_args(argv)
    settings = args.settings.split(",")
    unknown = [s for s in settings if s not in STANDARD]
    if unknown:
        p.error(f"unknown settings {unknown}; choose from {list(STANDARD)}")
    torch.set_num_threads(args.threads)
    payload = read_payload(args.checkpoint, (BASELINE, FORMAT), "a MANN or baseline checkpoint")
    ctx = Context(runs=None, results=None, episodes=args.episodes, data_root=args.data_root,
                  cache_dir=args.cache_dir)
    if payload["format"] == BASELINE:
        classifier = baseline_from_payload(payload, args.checkpoint)
        size = getattr(classifier, "image_size", 28)  # MAML's network takes 28x28 only
    else:
        model, cfg, _ = model_from_checkpoint(payload, args.checkpoint)
        size = cfg.data.image_size
    imageset = ctx.imageset(size)
    test = omniglot_split("vinyals", imageset).test
    for name in settings:
        s = STANDARD[name]
        episodes = eval_episodes(imageset, test, s, args.episodes)
        if payload["format"] == BASELINE:
            result = score(classifier, episodes, s.shots)
            mean, ci95, count = result.mean, result.ci95, result.episodes
        else:
            sequences = evaluate_episodes(model, episodes, s.n_way, s.presentations)
            mean, ci95 = sequences.instance_accuracy[s.shots], sequences.instance_ci95[s.shots]
            count = sequences.episodes
        print(f"{args.checkpoint} {name}: {100 * mean:.2f} +- {100 * ci95:.2f} % "
              f"({count} episodes)")


if __name__ == "__main__":
    main()
