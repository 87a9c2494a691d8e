"""fewshot-mann: few-shot image classification with Memory-Augmented Neural Networks.

The public API, importable from the top (each name is loaded on first use, so that
`import fewshot_mann` and the command line stay quick):

    Config, read_toml                  a run's settings (config.py)
    build_trainer, Trainer, build_run  build a run from a Config and train it (trainers.py,
                                       training/)
    evaluate_checkpoint                a checkpoint on held-out classes (evaluation/)
    Predictor                          a trained model on your own images (inference/)
    LifelongMemory                     a key-value memory of labelled images kept on disk,
                                       in a trained model's key space (lifelong/)
    load_checkpoint, model_from_checkpoint
    MANN, build_model                  the models (models/)
    MEMORIES, make_memory              the memory variants and their registry (memory/)
    ClassSplit, FolderDataset, ImageSet, load_dataset    data and class splits (data/)
    EpisodeSampler, LabelCode          episodes (episodes.py)
    zoo                                the named pretrained models (zoo.py)
"""

from __future__ import annotations

import importlib
from typing import Any

__version__ = "0.1.0"

# name -> the module (relative to this package) that defines it
_EXPORTS = {
    "Config": "config", "read_toml": "config",
    "Trainer": "training.trainer", "build_run": "training.run", "build_trainer": "trainers",
    "evaluate_checkpoint": "evaluation.heldout",
    "Predictor": "inference.predictor",
    "LifelongMemory": "lifelong.memory",
    "load_checkpoint": "checkpoint", "model_from_checkpoint": "checkpoint",
    "MANN": "models", "build_model": "models",
    "MEMORIES": "memory", "make_memory": "memory",
    "ClassSplit": "data", "FolderDataset": "data", "ImageSet": "data", "load_dataset": "data",
    "EpisodeSampler": "episodes", "LabelCode": "episodes",
}
__all__ = [*_EXPORTS, "zoo"]


def __getattr__(name: str) -> Any:
    if name == "zoo":
        return importlib.import_module(".zoo", __name__)
    if name in _EXPORTS:
        return getattr(importlib.import_module(f".{_EXPORTS[name]}", __name__), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
