"""Sequence models for episodes: MANN (with LRUA memory) and its LSTM / feedforward baselines.

All share one interface: model(images (B, T, D), prev_labels (B, T, G*S)) -> logits (B, T, G, S).
`build_model` builds the support/query methods too (ProtoNets, MAML: `fewshot_mann.methods`),
which classify queries from a support set instead.
"""

from __future__ import annotations

from torch import nn

from ..config import SUPPORT_QUERY, ModelConfig
from ..episodes import LabelCode
from ..errors import ConfigError
from .mann import MANN
from .memoryless import FeedforwardBaseline, LSTMBaseline

MODELS: dict[str, type[nn.Module]] = {"mann": MANN, "lstm": LSTMBaseline,
                                      "feedforward": FeedforwardBaseline}


def build_model(cfg: ModelConfig, image_shape: tuple[int, int, int], code: LabelCode) -> nn.Module:
    if cfg.kind in SUPPORT_QUERY:
        from ..methods.networks import build_network

        return build_network(cfg, image_shape, code)
    if cfg.kind not in MODELS:
        raise ConfigError(f"unknown model {cfg.kind!r}; choose one of "
                          f"{list(MODELS) + list(SUPPORT_QUERY)}")
    return MODELS[cfg.kind](cfg, image_shape, code)


__all__ = ["MANN", "MODELS", "FeedforwardBaseline", "LSTMBaseline", "build_model"]
