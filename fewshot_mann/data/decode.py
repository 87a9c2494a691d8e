"""Image files -> uint8 tensors, once, with a fingerprint that says when a cache is stale."""

from __future__ import annotations

import hashlib
import os
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import torch
from PIL import Image, ImageOps
from tqdm import tqdm


def fingerprint(files: Sequence[str | os.PathLike], root: str | os.PathLike, extra: str) -> str:
    """sha256 over (path relative to `root`, size, mtime) of every file plus `extra` (decode
    settings). `files`: normalised paths under `root` (as pathlib or os.path.join writes them),
    taken apart as strings: pathlib's parsing of 32,460 Omniglot paths costs more than their
    stat calls, and every warm dataset load runs this."""
    base = os.fspath(root)
    prefix = base if base.endswith(os.sep) else base + os.sep
    lines = []
    for path in files:
        name = os.fspath(path)
        if not name.startswith(prefix):
            raise ValueError(f"{name} is not under {base}")
        st = os.stat(name)
        relative = name[len(prefix):].replace(os.sep, "/")
        lines.append(f"\n{relative}\t{st.st_size}\t{st.st_mtime_ns}")
    return hashlib.sha256((extra + "".join(lines)).encode()).hexdigest()


def decode_image(path: Path, size: int, channels: int, invert: bool) -> np.ndarray:
    """One file -> (channels, size, size) uint8. Raises on files Pillow cannot read."""
    with Image.open(path) as im:
        im.load()  # force the full decode here, so truncated files fail here
        return prepare_image(im, size, channels, invert)


def prepare_image(im: Image.Image, size: int, channels: int, invert: bool) -> np.ndarray:
    """A Pillow image -> (channels, size, size) uint8, exactly as files are decoded for
    training: EXIF orientation, mode conversion (`to_mode`), optional inversion (Omniglot:
    strokes = 255), Lanczos resize to a square."""
    im = to_mode(ImageOps.exif_transpose(im), channels)
    if invert:
        im = ImageOps.invert(im)
    im = im.resize((size, size), Image.Resampling.LANCZOS)
    arr = np.asarray(im, dtype=np.uint8)
    return arr[None] if channels == 1 else arr.transpose(2, 0, 1)


def to_mode(im: Image.Image, channels: int) -> Image.Image:
    """Any Pillow mode -> 8-bit "L" (channels=1) or "RGB" (channels=3).

    16-bit images are scaled by 1/257 and 32-bit integer or float images stretched from their
    own min..max (Pillow's convert would clip them at 255); transparency is composited on white,
    the usual "paper" background.
    """
    if im.mode.startswith("I;16") or im.mode in ("I", "F"):
        pixels = np.nan_to_num(np.asarray(im, dtype=np.float64))
        if im.mode.startswith("I;16"):
            pixels /= 257.0
        else:
            low, high = pixels.min(), pixels.max()
            pixels = (pixels - low) * (255.0 / (high - low)) if high > low else pixels * 0
        im = Image.fromarray(np.round(pixels).astype(np.uint8), "L")
    if "A" in im.getbands() or "transparency" in im.info:
        rgba = im.convert("RGBA")
        im = Image.alpha_composite(Image.new("RGBA", rgba.size, "white"), rgba)
    if im.mode not in ("1", "L", "RGB"):  # CMYK, YCbCr, LAB, HSV, RGBA...: via RGB
        im = im.convert("RGB")
    return im.convert("L" if channels == 1 else "RGB")


def decode_files(files: Sequence[Path], size: int, channels: int, invert: bool,
                 desc: str, progress: bool = True
                 ) -> tuple[torch.Tensor, list[tuple[Path, str]]]:
    """Decode many files, with a progress bar on stderr unless `progress` is false (a first
    decode of Omniglot takes tens of seconds).

    Returns (images (n_ok, C, size, size) uint8, failures [(path, reason)]), the images in the
    order of `files` with the failures left out.
    """
    def one(path: Path) -> np.ndarray | str:
        try:
            return decode_image(path, size, channels, invert)
        except Exception as err:  # Pillow's parsers raise many kinds of error on bad files
            return f"{type(err).__name__}: {err}"

    with ThreadPoolExecutor(max_workers=4) as pool:
        results = list(tqdm(pool.map(one, files), total=len(files), desc=desc, unit="img",
                            mininterval=1.0, disable=not progress))
    ok = [r for r in results if isinstance(r, np.ndarray)]
    failures = [(p, r) for p, r in zip(files, results, strict=True) if isinstance(r, str)]
    images = torch.from_numpy(np.stack(ok)) if ok else torch.zeros(0, channels, size, size,
                                                                   dtype=torch.uint8)
    return images, failures
