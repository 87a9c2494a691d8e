"""Sequence models for episodes: MANN (with LRUA memory) and its LSTM / feedforward baselines.

All share one interface: model(images (B, T, D), prev_labels (B, T, G*S)) -> logits (B, T, G, S).
"""

from __future__ import annotations

from torch import nn

from ..config import ModelConfig
from ..episodes import LabelCode
from ..errors import ConfigError
from .baselines import FeedforwardBaseline, LSTMBaseline
from .mann import MANN

MODELS: dict[str, type[nn.Module]] = {"mann": MANN, "lstm": LSTMBaseline,
                                      "feedforward": FeedforwardBaseline}


def build_model(cfg: ModelConfig, image_shape: tuple[int, int, int], code: LabelCode) -> nn.Module:
    if cfg.kind not in MODELS:
        raise ConfigError(f"unknown model {cfg.kind!r}; choose one of {list(MODELS)}")
    return MODELS[cfg.kind](cfg, image_shape, code)


__all__ = ["MANN", "MODELS", "FeedforwardBaseline", "LSTMBaseline", "build_model"]
