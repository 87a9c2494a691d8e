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
from collections.abc import Collection, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import torch

from ..config import default_cache_dir
from ..errors import DatasetError
from .decode import decode_files, fingerprint
from .imageset import ImageSet
from .splits import ClassSplit, custom_split

SHOWN = 20  # unreadable files listed by name in a report


@dataclass
class FolderDataset:
    """A custom dataset, ready for episodes. Usable from a notebook:

        ds = FolderDataset.from_spec("folder:my_images", image_size=20)
        split = ds.split("ratio:0.75", seed=0)
        print(ds.imageset.num_classes, ds.skipped)
    """

    imageset: ImageSet
    skipped: list[tuple[str, str]] = field(default_factory=list)  # (file, why)

    @staticmethod
    def entries(spec: str) -> tuple[list[tuple[Path, str]], str]:
        """`folder:PATH[,PATH...]` or `csv:FILE` -> its (file, class name) pairs, listed and not
        decoded, and the source name that keys its cache."""
        kind, _, target = spec.partition(":")
        paths = [Path(p).expanduser() for p in target.split(",")] if target else []
        if kind == "folder" and paths:
            entries = list_folders(paths)
        elif kind == "csv" and len(paths) == 1:
            entries = read_manifest(paths[0])
        else:
            raise DatasetError(f"dataset {spec!r}: use folder:PATH[,PATH...] or csv:FILE")
        return entries, f"{kind}:" + ",".join(str(p.resolve()) for p in paths)

    @classmethod
    def from_spec(cls, spec: str, image_size: int = 20, channels: int = 1,
                  cache_dir: str | Path | None = None, bad_files: str = "skip",
                  invert: bool = False, classes: Collection[str] | None = None,
                  progress: bool = True) -> FolderDataset:
        """`folder:PATH[,PATH...]` or `csv:FILE` -> the decoded dataset (from the cache when it
        is current; `cache_dir` defaults to $FEWSHOT_MANN_CACHE or data/cache). `invert`:
        light on dark, as Omniglot is decoded (for a model trained on Omniglot). `classes`:
        decode these classes alone (the files of the others are never opened). `progress`: a
        bar on stderr while files are decoded."""
        entries, source = cls.entries(spec)
        if classes is not None:
            entries = [(file, name) for file, name in entries if name in classes]
            chosen = "|".join(sorted(set(classes)))
            source += f"#classes={hashlib.sha256(chosen.encode()).hexdigest()[:12]}"
        return cls.from_entries(entries, image_size, channels, cache_dir, bad_files, source,
                                invert, progress)

    @classmethod
    def from_entries(cls, entries: Sequence[tuple[Path, str]], image_size: int = 20,
                     channels: int = 1, cache_dir: str | Path | None = None,
                     bad_files: str = "skip", source: str = "entries",
                     invert: bool = False, progress: bool = True) -> FolderDataset:
        """(file, class name) pairs -> the decoded dataset, through a cache named by `source`
        (decoding: with a progress bar on stderr unless `progress` is false)."""
        if bad_files not in ("skip", "error"):
            raise DatasetError(f"bad_files must be 'skip' or 'error', got {bad_files!r}")
        files = [Path(p).resolve() for p, _ in entries]
        settings = (f"folder-v1 size={image_size} channels={channels}{' invert' * invert} "
                    f"classes=" + "|".join(name for _, name in entries))
        key = fingerprint(files, Path("/"), extra=settings)
        cache = Path(cache_dir if cache_dir is not None else default_cache_dir()) / (
            f"custom-{hashlib.sha256(source.encode()).hexdigest()[:12]}-{image_size}px-"
            f"c{channels}{'-inverted' * invert}.pt")
        imageset = ImageSet.load(cache, key)
        if imageset is None:
            images, failures = decode_files(files, image_size, channels, invert=invert,
                                            desc=f"decoding {source}", progress=progress)
            failed = {p for p, _ in failures}
            kept = [name for p, (_, name) in zip(files, entries, strict=True) if p not in failed]
            imageset = _group(images, kept, [(str(p), why) for p, why in failures])
            imageset.save(cache, key)
        _report_skipped(imageset, {name for _, name in entries}, bad_files)
        return cls(imageset, list(imageset.skipped))

    def split(self, spec: str, seed: int = 0, n_way: int = 2) -> ClassSplit:
        """`auto`, `ratio:F[,V]` with a seed, or `lists:DIR`: see `splits.custom_split`."""
        return custom_split(spec, self.imageset.class_names, seed, n_way)


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
        visible = [p for p in sorted(root.iterdir()) if not p.name.startswith(".")]
        class_dirs = [p for p in visible if p.is_dir()]
        if not class_dirs:
            raise DatasetError(f"{root} holds no class sub-folders (expected "
                               f"{root}/<class>/<image files>)")
        loose = len(visible) - len(class_dirs)
        if loose:
            warnings.warn(f"{loose} files directly in {root} are in no class folder; ignored",
                          stacklevel=3)
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
    with open(path, newline="", encoding="utf-8-sig") as f:  # -sig: spreadsheets write a BOM
        reader = csv.DictReader(f)
        if not reader.fieldnames or not {"path", "label"} <= set(reader.fieldnames):
            raise DatasetError(f"{path}: the header must name the columns 'path' and 'label', "
                               f"found {reader.fieldnames}")
        entries, first_line = [], {}
        for line, row in enumerate(reader, start=2):
            file, label = (row["path"] or "").strip(), (row["label"] or "").strip()
            if not file or not label:
                raise DatasetError(f"{path}:{line}: empty path or label")
            full = (path.parent / file).resolve()
            if full in first_line:
                raise DatasetError(f"{path}:{line}: {file} is listed twice (first on line "
                                   f"{first_line[full]})")
            first_line[full] = line
            entries.append((full, label))
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
        raise DatasetError("none of the files could be read as an image:\n"
                           + _listing(skipped))
    index = {c: i for i, c in enumerate(classes)}
    label = torch.tensor([index[n] for n in names])
    order = torch.argsort(label, stable=True)
    counts = torch.bincount(label, minlength=len(classes))
    return ImageSet(images[order], classes, counts, ["custom"] * len(classes), skipped)


def _report_skipped(imageset: ImageSet, listed_classes: set[str], bad_files: str) -> None:
    """Unreadable files: a DatasetError (bad_files="error") or a warning naming them."""
    if not imageset.skipped:
        return
    summary = f"{len(imageset.skipped)} files could not be read as images"
    emptied = sorted(listed_classes - set(imageset.class_names))
    if emptied:
        summary += f" ({len(emptied)} classes had no readable image and are left out, " \
                   f"e.g. {emptied[:3]})"
    if bad_files == "error":
        raise DatasetError(f"{summary}; pass --bad-files skip to leave them out:\n"
                           + _listing(imageset.skipped))
    warnings.warn(f"{summary}; skipped:\n" + _listing(imageset.skipped), stacklevel=3)


def _listing(skipped: list[tuple[str, str]]) -> str:
    lines = [f"  {p}: {why}" for p, why in skipped[:SHOWN]]
    if len(skipped) > SHOWN:
        lines.append(f"  ... and {len(skipped) - SHOWN} more")
    return "\n".join(lines)
