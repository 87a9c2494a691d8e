"""Checkpoints: one file holding config, split, weights, optimiser, RNG states and step.

Written atomically (temporary file + fsync + rename) and read with
`torch.load(weights_only=True)`, so a checkpoint can never run code when it is opened, and a
crash mid-write never leaves a broken file where the last good one was.
"""

from __future__ import annotations

import pickle
import zipfile
from pathlib import Path
from typing import Any

import torch
from torch import nn

from .config import Config, ConfigError
from .data.imageset import atomic_torch_save
from .data.splits import ClassSplit
from .episodes import LabelCode
from .models import build_model

FORMAT = "fewshot-mann-checkpoint-v1"


class CheckpointError(RuntimeError):
    """A checkpoint is missing, truncated, corrupt, not ours, or does not fit the model."""


def save_checkpoint(path: str | Path, **payload: Any) -> None:
    atomic_torch_save({"format": FORMAT, **payload}, Path(path))


def load_checkpoint(path: str | Path) -> dict[str, Any]:
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"checkpoint not found: {path}")
    try:
        payload = torch.load(path, map_location="cpu", weights_only=True)
    except (RuntimeError, EOFError, OSError, zipfile.BadZipFile, pickle.UnpicklingError,
            ValueError) as err:
        raise CheckpointError(f"{path} is not a readable checkpoint (truncated or corrupt?): "
                              f"{type(err).__name__}: {str(err).splitlines()[0]}") from err
    if not isinstance(payload, dict) or payload.get("format") != FORMAT:
        raise CheckpointError(f"{path} is not a fewshot-mann checkpoint")
    return payload


def model_from_checkpoint(payload: dict[str, Any], path: str | Path = "checkpoint"
                          ) -> tuple[nn.Module, Config, ClassSplit]:
    """Rebuild the model a checkpoint describes and load its weights into it."""
    try:
        cfg = Config.from_dict(payload["config"]).validate()
        split = ClassSplit.from_dict(payload["split"])
    except (KeyError, ConfigError, ValueError) as err:
        raise CheckpointError(f"{path}: config or split unreadable: {err}") from err
    code = LabelCode.make(cfg.episodes.labels, cfg.episodes.n_way)
    model = build_model(cfg.model, tuple(payload["image_shape"]), code)
    load_weights(model, payload["model"], path)
    return model, cfg, split


def load_weights(model: nn.Module, state: dict[str, torch.Tensor], path: str | Path) -> None:
    """load_state_dict with a message that says which configuration does not fit."""
    try:
        model.load_state_dict(state)
    except RuntimeError as err:
        raise CheckpointError(f"{path} holds weights of a different model configuration "
                              f"(sizes, model kind, label code or encoder differ):\n"
                              f"{err}") from err
