"""Shared fixtures: the real Omniglot files from ../shared/data/omniglot (or $FEWSHOT_MANN_DATA),
decoded once per session into a temporary cache."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
DATA_ROOT = Path(os.environ.get("FEWSHOT_MANN_DATA", REPO.parent / "shared" / "data" / "omniglot"))


@pytest.fixture(scope="session")
def data_root() -> Path:
    if not (DATA_ROOT / "omniglot-py" / "images_background").is_dir():
        pytest.fail(f"Omniglot not found at {DATA_ROOT}; set FEWSHOT_MANN_DATA")
    return DATA_ROOT


@pytest.fixture(scope="session")
def cache_dir(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("cache")


@pytest.fixture(scope="session")
def omniglot(data_root, cache_dir):
    from fewshot_mann.data.omniglot import load_omniglot

    return load_omniglot(data_root, cache_dir, image_size=20)
