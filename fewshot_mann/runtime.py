"""Runtime helpers every layer may use: which device, what it is called, how to save a file so
that a crash never leaves half of it, and the process-wide torch flags of a run. A leaf: it
imports nothing of the package but its exception types."""

from __future__ import annotations

import os
import platform
import re
import tempfile
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import BinaryIO

import torch

from .errors import ConfigError


def pick_device(name: str) -> torch.device:
    """"auto" (CUDA when present), "cpu", "cuda" or "cuda:N"; ConfigError when unusable."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        device = torch.device(name)
    except RuntimeError:
        raise ConfigError(f"unknown device {name!r}; use auto, cpu, cuda or cuda:N") from None
    if device.type == "cuda" and not torch.cuda.is_available():
        raise ConfigError(f"device {name!r} requested but CUDA is not available")
    return device


def device_name(device: torch.device) -> str:
    """The GPU's name, or the CPU model with the number of torch threads."""
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    cpu = platform.processor() or "cpu"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return f"{cpu} ({torch.get_num_threads()} threads)"


def device_slug(device: torch.device) -> str:
    """device_name as a file name: "amd-epyc-...-2-threads", "nvidia-h200"."""
    return re.sub(r"[^A-Za-z0-9]+", "-", device_name(device)).strip("-").lower()


def atomic_write(path: Path, write: Callable[[BinaryIO], object]) -> None:
    """`write(file)` into a temporary file in the same folder, fsync, then rename over `path`:
    a crash at any moment leaves the old file or the new one whole, never part of one."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            write(f)
            f.flush()
            os.fsync(f.fileno())
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(tmp, 0o666 & ~umask)  # mkstemp makes 0600; give the file the usual mode
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def atomic_torch_save(obj: object, path: Path) -> None:
    """torch.save, written as `atomic_write` writes."""
    atomic_write(path, lambda f: torch.save(obj, f))


def set_process_flags(threads: int, precision: str) -> None:
    """The process-wide torch settings of a run, set by its entry point (the CLI), not by any
    constructor: CPU threads (0: torch's default) and TF32 matmuls (precision "tf32"; "bf16"
    is an autocast around each forward, not a flag)."""
    if threads:
        torch.set_num_threads(threads)
    tf32 = precision == "tf32"
    torch.backends.cuda.matmul.allow_tf32 = tf32
    torch.backends.cudnn.allow_tf32 = tf32


def adam(params: Iterable[torch.nn.Parameter], lr: float, fused: bool | None = None,
         ) -> torch.optim.Adam:
    """Adam; `fused` None: one fused kernel on CUDA (the eager multi-tensor step launches a
    kernel per parameter group, a large share of a graphed small-batch step), torch's default
    multi-tensor step on the CPU."""
    params = list(params)
    if fused is None:
        fused = bool(params) and params[0].is_cuda
    return torch.optim.Adam(params, lr=lr, fused=fused or None)

