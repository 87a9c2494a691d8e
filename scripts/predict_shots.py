"""Accuracy of `predict` against the size of the support set, on a checkpoint's test classes.

    python scripts/predict_shots.py --checkpoint results/santoro-5way/model.pt \
        --data-root ../shared/data/omniglot --shots 1,5,9,18 --tasks 100

Per task: N test classes (N = the checkpoint's N-way), K support images and 2 queries a class,
through `Predictor.predict` (the images as the training pipeline decodes them). A sequence
model trained on episodes of N x presentations steps reads N x K + 1 steps here: the numbers
show what happens when that is longer than any episode it was trained on.
"""

from __future__ import annotations

import argparse
import json
import time

import torch

from fewshot_mann.checkpoint import checkpoint_config, load_checkpoint
from fewshot_mann.config import default_cache_dir, default_data_root, replace
from fewshot_mann.data import load_dataset, resolve
from fewshot_mann.inference.predictor import Predictor


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--checkpoint", required=True)
    p.add_argument("--data-root", default=default_data_root())
    p.add_argument("--cache-dir", default=default_cache_dir())
    p.add_argument("--shots", default="1,5,9,18")
    p.add_argument("--max-shots", type=int, default=None, help="passed to predict")
    p.add_argument("--tasks", type=int, default=100)
    p.add_argument("--queries", type=int, default=2, help="queries per class")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--threads", type=int, default=1)
    args = p.parse_args()
    torch.set_num_threads(args.threads)
    predictor = Predictor.from_checkpoint(args.checkpoint, device="cpu")
    cfg, split = checkpoint_config(load_checkpoint(args.checkpoint))
    cfg = replace(cfg, data={"data_root": args.data_root, "cache_dir": args.cache_dir})
    imageset = load_dataset(cfg.data)
    index, _ = resolve(imageset, split.test)
    n_way = cfg.episodes.n_way
    records = []
    for shots in (int(s) for s in args.shots.split(",")):
        g = torch.Generator().manual_seed(args.seed)
        right = total = 0
        started = time.perf_counter()
        for task in range(args.tasks):
            chosen = index[torch.randperm(len(index), generator=g)[:n_way]].tolist()
            support, query, truth = {}, [], []
            for c in chosen:
                name = imageset.class_names[c]
                images = imageset.class_images(name)
                pick = torch.randperm(len(images), generator=g)[:shots + args.queries]
                support[name] = list(images[pick[:shots]])
                query += list(images[pick[shots:]])
                truth += [name] * args.queries
            result = predictor.predict(support, query, seed=task, max_shots=args.max_shots)
            right += sum(q.predicted == t for q, t in zip(result.queries, truth, strict=True))
            total += len(truth)
        records.append({"shots": shots, "support_steps": n_way * shots, "queries": total,
                        "accuracy": right / total,
                        "seconds": round(time.perf_counter() - started, 1)})
        print(json.dumps(records[-1]), flush=True)


if __name__ == "__main__":
    main()
