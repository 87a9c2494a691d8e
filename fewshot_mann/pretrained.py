"""Start a sequence model's encoder from a trained ProtoNets checkpoint.

The ProtoNets baseline (`python -m fewshot_mann.baselines.train --method protonet`) trains
learn2learn's ConvBase on the Vinyals training classes (or training + validation classes with
--classes trainval). `model.encoder = "convbase"` is that same network inside the MANN, so
`model.encoder_init` can copy the trained weights in at the start of a run, and
`model.freeze_encoder` can keep them fixed while the controller and memory learn.

No leakage: the characters the checkpoint trained on must not include any character of this
run's test or validation classes; a split that would see them is refused before training.
"""

from __future__ import annotations

from pathlib import Path

from torch import nn

from .baselines.checkpoint import load_baseline
from .config import ConfigError
from .data.splits import ClassSplit, base_name, shipped_split
from .models.encoder import ConvBaseEncoder, bare


def pretrained_classes(payload: dict) -> list[str]:
    """The Vinyals classes a baseline checkpoint trained on."""
    vinyals = shipped_split("vinyals")
    return vinyals.train + (vinyals.val if payload["train"]["classes"] == "trainval" else [])


def init_encoder(model: nn.Module, path: str | Path, split: ClassSplit) -> None:
    """Copy the CNN of the ProtoNets checkpoint at `path` into `model.encoder` (a "convbase"
    encoder, frozen or not), after checking that it never saw `split`'s evaluation classes."""
    network, payload = load_baseline(path)
    if payload["network"]["method"] != "protonet":
        raise ConfigError(f"model.encoder_init: {path} is a {payload['network']['method']} "
                          f"checkpoint; a 'convbase' encoder starts from a protonet one")
    encoder = bare(model.encoder)
    if not isinstance(encoder, ConvBaseEncoder):
        raise ConfigError("model.encoder_init needs model.encoder = 'convbase'")
    size = payload["network"]["image_size"]
    if tuple(encoder.image_shape) != (1, size, size):
        raise ConfigError(f"model.encoder_init: {path} was trained on 1x{size}x{size} images, "
                          f"this run's are {'x'.join(map(str, encoder.image_shape))} "
                          f"(set --image-size {size}, grayscale)")
    seen = {base_name(c) for c in pretrained_classes(payload)}
    leaked = sorted({base_name(c) for c in split.test + split.val} & seen)
    if leaked:
        raise ConfigError(f"model.encoder_init: {path} was trained on {len(leaked)} characters "
                          f"that split {split.name!r} holds out for validation or test, e.g. "
                          f"{leaked[:3]}; use the vinyals split (with a checkpoint trained on "
                          f"--classes train when validating on its val classes)")
    encoder.net.load_state_dict(network.encoder.state_dict())
