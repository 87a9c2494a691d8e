"""`ImageSet`: every image of a dataset decoded once into one uint8 tensor, grouped by class.

Omniglot and custom folders both end up here, so the episode sampler never knows where the
images came from. Images of a class are contiguous: class `c` owns rows
`offsets[c] : offsets[c] + counts[c]`. Pixel values are uint8; Omniglot is inverted so that
its strokes are 255 on 0, custom images keep the polarity of their files.
"""

from __future__ import annotations

from collections.abc import Collection
from dataclasses import dataclass, field
from pathlib import Path

import torch

from ..runtime import atomic_torch_save


@dataclass
class ImageSet:
    images: torch.Tensor  # (num_images, channels, size, size) uint8
    class_names: list[str]  # unique, e.g. "Alphabet_of_the_Magi/character01"
    counts: torch.Tensor  # (num_classes,) int64: images per class
    groups: list[str]  # per class: where it came from (Omniglot: "background" | "evaluation")
    skipped: list[tuple[str, str]] = field(default_factory=list)  # unreadable (file, why)

    def __post_init__(self) -> None:
        if self.images.dtype != torch.uint8 or self.images.dim() != 4:
            raise ValueError("ImageSet.images must be a uint8 tensor (N, C, H, W)")
        if len(self.class_names) != len(self.counts) or len(self.groups) != len(self.counts):
            raise ValueError("class_names, groups and counts must have one entry per class")
        if int(self.counts.sum()) != self.images.shape[0]:
            raise ValueError("counts must add up to the number of images")
        if len(set(self.class_names)) != len(self.class_names):
            raise ValueError("class names must be unique")
        self.offsets = torch.cumsum(self.counts, 0) - self.counts  # (num_classes,)
        self._index = {name: i for i, name in enumerate(self.class_names)}

    @property
    def num_classes(self) -> int:
        return len(self.class_names)

    @property
    def image_shape(self) -> tuple[int, int, int]:
        return tuple(self.images.shape[1:])  # type: ignore[return-value]

    def __contains__(self, name: object) -> bool:
        return name in self._index

    def class_index(self, name: str) -> int:
        try:
            return self._index[name]
        except KeyError:
            raise KeyError(f"class {name!r} is not in this dataset") from None

    def class_images(self, name: str) -> torch.Tensor:
        c = self.class_index(name)
        start = int(self.offsets[c])
        return self.images[start:start + int(self.counts[c])]

    def subset(self, names: Collection[str]) -> ImageSet:
        """The images of the classes named (in this set's order); the others are dropped."""
        keep = [i for i, name in enumerate(self.class_names) if name in names]
        rows, _ = self.class_rows(torch.tensor(keep, dtype=torch.long))
        return ImageSet(self.images[rows], [self.class_names[i] for i in keep],
                        self.counts[keep], [self.groups[i] for i in keep], list(self.skipped))

    def class_rows(self, classes: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """The rows of `images` of some classes ((K,) class indices), class after class:
        (rows (M,), where each class begins among them (K,))."""
        counts = self.counts[classes]  # (K,)
        starts = torch.cumsum(counts, 0) - counts  # (K,)
        rows = (torch.repeat_interleave(self.offsets[classes] - starts, counts)
                + torch.arange(int(counts.sum())))  # (M,)
        return rows, starts

    # ---- cache file ------------------------------------------------------------------------
    def save(self, path: str | Path, fingerprint: str) -> None:
        """Write atomically: a crash mid-write never leaves a half cache behind."""
        payload = {"images": self.images, "class_names": self.class_names,
                   "counts": self.counts, "groups": self.groups,
                   "skipped": [list(s) for s in self.skipped], "fingerprint": fingerprint}
        atomic_torch_save(payload, Path(path))

    @classmethod
    def load(cls, path: str | Path, fingerprint: str) -> ImageSet | None:
        """The cached set, or None when the file is missing, unreadable or stale."""
        path = Path(path)
        if not path.is_file():
            return None
        try:
            payload = torch.load(path, map_location="cpu", weights_only=True)
            if payload.get("fingerprint") != fingerprint:
                return None
            return cls(payload["images"], list(payload["class_names"]), payload["counts"],
                       list(payload["groups"]), [tuple(s) for s in payload["skipped"]])
        except Exception:  # a corrupt cache is rebuilt, never trusted
            return None
