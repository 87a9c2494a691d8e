"""Image files -> uint8 tensors, once, with a fingerprint that says when a cache is stale."""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import torch
from PIL import Image, ImageOps
from tqdm import tqdm


def fingerprint(files: Sequence[Path], root: Path, extra: str) -> str:
    """sha256 over (relative path, size, mtime) of every file plus `extra` (decode settings)."""
    h = hashlib.sha256(extra.encode())
    for path in files:
        st = path.stat()
        h.update(f"\n{path.relative_to(root).as_posix()}\t{st.st_size}\t{st.st_mtime_ns}".encode())
    return h.hexdigest()


def decode_image(path: Path, size: int, channels: int, invert: bool) -> np.ndarray:
    """One file -> (channels, size, size) uint8. Raises OSError/ValueError on unreadable files."""
    with Image.open(path) as im:
        im.load()  # force the full decode here, so truncated files fail here
        im = ImageOps.exif_transpose(im)
        if im.mode in ("RGBA", "LA", "P", "PA") or (im.mode == "P" and "transparency" in im.info):
            # composite transparent images on white, the usual "paper" background
            rgba = im.convert("RGBA")
            im = Image.alpha_composite(Image.new("RGBA", rgba.size, "white"), rgba)
        im = im.convert("L" if channels == 1 else "RGB")
        if invert:
            im = ImageOps.invert(im)
        im = im.resize((size, size), Image.Resampling.LANCZOS)
        arr = np.asarray(im, dtype=np.uint8)
    return arr[None] if channels == 1 else arr.transpose(2, 0, 1)


def decode_files(files: Sequence[Path], size: int, channels: int, invert: bool,
                 desc: str) -> tuple[torch.Tensor, list[tuple[Path, str]]]:
    """Decode many files with a progress bar.

    Returns (images (n_ok, C, size, size) uint8, failures [(path, reason)]), the images in the
    order of `files` with the failures left out.
    """
    def one(path: Path) -> np.ndarray | str:
        try:
            return decode_image(path, size, channels, invert)
        except (OSError, ValueError, Image.DecompressionBombError) as err:
            return f"{type(err).__name__}: {err}"

    with ThreadPoolExecutor(max_workers=4) as pool:
        results = list(tqdm(pool.map(one, files), total=len(files), desc=desc, unit="img",
                            leave=False, mininterval=1.0))
    ok = [r for r in results if isinstance(r, np.ndarray)]
    failures = [(p, r) for p, r in zip(files, results, strict=True) if isinstance(r, str)]
    images = torch.from_numpy(np.stack(ok)) if ok else torch.zeros(0, channels, size, size,
                                                                   dtype=torch.uint8)
    return images, failures
