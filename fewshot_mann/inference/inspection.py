"""`fewshot-mann inspect`: one held-out episode's memory drawn as heatmaps, and how often the
support image a query read most is of the predicted class (explain.py records and draws;
this module runs the episodes and the predict protocol)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import torch
from tqdm import tqdm

from ..errors import PredictError
from .explain import draw_heatmaps, record_memory


# ---- inspect: one episode's memory, and what the most-read image says -------------------------
def inspect_checkpoint(checkpoint: str | Path, out_dir: str | Path, tasks: int = 200,
                       seed: int = 12345, device: str = "auto",
                       data_overrides: dict[str, Any] | None = None,
                       classes: str | None = None, invert: bool | None = None,
                       progress: bool = True) -> dict[str, Any]:
    """Draw one held-out episode's read weights, write weights and usage over time
    (`memory.png`), and measure on `tasks` held-out N-way 1-shot tasks (the predict protocol)
    how often the support image the query read most is of the predicted class and of the true
    one (`inspect.json`). Classes: the split's test classes, or `classes` as for evaluate."""
    from ..checkpoint import checkpoint_data, load_checkpoint, model_from_checkpoint
    from ..data import invert_custom, load_dataset
    from ..episodes import LabelCode
    from ..evaluation.heldout import chosen_classes
    from ..metrics import step_correct
    from ..runtime import pick_device
    from ..training.run import make_sampler
    from .predictor import sequence_probabilities

    if tasks < 1:
        raise PredictError("inspect needs at least one task (--tasks)")
    payload = load_checkpoint(checkpoint)
    model, cfg, split = model_from_checkpoint(payload, checkpoint)
    if cfg.model.kind != "mann":
        raise PredictError(f"inspect draws a MANN's memory; {checkpoint} holds a "
                           f"{cfg.model.kind} model, which has none")
    trained_on = cfg.data.dataset
    cfg = checkpoint_data(cfg, checkpoint, payload, data_overrides)
    dev = pick_device(device)
    model.to(dev).eval()
    imageset = load_dataset(cfg.data, invert_custom(trained_on, cfg.data.dataset, invert),
                            progress)
    test = split.test if classes is None else chosen_classes(classes, imageset)
    e = cfg.episodes
    episode = make_sampler(cfg, imageset, test, side="test", device=dev, seed=seed).sample(1)
    with torch.no_grad(), record_memory(model) as record:
        logits = model(episode.images, episode.prev_labels)  # (1, T, G, S)
    correct = step_correct(logits, episode.targets)[0].tolist()
    steps = [f"{chr(65 + c) if e.n_way <= 26 else c}{p + 1}" for c, p in
             zip(episode.classes[0].tolist(), episode.presentation[0].tolist(), strict=True)]
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    picture = draw_heatmaps({k: v[0] for k, v in record.heatmaps().items()}, correct, steps,
                            out / "memory.png",
                            title=f"{checkpoint}: one held-out {e.n_way}-way episode "
                                  f"(step label: class letter, presentation)")

    code = LabelCode.make(e.labels, e.n_way)
    batch = make_sampler(cfg, imageset, test, side="test", device=dev, seed=seed + 1,
                         presentations=2).sample(tasks)
    g = torch.Generator().manual_seed(seed)
    right = read_predicted = read_true = read_predicted_when_wrong = wrong = 0
    for b in tqdm(range(tasks), desc="inspect", unit="task", disable=not progress):
        # presentation 0 of each class: the support; 1: the query
        first = batch.presentation[b] == 0
        support_class, query_class = batch.classes[b][first], batch.classes[b][~first]
        probs, shares = sequence_probabilities(model, code, batch.images[b][first],
                                               support_class, e.n_way,
                                               batch.images[b][~first], g, explain=True)
        predicted = probs.argmax(-1).to(dev)
        most_read = support_class[shares.argmax(-1).to(dev)]
        hit = predicted == query_class
        right += int(hit.sum())
        wrong += int((~hit).sum())
        read_predicted += int((most_read == predicted).sum())
        read_true += int((most_read == query_class).sum())
        read_predicted_when_wrong += int(((most_read == predicted) & ~hit).sum())
    queries = tasks * e.n_way
    summary = {
        "checkpoint": str(checkpoint), "classes": "split test" if classes is None else classes,
        "n_way": e.n_way, "tasks": tasks, "queries": queries, "seed": seed,
        "accuracy": right / queries, "most_read_is_predicted": read_predicted / queries,
        "most_read_is_true": read_true / queries, "wrong_predictions": wrong,
        "most_read_is_predicted_when_wrong": (read_predicted_when_wrong / wrong if wrong
                                              else None),
        "episode": {"steps": steps, "correct": correct}, "picture": str(picture)}
    (out / "inspect.json").write_text(json.dumps(summary, indent=1) + "\n")
    if progress:
        print(f"{e.n_way}-way 1-shot, {tasks} held-out tasks ({queries} queries): accuracy "
              f"{100 * summary['accuracy']:.1f} %; the most-read support image is of the "
              f"predicted class for {100 * summary['most_read_is_predicted']:.1f} % of the "
              f"queries, of the true class for {100 * summary['most_read_is_true']:.1f} %")
        print(f"wrote {picture}, {out / 'inspect.json'}")
    return summary
