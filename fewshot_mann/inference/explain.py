"""Show why: which support images a prediction leaned on, and what the memory did.

LRUA (Santoro et al. 2016, eqs. 17-23). The read of step T is r_T = sum_i w^r_T(i) M_T(i), and
slot i of the memory holds what the earlier steps wrote there and no zeroing has erased since:

    M_T(i) = sum_t alive_t(i) sum_h w^w_{t,h}(i) k_{t,h}       (eq. 23, unrolled)

with w^w_t from eq. 22 and alive_t(i) = 0 once slot i was the least-used slot zeroed at a
later step. The share of step t in the read of step T is then

    share_t = sum_h sum_i w^r_{T,h}(i) * alive_t(i) sum_h' w^w_{t,h'}(i)

normalised over t: the query step's read weights mapped back to the steps that wrote the slots
it read. `record_memory` gets these numbers without touching the model: it stands in for the
model's memory object during one forward pass and records each step's state and write gates.

ProtoNets have no memory; their equivalent is the distance of the query's embedding to each
support image's: share_j = softmax_j(-||f(q) - f(s_j)||^2). MAML, the LSTM and the
feedforward network have nothing comparable to show.
"""

from __future__ import annotations

import itertools
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import torch
from torch import nn

from ..config import EMBEDDING_METHODS
from ..errors import PredictError
from ..memory.lrua import LRUAControls, LRUAState


class MemoryRecorder:
    """Stands in for an LRUA memory backend and keeps, per step, what attribution needs."""

    def __init__(self, memory: Any) -> None:
        self.memory = memory
        self.before: list[LRUAState] = []  # state entering each step (memory field dropped)
        self.gates: list[torch.Tensor] = []  # (B, H) write gates sigma(alpha_t)
        self.keys: list[torch.Tensor] = []  # (B, H, W)
        self.after: list[LRUAState] = []  # state leaving each step (memory field dropped)
        self.final_memory: torch.Tensor | None = None  # (B, N, W) after the last step

    def __getattr__(self, name: str) -> Any:  # slots, width, heads, gamma, initial_state...
        return getattr(self.__dict__["memory"], name)

    def step(self, state: LRUAState, controls: LRUAControls) -> tuple[torch.Tensor, LRUAState]:
        """The memory's own step, recorded."""
        keys, write_gates = controls.keys, controls.write_gates
        # the batched backend updates the memory tensor in place when no gradient is
        # recorded: keep the small fields only (cloned), and the memory after the last step
        self.before.append(state._replace(memory=torch.empty(0)))
        self.gates.append(write_gates.detach().clone())
        self.keys.append(keys.detach().clone())
        reads, new = self.memory.step(state, controls)
        self.after.append(LRUAState(torch.empty(0), *(t.detach().clone() for t in new[1:])))
        self.final_memory = new.memory
        return reads, new

    # ---- what the steps did ------------------------------------------------------------------
    def write_weights(self) -> torch.Tensor:
        """(B, T, H, N) w^w_t = sigma(alpha_t) w^r_{t-1} + (1 - sigma(alpha_t)) w^lu_{t-1}
        (eq. 22), from the recorded states."""
        return torch.stack([
            g.unsqueeze(-1) * s.read_weights + (1 - g.unsqueeze(-1)) * s.least_used_weights
            .unsqueeze(1) for g, s in zip(self.gates, self.before, strict=True)], dim=1)

    def alive(self) -> torch.Tensor:
        """(B, T, N): 1 where what step t wrote into slot i is still there after the last
        step, 0 where a later step zeroed the slot (the least-used one, before its write)."""
        slots = self.before[0].usage.shape[-1]
        zeroed = torch.stack([torch.nn.functional.one_hot(s.least_used, slots)
                              for s in self.before], dim=1).float()  # (B, T, N) at step t
        # alive_t = prod over t' > t of (1 - zeroed_t'): a reversed cumulative product
        later = torch.cat([zeroed[:, 1:], torch.zeros_like(zeroed[:, :1])], dim=1)
        return (1 - later).flip(1).cumprod(1).flip(1)

    def rebuilt_memory(self) -> torch.Tensor:
        """(B, N, W) the last memory from the recorded writes alone (eq. 23 unrolled): equal to
        the model's memory, which is what makes the shares below an exact account."""
        written = torch.einsum("bthn,bthw->btnw", self.write_weights(), torch.stack(self.keys, 1))
        return (self.alive().unsqueeze(-1) * written).sum(1)

    def step_shares(self) -> torch.Tensor:
        """(B, T): each step's share of what the last step read (normalised over the steps)."""
        contribution = self.alive() * self.write_weights().sum(2)  # (B, T, N)
        read = self.after[-1].read_weights.sum(1)  # (B, N) the last step's, all heads
        shares = (contribution * read.unsqueeze(1)).sum(-1)  # (B, T)
        return shares / shares.sum(1, keepdim=True).clamp_min(1e-12)

    def heatmaps(self) -> dict[str, torch.Tensor]:
        """Per episode, (B, T, N) over steps and slots: read and write weights (summed over
        heads) and usage (eq. 20)."""
        return {"read weights": torch.stack([s.read_weights.sum(1) for s in self.after], 1),
                "write weights": self.write_weights().sum(2),
                "usage": torch.stack([s.usage for s in self.after], 1)}


@contextmanager
def record_memory(model: nn.Module) -> Iterator[MemoryRecorder]:
    """Within the block, `model`'s forward passes record their memory steps."""
    memory = getattr(model, "memory", None)
    if memory is None or not hasattr(memory, "step"):
        raise PredictError(f"{type(model).__name__} has no external memory to show")
    if not isinstance(memory.initial_state(1, torch.device("cpu"), torch.float32), LRUAState):
        raise PredictError(f"explaining a {type(memory).__name__} memory is not implemented; "
                           f"LRUA memories are")
    recorder = MemoryRecorder(memory)
    with model.memory_replaced(recorder):
        yield recorder


def support_shares(model: nn.Module, kind: str, support: Sequence[torch.Tensor],
                   query: torch.Tensor) -> torch.Tensor:
    """Order-free models: (Q, S) share of each support image (support[n] (K_n, D), flattened
    class by class) in the answer to each query (Q, D)."""
    if kind not in EMBEDDING_METHODS:
        raise PredictError(f"--explain shows what a memory read or which examples were "
                           f"nearest; a {kind} model has neither")
    with torch.no_grad():
        model.eval()
        embedded = model.embed(torch.cat(list(support)))  # (S, E)
        distance = (model.embed(query).unsqueeze(1) - embedded.unsqueeze(0)).pow(2).sum(-1)
        return torch.softmax(-distance, dim=-1)


# ---- pictures ------------------------------------------------------------------------------
def short(name: str, width: int = 18) -> str:
    """A class name cut to `width` characters from the left (their ends tell classes apart)."""
    return name if len(name) <= width else "…" + name[-(width - 1):]


def _image(ax: Any, flat: torch.Tensor, shape: tuple[int, int, int], title: str,
           colour: str = "black") -> None:
    pixels = flat.view(shape).float().cpu()
    ax.imshow(pixels[0] if shape[0] == 1 else pixels.permute(1, 2, 0), cmap="gray",
              vmin=0, vmax=1)
    ax.set_title(title, fontsize=7, color=colour)
    ax.set_xticks([])
    ax.set_yticks([])


# support images of the predicted class / of another class: neutral marks, not right / wrong
PREDICTED_CLASS, OTHER_CLASS = "tab:blue", "dimgray"
RIGHT, WRONG = "green", "red"  # the answer, where the true class is known
# per explainable model: the caption of a support image's share, and what the strip shows
SHARE_WORDING = {
    "mann": ("{:.0f} % of the read",
             "support images whose memory writes the query's read drew on most "
             "(share of the read)"),
    "protonet": ("nearness {:.0f} %",
                 "support images nearest the query in the ProtoNet's embedding (softmax of "
                 "-squared distance); it answers by the nearest class prototype"),
    "simpleshot": ("nearness {:.0f} %",
                   "support images nearest the query among unit features (softmax of -squared "
                   "distance); it answers by the nearest class mean"),
}


def explanation_strip(kind: str, query: torch.Tensor, predicted: str, probability: float,
                      support: Sequence[torch.Tensor], read: Sequence[tuple[str, float]],
                      shape: tuple[int, int, int], path: str | Path,
                      truth: str | None = None) -> Path:
    """One query's PNG: the query captioned with the prediction (and the true class, green or
    red, when known), then the support images it leaned on with their class and share (`read`:
    (class, share) each), of the predicted class in blue, of others in gray."""
    if kind not in SHARE_WORDING:
        raise PredictError(f"--explain shows what a memory read or which examples were "
                           f"nearest; a {kind} model has neither")
    share, shows = SHARE_WORDING[kind]
    query_title = f"predicted ({100 * probability:.0f} %):\n{short(predicted)}"
    query_colour = "black"
    if truth is not None:
        query_title += f"\ntrue: {short(truth)}"
        query_colour = RIGHT if truth == predicted else WRONG
    titles = [f"{short(c)}\n{share.format(100 * w)}" for c, w in read]
    colours = [PREDICTED_CLASS if c == predicted else OTHER_CLASS for c, _ in read]
    note = f"{shows}; blue: of the predicted class, gray: of another class"
    return draw_strip(query, query_title, support, titles, shape, path, colours,
                      query_colour, note)


def draw_strip(query: torch.Tensor, query_title: str, support: Sequence[torch.Tensor],
               titles: Sequence[str], shape: tuple[int, int, int], path: str | Path,
               colours: Sequence[str] = (), query_colour: str = "black",
               note: str = "") -> Path:
    """A PNG: the query (as the model sees it), then support images, titled in `colours`
    (black where none is given), with `note` in small print below."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 1 + len(support), figsize=(1.6 * (1 + len(support)), 2.5),
                             dpi=100, squeeze=False)
    _image(axes[0, 0], query, shape, query_title, query_colour)
    for i, (image, title) in enumerate(zip(support, titles, strict=True)):
        _image(axes[0, i + 1], image, shape, title, colours[i] if i < len(colours) else "black")
    if note:
        fig.text(0.01, 0.02, note, fontsize=6, wrap=True)
    fig.tight_layout(rect=(0, 0.1 if note else 0, 1, 1))
    fig.savefig(path)
    plt.close(fig)
    return Path(path)


def draw_heatmaps(maps: dict[str, torch.Tensor], correct: Sequence[bool], labels: Sequence[str],
                  path: str | Path, title: str = "") -> Path:
    """One episode: each (T, N) map as a slots x steps heatmap, steps marked right / wrong.

    The step labels (class letter, presentation) sit above the first panel, rotated, every
    k-th one with k the smallest that keeps them apart; the bottom axis numbers the steps."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.ticker import MaxNLocator

    fig, axes = plt.subplots(len(maps), 1, figsize=(10, 2.6 * len(maps)), dpi=110,
                             sharex=True, squeeze=False)
    for ax, (name, values) in zip(axes[:, 0], maps.items(), strict=True):
        shown = ax.imshow(values.T.cpu(), aspect="auto", origin="lower", cmap="viridis",
                          interpolation="nearest")
        ax.set_ylabel(f"{name}\nslot")
        fig.colorbar(shown, ax=ax, fraction=0.02, pad=0.01)
    top = axes[0, 0]
    for t, ok in enumerate(correct):
        top.axvline(t, ymin=1.0, ymax=1.03, color="green" if ok else "red", lw=3,
                    clip_on=False)
    # the axes share one x ticker, so the class labels get an axis of their own
    classes = top.secondary_xaxis("top")
    classes.tick_params(labelsize=5, pad=6)
    bottom = axes[-1, 0]
    bottom.xaxis.set_major_locator(MaxNLocator(integer=True))
    bottom.set_xlabel("step (top: class of the step; green = answered right)")
    fig.suptitle(title, fontsize=9)
    fig.tight_layout()
    renderer = fig.canvas.get_renderer()
    for every in range(1, max(1, len(labels)) + 1):
        steps = range(0, len(labels), every)
        classes.set_xticks(list(steps), [labels[t] for t in steps], rotation=90)
        if not labels_overlap(classes.get_xticklabels(), renderer):
            break
    fig.savefig(path)
    plt.close(fig)
    return Path(path)


def labels_overlap(labels: Sequence[Any], renderer: Any) -> bool:
    """Whether any two drawn tick labels (matplotlib Text) touch, side by side along x."""
    boxes = sorted((t.get_window_extent(renderer) for t in labels
                    if t.get_visible() and t.get_text()), key=lambda b: b.x0)
    return any(b.x0 < a.x1 + 1 for a, b in itertools.pairwise(boxes))
