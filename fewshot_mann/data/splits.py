"""Class splits: which classes may be trained on, which decide during training, which are tested.

A class id is a class name of the `ImageSet`, optionally with a fixed rotation suffix
("Alphabet/character01/rot090") as in the Vinyals split, where each rotation is a class.

Three sides: training classes are trained on; validation classes are the only ones a training
run reads besides them (held-out curves, stopping at an accuracy, the curriculum, the collapse
check of the divergence guard); test classes are read by evaluation, prediction and the
benchmarks alone. A split without validation classes (the `-trainval` ones, `ratio:F,0`) trains
on every non-test class and takes no held-out decision at all.

    santoro  1,100 training / 100 validation / 423 test characters out of all 1,623: Santoro
             et al. 2016's 1,200 / 423 split, drawn once with random.Random(0), with 100 of its
             1,200 set aside with random.Random(1) (scripts/make_santoro_split.py; shipped).
    santoro-trainval  the paper's own 1,200 / 423, no validation classes.
    vinyals  the Vinyals et al. 2016 split (train 4,112 / val 688 / test 1,692 rotated classes),
             the files used by Prototypical Networks, shipped with this package.
    vinyals-trainval  the same with the validation classes trained on (4,800 / 1,692, no val),
             as Snell et al. 2017 trained their final models.
    lake     background alphabets for training, evaluation alphabets for testing; the
             characters of 3 background alphabets drawn with random.Random(0) validate.
    lake-trainval  every background alphabet trained on, no validation classes.

Custom data uses `ratio:F[,V]` with a seed, or explicit lists (`lists:DIR` holding train.txt /
test.txt / optional val.txt); with no split named, `auto`. Every split is checked: no
underlying image class is on two sides, whatever the rotations.
"""

from __future__ import annotations

import json
import random
from collections import Counter
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path

import torch

from ..errors import SplitError
from .imageset import ImageSet

ROTATION_SUFFIXES = {"rot000": 0, "rot090": 1, "rot180": 2, "rot270": 3}
OMNIGLOT_SPLITS = ("santoro", "santoro-trainval", "vinyals", "vinyals-trainval", "lake",
                   "lake-trainval")
DEFAULT_SPLITS = {"omniglot": "santoro", "custom": "auto"}  # when no split is given
VAL_SHARE = 0.1  # of the classes, set aside for validation where a ratio split names none
TEST_SHARE = 0.2  # of the classes, tested, in the `auto` split of custom data
LAKE_VAL_ALPHABETS = 3  # background alphabets that validate in the `lake` split


def default_split(dataset: str) -> str:
    """The split a run gets when none is named: santoro for Omniglot; `auto` for custom data
    (see `auto_split`; the seed is data.split_seed)."""
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
    def decides(self) -> str:
        """What the held-out decisions of a training run on this split read, in words."""
        if self.val:
            return f"{len(self.val)} validation classes"
        return "nothing: the split has no validation classes, so no held-out evaluation ran"

    def to_dict(self) -> dict[str, object]:
        # not dataclasses.asdict, which deep-copies each of the thousands of class names
        return {"name": self.name, "train": list(self.train), "test": list(self.test),
                "val": list(self.val)}

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


SHIPPED = ("santoro", "santoro-trainval", "vinyals", "vinyals-trainval")


def shipped_split(name: str) -> ClassSplit:
    """A split shipped as files (SHIPPED), without checking it against any data."""
    if name not in SHIPPED:
        raise SplitError(f"no shipped split {name!r}; choose one of {SHIPPED}")
    files, trainval = name.removesuffix("-trainval"), name.endswith("-trainval")
    if trainval:
        return ClassSplit(name, _shipped(files, "trainval"), _shipped(files, "test"))
    return ClassSplit(name, _shipped(files, "train"), _shipped(files, "test"),
                      _shipped(files, "val"))


def unrotated_characters(split: str, part: str) -> list[str]:
    """The characters of one part ("train", "val" or "test") of a shipped split, each once, in
    its own orientation: the classes of the Vinyals split that are not rotations."""
    ids = getattr(shipped_split(split), part)
    return [base_name(c) for c in ids if base_name(c) == c or c.endswith("/rot000")]


def lake_split(name: str, imageset: ImageSet) -> ClassSplit:
    """Background alphabets train, evaluation alphabets test (Lake et al. 2015); `lake` sets
    the characters of LAKE_VAL_ALPHABETS background alphabets aside to validate."""
    by_group: dict[str, list[str]] = {"background": [], "evaluation": []}
    for class_name, group in zip(imageset.class_names, imageset.groups, strict=True):
        by_group[group].append(class_name)
    train, test = by_group["background"], by_group["evaluation"]
    if name == "lake-trainval":
        return ClassSplit(name, train, test)
    alphabets = sorted({c.split("/")[0] for c in train})
    held = set(random.Random(0).sample(alphabets, LAKE_VAL_ALPHABETS))
    return ClassSplit(name, [c for c in train if c.split("/")[0] not in held], test,
                      [c for c in train if c.split("/")[0] in held])


def omniglot_split(name: str, imageset: ImageSet) -> ClassSplit:
    if name in SHIPPED:
        split = shipped_split(name)
    elif name in ("lake", "lake-trainval"):
        split = lake_split(name, imageset)
    else:
        raise SplitError(f"unknown Omniglot split {name!r}; choose one of {OMNIGLOT_SPLITS}")
    for ids in (split.train, split.val, split.test):
        resolve(imageset, ids)  # every class must exist in the data
    return split


def shuffled_split(name: str, class_names: list[str], seed: int, n_train: int, n_val: int
                   ) -> ClassSplit:
    """Class names sorted, shuffled with random.Random(seed), then cut in order: the first
    `n_train` train, the next `n_val` validate, the rest test."""
    names = sorted(class_names)
    random.Random(seed).shuffle(names)
    return ClassSplit(f"{name} (seed {seed})", names[:n_train], names[n_train + n_val:],
                      names[n_train:n_train + n_val])


def validation_share(n_classes: int, n_train: int, n_way: int) -> int:
    """How many of `n_train` training classes to set aside for validation: VAL_SHARE of the
    classes, at least `n_way` (an episode's worth), when that leaves `n_way` to train; else 0."""
    n_val = max(n_way, round(VAL_SHARE * n_classes))
    return n_val if n_train - n_val >= n_way else 0


def ratio_split(class_names: list[str], train_fraction: float, seed: int,
                val_fraction: float | None = None, n_way: int = 2) -> ClassSplit:
    """A fraction of the shuffled classes trains, the rest is tested. With `val_fraction` a
    fraction validates (0: none); without it `validation_share` of the training fraction does
    (the test classes stay those of the plain train/test cut)."""
    if not 0.0 < train_fraction < 1.0 or not 0.0 <= (val_fraction or 0.0) < 1.0 - train_fraction:
        raise SplitError(f"need 0 < train fraction < 1 and val fraction < 1 - train fraction, "
                         f"got {train_fraction}, {val_fraction}")
    n_train = round(train_fraction * len(class_names))
    if val_fraction is None:
        n_val = validation_share(len(class_names), n_train, n_way)
        return shuffled_split(f"ratio:{train_fraction}", class_names, seed, n_train - n_val,
                              n_val)
    return shuffled_split(f"ratio:{train_fraction},{val_fraction}", class_names, seed, n_train,
                          round(val_fraction * len(class_names)))


def auto_split(class_names: list[str], seed: int, n_way: int) -> ClassSplit:
    """The default split of custom data: TEST_SHARE of the classes tested (at least `n_way`),
    `validation_share` of the rest validating, the rest trained on."""
    n = len(class_names)
    n_test = max(n_way, round(TEST_SHARE * n))
    if n - n_test < n_way:
        raise SplitError(f"{n} classes cannot give {n_way}-way episodes of both training and "
                         f"test classes: lower --n-way, or add classes")
    n_val = validation_share(n, n - n_test, n_way)
    return shuffled_split("auto", class_names, seed, n - n_test - n_val, n_val)


def custom_split(spec: str, class_names: list[str], seed: int, n_way: int = 2) -> ClassSplit:
    """The split of custom data: `auto` (`auto_split`), `ratio:F` (a fraction F of the classes,
    shuffled with `seed`, for training, part of it validating, the rest for test), `ratio:F,V`
    (and a fraction V for validation; 0: none), or `lists:DIR` (class names one per line in
    DIR/train.txt, DIR/test.txt, optional DIR/val.txt). `n_way`: the episodes' width, which a
    validation or test side must at least hold."""
    kind, _, arg = spec.partition(":")
    if spec == "auto":
        return auto_split(class_names, seed, n_way)
    if kind == "ratio":
        try:
            fractions = [float(x) for x in arg.split(",")]
        except ValueError:
            fractions = []
        if len(fractions) not in (1, 2):
            raise SplitError(f"split {spec!r}: use ratio:0.8 (train fraction) or ratio:0.7,0.1 "
                             f"(train and validation fractions)")
        return ratio_split(class_names, fractions[0], seed, *fractions[1:], n_way=n_way)
    if kind == "lists" and arg:
        return list_split(Path(arg), class_names)
    raise SplitError(f"split {spec!r} is not usable with custom data; use auto, ratio:F[,V] or "
                     f"lists:DIR")


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
