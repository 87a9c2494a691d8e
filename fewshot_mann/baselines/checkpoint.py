"""Checkpoints of the episodic baselines: the network's config and weights, plus what a run
needs to resume (optimiser, RNG states, step) in the periodic `checkpoint.pt`.

Written atomically like the MANN's and read by the same checked loader
(`fewshot_mann.checkpoint.read_payload`: checksums first, weights_only=True).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from torch import nn

from ..checkpoint import CheckpointError, read_payload
from ..errors import ConfigError
from ..runtime import atomic_torch_save
from .maml import MAML
from .protonet import ProtoNet

FORMAT = "fewshot-mann-baseline-v1"
NETWORKS: dict[str, type[nn.Module]] = {"protonet": ProtoNet, "maml": MAML}


def build_network(network: dict[str, Any]) -> nn.Module:
    """{"method": "protonet" | "maml", **constructor arguments} -> a fresh network."""
    kwargs = dict(network)
    method = kwargs.pop("method")
    if method not in NETWORKS:
        raise ConfigError(f"unknown baseline {method!r}; choose one of {list(NETWORKS)}")
    return NETWORKS[method](**kwargs)


def save_baseline(path: str | Path, network: dict[str, Any], model: nn.Module,
                  **extra: Any) -> None:
    atomic_torch_save({"format": FORMAT, "network": network, "model": model.state_dict(),
                       **extra}, Path(path))


def load_baseline(path: str | Path) -> tuple[nn.Module, dict[str, Any]]:
    """The network a checkpoint describes, with its weights, and the whole payload."""
    payload = read_payload(path, FORMAT, "a fewshot-mann baseline checkpoint")
    return baseline_from_payload(payload, path), payload


def baseline_from_payload(payload: dict[str, Any], path: str | Path) -> nn.Module:
    """The network a baseline checkpoint's payload describes, with its weights."""
    try:
        model = build_network(payload["network"])
        model.load_state_dict(payload["model"])
    except (KeyError, TypeError, ValueError, RuntimeError) as err:
        raise CheckpointError(f"{path}: network config or weights unusable: {err}") from err
    return model
