"""Named pretrained models: a name -> a checked weights file.

The manifest (`zoo.json`, shipped in the package) lists each model: what it is for (classes
and shots it handles, the kind of image), its held-out accuracy as recorded beside its file in
the repository, its calibration temperature, and the file's size and sha256. The weights are
not in the package; a model's file is looked for, in order, in

    1. the folder $FEWSHOT_MANN_ZOO, as <name>.pt
    2. the checkout the package runs from, at the entry's `path` (results/...)
    3. the user cache, ~/.cache/fewshot-mann/zoo/<name>.pt ($XDG_CACHE_HOME respected)

and used only when its sha256 is the manifest's. Every `--checkpoint` takes a zoo name:
`fewshot_mann.checkpoint.read_payload` calls `resolve_checkpoint` before opening a file.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
from dataclasses import asdict, dataclass, field
from functools import cache
from pathlib import Path
from typing import Any

from .errors import CheckpointError

MANIFEST = Path(__file__).with_name("zoo.json")
CHECKOUT = Path(__file__).resolve().parents[1]  # the repository root when run from a checkout
ENV = "FEWSHOT_MANN_ZOO"
FORMAT = "fewshot-mann-zoo-v1"


@dataclass(frozen=True)
class Accuracy:
    """A held-out accuracy as recorded in the repository."""

    setting: str  # e.g. "20-way 1-shot"
    n_way: int
    shots: int
    mean: float  # 0..1
    ci95: float  # half-width of the 95 % CI over episodes
    episodes: int
    classes: str  # which test classes
    record: str  # the committed file the numbers are copied from
    key: str  # where in it
    command: str  # the command that measured them


@dataclass(frozen=True)
class ZooModel:
    name: str
    summary: str
    kind: str  # mann | protonet
    ways: tuple[int, int]  # support classes it handles (min, max); max 0: no limit
    shots: tuple[int, int]  # images a class it handles (min, max); max 0: no limit
    image: str  # the kind of image it was trained on
    accuracy: tuple[Accuracy, ...]
    path: str  # the file in a checkout, relative to the repository root
    size: int  # bytes
    sha256: str
    calibration: dict[str, Any]  # temperature, how it was fitted, ECE before / after
    # a key-space model: the cosine below which a life-long memory answers "unknown", and how
    # it was calibrated (scripts/lifelong_open_set.py --write-zoo)
    open_set: dict[str, Any] = field(default_factory=dict)

    @property
    def file(self) -> str:
        """The file name in $FEWSHOT_MANN_ZOO and the user cache."""
        return f"{self.name}.pt"

    @property
    def temperature(self) -> float:
        return float(self.calibration.get("temperature", 1.0))

    def handles(self, n_classes: int, shots: int) -> bool:
        return _within(n_classes, self.ways) and _within(shots, self.shots)

    def nearest_accuracy(self, n_classes: int, shots: int) -> Accuracy:
        """The recorded accuracy of the setting closest to N-way K-shot (classes first)."""
        return min(self.accuracy, key=lambda a: (abs(math.log(a.n_way / n_classes)),
                                                 abs(a.shots - shots)))


def _within(value: int, limits: tuple[int, int]) -> bool:
    return limits[0] <= value and (limits[1] == 0 or value <= limits[1])


def span(limits: tuple[int, int]) -> str:
    """(2, 20) -> "2-20", (1, 0) -> "1+"."""
    return f"{limits[0]}+" if limits[1] == 0 else f"{limits[0]}-{limits[1]}"


def read_manifest(path: Path | None = None) -> dict[str, Any]:
    """The manifest at `path` (None: the shipped one, MANIFEST)."""
    path = MANIFEST if path is None else path
    try:
        manifest = json.loads(path.read_text())
    except (OSError, ValueError) as err:
        raise CheckpointError(f"model zoo manifest {path} unreadable: {err}") from err
    if manifest.get("format") != FORMAT:
        raise CheckpointError(f"{path} is not a {FORMAT} manifest")
    return manifest


@cache
def models() -> tuple[ZooModel, ...]:
    """Every model of the shipped manifest, in its order."""
    out = []
    for entry in read_manifest()["models"]:
        fields = dict(entry)
        fields["ways"] = tuple(fields["ways"])
        fields["shots"] = tuple(fields["shots"])
        fields["accuracy"] = tuple(Accuracy(**a) for a in fields["accuracy"])
        out.append(ZooModel(**fields))
    return tuple(out)


def names() -> list[str]:
    return [m.name for m in models()]


def get(name: str) -> ZooModel:
    for model in models():
        if model.name == name:
            return model
    raise CheckpointError(f"no model {name!r} in the zoo; `fewshot-mann models` lists "
                          f"{', '.join(names())}")


def default_keyspace() -> ZooModel:
    """The zoo model whose `embed(images)` gives a life-long memory its keys when no
    checkpoint is named (`fewshot_mann.lifelong`): the manifest's "keyspace" entry, the zoo's
    best image encoder."""
    return get(read_manifest()["keyspace"])


def set_open_set(name: str, record: dict[str, Any]) -> None:
    """Store the open-set threshold of zoo model `name` in the shipped manifest."""
    manifest = read_manifest()
    entry = next((m for m in manifest["models"] if m["name"] == name), None)
    if entry is None:
        raise CheckpointError(f"no model {name!r} in the zoo; `fewshot-mann models` lists "
                              f"{', '.join(names())}")
    entry["open_set"] = record
    write_manifest(manifest)


def write_manifest(manifest: dict[str, Any]) -> None:
    """Replace the shipped manifest (MANIFEST) with `manifest`; the models are read again."""
    MANIFEST.write_text(json.dumps(manifest, indent=1) + "\n")
    models.cache_clear()


def cache_folder() -> Path:
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base) / "fewshot-mann" / "zoo"


def candidates(model: ZooModel) -> list[Path]:
    """Where the model's file is looked for, in order."""
    places = []
    if os.environ.get(ENV):
        places.append(Path(os.environ[ENV]).expanduser() / model.file)
    places += [CHECKOUT / model.path, cache_folder() / model.file]
    return places


def sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def locate(model: ZooModel) -> Path:
    """The first file found for `model`, checked against the manifest's sha256."""
    path = found(model)
    if path is None:
        url = read_manifest().get("base_url", "")
        source = f"download {url}{model.file} or " if url else ""
        raise CheckpointError(
            f"zoo model {model.name!r}: its file is in none of "
            f"{', '.join(map(str, candidates(model)))}; {source}copy {model.path} of a "
            f"fewshot-mann checkout to {cache_folder() / model.file} (or into ${ENV})")
    digest = sha256(path)
    if digest != model.sha256:
        raise CheckpointError(f"zoo model {model.name!r}: {path} has sha256 {digest[:16]}..., "
                              f"the manifest's is {model.sha256[:16]}...: a damaged or "
                              f"different file; replace it with {model.path} of a checkout")
    return path


def resolve_checkpoint(path: str | Path) -> Path:
    """A checkpoint argument -> the file to open: an existing file as it is, a zoo name as its
    checked file, anything else unchanged (the loader then says it is not found)."""
    path = Path(path)
    if path.is_file() or str(path) not in names():
        return path
    return locate(get(str(path)))


def zoo_model_of(path: str | Path) -> ZooModel | None:
    """The zoo model a checkpoint argument is: by name, or a file with a zoo model's bytes
    (size, then sha256); None for any other file."""
    if not Path(path).is_file():
        return get(str(path)) if str(path) in names() else None
    size = Path(path).stat().st_size
    same_size = [m for m in models() if m.size == size]
    digest = sha256(Path(path)) if same_size else ""
    return next((m for m in same_size if m.sha256 == digest), None)


def choose(n_classes: int, shots: int) -> tuple[ZooModel, str]:
    """The zoo model for an N-way support set of at least `shots` images a class: among those
    that handle it, the ones with a recorded accuracy closest to N-way K-shot (number of
    classes first, then shots), and of those the most accurate there. Returns it and a
    sentence saying why."""
    fit = [m for m in models() if m.handles(n_classes, shots)]
    if not fit:
        ranges = "; ".join(f"{m.name}: {span(m.ways)} classes, {span(m.shots)} shots"
                           for m in models())
        raise CheckpointError(f"no zoo model handles {n_classes} classes of {shots} images "
                              f"({ranges}); pass --checkpoint")
    best = min(fit, key=lambda m: (*_distance(m, n_classes, shots),
                                   -m.nearest_accuracy(n_classes, shots).mean))
    acc = best.nearest_accuracy(n_classes, shots)
    others = [m.name for m in fit if m is not best]
    return best, (f"chose zoo model {best.name} for {n_classes} classes, {shots} "
                  f"{'shot' if shots == 1 else 'shots'} a class: {100 * acc.mean:.1f} +- "
                  f"{100 * acc.ci95:.1f} % held-out accuracy at {acc.setting}"
                  + (f", the best of those that handle this support set (also: "
                     f"{', '.join(others)})" if others else ", the only one that handles it"))


def _distance(model: ZooModel, n_classes: int, shots: int) -> tuple[float, int]:
    """How far the model's closest recorded setting is from N-way K-shot: classes, shots."""
    a = model.nearest_accuracy(n_classes, shots)
    return round(abs(math.log(a.n_way / n_classes)), 6), abs(a.shots - shots)


def found(model: ZooModel) -> Path | None:
    """The first place the model's file is (not checked), or None."""
    return next((p for p in candidates(model) if p.is_file()), None)


def describe(model: ZooModel) -> dict[str, Any]:
    """The manifest entry, with the file name it takes and where it was found (None: not)."""
    entry = asdict(model)
    where = found(model)
    return {**entry, "file": model.file, "found": None if where is None else str(where)}


def listing() -> str:
    """What `fewshot-mann models` prints: a block per model."""
    blocks = []
    for m in models():
        where = found(m)
        lines = [f"{m.name}: {m.summary}",
                 f"  handles      {span(m.ways)} classes, {span(m.shots)} images a class",
                 f"  images       {m.image}"]
        for i, a in enumerate(m.accuracy):
            lines.append(f"  {'accuracy' if i == 0 else '':<12} {100 * a.mean:.1f} +- "
                         f"{100 * a.ci95:.1f} % at {a.setting}")
        records: dict[tuple[int, str, str], list[str]] = {}
        for a in m.accuracy:  # the same episodes and command: said once
            records.setdefault((a.episodes, a.classes, a.command), []).append(a.record)
        for (episodes, classes, command), files in records.items():
            lines += [f"{'':<15}{episodes} episodes of {classes}",
                      f"{'':<15}measured by `{command}` (recorded in "
                      f"{', '.join(dict.fromkeys(files))})"]
        c = m.calibration
        if c:
            lines += [f"  calibration  temperature {c['temperature']:.3g}, fitted on "
                      f"{c['fit_episodes']} {c['setting']} episodes of {c['fit_classes']}",
                      f"{'':<15}ECE ({c['ece_bins']} bins) on {c['test_episodes']} episodes "
                      f"of {c['test_classes']}: {100 * c['ece_before']:.1f} % before, "
                      f"{100 * c['ece_after']:.1f} % after"]
            within = c.get("within_alphabet")
            if within:
                lines.append(f"{'':<15}on as many episodes of one alphabet's test classes "
                             f"(harder, {100 * within['accuracy']:.1f} % right): "
                             f"{100 * within['ece_before']:.1f} % before, "
                             f"{100 * within['ece_after']:.1f} % after")
        else:
            lines.append("  calibration  none (scripts/calibrate_zoo.py fits it)")
        lines += [f"  file         {m.size / 1e6:.1f} MB, sha256 {m.sha256}",
                  f"{'':<15}" + (f"found at {where}" if where else
                                 f"not found: put it at {cache_folder() / m.file}")]
        blocks.append("\n".join(lines))
    return "\n\n".join(blocks)
