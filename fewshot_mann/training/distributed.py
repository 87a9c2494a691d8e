"""torchrun / DistributedDataParallel glue: the one module that knows about ranks.

`torchrun --nproc_per_node=K -m fewshot_mann.cli train ...` starts K processes with RANK,
LOCAL_RANK and WORLD_SIZE set; `init` joins them into a process group (gloo on the CPU, NCCL on
CUDA, one GPU per process: cuda:LOCAL_RANK) and returns a `Dist`, which the trainer asks for
everything rank-related. Without those variables (plain `fewshot-mann train`) `init` returns a
single-process `Dist` whose collectives do nothing.

Data parallelism over episodes: every process samples its own episodes (its sampler is seeded
with `rank_seed(seed, rank)`), runs forward and backward on them, and the gradients are
averaged over the processes, so one update sees `batch_size x world_size` episodes. The
average of the per-process mean losses equals the mean loss over the global batch (equal batch
sizes), which is what a single process training on the concatenated batch computes
(tests/test_distributed.py). Gradients are averaged by DistributedDataParallel in the
backward pass, or, for a step replayed from a CUDA graph (DDP's hooks cannot run inside a
captured graph), by one flat all-reduce after it (`average_gradients`).

A lost process (killed, crashed, or unresponsive for longer than the timeout,
$FEWSHOT_MANN_DIST_TIMEOUT seconds, default 600) turns the next collective into a
`DistributedError` on the others, and torchrun stops the remaining processes with SIGTERM,
which `init` turns into the same error: each process ends with one clear line instead of a
hang or a traceback.
"""

from __future__ import annotations

import gc
import os
import signal
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import timedelta
from types import FrameType
from typing import Any, TypeVar

import torch
import torch.distributed as tdist
from torch import nn

from ..config import ConfigError
from ..errors import DistributedError

TIMEOUT_ENV = "FEWSHOT_MANN_DIST_TIMEOUT"
DEFAULT_TIMEOUT_S = 600.0
RANK_SEED_STRIDE = 1_000_003  # rank r's episodes: seed + r * stride (rank 0: the plain seed)
T = TypeVar("T")


def rank_seed(seed: int, rank: int) -> int:
    """The seed of rank `rank`'s training episodes; rank 0 samples the episodes of a single
    process."""
    return seed + rank * RANK_SEED_STRIDE


@dataclass(frozen=True)
class Dist:
    """Where this process stands in the job; a single process: rank 0 of 1, no group."""

    rank: int = 0
    world_size: int = 1
    local_rank: int = 0
    backend: str = ""  # "" when no process group was formed

    @property
    def is_main(self) -> bool:
        """Rank 0: the process that writes checkpoints and logs and shows progress."""
        return self.rank == 0

    @property
    def active(self) -> bool:
        return bool(self.backend)

    def describe(self) -> str:
        return f"rank {self.rank} of {self.world_size}"

    # ---- the model ---------------------------------------------------------------------------
    def wrap(self, model: nn.Module, *, graphed: bool) -> nn.Module:
        """The module the training forward runs. In a process group: DistributedDataParallel,
        which averages gradients during the backward pass; with `graphed` (CUDA graphs) or a
        single process, the model itself (then `average_gradients` does it after backward)."""
        if not self.active or graphed:
            return model
        device_ids = None if next(model.parameters()).device.type == "cpu" else [self.local_rank]
        with self.failures("wrapping the model in DistributedDataParallel"):
            return nn.parallel.DistributedDataParallel(model, device_ids=device_ids)

    def average_gradients(self, params: Iterator[nn.Parameter]) -> None:
        """Average the .grad of `params` over the processes with one flat all-reduce (for
        steps that do not run through DDP). A no-op for a single process."""
        if not self.active:
            return
        grads = [p.grad for p in params if p.grad is not None]
        if not grads:
            return
        flat = torch.cat([g.reshape(-1) for g in grads])  # (sum of numel,)
        with self.failures("averaging gradients"):
            tdist.all_reduce(flat)
        flat.div_(self.world_size)
        offset = 0
        for g in grads:
            g.copy_(flat[offset:offset + g.numel()].view_as(g))
            offset += g.numel()

    # ---- collectives -------------------------------------------------------------------------
    def mean(self, values: torch.Tensor) -> torch.Tensor:
        """The element-wise mean of `values` (any shape) over the processes."""
        if not self.active:
            return values
        values = values.detach().clone()
        with self.failures("averaging training statistics"):
            tdist.all_reduce(values)
        return values / self.world_size

    def from_main(self, compute: Callable[[], T]) -> T:
        """`compute()` on rank 0 only; every process returns rank 0's result (a picklable
        object), so that decisions made from it are the same everywhere."""
        if not self.active:
            return compute()
        box = [compute() if self.is_main else None]
        with self.failures("receiving rank 0's evaluation"):
            tdist.broadcast_object_list(box, src=0)
        return box[0]

    def gather(self, value: Any) -> list[Any]:
        """Every process's `value` (a picklable object), in rank order, on every process."""
        if not self.active:
            return [value]
        out: list[Any] = [None] * self.world_size
        with self.failures("gathering the processes' states"):
            tdist.all_gather_object(out, value)
        return out

    @contextmanager
    def failures(self, doing: str) -> Iterator[None]:
        """Turn a collective that fails because another process is gone into one clear
        DistributedError (other errors pass unchanged)."""
        try:
            yield
        except RuntimeError as err:
            if not self.active or isinstance(err, DistributedError) or not _peer_failure(err):
                raise
            first = str(err).splitlines()[0] if str(err) else type(err).__name__
            raise DistributedError(
                f"{self.describe()} lost contact with another training process while "
                f"{doing} (it was killed, crashed or stopped answering): {first[:300]}"
            ) from err


def launched() -> bool:
    """Whether this process was started by torchrun (or anything setting its variables)."""
    return "WORLD_SIZE" in os.environ and "RANK" in os.environ


def init(device: torch.device) -> tuple[Dist, torch.device]:
    """Join the process group torchrun describes; the Dist and the device this process trains
    on (cuda:LOCAL_RANK for a CUDA run). Outside torchrun: a single-process Dist, `device`."""
    if not launched():
        return Dist(), device
    try:
        rank, world = int(os.environ["RANK"]), int(os.environ["WORLD_SIZE"])
        local_rank = int(os.environ.get("LOCAL_RANK", rank))
        timeout = float(os.environ.get(TIMEOUT_ENV, DEFAULT_TIMEOUT_S))
    except ValueError as err:
        raise ConfigError(f"RANK, LOCAL_RANK, WORLD_SIZE and {TIMEOUT_ENV} must be numbers: "
                          f"{err}") from None
    if device.type == "cuda":
        if device.index is not None and world > 1:
            raise ConfigError(f"under torchrun each process trains on the GPU of its "
                              f"LOCAL_RANK: pass --device cuda (or auto), not {device}")
        if local_rank >= torch.cuda.device_count():
            raise ConfigError(f"LOCAL_RANK {local_rank} but this node has "
                              f"{torch.cuda.device_count()} GPUs: start at most that many "
                              f"processes per node (--nproc_per_node)")
        device = torch.device("cuda", local_rank)
        torch.cuda.set_device(device)
    backend = "nccl" if device.type == "cuda" else "gloo"
    dist = Dist(rank, world, local_rank, backend)
    if not tdist.is_initialized():
        with dist.failures("joining the process group"):
            tdist.init_process_group(backend, timeout=timedelta(seconds=timeout))
    signal.signal(signal.SIGTERM, _stopped(dist))
    return dist, device


def shutdown(*, wait: bool = True) -> None:
    """Leave the process group, if this process joined one. `wait`: first wait until every
    process is done (a process leaving while another is still writing can abort with
    "terminate called without an active exception"); pass False after an error, when the
    others may be gone. Without leaving, a process that lost a peer can abort on exit
    instead of reporting its error."""
    if not (tdist.is_available() and tdist.is_initialized()):
        return
    # leaving anyway: torchrun's SIGTERM must not replace the error being reported
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    gc.collect()  # a dropped DDP wrapper holds the group: free it with the group, not at exit
    try:
        if wait:
            tdist.barrier()
    except RuntimeError as err:
        raise DistributedError(f"a training process was lost at the end of training: "
                               f"{str(err).splitlines()[0] if str(err) else err!r}") from err
    finally:
        tdist.destroy_process_group()


def _stopped(dist: Dist) -> Callable[[int, FrameType | None], None]:
    """SIGTERM -> DistributedError: torchrun sends it to every process when one of them fails."""
    def handler(signum: int, frame: FrameType | None) -> None:
        signal.signal(signal.SIGTERM, signal.SIG_DFL)  # a second SIGTERM ends the process
        raise DistributedError(f"{dist.describe()} was stopped (SIGTERM): torchrun stops every "
                               f"process of the job when one of them fails; its report names "
                               f"the one that failed first")
    return handler


def _peer_failure(err: RuntimeError) -> bool:
    text = str(err).lower()
    return isinstance(err, tdist.DistError) or any(
        word in text for word in ("gloo", "nccl", "connection", "timed out", "timeout",
                                  "broken pipe", "socket"))
