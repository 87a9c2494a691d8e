"""The key space of a life-long memory: a trained model whose `embed(images)` maps an image to
a vector, made a unit vector here, so that inner products are cosines (Kaiser et al. 2017,
sec. 3: keys and queries are normalised, similarity is their dot product).

With `views` V > 0, an image's key is the normalised sum of the unit embeddings of the image
and of V distorted copies of it (test-time augmentation): the same V small affine maps
(`data.augment`, strength VIEW_STRENGTH, drawn from VIEW_SEED) for every image, so that a key
depends on its image alone, and stored keys and queries see the same views.

A memory is bound to one such model by the sha256 of its checkpoint file: keys of two models
are not comparable, so a memory refuses any other model (`memory.LifelongMemory.open`).
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from tqdm import tqdm

from ..config import EMBEDDING_METHODS
from ..data.augment import distort, random_maps
from ..errors import ConfigError, PredictError
from ..inference.predictor import ImageLike, Predictor, prepare_all
from ..zoo import default_keyspace, resolve_checkpoint, sha256, zoo_model_of

KEY_KINDS = EMBEDDING_METHODS  # models with an `embed(images) -> (n, E)`
BATCH = 256  # images decoded and embedded at a time
VIEW_STRENGTH = 0.5  # of the distortions of `views`: up to 5 degrees, 5 % scale, 1.5 px shift
VIEW_SEED = 0


class KeySpace:
    """A trained model as a map from images to unit keys."""

    def __init__(self, predictor: Predictor, name: str, path: Path, model_sha256: str,
                 views: int = 0) -> None:
        if predictor.kind not in KEY_KINDS:
            raise PredictError(f"{path} is a {predictor.kind} model; a life-long memory needs "
                               f"one that maps an image to a key ({', '.join(KEY_KINDS)})")
        if views < 0:
            raise ConfigError(f"views are distorted copies of an image, 0 or more; got {views}")
        self.predictor, self.name, self.path = predictor, name, path
        self.model_sha256, self.views = model_sha256, views
        self.maps = random_maps(views, VIEW_STRENGTH, torch.Generator().manual_seed(VIEW_SEED)
                                ).to(predictor.device)  # (views, 2, 3)
        self.prepare = predictor.prepare
        blank = torch.zeros(1, int(np.prod(self.prepare.shape)), device=predictor.device)
        with torch.no_grad():
            self.dim = int(predictor.model.embed(blank).shape[-1])

    @classmethod
    def load(cls, checkpoint: str | Path | None = None, device: str = "auto",
             views: int = 0) -> KeySpace:
        """A checkpoint file or a zoo model's name; None: the zoo's key-space model
        (`zoo.default_keyspace`). `name` is the zoo name where the file is a zoo model's, else
        the file's absolute path. `views`: distorted copies averaged into each key."""
        if checkpoint is None:
            checkpoint = default_keyspace().name
        path = resolve_checkpoint(checkpoint)
        predictor = Predictor.from_checkpoint(path, device=device)
        zoo_model = zoo_model_of(checkpoint)
        name = zoo_model.name if zoo_model else str(Path(path).resolve())
        return cls(predictor, name, Path(path).resolve(), sha256(Path(path)), views)

    def with_views(self, views: int) -> KeySpace:
        """The same model's key space with `views` distorted copies in each key."""
        return KeySpace(self.predictor, self.name, self.path, self.model_sha256, views)

    def keys(self, images: Sequence[ImageLike] | torch.Tensor,
             progress: bool = True) -> np.ndarray:
        """Images (files, PIL images, prepared (C, H, W) tensors, or a prepared (n, C, H, W)
        tensor) -> (n, dim) float32 unit keys, BATCH at a time, with a progress bar when there
        is more than one batch. An image that cannot be read raises PredictError."""
        out = np.empty((len(images), self.dim), np.float32)
        colour: list[str] = []
        with tqdm(total=len(images), disable=not progress or len(images) <= BATCH,
                  unit="image", desc="keys") as bar:
            for start in range(0, len(images), BATCH):
                chunk = images[start:start + BATCH]
                if not isinstance(chunk, torch.Tensor):
                    chunk = self._decode(chunk, start, colour)
                chunk = chunk.to(self.predictor.device)  # (b, C, H, W)
                out[start:start + len(chunk)] = self._embed(chunk).cpu().numpy()
                bar.update(len(chunk))
        if colour:
            warnings.warn(f"{len(colour)} images are in colour; this model takes grayscale, so "
                          f"their colour is dropped as in training, e.g. {colour[:3]}",
                          stacklevel=2)
        return out

    @torch.no_grad()
    def _embed(self, images: torch.Tensor) -> torch.Tensor:
        """(b, C, H, W) -> (b, dim) unit keys: of the images, and of their views if any."""
        def unit(x: torch.Tensor) -> torch.Tensor:
            return F.normalize(self.predictor.model.embed(x.flatten(1)).float(), dim=-1)

        key = unit(images)
        for view in self.maps:
            key += unit(distort(images, view.unsqueeze(0)))
        return F.normalize(key, dim=-1)

    def _decode(self, items: Sequence[ImageLike], start: int, colour: list[str]
                ) -> torch.Tensor:
        named = [(str(item) if isinstance(item, str | Path) else f"<image {start + i}>", item)
                 for i, item in enumerate(items)]
        _, images, failed = prepare_all(self.prepare, named, colour)
        if failed:
            raise PredictError(f"{failed[0][0]} cannot be read as an image ({failed[0][1]})")
        return torch.stack(images)  # (b, C, H, W)
