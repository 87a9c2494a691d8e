"""Accuracy-by-presentation, learning-curve, training-log and throughput plots (matplotlib, no
display needed)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
from matplotlib.axes import Axes


def chance_line(ax: Axes, n_way: int | None, scale: float = 100.0) -> None:
    """A dashed line at chance accuracy, 1/N of an N-way task (`scale` x 1/N: 100 for a
    percentage axis), with its legend entry; none when N is unknown."""
    if n_way:
        ax.axhline(scale / n_way, color="gray", linestyle="--", lw=1,
                   label=f"chance (1/{n_way})")


def plot_curves(curves: Mapping[str, tuple[Sequence[float], Sequence[float]]],
                path: str | Path, title: str = "",
                points: Mapping[str, Mapping[int, float]] | None = None,
                n_way: int | None = None) -> Path:
    """One line per model: accuracy (with a 95% CI band) against the presentation number;
    `points` adds unconnected markers, e.g. published numbers {name: {presentation: acc}};
    `n_way`: a dashed line at chance, 1/N."""
    fig, ax = plt.subplots(figsize=(6, 4), dpi=120)
    for name, (acc, ci) in curves.items():
        x = list(range(1, len(acc) + 1))
        ax.plot(x, [100 * a for a in acc], marker="o", ms=3, label=name)
        ax.fill_between(x, [100 * (a - c) for a, c in zip(acc, ci, strict=True)],
                        [100 * (a + c) for a, c in zip(acc, ci, strict=True)], alpha=0.2)
    for name, marks in (points or {}).items():
        ax.plot(list(marks), [100 * a for a in marks.values()], linestyle="none", marker="x",
                ms=8, mew=2, color="black", label=name)
    chance_line(ax, n_way)
    ax.set_xlabel("presentation of the class in the episode")
    ax.set_ylabel("accuracy (%)")
    ax.set_ylim(0, 100)
    ax.grid(alpha=0.3)
    ax.set_title(title)
    ax.legend(loc="lower right")
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)
    return Path(path)


def plot_learning_curves(curves: Mapping[str, tuple[Sequence[float], Sequence[float]]],
                         path: str | Path, xlabel: str = "training episodes",
                         ylabel: str = "held-out accuracy (%)", title: str = "",
                         references: Mapping[str, float] | None = None,
                         n_way: int | None = None) -> Path:
    """One line per run, {name: (x, y)}: e.g. held-out accuracy (%) against training episodes;
    `references` adds dotted horizontal lines {label: y}, e.g. a published number; `n_way`:
    a dashed line at chance, 100/N % (for curves of accuracy in %)."""
    fig, ax = plt.subplots(figsize=(7, 4.5), dpi=120)
    for name, (x, y) in curves.items():
        ax.plot(x, y, marker="o", ms=3, label=name)
    for label, y in (references or {}).items():
        ax.axhline(y, color="gray", linestyle=":", label=label)
    chance_line(ax, n_way)
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    ax.grid(alpha=0.3)
    if title:
        ax.set_title(title)
    ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)
    return Path(path)


def plot_throughput(records: Sequence[dict], path: str | Path, title: str = "") -> Path:
    """Episodes/s against batch size: one line per (memory, backend, mode, memory slots)."""
    fig, ax = plt.subplots(figsize=(7, 4.5), dpi=120)
    lines: dict[tuple, list[tuple[int, float]]] = {}
    for r in records:
        if r["mode"] == "sample" or not r["episodes_per_s"]:
            continue
        lines.setdefault((r.get("memory", "lrua"), r["backend"], r["mode"], r["memory_slots"]),
                         []).append((r["batch_size"], r["episodes_per_s"]))
    for (memory, backend, mode, slots), points in sorted(lines.items()):
        points.sort()
        ax.plot([p[0] for p in points], [p[1] for p in points], marker="o", ms=3,
                linestyle="-" if backend == "batched" else "--",
                label=f"{memory} {backend} {mode}, {slots} slots")
    ax.set_xscale("log", base=2)
    ax.set_yscale("log")
    ax.set_xlabel("batch size (episodes)")
    ax.set_ylabel("episodes / s")
    ax.grid(alpha=0.3, which="both")
    ax.set_title(title, fontsize=9)
    ax.legend(fontsize=7, loc="best")
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)
    return Path(path)


EVENT_COLOURS = {"rollback": "tab:red", "stop": "black", "widen": "tab:green",
                 "resume": "tab:blue"}  # a resume that changed settings
HEALTH_SHOWN = ("slot_norm", "read_norm", "strengths_max", "write_gates_mean",
                "saturated_gates", "logit")


def plot_training(records: Sequence[dict], path: str | Path, title: str = "",
                  n_way: int | None = None) -> Path:
    """A run's train_log.jsonl records against the step, in three panels: training and
    held-out loss; held-out accuracy at the 2nd, 5th and 10th presentation, with chance (1/N,
    N = `n_way` or the records' own, stepped along a curriculum) dashed; the memory's
    health (training/health.py; log scale above 0.01), with crosses for the diverged model
    of a rollback or stop. Rollbacks, stops and curriculum widenings are vertical lines in
    every panel."""
    trained = [r for r in records if "loss" in r]
    heldout = [r for r in trained if "heldout_instance_accuracy" in r]
    healthy = [r for r in trained if "health" in r]
    fig, axes = plt.subplots(3, 1, figsize=(7, 8), dpi=120, sharex=True)
    loss_ax, accuracy_ax, health_ax = axes
    loss_ax.plot([r["step"] for r in trained], [r["loss"] for r in trained], lw=1,
                 label="training loss")
    loss_ax.plot([r["step"] for r in heldout], [r["heldout_loss"] for r in heldout],
                 marker="o", ms=3, label="held-out loss")
    loss_ax.set_ylabel("loss (nats)")
    for presentation in (2, 5, 10):
        points = [(r["step"], 100 * r["heldout_instance_accuracy"][presentation - 1])
                  for r in heldout if len(r["heldout_instance_accuracy"]) >= presentation]
        if points:
            accuracy_ax.plot(*zip(*points, strict=True), marker="o", ms=3,
                             label=f"presentation {presentation}")
    widths = [(r["step"], r["n_way"]) for r in heldout if "n_way" in r]
    if n_way or len({w for _, w in widths}) <= 1:
        chance_line(accuracy_ax, n_way or (widths[0][1] if widths else None))
    else:  # a curriculum: chance falls as the episodes widen
        accuracy_ax.plot([s for s, _ in widths], [100 / w for _, w in widths], color="gray",
                         linestyle="--", lw=1, drawstyle="steps-post", label="chance (1/N)")
    accuracy_ax.set_ylabel("held-out accuracy (%)")
    diverged = [r for r in records if r.get("event") in ("rollback", "stop") and "health" in r]
    for name in HEALTH_SHOWN:
        points = [(r["step"], r["health"][name]) for r in healthy if name in r["health"]]
        if points:
            line, = health_ax.plot(*zip(*points, strict=True), marker=".", ms=3, label=name)
            for r in diverged:  # the diverged model's, where it diverged
                health_ax.plot(r.get("from_step", r["step"]), r["health"][name], marker="x",
                               ms=8, mew=2, color=line.get_color())
    health_ax.set_yscale("symlog", linthresh=0.01)  # shares of 0 stay on the plot
    health_ax.set_ylabel("health" if healthy else "health (not logged)")
    health_ax.set_xlabel("step")
    for r in records:
        if r.get("event") in EVENT_COLOURS:
            step = r.get("from_step", r["step"])
            for ax in axes:
                ax.axvline(step, color=EVENT_COLOURS[r["event"]], ls="--", lw=1)
    for ax in axes:
        ax.grid(alpha=0.3)
        if ax.get_legend_handles_labels()[0]:
            ax.legend(fontsize=7, loc="best")
    events = sorted({r["event"] for r in records if r.get("event") in EVENT_COLOURS})
    loss_ax.set_title(title + (" (dashed: " + ", ".join(
        f"{e} {EVENT_COLOURS[e].removeprefix('tab:')}" for e in events) + ")" if events else ""),
        fontsize=9)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)
    return Path(path)
