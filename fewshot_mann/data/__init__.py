"""Images (Omniglot or a custom folder) -> `ImageSet`, and the class split of a run."""

from __future__ import annotations

import warnings
from collections.abc import Collection

from ..config import DataConfig
from .folder import DatasetError, FolderDataset
from .imageset import ImageSet
from .omniglot import DataNotFoundError, load_omniglot
from .splits import (
    ClassSplit,
    SplitError,
    base_name,
    custom_split,
    default_split,
    omniglot_split,
    resolve,
)


def load_dataset(cfg: DataConfig, invert: bool = False, progress: bool = True,
                 classes: Collection[str] | None = None) -> ImageSet:
    """The images a data config names, decoded (or read from the cache). `invert`: custom
    images light on dark, as Omniglot's are decoded (Omniglot always is). `classes`: these
    classes alone (custom files of other classes are never opened). `progress`: a bar on
    stderr while files are decoded."""
    if cfg.dataset == "omniglot":
        if cfg.channels != 1:
            raise DatasetError("Omniglot is grayscale: data.channels must be 1")
        imageset = load_omniglot(cfg.data_root, cfg.cache_dir, cfg.image_size, cfg.download,
                                 progress)
        return imageset if classes is None else imageset.subset(classes)
    if cfg.dataset.startswith(("folder:", "csv:")):
        return FolderDataset.from_spec(cfg.dataset, cfg.image_size, cfg.channels, cfg.cache_dir,
                                       cfg.bad_files, invert=invert, classes=classes,
                                       progress=progress).imageset
    raise DatasetError(f"unknown dataset {cfg.dataset!r}; use omniglot, folder:PATH or csv:FILE")


def load_training_data(cfg: DataConfig, n_way: int, split: ClassSplit | None = None,
                       progress: bool = True) -> tuple[ImageSet, ClassSplit]:
    """What a training run may read: its split (`split`, or the one `cfg` names, drawn for
    `n_way`-way episodes) and the images of the split's training and validation classes. The
    test classes are left out of the returned images, and custom test files are never opened.
    """
    spec = cfg.split or default_split(cfg.dataset)
    if cfg.dataset == "omniglot":
        imageset = load_dataset(cfg, progress=progress)
        split = split or omniglot_split(spec, imageset)
        return imageset.subset({base_name(c) for c in split.train + split.val}), split
    if split is not None:
        keep = {base_name(c) for c in split.train + split.val}
        return load_dataset(cfg, classes=keep, progress=progress), split
    if not cfg.dataset.startswith(("folder:", "csv:")):
        load_dataset(cfg)  # the unknown-dataset error
    with warnings.catch_warnings():  # what the listing finds amiss is said by the load below
        warnings.simplefilter("ignore")
        names = sorted({name for _, name in FolderDataset.entries(cfg.dataset)[0]})
    split = custom_split(spec, names, cfg.split_seed, n_way)
    imageset = load_dataset(cfg, classes=set(split.train + split.val), progress=progress)
    # classes without a readable image (skipped and reported by the load) leave the split
    return imageset, ClassSplit(split.name, [c for c in split.train if c in imageset],
                                split.test, [c for c in split.val if c in imageset])


def invert_custom(trained_on: str, dataset: str, invert: bool | None = None) -> bool:
    """Whether images of `dataset` are inverted for a model trained on `trained_on`: as told,
    or (None) when the model learnt Omniglot's light strokes on dark and the data is custom."""
    if invert is not None:
        return invert
    return trained_on == "omniglot" and dataset != "omniglot"


__all__ = ["ClassSplit", "DataNotFoundError", "DatasetError", "FolderDataset", "ImageSet",
           "SplitError", "custom_split", "default_split", "invert_custom",
           "load_dataset", "load_training_data", "resolve"]
