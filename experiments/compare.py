"""The comparison: which runs it needs, and how each method is scored on shared test episodes.

Two protocols, each with one set of test episodes that every method sees (fixed seed):

    santoro5, santoro15   Santoro et al. 2016 (sec. 4.1): the MANN, LSTM and feedforward
                          networks on 10-presentation episodes of the santoro split's test
                          classes, 5-way one-hot and 15-way five-hot labels; per-instance
                          accuracy (`fewshot_mann.evaluation.heldout`)
    5w1s, 5w5s, 20w1s,    standard N-way K-shot on the Vinyals test classes at 28x28
    20w5s                 (`fewshot_mann.methods.tasks`): the MANN reads the episode as a
                          sequence and is scored on presentation K; ProtoNets, MAML and the
                          scikit-learn baselines classify that same presentation from the K
                          before it

`PLAN` lists the runs: where each run's checkpoint lives (under a runs root), the command that
trains it with its full step budget, its budget cut to fit the CPU queues that trained the
committed checkpoints, the queue that trains it (`QUEUES`, `STAGES`; `experiments.queue` runs
them), and the configuration the checkpoint must have. `evaluate_run` scores a run's
`model.pt` on its settings, or reports "not run" (no checkpoint, or one of another
configuration): numbers are only ever measured, never filled in. Each score is a `Record`,
written to <results>/compare/<method>/<setting>.json and reused by `--reuse` while the
checkpoint's bytes and the episode count are unchanged.
"""

from __future__ import annotations

import hashlib
import json
import shlex
import subprocess
import time
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

import torch

from fewshot_mann.checkpoint import (
    CheckpointError,
    checkpoint_config,
    load_checkpoint,
    model_from_checkpoint,
)
from fewshot_mann.cli import TRAIN_FLAGS, TRAIN_SWITCHES
from fewshot_mann.config import SUPPORT_QUERY, Config
from fewshot_mann.data.imageset import ImageSet
from fewshot_mann.data.omniglot import load_omniglot
from fewshot_mann.data.splits import omniglot_split
from fewshot_mann.evaluation.heldout import evaluate_checkpoint
from fewshot_mann.evaluation.scoring import evaluate_episodes
from fewshot_mann.methods.pixels import PIXEL_BASELINES
from fewshot_mann.methods.tasks import SETTINGS, TEST_SEED, Setting, eval_episodes, score
from fewshot_mann.runtime import device_name, pick_device

MODEL = "model.pt"  # the file a finished run leaves (fewshot-mann train)
SANTORO = {"santoro5": (5, "one-hot"), "santoro15": (15, "five-hot")}  # n_way, label code
SANTORO_PRESENTATIONS = 10
SANTORO_INSTANCES = (1, 2, 3, 4, 5, 10)
STANDARD = {s.name: s for s in SETTINGS}
TRAIN = "fewshot-mann train"


@dataclass(frozen=True)
class Run:
    """One training run, its two step budgets, the queue that trains it and the settings its
    checkpoint is scored on."""

    method: str
    settings: tuple[str, ...]
    folder: str | None  # under the runs root; None: nothing to train (scikit-learn)
    program: str = ""  # "fewshot-mann train"
    args: str = ""  # what it trains (everything but budget, threads and output); {runs}: root
    steps: int = 0  # the full budget
    options: str = "--threads 1"  # after --steps in the full-budget command
    expect: tuple[tuple[str, Any], ...] = ()  # (config key, value) the checkpoint must have
    cpu_steps: int | None = None  # the budget cut to fit the CPU queues; None: not run there
    cpu_options: str = ""  # after --steps on a CPU queue
    queue: str = ""  # the queue (one per core, see STAGES) that trains it
    place: int = 0  # its place in that queue, from 1

    @property
    def sequence_model(self) -> bool:
        """A MANN, LSTM or feedforward run: it reads episodes as sequences (ProtoNets and MAML
        classify the K-shot query from a support set)."""
        return self.folder is not None and dict(self.expect).get("model.kind") not in SUPPORT_QUERY

    @property
    def command(self) -> str:
        """The full-budget command; {out} stands for the run folder, {runs} for the runs
        root; "" when there is nothing to train."""
        if self.folder is None:
            return ""
        return f"{self.program} {self.args} --steps {self.steps} {self.options} --out {{out}}"


@dataclass
class Record:
    """The score of one method on one setting, and where it came from."""

    method: str
    setting: str
    status: str  # "ok" | "not run"
    reason: str = ""
    episodes: int = 0
    mean: float | None = None  # standard settings: accuracy on the K-shot queries
    ci95: float | None = None
    instance_accuracy: list[float] = field(default_factory=list)  # santoro: by presentation
    instance_ci95: list[float] = field(default_factory=list)
    checkpoint: str | None = None
    checkpoint_sha256: str | None = None
    checkpoint_committed: bool = False  # tracked by git and unchanged: a reused checkpoint
    trained_steps: int | None = None
    train_wall_s: float | None = None
    train_machine: str | None = None
    train_command: str = ""
    eval_wall_s: float | None = None
    machine: str = ""
    torch: str = ""
    eval_command: str = ""


# The CPU queues, one per core with one torch thread each, and what each trains in turn with
# its CPU budget: the step budgets cut to about 20-120 minutes a core, with which the checkpoints
# of results/compare-runs were trained (`scripts/run_comparison.sh RUNS STAGE`; results/REPORT.md
# records each checkpoint's command). None: not trained on a CPU queue (NOT_ON_CPU says why);
# the full-budget queues (`python -m experiments.queue RUNS STAGE --budget full`) run it there.
QUEUES: dict[str, tuple[tuple[str, int | None], ...]] = {
    "a": (("lstm-santoro5", 10000), ("feedforward-santoro5", 2000),
          ("feedforward-santoro15", 1000), ("lstm-santoro15", 4000), ("mann-santoro15", 5000),
          ("protonet-1shot", 5000)),
    "b": (("mann-vinyals5", 10000), ("protonet-5shot", 4000), ("maml-5w1s", 1500),
          ("maml-5w5s", 600), ("mann-santoro5", None)),
    "c": (("mann-vinyals20", 10000),),
    "d": (("maml-20w1s", 7000),),
    "e": (("maml-20w5s", 1000),),
    "f": (("mann-conv-vinyals5", 4500), ("mann-conv-vinyals20", None)),
    "g": (("mann-pretrained-vinyals5", 5000), ("mann-pretrained-vinyals20", 8000)),
    "h": (("mann-gpu-santoro15", None),),
    # issue 12's memory variants, one core each (results/memories). The committed kv-vinyals
    # checkpoints began as --steps 5000 / 4000 schedules, were stopped at step 2,000 and
    # resumed with --resume --steps 3000 / 2500 (the cosine schedule shortened from there); the
    # straight runs listed here are the nearest single commands. The DNC: --steps 6000, paused
    # at step 1,500 and resumed with --resume --time-limit 5400, then extended twice (each a
    # warm restart of the cosine schedule): --resume --steps 14000, --resume --steps 20000.
    "i": (("mann-ntm-santoro5", 12000), ("mann-dnc-santoro5", 20000), ("mann-kv-santoro5", 2000),
          ("mann-kv-vinyals5", 3000), ("mann-kv-vinyals20", 2500)),
    # the key-value memory queried by the encoder (--kv-query encoder) on training episodes of
    # random class counts: on the frozen ProtoNets CNN (Vinyals), and with a CNN learnt from
    # scratch (Santoro 15-way); straight runs at their full budget, one core each
    "j": (("mann-kv-frozen-vinyals5", 1500), ("mann-kv-frozen-vinyals20", 1500)),
    "k": (("mann-kv-santoro15", 2000),),
    # the ProtoNets 1-shot run at its full budget, then the key-value memory reading in its
    # frozen metric (--freeze-query): one core, in this order
    "l": (("protonet-1shot-full", 20000), ("mann-kv-fixed-vinyals5", 1500),
          ("mann-kv-fixed-vinyals20", 1500)),
    # the NTM and the DNC on the Vinyals episodes, flat pixels as mann-vinyals5/20, one core
    # each; the 20-way runs (about 3x a 5-way step) do not fit a session's CPU
    "m": (("mann-ntm-vinyals5", 6000), ("mann-ntm-vinyals20", None)),
    "n": (("mann-dnc-vinyals5", 4000), ("mann-dnc-vinyals20", None)),
    # ProtoNets 1-shot on the training + validation classes (Snell et al.'s final training),
    # then the key-value memory in its frozen metric, trained on the same classes
    # (--split vinyals-trainval): one core, in this order
    "o": (("protonet-1shot-trainval", 20000), ("mann-kv-trainval-vinyals5", 1500),
          ("mann-kv-trainval-vinyals20", 1500)),
    # the LRUA MANN with --grad-clip 1 (issue 10), one core
    "p": (("mann-clip1-santoro15", 20000),),
}
# Stage 1 is the first 50 minutes of the CPU budget; stage 2 (about 65 minutes) adds the 20-way
# MANN and the 20-way 1-shot MAML; stage 3 (one core, about 40 minutes) the 20-way 5-shot MAML.
# Stage 4 (about 2 hours) needs the ProtoNets run of stage 1: the MANN with the conv encoder,
# 5-way, and the MANN on the frozen ProtoNets CNN, 5-way then 20-way. Stage 5 is the GPU run.
# Stage 6 (one core, each run paused by its time limit): the memory variants of issue 12.
# Stage 7 (two cores, about 25 and 50 minutes): the encoder-queried key-value memory.
# Stage 8 (one core, about 75 minutes): the same memory in the full-budget ProtoNets metric.
# Stage 9 (two cores, about 25 minutes): the NTM and the DNC on the Vinyals episodes.
# Stage 10 (one core, about 75 minutes): stage 8 on the training + validation classes.
# Stage 11 (one core, about 60 minutes): the LRUA MANN with --grad-clip 1, 15-way five-hot.
STAGES: dict[int, tuple[str, ...]] = {1: ("a", "b"), 2: ("c", "d"), 3: ("e",), 4: ("f", "g"),
                                      5: ("h",), 6: ("i",), 7: ("j", "k"), 8: ("l",),
                                      9: ("m", "n"), 10: ("o",), 11: ("p",)}
CPU_OPTIONS = {"mann-conv-vinyals5": "--time-limit 8400",
               "mann-ntm-santoro5": "--time-limit 5400", "mann-kv-santoro5": "--time-limit 900",
               "mann-clip1-santoro15": "--pause-at 3000"}
NOT_ON_CPU = {
    "mann-santoro5": "its folder links to results/santoro-5way, trained at the full budget",
    "mann-conv-vinyals20": "6.6 s a step on one core: not even 1,500 steps fit",
    "mann-gpu-santoro15": "a GPU run, the N-way curriculum recipe of results/scaling",
    "mann-ntm-vinyals20": "20-way episodes of 200 steps: a useful budget does not fit a session",
    "mann-dnc-vinyals20": "20-way episodes of 200 steps: a useful budget does not fit a session",
}


def _plan() -> tuple[Run, ...]:
    """Full step budgets fit a CPU: about 22 core-hours in all, from the seconds per step
    measured on one core of an AMD EPYC with one torch thread (in the comments)."""
    runs = []
    # s/step, MANN / LSTM / feedforward: 5-way 0.097 / 0.032 / 0.008, 15-way 0.27 / 0.098 / 0.023
    for kind in ("mann", "lstm", "feedforward"):
        for group, (n_way, labels) in SANTORO.items():
            runs.append(Run(
                kind, (group,), f"{kind}-{group}", TRAIN,
                f"--model {kind} --split santoro-trainval --n-way {n_way} --labels {labels}",
                40000,
                expect=(("model.kind", kind), ("data.split", "santoro-trainval"),
                        ("episodes.n_way", n_way), ("episodes.labels", labels))))
    # the N-way curriculum recipe of results/scaling, on one GPU (a CPU core: about 2 s a step);
    # the committed run widened on the test classes of santoro-trainval, a rerun widens on the
    # validation classes of santoro
    runs.append(Run(
        "mann-gpu", ("santoro15",), "mann-gpu-santoro15", TRAIN,
        "--split santoro --n-way 15 --labels five-hot --curriculum 5,10 "
        "--curriculum-accuracy 0.5 --lr 3e-3 --lr-min 1e-4", 3500,
        "--batch-size 256 --device cuda --cuda-graph --time-limit 145",
        (("model.kind", "mann"), ("episodes.n_way", 15), ("episodes.labels", "five-hot"),
         ("train.curriculum", "5,10"))))
    # the LRUA MANN on pixels with a gradient clip near its usual norm (--grad-clip 1,
    # results/scaling "From scratch with each guard"; the folder links there), batch 64: about
    # 1.1 s a 15-way step on one core; trained with a 20,000-step schedule paused at 3,000
    runs.append(Run(
        "mann-clip1", ("santoro15",), "mann-clip1-santoro15", TRAIN,
        "--split santoro-trainval --n-way 15 --labels five-hot --batch-size 64 --grad-clip 1 "
        "--eval-every 250 --checkpoint-every 250 --log-every 25 --on-divergence stop", 20000,
        expect=(("model.kind", "mann"), ("train.grad_clip", 1.0),
                ("data.split", "santoro-trainval"), ("episodes.n_way", 15),
                ("episodes.labels", "five-hot"))))
    # issue 12: the MANN with another memory (results/memories; folders link there)
    for memory in ("ntm", "dnc", "kv"):
        runs.append(Run(
            f"mann-{memory}", ("santoro5",), f"mann-{memory}-santoro5", TRAIN,
            f"--split santoro-trainval --n-way 5 --presentations 10 --labels one-hot "
            f"--memory {memory}",
            40000, expect=(("model.kind", "mann"), ("model.memory", memory),
                           ("data.split", "santoro-trainval"), ("episodes.n_way", 5))))
    # the key-value memory on the ProtoNets CNN, fine-tuned (not frozen); 20-way episodes of 3
    # presentations per class (60 steps); s/step on one core: 5-way 0.53, 20-way about 0.7
    kv_encoder = "--memory kv --encoder convbase --encoder-init {runs}/protonet-1shot/model.pt"
    for n_way, presentations, steps in ((5, 10, 5000), (20, 3, 4000)):
        runs.append(Run(
            "mann-kv-convbase", (f"{n_way}w1s", f"{n_way}w5s"), f"mann-kv-vinyals{n_way}", TRAIN,
            f"--model mann {kv_encoder} --split vinyals --image-size 28 --no-rotate "
            f"--n-way {n_way} --presentations {presentations} --labels one-hot", steps,
            expect=(("model.memory", "kv"), ("model.encoder", "convbase"),
                    ("model.freeze_encoder", False), ("data.split", "vinyals"),
                    ("episodes.n_way", n_way))))
    # the key-value memory queried by the encoder's features (Kaiser et al.'s query), on
    # training episodes of random class counts (EpisodeConfig.class_counts): on the frozen
    # ProtoNets CNN, s/step on one core 5-way 0.27, 20-way 0.65 (6 presentations a class)
    kv_query = ("--memory kv --kv-query encoder --memory-width 64 --encoder convbase "
                "--class-counts random --lr 1e-3 --warmup-steps 100")
    # mann-kv-fixed: the same with the query projection frozen too (--freeze-query, W_q = I),
    # so that the memory reads in the CNN's own metric (trained, W_q drifts from it:
    # results/memories/README.md), on the ProtoNets CNN of the full 20,000-step budget
    # mann-kv-trainval: that on the CNN of the training + validation classes, trained on them
    for method, protonet, frozen_query, split in (
            ("mann-kv-frozen", "protonet-1shot", False, "vinyals"),
            ("mann-kv-fixed", "protonet-1shot-full", True, "vinyals"),
            ("mann-kv-trainval", "protonet-1shot-trainval", True, "vinyals-trainval")):
        for n_way, presentations in ((5, 10), (20, 6)):
            runs.append(Run(
                method, (f"{n_way}w1s", f"{n_way}w5s"), f"{method}-vinyals{n_way}", TRAIN,
                f"--model mann {kv_query}{' --freeze-query' * frozen_query} "
                f"--encoder-init {{runs}}/{protonet}/model.pt --freeze-encoder --split {split} "
                f"--image-size 28 --no-rotate --n-way {n_way} --presentations {presentations} "
                f"--labels one-hot", 1500,
                expect=(("model.memory", "kv"), ("model.kv_query", "encoder"),
                        ("model.freeze_query", frozen_query), ("model.freeze_encoder", True),
                        ("episodes.class_counts", "random"), ("data.split", split),
                        ("episodes.n_way", n_way))))
    # ... and with the CNN learnt from scratch, Santoro 15-way five-hot (1.15 s/step)
    runs.append(Run(
        "mann-kv-conv", ("santoro15",), "mann-kv-santoro15", TRAIN,
        f"--model mann {kv_query} --split santoro-trainval --n-way 15 --presentations 10 "
        f"--labels five-hot", 2000,
        expect=(("model.memory", "kv"), ("model.kv_query", "encoder"),
                ("model.encoder", "convbase"), ("model.encoder_init", ""),
                ("episodes.class_counts", "random"), ("data.split", "santoro-trainval"),
                ("episodes.n_way", 15), ("episodes.labels", "five-hot"))))
    # s/step at 28x28: flat pixels 5-way 0.104, 20-way 0.38; conv encoder 1.53 and 6.6;
    # frozen ProtoNets CNN (convbase, fewshot_mann/pretrained.py) 0.2 and, with 6 presentations
    # per class (the 5-shot query is the 6th; 120 writes fit the 128 memory slots), 0.6
    budget = {("none", 5): 40000, ("none", 20): 20000, ("conv", 5): 6000, ("conv", 20): 1500,
              ("convbase", 5): 5000, ("convbase", 20): 8000}
    pretrained = " --encoder-init {runs}/protonet-1shot/model.pt --freeze-encoder"
    for method, encoder, flags in (("mann", "none", ""), ("mann-conv", "conv", ""),
                                   ("mann-pretrained", "convbase", pretrained)):
        for n_way in (5, 20):
            shorter = " --presentations 6" if (encoder, n_way) == ("convbase", 20) else ""
            runs.append(Run(
                method, (f"{n_way}w1s", f"{n_way}w5s"), f"{method}-vinyals{n_way}", TRAIN,
                f"--model mann --encoder {encoder}{flags} --split vinyals --image-size 28 "
                f"--no-rotate --n-way {n_way}{shorter} --labels one-hot",
                budget[encoder, n_way],
                expect=(("model.kind", "mann"), ("model.encoder", encoder),
                        ("model.freeze_encoder", bool(flags)), ("data.split", "vinyals"),
                        ("episodes.n_way", n_way), ("episodes.labels", "one-hot"))))
    # the NTM and the DNC in place of LRUA in the flat-pixel runs above (issue 12)
    for memory in ("ntm", "dnc"):
        for n_way in (5, 20):
            runs.append(Run(
                f"mann-{memory}", (f"{n_way}w1s", f"{n_way}w5s"), f"mann-{memory}-vinyals{n_way}",
                TRAIN, f"--model mann --memory {memory} --split vinyals --image-size 28 "
                f"--no-rotate --n-way {n_way} --labels one-hot", budget["none", n_way],
                expect=(("model.memory", memory), ("model.encoder", "none"),
                        ("data.split", "vinyals"), ("episodes.n_way", n_way))))
    # s/step, 60-way episodes with 5 queries: 1-shot 0.097, 5-shot 0.15
    for shots in (1, 5):
        runs.append(Run(
            "protonet", (f"5w{shots}s", f"20w{shots}s"), f"protonet-{shots}shot", TRAIN,
            f"--method protonet --shots {shots}", 20000,
            expect=(("model.kind", "protonet"), ("episodes.shots", shots),
                    ("data.split", "vinyals"))))
    runs.append(Run(  # the 1-shot run at its full budget (the CNN of mann-kv-fixed)
        "protonet-full", ("5w1s", "20w1s"), "protonet-1shot-full", TRAIN,
        "--method protonet --shots 1", 20000,
        expect=(("model.kind", "protonet"), ("episodes.shots", 1), ("data.split", "vinyals"))))
    runs.append(Run(  # ... and on the training + validation classes (the CNN of mann-kv-trainval)
        "protonet-trainval", ("5w1s", "20w1s"), "protonet-1shot-trainval", TRAIN,
        "--method protonet --shots 1 --split vinyals-trainval", 20000,
        expect=(("model.kind", "protonet"), ("episodes.shots", 1),
                ("data.split", "vinyals-trainval"))))
    # s/step: 5w1s 0.39, 5w5s 1.07 (second order); 20-way first order (second order costs
    # about 3x): 20w1s 0.54, 20w5s 2.2
    inner = {5: "--batch-size 32 --fast-lr 0.4 --adapt-steps 1 --test-adapt-steps 3",
             20: "--batch-size 16 --fast-lr 0.1 --adapt-steps 5 --test-adapt-steps 5 "
                 "--first-order"}
    steps = {"5w1s": 10000, "5w5s": 5000, "20w1s": 10000, "20w5s": 3000}
    for s in SETTINGS:
        runs.append(Run(
            "maml", (s.name,), f"maml-{s.name}", TRAIN,
            f"--method maml --n-way {s.n_way} --shots {s.shots} {inner[s.n_way]}",
            steps[s.name], expect=(("model.kind", "maml"), ("episodes.n_way", s.n_way),
                                   ("episodes.shots", s.shots))))
    runs += [Run(name, tuple(STANDARD), None) for name in PIXEL_BASELINES]
    return tuple(_queued(run) for run in runs)


def _queued(run: Run) -> Run:
    """The run with its CPU budget and its place in QUEUES."""
    if run.folder is None:
        return run
    for queue, entries in QUEUES.items():
        for place, (folder, cpu_steps) in enumerate(entries, 1):
            if folder == run.folder:
                return replace(run, cpu_steps=cpu_steps, queue=queue, place=place,
                               cpu_options=CPU_OPTIONS.get(folder, ""))
    raise ValueError(f"{run.folder} is in no queue of QUEUES")


PLAN = _plan()


@dataclass
class Context:
    """Where runs and data are, how many test episodes, and what this evaluation records."""

    runs: Path
    results: Path  # records go to results/compare/<method>/<setting>.json
    episodes: int = 1000
    data_root: str | None = None
    cache_dir: str | None = None
    device: str = "cpu"
    reuse: bool = False
    command: str = ""
    progress: bool = True
    _imagesets: dict[int, ImageSet] = field(default_factory=dict)

    def imageset(self, size: int) -> ImageSet:
        if size not in self._imagesets:
            cfg = Config().data
            self._imagesets[size] = load_omniglot(self.data_root or cfg.data_root,
                                                  self.cache_dir or cfg.cache_dir, size)
        return self._imagesets[size]

    def record_path(self, method: str, setting: str) -> Path:
        return self.results / "compare" / method / f"{setting}.json"


def evaluate_plan(ctx: Context, plan: tuple[Run, ...] = PLAN) -> list[Record]:
    return [record for run in plan for record in evaluate_run(run, ctx)]


def evaluate_run(run: Run, ctx: Context) -> list[Record]:
    """Score a run's checkpoint on each of its settings (or say why it cannot be)."""
    path = ctx.runs / run.folder / MODEL if run.folder else None
    base = Record(run.method, "", "ok", machine=device_name(pick_device(ctx.device)),
                  torch=str(torch.__version__), eval_command=ctx.command)
    if path is not None:
        if not path.is_file():
            return (_kept(run, ctx)
                    or _not_run(run, path.parent, f"no checkpoint at {path}"))
        try:
            _describe_checkpoint(base, run, path)
        except (CheckpointError, KeyError, ValueError) as err:
            return _not_run(run, path.parent, str(err))
    records = []
    for setting in run.settings:
        record = _reused(ctx, base, setting)
        if record is None:
            record = Record(**{**asdict(base), "setting": setting})
            started = time.perf_counter()
            _score(run, path, setting, record, ctx)
            record.eval_wall_s = round(time.perf_counter() - started, 2)
            out = ctx.record_path(run.method, setting)
            out.parent.mkdir(parents=True, exist_ok=True)
            out.write_text(json.dumps(asdict(record), indent=1) + "\n")
        if ctx.progress:
            print(f"{run.method:15} {setting:10} {_summary(record)}", flush=True)
        records.append(record)
    return records


def _not_run(run: Run, folder: Path, reason: str) -> list[Record]:
    command = run.command.format(out=folder, runs=folder.parent)
    return [Record(run.method, setting, "not run", reason=reason, train_command=command)
            for setting in run.settings]


def _kept(run: Run, ctx: Context) -> list[Record]:
    """With --reuse, the stored scores of a run whose checkpoint is not in the tree (the longer
    runs' checkpoints are not committed): kept as they were scored, every setting or none."""
    if not ctx.reuse:
        return []
    kept = []
    for setting in run.settings:
        path = ctx.record_path(run.method, setting)
        try:
            stored = Record(**json.loads(path.read_text()))
        except (OSError, TypeError, ValueError):
            return []
        if stored.status != "ok" or stored.episodes != ctx.episodes:
            return []
        kept.append(stored)
    return kept


def _reused(ctx: Context, base: Record, setting: str) -> Record | None:
    """The stored record, with --reuse, when it scored the same checkpoint bytes on as many
    episodes."""
    path = ctx.record_path(base.method, setting)
    if not (ctx.reuse and path.is_file()):
        return None
    try:
        stored = Record(**json.loads(path.read_text()))
    except (TypeError, ValueError):  # unreadable or of another format: evaluate again
        return None
    same = (stored.status == "ok" and stored.episodes == ctx.episodes
            and stored.checkpoint_sha256 == base.checkpoint_sha256)
    if not same:
        return None
    # the score stands; where the checkpoint lives and whether git holds it are read anew
    stored.checkpoint, stored.checkpoint_committed = base.checkpoint, base.checkpoint_committed
    return stored


def _describe_checkpoint(record: Record, run: Run, path: Path) -> None:
    """Fill in what the checkpoint says about its training; ValueError if it is not the
    configuration the run asks for."""
    payload = load_checkpoint(path)
    config, _ = checkpoint_config(payload, path)
    have = {f"{section}.{key}": value
            for section, values in config.to_dict().items() for key, value in values.items()}
    # a checkpoint of the former ProtoNets/MAML trainer keeps its command and time (in
    # today's form: fewshot_mann.methods.networks.from_legacy)
    record.train_command = payload.get("command") or _train_command(config, path.parent)
    record.train_wall_s = payload.get("elapsed_s",
                                      _logged_elapsed(path.parent / "train_log.jsonl"))
    record.train_machine = payload.get("machine")  # recorded since 2026-11-26
    wrong = [f"{key} = {have.get(key)!r} (expected {value!r})" for key, value in run.expect
             if have.get(key) != value]
    if wrong:
        raise ValueError(f"{path} is another configuration: {', '.join(wrong)}")
    record.checkpoint = str(path)
    record.checkpoint_sha256 = hashlib.sha256(path.read_bytes()).hexdigest()
    record.checkpoint_committed = _committed(path)
    record.trained_steps = int(payload["step"])


def _score(run: Run, path: Path | None, setting: str, record: Record, ctx: Context) -> None:
    device = pick_device(ctx.device)
    if setting in SANTORO:
        result = evaluate_checkpoint(
            path, ctx.episodes, ctx.record_path(run.method, setting).with_suffix(""),
            presentations=SANTORO_PRESENTATIONS, seed=TEST_SEED, device=ctx.device,
            data_overrides={"data_root": ctx.data_root, "cache_dir": ctx.cache_dir},
            progress=False)
        record.episodes = result.episodes
        record.instance_accuracy, record.instance_ci95 = (result.instance_accuracy,
                                                          result.instance_ci95)
        return
    s: Setting = STANDARD[setting]
    if run.sequence_model:
        model, cfg, _ = model_from_checkpoint(load_checkpoint(path), path)
        imageset = ctx.imageset(cfg.data.image_size)
        test = omniglot_split("vinyals", imageset).test
        result = evaluate_episodes(model.to(device), eval_episodes(
            imageset, test, s, ctx.episodes, device=device), s.n_way, s.presentations)
        record.mean, record.ci95 = result.instance_accuracy[s.shots], result.instance_ci95[s.shots]
        record.episodes = result.episodes
        return
    classifier = (PIXEL_BASELINES[run.method] if path is None
                  else model_from_checkpoint(load_checkpoint(path), path)[0].to(device))
    imageset = ctx.imageset(28)
    test = omniglot_split("vinyals", imageset).test
    result = score(classifier, eval_episodes(imageset, test, s, ctx.episodes, device=device),
                   s.shots)
    record.mean, record.ci95, record.episodes = result.mean, result.ci95, result.episodes


def _train_command(cfg: Config, out: Path) -> str:
    """A `fewshot-mann train` command that reproduces `cfg` (machine paths left out; the
    settings a method derives, such as the presentations of ProtoNets and MAML, too)."""
    kind = cfg.model.kind
    have, default = cfg.to_dict(), Config.for_method(kind).to_dict()
    args = ["fewshot-mann", "train"] + (["--method", kind] if kind != "mann" else [])
    derived = ("presentations",) if kind in SUPPORT_QUERY else ()
    for flag, (section, key, _, _) in TRAIN_FLAGS.items():
        if key not in ("data_root", "cache_dir", "kind", *derived) \
                and have[section][key] != default[section][key]:
            args += [flag, str(have[section][key])]
    for flag, (section, key, value, _) in TRAIN_SWITCHES.items():
        if key != "download" and have[section][key] == value != default[section][key]:
            args.append(flag)
    return shlex.join([*args, "--out", str(out)])


def _logged_elapsed(log: Path) -> float | None:
    """Training wall-clock: the last `elapsed_s` of a run's train_log.jsonl."""
    if not log.is_file():
        return None
    lines = [line for line in log.read_text().splitlines() if line.strip()]
    return json.loads(lines[-1]).get("elapsed_s") if lines else None


def _committed(path: Path) -> bool:
    """Tracked by git and identical to the committed version."""
    def git(*args: str) -> int:
        return subprocess.run(["git", "-C", str(path.parent), *args], capture_output=True,
                              check=False).returncode
    try:
        return (git("ls-files", "--error-unmatch", path.name) == 0
                and git("diff", "--quiet", "HEAD", "--", path.name) == 0)
    except OSError:  # no git
        return False


def _summary(record: Record) -> str:
    if record.status != "ok":
        return record.status
    if record.instance_accuracy:
        return "instances " + " ".join(f"{100 * record.instance_accuracy[i - 1]:.1f}"
                                       for i in SANTORO_INSTANCES)
    return f"{100 * record.mean:.2f} +- {100 * record.ci95:.2f} %"
