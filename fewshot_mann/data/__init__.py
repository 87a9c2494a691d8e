"""Images (Omniglot or a custom folder) -> `ImageSet`, and the class split of a run."""

from __future__ import annotations

from ..config import DataConfig
from .folder import DatasetError, FolderDataset
from .imageset import ImageSet
from .omniglot import DataNotFoundError, load_omniglot
from .splits import (
    ClassSplit,
    SplitError,
    custom_split,
    default_split,
    omniglot_split,
    resolve,
)


def load_dataset(cfg: DataConfig, invert: bool = False, progress: bool = True) -> ImageSet:
    """The images a data config names, decoded (or read from the cache). `invert`: custom
    images light on dark, as Omniglot's are decoded (Omniglot always is); `progress`: a bar on
    stderr while files are decoded."""
    if cfg.dataset == "omniglot":
        if cfg.channels != 1:
            raise DatasetError("Omniglot is grayscale: data.channels must be 1")
        return load_omniglot(cfg.data_root, cfg.cache_dir, cfg.image_size, cfg.download,
                             progress)
    if cfg.dataset.startswith(("folder:", "csv:")):
        return FolderDataset.from_spec(cfg.dataset, cfg.image_size, cfg.channels, cfg.cache_dir,
                                       cfg.bad_files, invert=invert,
                                       progress=progress).imageset
    raise DatasetError(f"unknown dataset {cfg.dataset!r}; use omniglot, folder:PATH or csv:FILE")


def invert_custom(trained_on: str, dataset: str, invert: bool | None = None) -> bool:
    """Whether images of `dataset` are inverted for a model trained on `trained_on`: as told,
    or (None) when the model learnt Omniglot's light strokes on dark and the data is custom."""
    if invert is not None:
        return invert
    return trained_on == "omniglot" and dataset != "omniglot"


def make_split(cfg: DataConfig, imageset: ImageSet) -> ClassSplit:
    """The class split a data config names (or the default, `default_split`), checked
    against the data."""
    spec = cfg.split or default_split(cfg.dataset)
    if cfg.dataset == "omniglot":
        return omniglot_split(spec, imageset)
    return custom_split(spec, imageset.class_names, cfg.split_seed)


__all__ = ["ClassSplit", "DataNotFoundError", "DatasetError", "FolderDataset", "ImageSet",
           "SplitError", "custom_split", "default_split", "invert_custom",
           "load_dataset", "make_split", "resolve"]
