"""Class splits: which classes may be trained on and which are held out, pinned and saved.

A class id is a class name of the `ImageSet`, optionally with a fixed rotation suffix
("Alphabet/character01/rot090") as in the Vinyals split, where each rotation is a class.

    santoro  1,200 training / 423 test characters out of all 1,623 (Santoro et al. 2016),
             drawn once with random.Random(0) by scripts/make_santoro_split.py and shipped.
    vinyals  the Vinyals et al. 2016 split (train 4,112 / val 688 / test 1,692 rotated classes),
             the files used by Prototypical Networks, shipped with this package.
    lake     background alphabets for training, evaluation alphabets for testing.

Custom data uses `ratio:<train fraction>` with a seed, or explicit lists (`lists:DIR` holding
train.txt / test.txt / optional val.txt). Every split is checked: no underlying image class is
on both sides, whatever the rotations.
"""

from __future__ import annotations

import json
import random
from dataclasses import asdict, dataclass, field
from importlib import resources
from pathlib import Path

import torch

from .imageset import ImageSet

ROTATION_SUFFIXES = {"rot000": 0, "rot090": 1, "rot180": 2, "rot270": 3}
OMNIGLOT_SPLITS = ("santoro", "vinyals", "lake")


class SplitError(ValueError):
    """A split is unknown, names classes the data lacks, or leaks classes across sides."""


@dataclass
class ClassSplit:
    name: str
    train: list[str]
    test: list[str]
    val: list[str] = field(default_factory=list)

    def __post_init__(self) -> None:
        if not self.train or not self.test:
            raise SplitError(f"split {self.name!r} needs training and test classes "
                             f"(has {len(self.train)} train, {len(self.test)} test)")
        sides = {"train": self.train, "val": self.val, "test": self.test}
        bases = {side: {base_name(c) for c in ids} for side, ids in sides.items()}
        for a, b in (("train", "test"), ("train", "val"), ("val", "test")):
            shared = bases[a] & bases[b]
            if shared:
                raise SplitError(f"split {self.name!r}: {len(shared)} classes are in both "
                                 f"{a} and {b}, e.g. {sorted(shared)[:3]}")

    @property
    def heldout(self) -> list[str]:
        """Classes used to monitor training: val when the split has it, else test."""
        return self.val or self.test

    def to_dict(self) -> dict[str, object]:
        return asdict(self)

    def save(self, path: str | Path) -> None:
        Path(path).write_text(json.dumps(self.to_dict(), indent=1))

    @classmethod
    def from_dict(cls, raw: dict) -> ClassSplit:
        return cls(raw["name"], list(raw["train"]), list(raw["test"]), list(raw.get("val", [])))

    @classmethod
    def load(cls, path: str | Path) -> ClassSplit:
        return cls.from_dict(json.loads(Path(path).read_text()))


def base_name(class_id: str) -> str:
    """'A/character01/rot090' -> 'A/character01'; ids without a rotation suffix are unchanged."""
    head, _, tail = class_id.rpartition("/")
    return head if tail in ROTATION_SUFFIXES else class_id


def resolve(imageset: ImageSet, class_ids: list[str]) -> tuple[torch.Tensor, torch.Tensor]:
    """Class ids -> (class index in `imageset`, rotation in quarter turns), both (n,) int64."""
    index, rotation = [], []
    for cid in class_ids:
        head, _, tail = cid.rpartition("/")
        turns = ROTATION_SUFFIXES.get(tail)
        index.append(imageset.class_index(head if turns is not None else cid))
        rotation.append(turns or 0)
    return torch.tensor(index), torch.tensor(rotation)


def _shipped(name: str, part: str) -> list[str]:
    text = resources.files("fewshot_mann.data").joinpath("splits", name, f"{part}.txt").read_text()
    return [line.strip() for line in text.splitlines() if line.strip()]


def omniglot_split(name: str, imageset: ImageSet) -> ClassSplit:
    if name == "santoro":
        split = ClassSplit("santoro", _shipped("santoro", "train"), _shipped("santoro", "test"))
    elif name == "vinyals":
        split = ClassSplit("vinyals", _shipped("vinyals", "train"), _shipped("vinyals", "test"),
                           _shipped("vinyals", "val"))
    elif name == "lake":
        train = [n for n, g in zip(imageset.class_names, imageset.groups, strict=True)
                 if g == "background"]
        test = [n for n, g in zip(imageset.class_names, imageset.groups, strict=True)
                if g == "evaluation"]
        split = ClassSplit("lake", train, test)
    else:
        raise SplitError(f"unknown Omniglot split {name!r}; choose one of {OMNIGLOT_SPLITS}")
    for ids in (split.train, split.val, split.test):
        resolve(imageset, ids)  # every class must exist in the data
    return split


def ratio_split(class_names: list[str], train_fraction: float, seed: int,
                val_fraction: float = 0.0) -> ClassSplit:
    """Shuffle class names with random.Random(seed); the first fraction trains."""
    if not 0.0 < train_fraction < 1.0 or not 0.0 <= val_fraction < 1.0 - train_fraction:
        raise SplitError(f"need 0 < train fraction < 1 and val fraction < 1 - train fraction, "
                         f"got {train_fraction}, {val_fraction}")
    names = sorted(class_names)
    random.Random(seed).shuffle(names)
    n_train = round(train_fraction * len(names))
    n_val = round(val_fraction * len(names))
    return ClassSplit(f"ratio:{train_fraction}", names[:n_train],
                      names[n_train + n_val:], names[n_train:n_train + n_val])
