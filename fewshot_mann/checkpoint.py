"""Checkpoints: one file holding config, split, weights, optimiser, RNG states and step.

Written atomically (temporary file + fsync + rename) and read with
`torch.load(weights_only=True)` after checking the zip records' checksums, so a checkpoint can
never run code when it is opened, a crash mid-write never leaves a broken file where the last
good one was, and a truncated or damaged file is refused with a clear `CheckpointError`.
"""

from __future__ import annotations

import zipfile
from pathlib import Path
from typing import Any

import torch
from torch import nn

from .config import Config
from .data.splits import ClassSplit
from .episodes import LabelCode
from .errors import CheckpointError
from .models import build_model
from .runtime import atomic_torch_save

FORMAT = "fewshot-mann-checkpoint-v1"
REQUIRED = ("config", "split", "image_shape", "step", "model")  # also in a model.pt


def save_checkpoint(path: str | Path, **payload: Any) -> None:
    atomic_torch_save({"format": FORMAT, **payload}, Path(path))


# the former ProtoNets/MAML trainer's (read, converted: baselines/checkpoint.py)
LEGACY_BASELINE_FORMAT = "fewshot-mann-baseline-v1"


def load_checkpoint(path: str | Path) -> dict[str, Any]:
    """The payload of a checkpoint of any method, or CheckpointError saying why not. One of the
    former ProtoNets/MAML trainer comes converted (`baselines.checkpoint.from_legacy`)."""
    payload = read_payload(path, (FORMAT, LEGACY_BASELINE_FORMAT), "a fewshot-mann checkpoint")
    if payload["format"] == LEGACY_BASELINE_FORMAT:
        from .baselines.checkpoint import from_legacy

        payload = from_legacy(payload, str(path))
    return check_complete(payload, path)


def check_complete(payload: dict[str, Any], path: str | Path) -> dict[str, Any]:
    """`payload` if it holds everything a model needs."""
    missing = [key for key in REQUIRED if key not in payload]
    if missing:
        raise CheckpointError(f"{path} is incomplete: it lacks {missing}")
    return payload


def read_payload(path: str | Path, fmt: str | tuple[str, ...], what: str) -> dict[str, Any]:
    """The dict saved at `path` with format tag `fmt` (or one of several), checked before it
    is trusted.

    torch.load does not check the CRC-32 that torch.save writes for every record of its zip
    file, so a flipped bit would load silently as a different weight: the records are
    checked here first. weights_only=True: opening a file never runs code.
    """
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"checkpoint not found: {path}")
    try:
        with zipfile.ZipFile(path) as archive:
            damaged = archive.testzip()
        if damaged is not None:
            raise CheckpointError(f"{path} is corrupt: record {damaged} fails its checksum")
        payload = torch.load(path, map_location="cpu", weights_only=True)
    except CheckpointError:
        raise
    except Exception as err:  # zipfile, the unpickler and torch raise many kinds on bad bytes
        first = str(err).splitlines()[0] if str(err) else ""
        raise CheckpointError(f"{path} is not a readable checkpoint (truncated or corrupt?): "
                              f"{type(err).__name__}: {first}") from err
    formats = (fmt,) if isinstance(fmt, str) else fmt
    if not isinstance(payload, dict) or payload.get("format") not in formats:
        raise CheckpointError(f"{path} is not {what}")
    return payload


def checkpoint_config(payload: dict[str, Any], path: str | Path = "checkpoint"
                      ) -> tuple[Config, ClassSplit]:
    """The config and class split a checkpoint was trained with, checked."""
    try:
        return Config.from_dict(payload["config"]).validate(), ClassSplit.from_dict(
            payload["split"])
    except (KeyError, TypeError, ValueError) as err:  # ConfigError, SplitError: ValueErrors
        raise CheckpointError(f"{path}: config or split unreadable: {err}") from err


def model_from_checkpoint(payload: dict[str, Any], path: str | Path = "checkpoint"
                          ) -> tuple[nn.Module, Config, ClassSplit]:
    """Rebuild the model a checkpoint describes and load its weights into it."""
    cfg, split = checkpoint_config(payload, path)
    code = LabelCode.make(cfg.episodes.labels, cfg.episodes.n_way)
    shape = payload["image_shape"]
    if not (isinstance(shape, list | tuple) and len(shape) == 3
            and all(isinstance(n, int) and n > 0 for n in shape)):
        raise CheckpointError(f"{path}: image_shape {shape!r} is not (channels, height, width)")
    model = build_model(cfg.model, tuple(shape), code)
    load_weights(model, payload["model"], path)
    return model, cfg, split


def load_weights(model: nn.Module, state: Any, path: str | Path) -> None:
    """load_state_dict, with a message that says what does not fit."""
    expected = model.state_dict()
    if not isinstance(state, dict) or not all(isinstance(t, torch.Tensor)
                                              for t in state.values()):
        raise CheckpointError(f"{path}: the weights are not a state dict of tensors")
    missing = sorted(set(expected) - set(state))
    unexpected = sorted(set(state) - set(expected))
    reshaped = [f"{k} {tuple(state[k].shape)} in the file, {tuple(expected[k].shape)} here"
                for k in sorted(set(expected) & set(state))
                if state[k].shape != expected[k].shape]
    if missing or unexpected or reshaped:
        details = [f"{len(v)} {what}, e.g. {v[0]}" for what, v in
                   (("missing", missing), ("unexpected", unexpected), ("reshaped", reshaped))
                   if v]
        raise CheckpointError(f"{path} holds weights of a different model configuration "
                              f"(sizes, model kind, label code or encoder differ): "
                              + "; ".join(details))
    model.load_state_dict(state)
