"""Class splits: which classes may be trained on and which are held out, pinned and saved.

A class id is a class name of the `ImageSet`, optionally with a fixed rotation suffix
("Alphabet/character01/rot090") as in the Vinyals split, where each rotation is a class.

    santoro  1,200 training / 423 test characters out of all 1,623 (Santoro et al. 2016),
             drawn once with random.Random(0) by scripts/make_santoro_split.py and shipped.
    vinyals  the Vinyals et al. 2016 split (train 4,112 / val 688 / test 1,692 rotated classes),
             the files used by Prototypical Networks, shipped with this package.
    vinyals-trainval  the same with the validation classes trained on (4,800 / 1,692, no val),
             as Snell et al. 2017 trained their final models; held-out monitoring uses test.
    lake     background alphabets for training, evaluation alphabets for testing.

Custom data uses `ratio:<train fraction>` with a seed, or explicit lists (`lists:DIR` holding
train.txt / test.txt / optional val.txt). Every split is checked: no underlying image class is
on both sides, whatever the rotations.
"""

from __future__ import annotations

import json
import random
from collections import Counter
from dataclasses import asdict, dataclass, field
from importlib import resources
from pathlib import Path

import torch

from ..errors import SplitError
from .imageset import ImageSet

ROTATION_SUFFIXES = {"rot000": 0, "rot090": 1, "rot180": 2, "rot270": 3}
OMNIGLOT_SPLITS = ("santoro", "vinyals", "vinyals-trainval", "lake")
DEFAULT_SPLITS = {"omniglot": "santoro", "custom": "ratio:0.8"}  # when no split is given


def default_split(dataset: str) -> str:
    """The split a run gets when none is named: santoro for Omniglot; for custom data a
    seeded 80/20 class split (the seed is data.split_seed)."""
    return DEFAULT_SPLITS["omniglot" if dataset == "omniglot" else "custom"]


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
        for side, ids in sides.items():
            repeated = sorted(c for c, n in Counter(ids).items() if n > 1)
            if repeated:
                raise SplitError(f"split {self.name!r}: {len(repeated)} {side} classes are "
                                 f"listed more than once, e.g. {repeated[:3]}")
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
    """Class ids -> (class index in `imageset`, rotation in quarter turns), both (n,) int64.

    Raises SplitError when the data lacks some of the classes (changed or other data)."""
    bases = [base_name(cid) for cid in class_ids]
    missing = [cid for cid, base in zip(class_ids, bases, strict=True) if base not in imageset]
    if missing:
        raise SplitError(f"{len(missing)} classes of the split are not in the data, e.g. "
                         f"{missing[:3]}: is this the data the split was made for?")
    index = [imageset.class_index(base) for base in bases]
    rotation = [0 if base == cid else ROTATION_SUFFIXES[cid.rpartition("/")[2]]
                for cid, base in zip(class_ids, bases, strict=True)]
    return torch.tensor(index, dtype=torch.long), torch.tensor(rotation, dtype=torch.long)


def _shipped(name: str, part: str) -> list[str]:
    text = resources.files("fewshot_mann.data").joinpath("splits", name, f"{part}.txt").read_text()
    return [line.strip() for line in text.splitlines() if line.strip()]


def shipped_split(name: str) -> ClassSplit:
    """The santoro, vinyals or vinyals-trainval split as shipped, without checking it against
    any data."""
    if name == "santoro":
        return ClassSplit("santoro", _shipped("santoro", "train"), _shipped("santoro", "test"))
    if name == "vinyals":
        return ClassSplit("vinyals", _shipped("vinyals", "train"), _shipped("vinyals", "test"),
                          _shipped("vinyals", "val"))
    if name == "vinyals-trainval":
        return ClassSplit(name, _shipped("vinyals", "trainval"), _shipped("vinyals", "test"))
    raise SplitError(f"no shipped split {name!r}; choose 'santoro', 'vinyals' or "
                     f"'vinyals-trainval'")


def omniglot_split(name: str, imageset: ImageSet) -> ClassSplit:
    if name in ("santoro", "vinyals", "vinyals-trainval"):
        split = shipped_split(name)
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
    name = f"ratio:{train_fraction}" + (f",{val_fraction}" if val_fraction else "")
    return ClassSplit(f"{name} (seed {seed})", names[:n_train],
                      names[n_train + n_val:], names[n_train:n_train + n_val])


def custom_split(spec: str, class_names: list[str], seed: int) -> ClassSplit:
    """The split of custom data: `ratio:F` (a fraction F of the classes, shuffled with `seed`,
    for training, the rest for test), `ratio:F,V` (and a fraction V for validation), or
    `lists:DIR` (class names one per line in DIR/train.txt, DIR/test.txt, optional DIR/val.txt).
    """
    kind, _, arg = spec.partition(":")
    if kind == "ratio":
        try:
            fractions = [float(x) for x in arg.split(",")]
        except ValueError:
            fractions = []
        if len(fractions) not in (1, 2):
            raise SplitError(f"split {spec!r}: use ratio:0.8 (train fraction) or ratio:0.7,0.1 "
                             f"(train and validation fractions)")
        return ratio_split(class_names, fractions[0], seed, *fractions[1:])
    if kind == "lists" and arg:
        return list_split(Path(arg), class_names)
    raise SplitError(f"split {spec!r} is not usable with custom data; use ratio:F or lists:DIR")


def list_split(folder: Path, class_names: list[str]) -> ClassSplit:
    """folder/train.txt, folder/test.txt and optional folder/val.txt, one class name a line."""
    parts: dict[str, list[str]] = {}
    for part in ("train", "test", "val"):
        file = folder / f"{part}.txt"
        if not file.is_file():
            if part != "val":
                raise SplitError(f"split lists:{folder}: {file} not found")
            continue
        parts[part] = [line.strip() for line in file.read_text().splitlines() if line.strip()]
        unknown = sorted(set(parts[part]) - set(class_names))
        if unknown:
            raise SplitError(f"split lists:{folder}: {part}.txt names {len(unknown)} classes "
                             f"the data lacks, e.g. {unknown[:3]}")
    return ClassSplit(f"lists:{folder}", parts["train"], parts["test"], parts.get("val", []))
