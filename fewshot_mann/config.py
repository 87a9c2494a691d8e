"""Run configuration as plain dataclasses, loadable from TOML and saved with every checkpoint.

A run is described by four sections, each a dataclass:

    [data]      which images and which class split
    [episodes]  how an episode is built (N-way, presentations per class, label code)
    [model]     the method (`kind`: MANN, LSTM, feedforward, ProtoNets or MAML) and its sizes
    [train]     optimisation, schedule, evaluation and checkpoint cadence

Each method starts from its own defaults (`METHOD_DEFAULTS`, applied by `Config.from_dict` and
`Config.for_method`): ProtoNets and MAML train as their papers did, the sequence models as
the MANN does.

`Config.validate()` rejects impossible values with a message that names the field, so a bad
config fails before any data is read.
"""

from __future__ import annotations

import itertools
import math
import os
import tomllib
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any

from .errors import ConfigError

DATA_ROOT_ENV = "FEWSHOT_MANN_DATA"
CACHE_DIR_ENV = "FEWSHOT_MANN_CACHE"


def default_data_root() -> str:
    return os.environ.get(DATA_ROOT_ENV, "data")


def default_cache_dir() -> str:
    return os.environ.get(CACHE_DIR_ENV, str(Path("data") / "cache"))


MEMORY_NAMES = ("lrua", "ntm", "dnc", "kv")  # the memory registry's keys (memory.MEMORIES)
BACKENDS = ("reference", "batched")  # the two forms of every memory's step
SEQUENCE_MODELS = ("mann", "lstm", "feedforward")  # read an episode step by step
SUPPORT_QUERY = ("protonet", "simpleshot", "maml")  # classify queries from a support set
# (methods/)
METHODS = SEQUENCE_MODELS + SUPPORT_QUERY
EMBEDDING_METHODS = ("protonet", "simpleshot")  # answer from an `embed(images) -> (n, E)`

# The settings in which a method's defaults differ from the MANN's. ProtoNets as Snell et al.
# 2017 (sec. 3.1) trained on Omniglot: 60-way episodes with 5 queries a class, Adam 1e-3 halved
# every 2,000 episodes. MAML as Finn et al. 2017 (sec. 5.2): 5-way, 32 tasks per meta-batch,
# one inner step of 0.4 (three at test; their 20-way runs take 16 tasks and 5 steps of 0.1:
# pass those), Adam 1e-3. Both: 28x28 images of the Vinyals split (data.split "" becomes
# "vinyals" on Omniglot), whose rotations are classes of their own, so no rotation
# augmentation; no gradient clipping; a validation score of 200 episodes every 1,000 steps.
_SUPPORT_QUERY_DEFAULTS: dict[str, dict[str, Any]] = {
    "data": {"image_size": 28, "rotate_classes": False},
    "train": {"lr": 1e-3, "grad_clip": 0.0, "eval_every": 1000, "eval_episodes": 200,
              "checkpoint_every": 1000, "log_every": 100},
}
METHOD_DEFAULTS: dict[str, dict[str, dict[str, Any]]] = {
    "protonet": {"data": _SUPPORT_QUERY_DEFAULTS["data"],
                 "episodes": {"n_way": 60, "queries": 5},
                 "train": {**_SUPPORT_QUERY_DEFAULTS["train"], "batch_size": 1,
                           "lr_halve_every": 2000}},
    # SimpleShot (methods/simpleshot.py): batches of 256 images of all training classes,
    # distorted at random, Adam 2e-3 halved every 5,000 steps (16 passes over the 82,240
    # images of the Vinyals split's 4,112 training classes); scored on 20-way episodes
    "simpleshot": {"data": _SUPPORT_QUERY_DEFAULTS["data"], "episodes": {"n_way": 20},
                   "train": {**_SUPPORT_QUERY_DEFAULTS["train"], "batch_size": 256,
                             "lr": 2e-3, "lr_halve_every": 5000, "augment": 1.0}},
    "maml": {"data": _SUPPORT_QUERY_DEFAULTS["data"], "episodes": {"n_way": 5},
             "train": {**_SUPPORT_QUERY_DEFAULTS["train"], "batch_size": 32}},
}


@dataclass
class DataConfig:
    dataset: str = "omniglot"  # "omniglot", "folder:PATH[,PATH...]" or "csv:PATH"
    data_root: str = field(default_factory=default_data_root)
    cache_dir: str = field(default_factory=default_cache_dir)
    download: bool = False  # fetch Omniglot with torchvision's downloader when it is absent
    # omniglot: santoro | vinyals | vinyals-trainval | lake; custom data: ratio:0.7 | lists:DIR;
    # "" = the default: santoro for Omniglot, auto (seeded by split_seed) for custom data
    split: str = ""
    split_seed: int = 0  # custom data only: seed of a ratio split
    image_size: int = 20  # images are resized to image_size x image_size
    channels: int = 1  # 1 = grayscale, 3 = RGB (custom data)
    rotate_classes: bool = True  # training: each sampled class turned by a random k*90 degrees
    min_images: str = "error"  # custom data: classes with too few images -> "error" | "skip"
    bad_files: str = "skip"  # custom data: unreadable files -> "skip" (reported) | "error"


@dataclass
class EpisodeConfig:
    n_way: int = 5
    presentations: int = 10  # per class, so an episode has n_way * presentations steps
    # training episodes: "equal" shows each class `presentations` times; "random" draws the
    # n_way * presentations steps from min(2 * presentations, images) images of each class, so
    # that counting a label's showings cannot tell that its class is done (held-out and test
    # episodes stay "equal"; docs/memories.md)
    class_counts: str = "equal"
    labels: str = "one-hot"  # "one-hot" or "five-hot" (Santoro's 5-character strings)
    # protonet, maml: a training episode shows each class `shots` times as its support set and
    # `queries` more times as queries (0: as many as shots), so presentations = shots + queries
    shots: int = 1
    queries: int = 0


@dataclass
class ModelConfig:
    kind: str = "mann"  # the method (--method): "mann" | "lstm" | "feedforward" | SUPPORT_QUERY
    controller_size: int = 200
    memory_slots: int = 128
    memory_width: int = 40
    read_heads: int = 4
    gamma: float = 0.95  # usage decay, eq. 20
    key_strength: bool = True  # learned sharpening beta_t of the cosine (models/mann.py)
    key_strength_init: float = 11.0  # beta at initialisation
    # added to |k||M(i)| in every cosine of a content lookup; 1e-2 bounds the gradient through
    # nearly empty rows that began a 15-way run's collapse, but the run trained with it left the
    # plateau later and collapsed another way; why 1e-8 stays: memory/addressing.py
    cosine_eps: float = 1e-8
    read_norm: bool = False  # layer-normalise each read vector (no parameters; models/mann.py)
    backend: str = "batched"  # "reference" | "batched"
    memory: str = "lrua"  # "lrua" | "ntm" | "dnc" | "kv" (fewshot_mann/memory/)
    write_heads: int = 1  # ntm, dnc: write heads (the read heads are read_heads)
    shift_range: int = 1  # ntm: the shift s_t covers offsets -shift_range..shift_range (eq. 8)
    kv_neighbours: int = 4  # kv: nearest keys read, and searched for the margin loss
    kv_margin: float = 0.1  # kv: alpha of the margin loss (Kaiser et al. 2017)
    kv_query: str = "controller"  # kv: query from the controller's h_t, or the "encoder" e_t
    freeze_query: bool = False  # kv with kv_query = "encoder": keep W_q at its initialisation
    encoder: str = "none"  # "none" | "conv" | "convbase" (models/encoder.py)
    encoder_init: str = ""  # a ProtoNets checkpoint whose CNN starts a "convbase" encoder
    freeze_encoder: bool = False  # keep the initialised encoder fixed while the rest trains
    hidden_size: int = 200  # feedforward baseline width
    conv_width: int = 64  # protonet: channels of each of its four conv blocks (the embedding size)
    # protonet: how each conv block halves the image: "stride" (learn2learn's Omniglot CNN, a
    # stride-2 conv) or "max" (Snell et al. 2017: a stride-1 conv, then 2x2 max pooling; about
    # 3.5x the arithmetic on 28x28 images)
    conv_pool: str = "stride"
    # simpleshot: outputs of its training softmax, one a training class; 0 until the run
    # sets it from its split (a checkpoint carries the number it was trained with)
    classes: int = 0
    fast_lr: float = 0.4  # maml: inner-loop step size alpha (Finn et al. 2017, eq. 1)
    adapt_steps: int = 1  # maml: inner steps on the support set while meta-training
    test_adapt_steps: int = 3  # maml: inner steps at test time (evaluate, predict)
    first_order: bool = False  # maml: no second-order terms in the meta-gradient


@dataclass
class TrainConfig:
    steps: int = 20_000  # optimiser updates
    batch_size: int = 16  # episodes per update
    optimizer: str = "adam"  # "adam" | "rmsprop"
    lr: float = 3e-3  # peak; with 1e-3 and batch 32 the MANN's plateau lasts far longer
    lr_min: float = 1e-4  # cosine decay target; equal to lr for a constant rate
    # protonet, maml: their schedule, lr halved every this many steps (0: constant) in place of
    # the sequence models' cosine decay to lr_min
    lr_halve_every: int = 0
    warmup_steps: int = 0
    # simpleshot: strength of the random affine distortion of each training image
    # (data/augment.py; 0: none, 1: up to 10 degrees, 10 % scale, 0.1 shear, 3 px of 28)
    augment: float = 0.0
    grad_clip: float = 10.0  # max global grad norm; 0 disables clipping
    # skip the update (weights and optimiser state untouched) when the gradient norm before
    # clipping is above this x the median of the last 100 steps' norms: a single batch whose
    # exact gradient is far above the usual can, even clipped, set Adam's direction for the
    # steps that follow (docs/training.md, divergence); 0: never skip. It decides on the host,
    # so on CUDA it keeps a read-back of the norm every step (TrainingLoop)
    skip_grad_spikes: float = 0.0
    seed: int = 0
    device: str = "auto"  # "auto" picks cuda when present
    threads: int = 0  # torch CPU threads; 0 keeps torch's default
    compile: bool = False  # torch.compile each MANN time step (MANN.compile_step)
    cuda_graph: bool = False  # capture the unrolled episode, forward and backward (CUDA only)
    precision: str = "fp32"  # "fp32" | "tf32" (CUDA matmuls in TF32) | "bf16" (autocast)
    eval_every: int = 500
    eval_episodes: int = 256
    # with each held-out evaluation of a MANN, its "health" on this many held-out episodes
    # drawn from the evaluation's seed (slot and read norms, key strengths, gates, saturated
    # LSTM gates, largest logit: fewshot_mann/training/health.py); 0: none
    health_episodes: int = 16
    checkpoint_every: int = 500
    log_every: int = 50
    # N-way curriculum: comma-separated widths below episodes.n_way ("5,10"), trained in turn;
    # the next width starts once the held-out 2nd-presentation accuracy reaches
    # curriculum_accuracy; the label code is sized for episodes.n_way from the start
    curriculum: str = ""
    curriculum_accuracy: float = 0.8
    # divergence guard (training/loop.py): a loss spike, a collapse of held-out accuracy or a NaN
    # "rollback"s to the last good state with a lower learning rate, or "stop"s the run
    on_divergence: str = "rollback"
    spike_factor: float = 2.0  # a log window's mean loss above this x the recent median
    collapse_drop: float = 0.25  # held-out 2nd-presentation accuracy this far below its best
    rollback_lr_factor: float = 0.5  # the learning rate is multiplied by this at each rollback
    max_rollbacks: int = 5  # then the run stops (TrainingDiverged)


@dataclass
class Config:
    data: DataConfig = field(default_factory=DataConfig)
    episodes: EpisodeConfig = field(default_factory=EpisodeConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    train: TrainConfig = field(default_factory=TrainConfig)

    # ---- (de)serialisation -------------------------------------------------------------------
    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, raw: dict[str, Any]) -> Config:
        sections = {f.name: f.type for f in fields(cls)}
        unknown = set(raw) - set(sections)
        if unknown:
            raise ConfigError(f"unknown config section(s): {sorted(unknown)}; "
                              f"expected {sorted(sections)}")
        model = raw.get("model")
        kind = model.get("kind") if isinstance(model, dict) else None
        cfg = cls()
        # defaults < the method's defaults < raw
        for name, values in (METHOD_DEFAULTS.get(kind, {}) if isinstance(kind, str)
                             else {}).items():
            _update_section(getattr(cfg, name), name, values)
        for name, values in raw.items():
            _update_section(getattr(cfg, name), name, values)
        cfg._derive(raw)
        return cfg

    @classmethod
    def for_method(cls, kind: str) -> Config:
        """The defaults of method `kind` (METHOD_DEFAULTS)."""
        return cls.from_dict({"model": {"kind": kind}})

    def _derive(self, raw: dict[str, Any]) -> None:
        """The settings a support/query method derives from others: its default split, its
        queries (0: as many as shots) and presentations (shots + queries); ConfigError when
        `raw` sets presentations to something else."""
        d, e = self.data, self.episodes
        if self.model.kind not in SUPPORT_QUERY:
            return
        if not d.split and d.dataset == "omniglot":
            d.split = "vinyals"
        e.queries = e.queries or e.shots
        given = (raw.get("episodes") or {}).get("presentations")
        if given is not None and given != e.shots + e.queries:
            raise ConfigError(f"{self.model.kind} episodes have shots + queries presentations "
                              f"a class ({e.shots} + {e.queries}); episodes.presentations = "
                              f"{given!r} disagrees: set episodes.shots and episodes.queries")
        e.presentations = e.shots + e.queries

    @classmethod
    def from_toml(cls, path: str | Path) -> Config:
        return cls.from_dict(read_toml(path))

    def to_toml(self) -> str:
        lines = []
        for section, values in self.to_dict().items():
            lines.append(f"[{section}]")
            for key, value in values.items():
                lines.append(f"{key} = {_toml_value(value)}")
            lines.append("")
        return "\n".join(lines)

    # ---- checks -------------------------------------------------------------------------------
    def validate(self) -> Config:
        d, e, m, t = self.data, self.episodes, self.model, self.train
        positive = {
            "data.image_size": d.image_size, "episodes.n_way": e.n_way,
            "episodes.presentations": e.presentations, "model.controller_size": m.controller_size,
            "model.memory_slots": m.memory_slots, "model.memory_width": m.memory_width,
            "model.read_heads": m.read_heads, "model.hidden_size": m.hidden_size,
            "model.conv_width": m.conv_width,
            "model.write_heads": m.write_heads, "model.kv_neighbours": m.kv_neighbours,
            "episodes.shots": e.shots,
            "model.adapt_steps": m.adapt_steps, "model.test_adapt_steps": m.test_adapt_steps,
            "train.steps": t.steps, "train.batch_size": t.batch_size,
            "train.eval_every": t.eval_every, "train.eval_episodes": t.eval_episodes,
            "train.checkpoint_every": t.checkpoint_every, "train.log_every": t.log_every,
        }
        for name, value in positive.items():
            if not isinstance(value, int) or isinstance(value, bool) or value <= 0:
                raise ConfigError(f"{name} must be a positive integer, got {value!r}")
        for section, values in self.to_dict().items():
            for key, value in values.items():
                if isinstance(value, float) and not math.isfinite(value):
                    raise ConfigError(f"{section}.{key} must be a finite number, got {value}")
        _choice("data.channels", d.channels, (1, 3))
        _choice("data.min_images", d.min_images, ("error", "skip"))
        _choice("data.bad_files", d.bad_files, ("error", "skip"))
        _choice("episodes.labels", e.labels, ("one-hot", "five-hot"))
        _choice("episodes.class_counts", e.class_counts, ("equal", "random"))
        _choice("model.kind", m.kind, METHODS)
        _choice("model.backend", m.backend, BACKENDS)
        _choice("model.encoder", m.encoder, ("none", "conv", "convbase"))
        _choice("model.memory", m.memory, MEMORY_NAMES)
        _choice("model.kv_query", m.kv_query, ("controller", "encoder"))
        _choice("model.conv_pool", m.conv_pool, ("stride", "max"))
        _choice("train.optimizer", t.optimizer, ("adam", "rmsprop"))
        _choice("train.precision", t.precision, ("fp32", "tf32", "bf16"))
        _choice("train.on_divergence", t.on_divergence, ("rollback", "stop"))
        if not isinstance(t.health_episodes, int) or isinstance(t.health_episodes, bool) \
                or t.health_episodes < 0:
            raise ConfigError(f"train.health_episodes must be an integer >= 0, got "
                              f"{t.health_episodes!r}")
        curriculum_widths(self)  # raises on a malformed train.curriculum
        if not 0.0 < t.rollback_lr_factor < 1.0:
            raise ConfigError(f"train.rollback_lr_factor must lie in (0, 1), got "
                              f"{t.rollback_lr_factor}")
        if t.skip_grad_spikes != 0 and not t.skip_grad_spikes > 1:
            raise ConfigError(f"train.skip_grad_spikes must be 0 (off) or > 1, got "
                              f"{t.skip_grad_spikes}")
        if t.spike_factor <= 1.0 or not 0.0 < t.collapse_drop <= 1.0 or t.max_rollbacks < 0:
            raise ConfigError("need train.spike_factor > 1, 0 < train.collapse_drop <= 1 and "
                              "train.max_rollbacks >= 0")
        if m.classes < 0 or t.augment < 0:
            raise ConfigError(f"model.classes and train.augment must be >= 0, got "
                              f"{m.classes} and {t.augment}")
        if m.kind == "simpleshot" and d.rotate_classes:
            raise ConfigError("simpleshot classifies each training class in its own rotation: "
                              "data.rotate_classes must be false")
        if m.read_heads > m.memory_slots:
            raise ConfigError(f"model.read_heads ({m.read_heads}) cannot exceed "
                              f"model.memory_slots ({m.memory_slots}): LRUA writes to the "
                              f"read_heads least-used slots (eq. 21)")
        if m.shift_range < 0 or 2 * m.shift_range + 1 > m.memory_slots:
            raise ConfigError(f"model.shift_range must be >= 0 with 2 * shift_range + 1 <= "
                              f"model.memory_slots, got {m.shift_range}")
        if m.kv_neighbours > m.memory_slots:
            raise ConfigError(f"model.kv_neighbours ({m.kv_neighbours}) cannot exceed "
                              f"model.memory_slots ({m.memory_slots})")
        if m.memory == "kv" and t.cuda_graph:
            raise ConfigError("model.memory = 'kv' adds its margin loss outside the episode's "
                              "forward, which train.cuda_graph does not capture")
        if m.encoder_init and m.encoder != "convbase":
            raise ConfigError(f"model.encoder_init starts a 'convbase' encoder (the ProtoNets "
                              f"CNN); model.encoder is {m.encoder!r}")
        if m.freeze_encoder and not m.encoder_init:
            raise ConfigError("model.freeze_encoder keeps a pretrained encoder fixed: set "
                              "model.encoder_init (a ProtoNets checkpoint) too")
        if m.freeze_query and not (m.memory == "kv" and m.kv_query == "encoder"):
            raise ConfigError("model.freeze_query fixes the key-value memory's query projection "
                              "W_q: it needs model.memory = 'kv' and model.kv_query = 'encoder'")
        if not m.cosine_eps > 0:
            raise ConfigError(f"model.cosine_eps must be > 0, got {m.cosine_eps}")
        if m.key_strength_init <= 1.0:
            raise ConfigError(f"model.key_strength_init must be > 1, got {m.key_strength_init}")
        if not 0.0 <= m.gamma <= 1.0:
            raise ConfigError(f"model.gamma must lie in [0, 1], got {m.gamma}")
        if e.labels == "five-hot" and e.n_way > 5**5:
            raise ConfigError(f"five-hot labels express at most {5**5} classes, "
                              f"episodes.n_way is {e.n_way}")
        if not (t.lr > 0 and 0 < t.lr_min <= t.lr):
            raise ConfigError(f"need 0 < train.lr_min <= train.lr, got lr={t.lr}, "
                              f"lr_min={t.lr_min}")
        if t.warmup_steps < 0 or t.grad_clip < 0 or t.threads < 0 or t.lr_halve_every < 0:
            raise ConfigError("train.warmup_steps, train.grad_clip, train.threads and "
                              "train.lr_halve_every must be >= 0")
        if m.kind in SUPPORT_QUERY:
            self._validate_support_query()
        elif t.lr_halve_every:
            raise ConfigError(f"train.lr_halve_every is the schedule of {list(SUPPORT_QUERY)}; "
                              f"a {m.kind} decays its learning rate by a cosine to "
                              f"train.lr_min")
        return self

    def _validate_support_query(self) -> None:
        """What ProtoNets and MAML training (methods/trainer.py) cannot do."""
        e, m, t = self.episodes, self.model, self.train
        if not m.fast_lr > 0:
            raise ConfigError(f"model.fast_lr must be > 0, got {m.fast_lr}")
        if e.queries < 1:  # 0 became shots (_derive): a negative count
            raise ConfigError(f"episodes.queries must be a positive integer, got {e.queries}")
        unsupported = [name for name, used in (
            ("episodes.labels = 'five-hot'", e.labels != "one-hot"),
            ("episodes.class_counts = 'random'", e.class_counts != "equal"),
            ("train.curriculum", bool(t.curriculum.strip())),
            ("train.warmup_steps", t.warmup_steps > 0), ("train.compile", t.compile),
            ("train.cuda_graph", t.cuda_graph)) if used]
        if unsupported:
            raise ConfigError(f"{m.kind} trains on one-hot support/query tasks with a constant "
                              f"or halved learning rate; it does not take "
                              f"{', '.join(unsupported)}")


def curriculum_widths(cfg: Config) -> list[int]:
    """The N of each curriculum stage, ending with episodes.n_way: "5,10" at 20-way ->
    [5, 10, 20]; no curriculum -> [n_way]."""
    text, n_way = cfg.train.curriculum.strip(), cfg.episodes.n_way
    if not text:
        return [n_way]
    try:
        widths = [int(part) for part in text.split(",")]
    except ValueError:
        raise ConfigError(f"train.curriculum must be comma-separated class counts such as "
                          f"'5,10', got {text!r}") from None
    if widths[-1] == n_way:
        widths = widths[:-1]
    if not widths or widths[0] < 2 or any(b <= a for a, b in itertools.pairwise(widths)) \
            or widths[-1] >= n_way:
        raise ConfigError(f"train.curriculum {text!r}: widths must increase from >= 2 and stay "
                          f"below episodes.n_way ({n_way})")
    if not 0.0 < cfg.train.curriculum_accuracy <= 1.0:
        raise ConfigError(f"train.curriculum_accuracy must lie in (0, 1], got "
                          f"{cfg.train.curriculum_accuracy}")
    return [*widths, n_way]


def read_toml(path: str | Path) -> dict[str, Any]:
    """The sections a TOML config file sets, as written (unchecked beyond TOML syntax)."""
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"config file not found: {path}")
    try:
        return tomllib.loads(path.read_text())
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as err:
        raise ConfigError(f"{path}: not valid TOML: {err}") from err


def _choice(name: str, value: Any, allowed: tuple) -> None:
    if value not in allowed:
        raise ConfigError(f"{name} must be one of {list(allowed)}, got {value!r}")


def _update_section(section: Any, name: str, values: dict[str, Any]) -> None:
    if not isinstance(values, dict):
        raise ConfigError(f"[{name}] must be a table")
    known = {f.name: f for f in fields(section)}
    for key, value in values.items():
        if key not in known:
            raise ConfigError(f"unknown key {name}.{key}; known keys: {sorted(known)}")
        expected = type(getattr(section, key))
        if expected is float and isinstance(value, int) and not isinstance(value, bool):
            value = float(value)
        if not isinstance(value, expected) or (expected is int and isinstance(value, bool)):
            raise ConfigError(f"{name}.{key} must be {expected.__name__}, got {value!r}")
        setattr(section, key, value)


def _toml_value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str):
        return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'
    return repr(value)


def replace(cfg: Config, **sections: dict[str, Any]) -> Config:
    """A copy of `cfg` with some keys of some sections changed: replace(cfg, train={"lr": 1e-3})."""
    out = Config.from_dict(cfg.to_dict())
    for name, values in sections.items():
        _update_section(getattr(out, name), name, values)
    return out


__all__ = ["EMBEDDING_METHODS", "METHODS", "METHOD_DEFAULTS", "SEQUENCE_MODELS",
           "SUPPORT_QUERY", "Config", "ConfigError", "DataConfig", "EpisodeConfig",
           "ModelConfig", "TrainConfig", "curriculum_widths", "read_toml", "replace"]
