"""Checkpoints: one file holding config, split, weights, optimiser, RNG states and step.

Written atomically (temporary file + fsync + rename) and read with
`torch.load(weights_only=True)` after checking the zip records' checksums, so a checkpoint can
never run code when it is opened, a crash mid-write never leaves a broken file where the last
good one was, and a truncated or damaged file is refused with a clear `CheckpointError`.
"""

from __future__ import annotations

import os
import zipfile
from pathlib import Path
from typing import Any

import torch
from torch import nn

from .config import Config, replace
from .data.splits import ClassSplit
from .episodes import LabelCode
from .errors import CheckpointError, DataNotFoundError
from .models import build_model
from .runtime import atomic_torch_save
from .zoo import resolve_checkpoint

FORMAT = "fewshot-mann-checkpoint-v1"
REQUIRED = ("config", "split", "image_shape", "step", "model")  # also in a model.pt


def save_checkpoint(path: str | Path, **payload: Any) -> None:
    atomic_torch_save({"format": FORMAT, **payload}, Path(path))


# the former ProtoNets/MAML trainer's (read, converted: methods/networks.py)
LEGACY_BASELINE_FORMAT = "fewshot-mann-baseline-v1"


def load_checkpoint(path: str | Path) -> dict[str, Any]:
    """The payload of a checkpoint of any method, or CheckpointError saying why not. One of the
    former ProtoNets/MAML trainer comes converted (`methods.networks.from_legacy`)."""
    payload = read_payload(path, (FORMAT, LEGACY_BASELINE_FORMAT), "a fewshot-mann checkpoint")
    if payload["format"] == LEGACY_BASELINE_FORMAT:
        from .methods.networks import from_legacy

        payload = {**from_legacy(payload, str(path)), "format": FORMAT}
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
    checked here first. weights_only=True: opening a file never runs code. `path` may name a
    zoo model (`fewshot_mann.zoo`): its file is found and its sha256 checked.
    """
    path = resolve_checkpoint(path)
    if not path.is_file():
        raise CheckpointError(f"checkpoint not found: {path} (a file, or a zoo model name: "
                              f"`fewshot-mann models` lists them)")
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
        cfg, split = Config.from_dict(payload["config"]).validate(), ClassSplit.from_dict(
            payload["split"])
    except (KeyError, TypeError, ValueError) as err:  # ConfigError, SplitError: ValueErrors
        raise CheckpointError(f"{path}: config or split unreadable: {err}") from err
    if split.name == "santoro" and not split.val:
        # a santoro split without validation classes is the paper's 1,200 / 423 one, whose
        # name is santoro-trainval: the santoro split sets 100 of the 1,200 apart to validate
        split.name = "santoro-trainval"
        cfg = replace(cfg, data={"split": split.name})
    return cfg, split


def checkpoint_data(cfg: Config, path: str | Path, payload: dict[str, Any],
                    overrides: dict[str, Any] | None = None) -> Config:
    """`cfg` (a checkpoint's config) with its data section as evaluate and inspect read it:
    the `overrides` that are not None (the command line's), the cache ($FEWSHOT_MANN_CACHE
    before the stored one) and, for Omniglot, the data root `omniglot_root` finds."""
    from .config import CACHE_DIR_ENV

    data = {k: v for k, v in (overrides or {}).items() if v is not None}
    if "cache_dir" not in data and os.environ.get(CACHE_DIR_ENV):
        data["cache_dir"] = os.environ[CACHE_DIR_ENV]
    if data.get("dataset", cfg.data.dataset) == "omniglot":
        data["data_root"] = omniglot_root(cfg.data.data_root, path, payload.get("trained_in"),
                                          data.get("data_root"),
                                          data.get("download", cfg.data.download))
    return replace(cfg, data=data) if data else cfg


def omniglot_root(stored: str, path: str | Path, trained_in: str | None = None,
                  explicit: str | None = None, download: bool = False) -> str:
    """Where the Omniglot of the checkpoint at `path` is, first found: `explicit` (--data-root);
    $FEWSHOT_MANN_DATA; the `stored` root, absolute or (relative) resolved against the folder
    the run was trained from (`trained_in`, recorded in checkpoints), then against each folder
    above the checkpoint file (a run folder sits under the folder it was trained from) and the
    current one; then data/ (where `download` fetches it). DataNotFoundError, naming the places
    looked in, when none holds it and `download` is false."""
    from .config import DATA_ROOT_ENV
    from .data.omniglot import omniglot_folder

    if explicit:
        return explicit
    if os.environ.get(DATA_ROOT_ENV):
        return os.environ[DATA_ROOT_ENV]
    tried = stored_locations(stored, path, trained_in)
    found = next((p for p in tried if omniglot_folder(p) is not None), None)
    if found is None and not download:
        raise DataNotFoundError(
            f"Omniglot not found where {path} was trained from (its data root {stored!r}, "
            f"looked in {', '.join(str(p) for p in tried)}). Point --data-root or "
            f"$FEWSHOT_MANN_DATA at the folder holding omniglot-py/, or pass --download to "
            f"fetch it into data/ with torchvision.")
    return str(found or "data")


def stored_locations(stored: str, path: str | Path, trained_in: str | None) -> list[Path]:
    """Where a checkpoint's stored data root may be, most likely first, then data/."""
    root = Path(stored).expanduser()
    if root.is_absolute():
        places = [root]
    else:
        folder = Path(path).resolve().parent
        anchors = [*([Path(trained_in)] if trained_in else []), folder, *folder.parents,
                   Path.cwd()]
        places = list(dict.fromkeys((a / root).resolve() for a in anchors))
    return [*places, Path("data").resolve()]


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
