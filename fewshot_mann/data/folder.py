"""Custom image datasets: class-per-folder trees and CSV manifests, decoded into an `ImageSet`.

    folder:PATH              PATH/<class>/<image>, any format Pillow reads, any size or mode
    folder:PATH1,PATH2       several trees combined; classes named "<tree>/<class>"
    csv:FILE                 a manifest with columns path,label (paths relative to FILE's folder)

Nothing Omniglot-specific is assumed: no inversion, no size, no naming scheme. Images are
converted to `channels` (1 = grayscale, 3 = RGB; transparency composited on white) and resized
to `image_size` square. Files Pillow cannot read are skipped and reported (or, with
bad_files="error", stop the load). The decoded tensor is cached and rebuilt whenever a file is
added, removed, resized or touched.
"""

from __future__ import annotations

import csv
import hashlib
import warnings
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import torch

from .decode import decode_files, fingerprint
from .imageset import ImageSet
from .splits import ClassSplit, SplitError, ratio_split


class DatasetError(ValueError):
    """A custom dataset is missing, empty or unusable as configured."""


@dataclass
class FolderDataset:
    """A custom dataset, ready for episodes. Usable from a notebook:

        ds = FolderDataset.from_spec("folder:my_images", image_size=28)
        split = ds.split("ratio:0.75", seed=0)
        print(ds.imageset.num_classes, ds.skipped)
    """

    imageset: ImageSet
    skipped: list[tuple[str, str]] = field(default_factory=list)  # (file, why)

    @classmethod
    def from_spec(cls, spec: str, image_size: int = 28, channels: int = 1,
                  cache_dir: str | Path = "data/cache", bad_files: str = "skip") -> FolderDataset:
        kind, _, target = spec.partition(":")
        if kind == "folder" and target:
            entries = list_folders([Path(p) for p in target.split(",")])
        elif kind == "csv" and target:
            entries = read_manifest(Path(target))
        else:
            raise DatasetError(f"dataset {spec!r}: use folder:PATH[,PATH...] or csv:FILE")
        return cls.from_entries(entries, image_size, channels, cache_dir, bad_files,
                                label=spec)

    @classmethod
    def from_entries(cls, entries: Sequence[tuple[Path, str]], image_size: int, channels: int,
                     cache_dir: str | Path, bad_files: str, label: str) -> FolderDataset:
        """(file, class name) pairs -> decoded dataset, through the cache."""
        if bad_files not in ("skip", "error"):
            raise DatasetError(f"bad_files must be 'skip' or 'error', got {bad_files!r}")
        files = [p for p, _ in entries]
        root = Path("/")
        absolute = [p.resolve() for p in files]
        settings = f"folder-v1 size={image_size} channels={channels} classes=" + "|".join(
            name for _, name in entries)
        key = fingerprint(absolute, root, extra=settings)
        cache = Path(cache_dir) / (
            f"custom-{hashlib.sha256(label.encode()).hexdigest()[:12]}-{image_size}px-"
            f"c{channels}.pt")
        imageset = ImageSet.load(cache, key)
        if imageset is None:
            images, failures = decode_files(absolute, image_size, channels, invert=False,
                                            desc=f"decoding {label}")
            failed = {p for p, _ in failures}
            kept = [name for p, (_, name) in zip(absolute, entries, strict=True)
                    if p not in failed]
            imageset = _group(images, kept, [(str(p), why) for p, why in failures])
            imageset.save(cache, key)
        if imageset.skipped and bad_files == "error":
            listed = "\n".join(f"  {p}: {why}" for p, why in imageset.skipped[:20])
            raise DatasetError(f"{len(imageset.skipped)} files could not be read as images "
                               f"(pass --bad-files skip to leave them out):\n{listed}")
        if imageset.skipped:
            listed = "\n".join(f"  {p}: {why}" for p, why in imageset.skipped[:20])
            more = len(imageset.skipped) - 20
            warnings.warn(f"skipped {len(imageset.skipped)} unreadable files:\n{listed}"
                          + (f"\n  ... and {more} more" if more > 0 else ""), stacklevel=2)
        return cls(imageset, list(imageset.skipped))

    def split(self, spec: str, seed: int = 0) -> ClassSplit:
        return custom_split(spec, self.imageset.class_names, seed)


def list_folders(roots: Sequence[Path]) -> list[tuple[Path, str]]:
    """Every non-hidden file under root/<class>/ (recursively), with its class name."""
    entries: list[tuple[Path, str]] = []
    prefix = len(roots) > 1
    if prefix and len({r.resolve().name for r in roots}) < len(roots):
        raise DatasetError("combined folders must have different names (classes are named "
                           "<folder>/<class>)")
    for root in roots:
        if not root.exists():
            raise DatasetError(f"dataset folder does not exist: {root}")
        if not root.is_dir():
            raise DatasetError(f"dataset path is not a folder: {root}")
        class_dirs = sorted(d for d in root.iterdir() if d.is_dir() and not d.name.startswith("."))
        if not class_dirs:
            raise DatasetError(f"{root} holds no class sub-folders (expected "
                               f"{root}/<class>/<image files>)")
        for class_dir in class_dirs:
            files = sorted(p for p in class_dir.rglob("*") if p.is_file() and
                           not any(part.startswith(".") for part in p.relative_to(root).parts))
            name = f"{root.resolve().name}/{class_dir.name}" if prefix else class_dir.name
            if not files:
                warnings.warn(f"class folder {class_dir} holds no files; left out", stacklevel=3)
            entries += [(p, name) for p in files]
    if not entries:
        raise DatasetError(f"no image files under {', '.join(map(str, roots))}")
    return entries


def read_manifest(path: Path) -> list[tuple[Path, str]]:
    """A CSV with a header `path,label`; relative paths are relative to the CSV's folder."""
    if not path.is_file():
        raise DatasetError(f"manifest not found: {path}")
    with open(path, newline="") as f:
        reader = csv.DictReader(f)
        if not reader.fieldnames or not {"path", "label"} <= set(reader.fieldnames):
            raise DatasetError(f"{path}: the header must name the columns 'path' and 'label', "
                               f"found {reader.fieldnames}")
        entries = []
        for line, row in enumerate(reader, start=2):
            if not row["path"] or not row["label"]:
                raise DatasetError(f"{path}:{line}: empty path or label")
            file = Path(row["path"])
            entries.append((file if file.is_absolute() else path.parent / file, row["label"]))
    if not entries:
        raise DatasetError(f"{path}: no rows")
    missing = [str(p) for p, _ in entries if not p.is_file()]
    if missing:
        raise DatasetError(f"{path}: {len(missing)} listed files do not exist, e.g. {missing[:3]}")
    return entries


def _group(images: torch.Tensor, names: list[str], skipped: list[tuple[str, str]]) -> ImageSet:
    """Reorder decoded images so each class is contiguous (classes sorted by name)."""
    classes = sorted(set(names))
    if not classes:
        raise DatasetError("none of the files could be read as an image:\n" + "\n".join(
            f"  {p}: {why}" for p, why in skipped[:20]))
    index = {c: i for i, c in enumerate(classes)}
    label = torch.tensor([index[n] for n in names])
    order = torch.argsort(label, stable=True)
    counts = torch.bincount(label, minlength=len(classes))
    return ImageSet(images[order], classes, counts, ["custom"] * len(classes), skipped)


def custom_split(spec: str, class_names: list[str], seed: int) -> ClassSplit:
    """`ratio:F` (fraction F of classes for training, the rest for test; `ratio:F,V` keeps a
    fraction V for validation) or `lists:DIR` (DIR/train.txt, DIR/test.txt, DIR/val.txt)."""
    kind, _, arg = spec.partition(":")
    if kind == "ratio":
        try:
            fractions = [float(x) for x in arg.split(",")]
        except ValueError:
            raise SplitError(f"split {spec!r}: use ratio:0.8 or ratio:0.7,0.1") from None
        return ratio_split(class_names, fractions[0], seed,
                           fractions[1] if len(fractions) > 1 else 0.0)
    if kind == "lists":
        folder = Path(arg)
        parts = {}
        for part in ("train", "test", "val"):
            file = folder / f"{part}.txt"
            if part != "val" and not file.is_file():
                raise SplitError(f"split {spec!r}: {file} not found")
            parts[part] = ([ln.strip() for ln in file.read_text().splitlines() if ln.strip()]
                           if file.is_file() else [])
        known = set(class_names)
        for part, ids in parts.items():
            unknown = [c for c in ids if c not in known]
            if unknown:
                raise SplitError(f"split {spec!r}: {part}.txt names {len(unknown)} classes the "
                                 f"data lacks, e.g. {unknown[:3]}")
        return ClassSplit(f"lists:{folder}", parts["train"], parts["test"], parts["val"])
    raise SplitError(f"split {spec!r} is not usable with custom data; use ratio:F or lists:DIR")
