"""The comparison report: REPORT.md, report.json and accuracy-by-presentation plots, written
from the `Record`s of `experiments.compare`.

report.json maps method -> setting -> {"mean", "ci95", "episodes", "status", provenance...}.
Settings: 5w1s, 5w5s, 20w1s, 20w5s (accuracy on the K-shot queries of standard episodes) and
santoro5-inst1 ... santoro15-inst10 (Santoro protocol, accuracy at the i-th presentation).
A run that is missing has "status": "not run" and null numbers. Numbers copied from papers are
methods named "published: ..." with "status": "published": quoted, not measured here.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from fewshot_mann.evaluation.plots import plot_curves
from fewshot_mann.methods.tasks import TEST_SEED

from .compare import SANTORO, SANTORO_INSTANCES, SANTORO_PRESENTATIONS, STANDARD, Record

PUBLISHED: dict[str, dict[str, float]] = {
    "published: MANN (Santoro et al. 2016)": {"santoro5-inst2": 0.828, "santoro5-inst5": 0.949},
    # the 15-way number as quoted from the paper's Table 2, not checked against the paper
    "published: MANN (Santoro et al. 2016), 15-way, as quoted (not checked against the paper)":
        {"santoro15-inst2": 0.626},
    "published: ProtoNets (Snell et al. 2017)": {"5w1s": 0.988, "5w5s": 0.997, "20w1s": 0.960,
                                                 "20w5s": 0.989},
    "published: MAML (Finn et al. 2017)": {"5w1s": 0.987, "5w5s": 0.999, "20w1s": 0.958,
                                           "20w5s": 0.989},
    "published: Matching Networks (Vinyals et al. 2016)": {"5w1s": 0.981, "5w5s": 0.989,
                                                           "20w1s": 0.938, "20w5s": 0.985},
}
NAMES = {"mann": "MANN", "mann-gpu": "MANN, N-way curriculum (one H200)",
         "mann-clip1": "MANN, gradient clip 1 (`--grad-clip 1`, batch 64)",
         "mann-conv": "MANN + conv encoder",
         "mann-pretrained": "MANN + frozen ProtoNets encoder",
         "mann-ntm": "MANN, NTM memory", "mann-dnc": "MANN, DNC memory",
         "mann-kv": "MANN, key-value memory",
         "mann-kv-convbase": "MANN, key-value memory + ProtoNets encoder (fine-tuned)",
         "mann-kv-frozen": "MANN, key-value memory queried by the frozen ProtoNets encoder",
         "mann-kv-conv": "MANN, key-value memory queried by a conv encoder (from scratch)",
         "mann-kv-fixed": "MANN, key-value memory in the frozen full-budget ProtoNets metric",
         "mann-kv-trainval": "MANN, key-value memory in the frozen ProtoNets metric, "
                             "training + validation classes",
         "lstm": "LSTM",
         "feedforward": "feedforward", "protonet": "ProtoNets (learn2learn CNN)",
         "protonet-full": "ProtoNets (learn2learn CNN), full 20,000-step budget",
         "protonet-trainval": "ProtoNets (learn2learn CNN), full budget, training + validation "
                              "classes",
         "maml": "MAML (learn2learn)", "sklearn-knn": "1-NN on pixels (scikit-learn)",
         "sklearn-logreg": "logistic regression on pixels (scikit-learn)"}
PROVENANCE = ("status", "reason", "checkpoint", "checkpoint_committed", "trained_steps",
              "train_wall_s", "train_machine", "train_command", "eval_wall_s", "machine",
              "torch", "eval_command")
SANTORO_TITLES = {"santoro5": "5-way, one-hot labels", "santoro15": "15-way, five-hot labels"}
STANDARD_TITLES = {"5w1s": "5-way 1-shot", "5w5s": "5-way 5-shot", "20w1s": "20-way 1-shot",
                   "20w5s": "20-way 5-shot"}


def report_json(records: Sequence[Record]) -> dict[str, dict[str, dict[str, Any]]]:
    """{method: {setting: {"mean", "ci95", "episodes", ...}}}, published numbers included."""
    out: dict[str, dict[str, dict[str, Any]]] = {}
    for r in records:
        meta = {key: getattr(r, key) for key in PROVENANCE}
        if r.setting in SANTORO:
            for i in SANTORO_INSTANCES:
                ok = r.status == "ok"
                out.setdefault(r.method, {})[f"{r.setting}-inst{i}"] = {
                    "mean": r.instance_accuracy[i - 1] if ok else None,
                    "ci95": r.instance_ci95[i - 1] if ok else None,
                    "episodes": r.episodes, **meta}
        else:
            out.setdefault(r.method, {})[r.setting] = {"mean": r.mean, "ci95": r.ci95,
                                                       "episodes": r.episodes, **meta}
    for name, values in PUBLISHED.items():
        out[name] = {setting: {"mean": value, "ci95": None, "episodes": None,
                               "status": "published"} for setting, value in values.items()}
    return out


def write_report(records: Sequence[Record], out_dir: str | Path, command: str,
                 episodes: int) -> dict[str, Path]:
    """results/report.json, results/REPORT.md and one curve plot per Santoro label setting."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    data = report_json(records)
    paths = {"json": out / "report.json", "md": out / "REPORT.md"}
    paths["json"].write_text(json.dumps(data, indent=1) + "\n")
    plots = {}
    for group in SANTORO:
        curves = {NAMES[r.method]: (r.instance_accuracy, r.instance_ci95) for r in records
                  if r.setting == group and r.status == "ok"}
        points = {name: {int(s.rpartition("inst")[2]): v for s, v in values.items()
                         if s.startswith(f"{group}-")} for name, values in PUBLISHED.items()}
        points = {name: marks for name, marks in points.items() if marks}
        if curves:
            plots[group] = plot_curves(curves, out / f"{group}_curves.png", points=points,
                                       title=f"Santoro protocol, {SANTORO_TITLES[group]}, "
                                             f"held-out classes", n_way=SANTORO[group][0])
    paths.update({f"png_{group}": path for group, path in plots.items()})
    paths["md"].write_text(markdown(records, data, plots, command, episodes))
    return paths


def markdown(records: Sequence[Record], data: dict[str, dict[str, dict[str, Any]]],
             plots: dict[str, Path], command: str, episodes: int) -> str:
    ok = [r for r in records if r.status == "ok"]
    machine = ok[0].machine if ok else "-"
    torch_version = ok[0].torch if ok else "-"
    lines = [
        "# Few-shot Omniglot: the MANN against its baselines", "",
        f"Generated by `{command}` on {datetime.now(UTC):%Y-%m-%d %H:%M} UTC. Evaluation "
        f"machine: {machine}; torch {torch_version}. Every number is a mean accuracy with its "
        f"95 % confidence interval over test episodes ({episodes} per setting, seed "
        f"{TEST_SEED}; all methods of a table see the very same episodes). \"not run\" means "
        f"no checkpoint of that run exists: nothing is filled in. Rows named *published* quote "
        f"the papers; they were not measured here.", "",
        "## 1. Santoro et al. 2016 protocol: accuracy by presentation", "",
        f"Episodes of {SANTORO_PRESENTATIONS} presentations per class, test classes of the "
        f"santoro split (1,200 train / 423 test characters), images at the size each network "
        f"was trained on (20x20 in the paper). Column *i* is the accuracy on the *i*-th "
        f"presentation of a class. The feedforward network sees only x_t and y_(t-1): it can "
        f"beat chance only by copying y_(t-1), which is right when step t-1 showed the same "
        f"class (probability (K-1)/(NK-1): 18 % for 5-way, 6 % for 15-way, K = "
        f"{SANTORO_PRESENTATIONS}).", ""]
    for group in SANTORO:
        columns = [f"{group}-inst{i}" for i in SANTORO_INSTANCES]
        methods = ["mann", "lstm", "feedforward"] + [
            m for m in ("mann-gpu", "mann-clip1", "mann-ntm", "mann-dnc", "mann-kv",
                        "mann-kv-conv")
            if any(r.method == m and r.setting == group for r in records)]
        lines += [f"### {SANTORO_TITLES[group]}", "",
                  *_table(data, methods, columns, [_ordinal(i) for i in SANTORO_INSTANCES]), ""]
        if group in plots:
            lines += [f"![accuracy by presentation, {SANTORO_TITLES[group]}]"
                      f"({plots[group].name})", ""]
    lines += [
        "## 2. Standard N-way K-shot on the Vinyals split", "",
        "Test classes of Vinyals et al. 2016 (1,692 rotated characters), 28x28 images. An "
        "N-way K-shot episode shows each class K+1 times: the MANN reads it as a sequence and "
        "is scored on the presentation after K labelled ones; the other methods get the same "
        "episode as a support set (the first K presentations) and N queries (the next one). "
        "MAML uses batch statistics of the support / query batch (transductive, as Finn et al. "
        "2017); the published numbers come from the papers' own networks and training "
        "schedules.", "",
        *_table(data, ["mann", "mann-ntm", "mann-dnc", "mann-conv", "mann-pretrained",
                       "mann-kv-convbase", "mann-kv-frozen", "mann-kv-fixed",
                       "mann-kv-trainval", "protonet", "protonet-full", "protonet-trainval",
                       "maml", "sklearn-knn", "sklearn-logreg"],
                list(STANDARD),
                [STANDARD_TITLES[s] for s in STANDARD]),
        "", "*MANN + frozen ProtoNets encoder*: the CNN of the ProtoNets 1-shot run "
        "(`--encoder convbase --encoder-init .../protonet-1shot/model.pt --freeze-encoder`, "
        "trained on the Vinyals training classes only), kept fixed while the MANN's controller "
        "and memory learn on top of its 64 features. *key-value memory + ProtoNets encoder*: the "
        "memory of Kaiser et al. 2017 (`--memory kv`) with that CNN as the starting encoder, "
        "trained end to end (`--encoder-init` without `--freeze-encoder`). *key-value memory "
        "queried by the frozen ProtoNets encoder*: the same memory, its query the frozen CNN's "
        "features of the image (`--kv-query encoder --freeze-encoder`; Kaiser et al.'s query) "
        "rather than the controller's state, trained on episodes of random class counts "
        "(`--class-counts random`). *key-value memory in the frozen full-budget ProtoNets "
        "metric*: that memory with its query projection frozen at the identity too "
        "(`--freeze-query`), so that it reads the stored images nearest in the CNN's own "
        "cosine metric, on the CNN of the ProtoNets 1-shot run trained to its full budget "
        "(*ProtoNets, full 20,000-step budget*; the *ProtoNets* row is the same run stopped "
        "at 5,000 steps, the CNN of the rows above).", "",
        "## 3. Runs", "",
        "| method | setting | checkpoint | committed checkpoint reused | trained steps | "
        "training wall-clock | training machine | evaluation wall-clock |",
        "|---|---|---|---|---|---|---|---|"]
    for r in ok:
        trained = (f"{r.trained_steps} | {_duration(r.train_wall_s)} | "
                   f"{r.train_machine or 'not recorded'}") if r.checkpoint else "- | - | -"
        lines.append(f"| {NAMES[r.method]} | {r.setting} | {r.checkpoint or '-'} | "
                     f"{_committed(r)} | {trained} | {_duration(r.eval_wall_s)} |")
    lines += ["", "Training commands (for the MANN, LSTM and feedforward runs: the command that "
              "reproduces the checkpoint's saved configuration; for ProtoNets and MAML: the "
              "command line the run recorded):", ""]
    commands = dict.fromkeys((NAMES[r.method], r.train_command) for r in ok if r.train_command)
    lines += [f"- {name}: `{cmd}`" for name, cmd in commands]
    missing = [r for r in records if r.status != "ok"]
    if missing:
        lines += ["", "## 4. Not run", "", "| method | setting | why | command to train it |",
                  "|---|---|---|---|"]
        lines += [f"| {NAMES[r.method]} | {r.setting} | {r.reason} | `{r.train_command}` |"
                  for r in missing]
    return "\n".join(lines) + "\n"


def _table(data: dict[str, dict[str, dict[str, Any]]], methods: list[str], columns: list[str],
           titles: list[str]) -> list[str]:
    rows = [f"| method | {' | '.join(titles)} |", "|---|" + "---|" * len(columns)]
    for method in methods:
        cells = [_cell(data.get(method, {}).get(c)) for c in columns]
        rows.append(f"| {NAMES[method]} | {' | '.join(cells)} |")
    for name, values in PUBLISHED.items():
        if any(c in values for c in columns):
            cells = [f"{100 * values[c]:.1f}" if c in values else "" for c in columns]
            rows.append(f"| *{name}* | {' | '.join(cells)} |")
    return rows


def _cell(entry: dict[str, Any] | None) -> str:
    if entry is None or entry["mean"] is None:
        return "not run"
    return f"{100 * entry['mean']:.1f} ± {100 * entry['ci95']:.1f}"


def _ordinal(i: int) -> str:
    suffix = {1: "st", 2: "nd", 3: "rd"}.get(i, "th")
    return f"{i}{suffix}"


def _committed(r: Record) -> str:
    if r.checkpoint is None:
        return "- (nothing to train)"
    return "yes" if r.checkpoint_committed else "no (this working tree)"


def _duration(seconds: float | None) -> str:
    if seconds is None:
        return "not recorded"
    if seconds < 60:
        return f"{seconds:.1f} s"
    minutes, s = divmod(round(seconds), 60)
    hours, m = divmod(minutes, 60)
    return f"{hours}:{m:02d}:{s:02d}"
