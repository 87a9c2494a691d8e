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

import json
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import torch
from torch import nn

from .memory import LRUAState
from .predict import PredictError


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

    def step(self, state: LRUAState, *controls: Any) -> tuple[torch.Tensor, LRUAState]:
        """The memory's own step, recorded. controls: (keys (B, H, W), write gates (B, H),
        strengths (B, H)), or one tuple with fields `keys` and `write_gates`."""
        keys, write_gates = (controls[:2] if len(controls) > 1
                             else (controls[0].keys, controls[0].write_gates))
        # the batched backend updates the memory tensor in place when no gradient is
        # recorded: keep the small fields only (cloned), and the memory after the last step
        self.before.append(state._replace(memory=torch.empty(0)))
        self.gates.append(write_gates.detach().clone())
        self.keys.append(keys.detach().clone())
        reads, new = self.memory.step(state, *controls)
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
    model.memory = recorder
    step = model.__dict__.pop("_step", None)  # a compiled step would bypass the recorder
    try:
        yield recorder
    finally:
        model.memory = memory
        if step is not None:
            model._step = step


def support_shares(model: nn.Module, kind: str, support: Sequence[torch.Tensor],
                   query: torch.Tensor) -> torch.Tensor:
    """Order-free models: (Q, S) share of each support image (support[n] (K_n, D), flattened
    class by class) in the answer to each query (Q, D)."""
    if kind != "protonet":
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


def draw_strip(query: torch.Tensor, query_title: str, support: Sequence[torch.Tensor],
               titles: Sequence[str], shape: tuple[int, int, int], path: str | Path,
               highlight: Sequence[bool] = ()) -> Path:
    """A PNG: the query (as the model sees it), then the support images most read, titled."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 1 + len(support), figsize=(1.5 * (1 + len(support)), 1.9),
                             dpi=100, squeeze=False)
    _image(axes[0, 0], query, shape, query_title)
    for i, (image, title) in enumerate(zip(support, titles, strict=True)):
        good = highlight[i] if i < len(highlight) else True
        _image(axes[0, i + 1], image, shape, title, "green" if good else "red")
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)
    return Path(path)


def draw_heatmaps(maps: dict[str, torch.Tensor], correct: Sequence[bool], labels: Sequence[str],
                  path: str | Path, title: str = "") -> Path:
    """One episode: each (T, N) map as a slots x steps heatmap, steps marked right / wrong."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(len(maps), 1, figsize=(10, 2.6 * len(maps)), dpi=110,
                             sharex=True, squeeze=False)
    for ax, (name, values) in zip(axes[:, 0], maps.items(), strict=True):
        shown = ax.imshow(values.T.cpu(), aspect="auto", origin="lower", cmap="viridis",
                          interpolation="nearest")
        ax.set_ylabel(f"{name}\nslot")
        fig.colorbar(shown, ax=ax, fraction=0.02, pad=0.01)
    top = axes[0, 0]
    top.set_xticks(range(len(labels)))
    top.set_xticklabels(labels, fontsize=5, rotation=90)
    top.tick_params(labelbottom=False, labeltop=True)
    for t, ok in enumerate(correct):
        top.axvline(t, ymin=1.0, ymax=1.03, color="green" if ok else "red", lw=3,
                    clip_on=False)
    axes[-1, 0].set_xlabel("step (top: class of the step; green = answered right)")
    fig.suptitle(title, fontsize=9)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)
    return Path(path)


# ---- inspect: one episode's memory, and what the most-read image says -------------------------
def inspect_checkpoint(checkpoint: str | Path, out_dir: str | Path, tasks: int = 200,
                       seed: int = 12345, device: str = "auto",
                       data_overrides: dict[str, Any] | None = None,
                       classes: str | None = None, invert: bool | None = None,
                       progress: bool = True) -> dict[str, Any]:
    """Draw one held-out episode's read weights, write weights and usage over time
    (`memory.png`), and measure on `tasks` held-out N-way 1-shot tasks (the predict protocol)
    how often the support image the query read most is of the predicted class and of the true
    one (`inspect.json`). Classes: the split's test classes, or `classes` as for evaluate."""
    from .checkpoint import load_checkpoint, model_from_checkpoint
    from .config import replace
    from .data import invert_custom, load_dataset
    from .episodes import LabelCode
    from .metrics import step_correct
    from .predict import sequence_probabilities
    from .run_eval import chosen_classes
    from .train import make_sampler, pick_device

    if tasks < 1:
        raise PredictError("inspect needs at least one task (--tasks)")
    payload = load_checkpoint(checkpoint)
    model, cfg, split = model_from_checkpoint(payload, checkpoint)
    if cfg.model.kind != "mann":
        raise PredictError(f"inspect draws a MANN's memory; {checkpoint} holds a "
                           f"{cfg.model.kind} model, which has none")
    trained_on = cfg.data.dataset
    overrides = {k: v for k, v in (data_overrides or {}).items() if v is not None}
    if overrides:
        cfg = replace(cfg, data=overrides)
    dev = pick_device(device)
    model.to(dev).eval()
    imageset = load_dataset(cfg.data, invert_custom(trained_on, cfg.data.dataset, invert))
    test = split.test if classes is None else chosen_classes(classes, imageset)
    e = cfg.episodes
    episode = make_sampler(cfg, imageset, test, side="test", device=dev, seed=seed).sample(1)
    with torch.no_grad(), record_memory(model) as record:
        logits = model(episode.images, episode.prev_labels)  # (1, T, G, S)
    correct = step_correct(logits, episode.targets)[0].tolist()
    steps = [f"{chr(65 + c) if e.n_way <= 26 else c}{p + 1}" for c, p in
             zip(episode.classes[0].tolist(), episode.presentation[0].tolist(), strict=True)]
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    picture = draw_heatmaps({k: v[0] for k, v in record.heatmaps().items()}, correct, steps,
                            out / "memory.png",
                            title=f"{checkpoint}: one held-out {e.n_way}-way episode "
                                  f"(step label: class letter, presentation)")

    code = LabelCode.make(e.labels, e.n_way)
    batch = make_sampler(cfg, imageset, test, side="test", device=dev, seed=seed + 1,
                         presentations=2).sample(tasks)
    g = torch.Generator().manual_seed(seed)
    right = read_predicted = read_true = read_predicted_when_wrong = wrong = 0
    for b in range(tasks):  # presentation 0 of each class: the support; 1: the query
        first = batch.presentation[b] == 0
        support_class, query_class = batch.classes[b][first], batch.classes[b][~first]
        probs, shares = sequence_probabilities(model, code, batch.images[b][first],
                                               support_class, e.n_way,
                                               batch.images[b][~first], g, explain=True)
        predicted = probs.argmax(-1).to(dev)
        most_read = support_class[shares.argmax(-1).to(dev)]
        hit = predicted == query_class
        right += int(hit.sum())
        wrong += int((~hit).sum())
        read_predicted += int((most_read == predicted).sum())
        read_true += int((most_read == query_class).sum())
        read_predicted_when_wrong += int(((most_read == predicted) & ~hit).sum())
    queries = tasks * e.n_way
    summary = {
        "checkpoint": str(checkpoint), "classes": "split test" if classes is None else classes,
        "n_way": e.n_way, "tasks": tasks, "queries": queries, "seed": seed,
        "accuracy": right / queries, "most_read_is_predicted": read_predicted / queries,
        "most_read_is_true": read_true / queries, "wrong_predictions": wrong,
        "most_read_is_predicted_when_wrong": (read_predicted_when_wrong / wrong if wrong
                                              else None),
        "episode": {"steps": steps, "correct": correct}, "picture": str(picture)}
    (out / "inspect.json").write_text(json.dumps(summary, indent=1) + "\n")
    if progress:
        print(f"{e.n_way}-way 1-shot, {tasks} held-out tasks ({queries} queries): accuracy "
              f"{100 * summary['accuracy']:.1f} %; the most-read support image is of the "
              f"predicted class for {100 * summary['most_read_is_predicted']:.1f} % of the "
              f"queries, of the true class for {100 * summary['most_read_is_true']:.1f} %")
        print(f"wrote {picture}, {out / 'inspect.json'}")
    return summary
