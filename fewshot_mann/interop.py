"""learn2learn interop: evaluate a MANN on an existing learn2learn task pipeline.

A learn2learn `Taskset` (formerly `TaskDataset`; Arnold et al. 2020) yields tasks (X, y): the
images of N classes, K of each, grouped by class, with their labels. A MANN needs sequences:
`episodes_from_l2l` draws tasks, shuffles each task's images into a random order of T = N*K
steps, gives each class a fresh label from a `LabelCode` and adds the previous-step label
inputs (Santoro et al. 2016, sec. 4.1), exactly as `EpisodeSampler` does for the package's own
data. The result feeds `fewshot_mann.evaluation.scoring.evaluate_episodes`:

    taskset = l2l.data.Taskset(meta, [NWays(meta, 5), KShots(meta, 11), LoadData(meta),
                                      RemapLabels(meta)])
    model, cfg, _ = model_from_checkpoint(load_checkpoint("runs/x/model.pt"))
    code = LabelCode.make(cfg.episodes.labels, 5)
    g = torch.Generator().manual_seed(0)
    batches = [episodes_from_l2l(taskset, 100, 11, code, g) for _ in range(10)]
    result = evaluate_episodes(model, batches, n_way=5, presentations=11)

Images must look like the model's training images: flattened to the model's input size, floats
in [0, 1] (uint8 images are scaled by 1/255). learn2learn draws tasks with Python's `random`
module: seed it for reproducible tasks.
"""

from __future__ import annotations

from typing import Any

import torch

from .episodes import Episodes, LabelCode, label_episodes
from .errors import DatasetError


def episodes_from_l2l(taskset: Any, n_tasks: int, presentations: int, label_code: LabelCode,
                      generator: torch.Generator) -> Episodes:
    """`n_tasks` tasks of `taskset` (each N classes x `presentations` images) -> Episodes."""
    if n_tasks < 1:
        raise DatasetError("need at least one task")
    images, classes = [], []
    for _ in range(n_tasks):
        x, y = taskset.sample()
        labels, slot = torch.unique(torch.as_tensor(y), return_inverse=True)
        counts = torch.bincount(slot)
        if bool((counts != presentations).any()):
            raise DatasetError(f"a task shows its classes {counts.tolist()} times; every class "
                             f"must have exactly {presentations} images "
                             f"(KShots(k={presentations}))")
        if images and len(labels) != int(classes[0].max()) + 1:
            raise DatasetError("tasks have different numbers of classes")
        order = torch.randperm(len(slot), generator=generator)
        pixels = torch.as_tensor(x).flatten(1)
        images.append(pixels[order].float() / (255.0 if pixels.dtype == torch.uint8 else 1.0))
        classes.append(slot[order])
    n_way = int(classes[0].max()) + 1
    return label_episodes(torch.stack(images), torch.stack(classes), n_way, label_code,
                          generator)
