"""Shared fixtures: the real Omniglot files from ../shared/data/omniglot (or $FEWSHOT_MANN_DATA),
decoded once per session into a temporary cache."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
# absolute: some tests change the working folder (the Makefile passes a relative path)
DATA_ROOT = Path(os.environ.get("FEWSHOT_MANN_DATA",
                                REPO.parent / "shared" / "data" / "omniglot")).resolve()


@pytest.fixture(scope="session")
def data_root() -> Path:
    if not (DATA_ROOT / "omniglot-py" / "images_background").is_dir():
        pytest.fail(f"Omniglot not found at {DATA_ROOT}; set FEWSHOT_MANN_DATA")
    return DATA_ROOT


# `make test-fast` keeps the decoded Omniglot tensors here between sessions (each load checks
# them against the files' fingerprint); unset, every session decodes into a fresh folder
TEST_CACHE_ENV = "FEWSHOT_MANN_TEST_CACHE"


@pytest.fixture(scope="session")
def cache_dir(tmp_path_factory) -> Path:
    kept = os.environ.get(TEST_CACHE_ENV)
    if kept:
        Path(kept).mkdir(parents=True, exist_ok=True)
        return Path(kept)
    return tmp_path_factory.mktemp("cache")


@pytest.fixture(scope="session")
def omniglot(data_root, cache_dir):
    from fewshot_mann.data.omniglot import load_omniglot

    return load_omniglot(data_root, cache_dir, image_size=20)


def write_image_tree(data_root: Path, out: Path, alphabet: str, classes: int,
                     background: bool = True) -> Path:
    """The first `classes` characters of an Omniglot alphabet (of images_background, or with
    background=False of images_evaluation) rewritten as a plain custom dataset,
    out/<class>/<image>, with nothing Omniglot-like left: plain names and, in turn, 1-bit PNG,
    RGB JPEG, inverted grayscale BMP, palette GIF and RGBA WebP files of five different sizes
    (not all square)."""
    from PIL import Image, ImageOps

    group = "images_background" if background else "images_evaluation"
    source = data_root / "omniglot-py" / group / alphabet
    for c, char_dir in enumerate(sorted(source.iterdir())[:classes]):
        folder = out / f"{alphabet[:4].lower()}{c:02d}"
        folder.mkdir(parents=True)
        for i, png in enumerate(sorted(char_dir.glob("*.png"))):
            gray = Image.open(png).convert("L")
            kind = i % 5
            if kind == 0:
                Image.open(png).save(folder / f"{i:02d}.png")
            elif kind == 1:
                gray.convert("RGB").resize((64, 48)).save(folder / f"{i:02d}.jpg", quality=90)
            elif kind == 2:
                ImageOps.invert(gray).resize((50, 50)).save(folder / f"{i:02d}.bmp")
            elif kind == 3:
                gray.convert("P").resize((80, 80)).save(folder / f"{i:02d}.gif")
            else:
                gray.convert("RGBA").resize((30, 40)).save(folder / f"{i:02d}.webp")
    return out


@pytest.fixture(scope="session")
def image_tree(data_root, tmp_path_factory) -> Path:
    """A read-only-by-convention custom dataset: 16 classes of 20 mixed images; copy it before
    changing it (shutil.copytree)."""
    root = tmp_path_factory.mktemp("tree") / "symbols"
    write_image_tree(data_root, root, "Tagalog", 8)
    write_image_tree(data_root, root, "Blackfoot_(Canadian_Aboriginal_Syllabics)", 8)
    return root


@pytest.fixture(scope="session")
def omniglot28(data_root, cache_dir):
    """Omniglot at 28x28, the size of the standard N-way K-shot benchmark (Vinyals et al.)."""
    from fewshot_mann.data.omniglot import load_omniglot

    return load_omniglot(data_root, cache_dir, image_size=28)
