"""Start a sequence model's encoder from a trained ProtoNets checkpoint.

The ProtoNets baseline (`fewshot-mann train --method protonet`) trains learn2learn's ConvBase
on the Vinyals training classes (or training + validation classes with --split
vinyals-trainval). `model.encoder = "convbase"` is that same network inside the MANN, so
`model.encoder_init` can copy the trained weights in at the start of a run, and
`model.freeze_encoder` can keep them fixed while the controller and memory learn.

No leakage: the characters the checkpoint trained on must not include any character of this
run's test or validation classes; a split that would see them is refused before training.
"""

from __future__ import annotations

from pathlib import Path

from torch import nn

from .checkpoint import load_checkpoint, model_from_checkpoint
from .config import ConfigError
from .data.splits import ClassSplit, base_name
from .models.encoder import ConvBaseEncoder, bare


def init_encoder(model: nn.Module, path: str | Path, split: ClassSplit) -> None:
    """Copy the CNN of the ProtoNets checkpoint at `path` into `model.encoder` (a "convbase"
    encoder, frozen or not), after checking that it never saw `split`'s evaluation classes."""
    payload = load_checkpoint(path)
    network, cfg, trained = model_from_checkpoint(payload, path)
    if cfg.model.kind != "protonet":
        raise ConfigError(f"model.encoder_init: {path} is a {cfg.model.kind} checkpoint; a "
                          f"'convbase' encoder starts from a protonet one")
    encoder = bare(model.encoder)
    if not isinstance(encoder, ConvBaseEncoder):
        raise ConfigError("model.encoder_init needs model.encoder = 'convbase'")
    shape = tuple(payload["image_shape"])
    if tuple(encoder.image_shape) != shape:
        raise ConfigError(f"model.encoder_init: {path} was trained on "
                          f"{'x'.join(map(str, shape))} images, this run's are "
                          f"{'x'.join(map(str, encoder.image_shape))} (set --image-size "
                          f"{shape[1]} and --channels {shape[0]})")
    seen = {base_name(c) for c in trained.train}  # the classes its training read
    leaked = sorted({base_name(c) for c in split.test + split.val} & seen)
    if leaked:
        raise ConfigError(f"model.encoder_init: {path} was trained on {len(leaked)} characters "
                          f"that split {split.name!r} holds out for validation or test, e.g. "
                          f"{leaked[:3]}; use the vinyals split (with a checkpoint trained with "
                          f"--split vinyals when validating on its val classes)")
    encoder.net.load_state_dict(network.encoder.state_dict())
