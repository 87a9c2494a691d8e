"""Omniglot (Lake et al. 2015) in torchvision's layout, decoded once into an `ImageSet` cache.

    <data_root>/omniglot-py/images_background/<Alphabet>/<characterNN>/<id>_<NN>.png
    <data_root>/omniglot-py/images_evaluation/<Alphabet>/<characterNN>/<id>_<NN>.png

1,623 characters x 20 drawings. Images are inverted so strokes = 255 (1.0 after scaling) and
resized with a Lanczos filter to `image_size` (20x20 in Santoro et al. 2016).
"""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path

import torch

from ..errors import DataNotFoundError, DatasetError
from .decode import decode_files, fingerprint
from .imageset import ImageSet

BACKGROUND, EVALUATION = "images_background", "images_evaluation"
NUM_CHARACTERS = 1623


def omniglot_folder(data_root: str | Path) -> Path | None:
    """The `omniglot-py` folder under `data_root` (or `data_root` itself if it is one), or
    None when neither holds both Omniglot groups."""
    root = Path(data_root).expanduser()
    for candidate in (root / "omniglot-py", root):
        if (candidate / BACKGROUND).is_dir() and (candidate / EVALUATION).is_dir():
            return candidate
    return None


def find_omniglot(data_root: str | Path, download: bool = False) -> Path:
    """The `omniglot-py` folder under `data_root` (or `data_root` itself if it is one).

    Downloads with torchvision when missing and `download` is true.
    """
    root = Path(data_root).expanduser()
    found = omniglot_folder(root)
    if found is not None:
        return found
    if download:
        from torchvision.datasets import Omniglot

        root.mkdir(parents=True, exist_ok=True)
        for background in (True, False):
            Omniglot(str(root), background=background, download=True)
        return root / "omniglot-py"
    raise DataNotFoundError(
        f"Omniglot not found under {root.resolve()} (looked for "
        f"omniglot-py/{BACKGROUND} and omniglot-py/{EVALUATION}). Point --data-root or "
        f"$FEWSHOT_MANN_DATA at the folder holding omniglot-py/, or pass --download to fetch "
        f"it with torchvision.")


def character_files(data_root: str | Path, names: list[str]) -> list[list[Path]]:
    """The drawings (sorted PNG paths) of each character "<Alphabet>/<characterNN>" in `names`,
    from whichever Omniglot group holds it."""
    folder = find_omniglot(data_root)
    files = []
    for name in names:
        found = [folder / group / name for group in (BACKGROUND, EVALUATION)
                 if (folder / group / name).is_dir()]
        if not found:
            raise DataNotFoundError(f"character {name} is not in {folder}: incomplete Omniglot "
                                    f"copy?")
        files.append(sorted(found[0].glob("*.png")))
    return files


def list_characters(group_dir: str) -> list[tuple[str, str, list[str]]]:
    """(alphabet, character, the character's PNG paths) for every <alphabet>/<character>
    folder of a group, sorted by name. Every load lists all 32,460 files to fingerprint them:
    with os.scandir and plain strings, as pathlib's objects would cost more than the listing."""
    def entries(path: str, keep: Callable[[os.DirEntry], bool]) -> list[str]:
        with os.scandir(path) as listing:
            return sorted(entry.name for entry in listing if keep(entry))

    found = []
    for alphabet in entries(group_dir, os.DirEntry.is_dir):
        alphabet_dir = os.path.join(group_dir, alphabet)
        for character in entries(alphabet_dir, os.DirEntry.is_dir):
            character_dir = os.path.join(alphabet_dir, character) + os.sep
            pngs = entries(character_dir, lambda entry: entry.name.endswith(".png"))
            found.append((alphabet, character, [character_dir + png for png in pngs]))
    return found


def load_omniglot(data_root: str | Path, cache_dir: str | Path, image_size: int = 20,
                  download: bool = False, progress: bool = True) -> ImageSet:
    """All 1,623 characters, decoded at `image_size`, from the cache when it is current
    (decoding: with a progress bar on stderr unless `progress` is false)."""
    folder = find_omniglot(data_root, download)
    files, names, groups, counts = [], [], [], []
    for group in (BACKGROUND, EVALUATION):
        for alphabet, character, pngs in list_characters(os.path.join(folder, group)):
            if not pngs:
                raise DataNotFoundError(f"no PNG files in {folder / group / alphabet / character}"
                                        f": incomplete Omniglot copy?")
            files += pngs
            names.append(f"{alphabet}/{character}")
            groups.append("background" if group == BACKGROUND else "evaluation")
            counts.append(len(pngs))
    if len(names) != NUM_CHARACTERS:
        raise DataNotFoundError(f"{folder} holds {len(names)} characters, expected "
                                f"{NUM_CHARACTERS}: incomplete Omniglot copy?")

    key = fingerprint(files, folder, extra=f"omniglot-v1 size={image_size} invert=1")
    cache = Path(cache_dir) / f"omniglot-{image_size}px.pt"
    cached = ImageSet.load(cache, key)
    if cached is not None:
        return cached
    images, failures = decode_files([Path(f) for f in files], image_size, channels=1, invert=True,
                                    desc=f"decoding Omniglot at {image_size}px (once, cached "
                                         f"in {cache})", progress=progress)
    if failures:
        listed = "\n".join(f"  {p}: {why}" for p, why in failures[:10])
        raise DatasetError(f"{len(failures)} Omniglot files could not be read:\n{listed}")
    imageset = ImageSet(images, names, torch.tensor(counts), groups)
    imageset.save(cache, key)
    return imageset
