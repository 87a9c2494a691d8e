"""Use a trained model on your own images: a few labelled examples (the support set), then
"what are these?" (the queries).

    predictor = Predictor.from_checkpoint("runs/mann5/model.pt")
    result = predictor.predict("my_support/", ["photo.png", "more_queries/"])
    print(result.queries[0].predicted, result.queries[0].probability)

Images are prepared exactly as the checkpoint's training images were (`data.decode`): any
format and mode Pillow reads, converted to the model's channels (colour dropped for a
grayscale model, with a warning), resized to its square size with the same filter, and, for a
model trained on Omniglot, inverted so that strokes are 1 and paper 0.

How each kind of model answers:

    sequence models   (MANN, LSTM, feedforward) read an episode as in training: the support
                      images one per step in a seeded random order, each class under a random
                      label of the model's label code, the correct label of step t arriving
                      with step t+1; then the query as the next step, whose label input is the
                      last support image's label. Its output at that step is read and never
                      its own label, and every query is its own continuation of the support
                      sequence (a batch of episodes), so no query sees another query's label.
                      The MANN's answer depends on the order, so `orders` > 1 averages the
                      probabilities over that many orders (and label assignments) and reports
                      their spread.
    ProtoNets,        their `class_probabilities`: the nearest prototype (SimpleShot: of unit
    SimpleShot, MAML  features), or a clone adapted on the support set; the order of the
                      support set does not matter.

Class probabilities of a sequence model: the softmax of its logits restricted to the labels
the support classes were given (five-hot labels: the product of each string's five digit
probabilities, normalised over the support classes). A zoo model's probabilities are
calibrated: softmax(log p / T) with the temperature T of its manifest entry
(`fewshot_mann.zoo`, `inference.calibration`); the top class is the same with or without.
"""

from __future__ import annotations

import csv
import json
import warnings
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image
from torch import nn

from ..checkpoint import load_checkpoint, model_from_checkpoint
from ..config import SEQUENCE_MODELS
from ..data import invert_custom
from ..data.decode import prepare_image
from ..episodes import LabelCode
from ..errors import PredictError
from ..runtime import pick_device
from ..zoo import zoo_model_of
from .calibration import temper

ImageLike = str | Path | Image.Image | torch.Tensor  # a file, a Pillow image or a (C, H, W) tensor
SEQUENCE_KINDS = SEQUENCE_MODELS
EXPLAINABLE = ("mann", "protonet", "simpleshot")  # fewshot_mann.inference.explain
QUERY_CHUNK = 256  # queries run side by side (each its own episode) per forward pass
SHOWN = 10  # files named in a warning


# ---- images --------------------------------------------------------------------------------
@dataclass(frozen=True)
class Preprocessing:
    """How an image becomes a model input: (C, H, W) float in [0, 1], as in training."""

    shape: tuple[int, int, int]  # (channels, height, width) of the checkpoint's images
    invert: bool  # Omniglot: strokes 255 on 0 (its files are dark ink on white paper)

    def __call__(self, item: ImageLike) -> tuple[torch.Tensor, bool]:
        """(image (C, H, W) float, whether colour was dropped). Raises on unreadable files."""
        if isinstance(item, torch.Tensor):
            return self.from_tensor(item), False
        if isinstance(item, Image.Image):
            return self.from_pil(item)
        with Image.open(Path(item)) as im:
            im.load()  # the full decode here, so that truncated files fail here
            return self.from_pil(im)

    def from_pil(self, im: Image.Image) -> tuple[torch.Tensor, bool]:
        channels, size = self.shape[0], self.shape[1]
        dropped = channels == 1 and is_colour(im)
        pixels = prepare_image(im, size, channels, self.invert)  # (C, H, W) uint8
        return torch.tensor(pixels, dtype=torch.float32).div_(255.0), dropped

    def from_tensor(self, t: torch.Tensor) -> torch.Tensor:
        """A tensor is taken as already prepared (what the training pipeline gives):
        (C, H, W), or (H, W) for one channel; uint8 0..255 or float 0..1."""
        if t.dim() == 2 and self.shape[0] == 1:
            t = t.unsqueeze(0)
        if tuple(t.shape) != self.shape:
            raise PredictError(f"a tensor image must be prepared like the model's inputs, "
                               f"shape {self.shape} (channels, height, width), got "
                               f"{tuple(t.shape)}; pass a file path or a PIL image to have it "
                               f"converted")
        if t.dtype == torch.uint8:
            return t.float().div(255.0)
        t = t.detach().float().cpu()
        if not t.is_floating_point() or not bool(((t >= 0) & (t <= 1)).all()):
            raise PredictError("a float tensor image must hold values in [0, 1]")
        return t


def is_colour(im: Image.Image) -> bool:
    """Whether converting `im` to grayscale loses colour (any pixel whose channels differ by
    more than JPEG noise)."""
    if im.mode in ("1", "L", "LA", "I", "F") or im.mode.startswith("I;16"):
        return False
    rgb = np.asarray(im.convert("RGB"), dtype=np.int16)
    return int((rgb.max(-1) - rgb.min(-1)).max()) > 8


def visible_files(folder: Path) -> list[Path]:
    """Every file under `folder`, recursively, sorted, hidden ones (and those in hidden
    folders) left out."""
    return sorted(p for p in folder.rglob("*") if p.is_file()
                  and not any(part.startswith(".") for part in p.relative_to(folder).parts))


def _name(item: ImageLike, index: int, what: str) -> str:
    if isinstance(item, str | Path):
        return str(item)
    filename = getattr(item, "filename", "")  # a PIL image opened from a file knows it
    return filename or f"<{what} {index}>"


# ---- support set and queries ---------------------------------------------------------------
@dataclass
class Support:
    """The labelled examples: class n has images[n] (K_n, C, H, W) from sources[n]."""

    classes: list[str]
    images: list[torch.Tensor]
    sources: list[list[str]]
    skipped: list[tuple[str, str]] = field(default_factory=list)  # unreadable (file, why)


def support_items(support: str | Path | Mapping[str, Any]) -> dict[str, list[ImageLike]]:
    """A folder of class sub-folders, or {class name: images (a list, or a folder)}."""
    if isinstance(support, Mapping):
        items = {}
        for name, value in support.items():
            if isinstance(value, str | Path) and Path(value).is_dir():
                value = visible_files(Path(value))
            elif isinstance(value, str | Path | Image.Image | torch.Tensor):
                value = [value]
            items[str(name)] = list(value)
        return items
    folder = Path(support).expanduser()
    if not folder.is_dir():
        what = "does not exist" if not folder.exists() else "is not a folder"
        raise PredictError(f"support folder {folder} {what} (expected "
                           f"{folder}/<class>/<image files>)")
    visible = [p for p in sorted(folder.iterdir()) if not p.name.startswith(".")]
    class_dirs = [p for p in visible if p.is_dir()]
    if not class_dirs:
        raise PredictError(f"support folder {folder} holds no class sub-folders (expected "
                           f"{folder}/<class>/<image files>)")
    if len(visible) > len(class_dirs):
        warnings.warn(f"{len(visible) - len(class_dirs)} files directly in {folder} are in no "
                      f"class folder; ignored", stacklevel=3)
    return {p.name: list(visible_files(p)) for p in class_dirs}


def support_shape(support: str | Path | Mapping[str, Any]) -> tuple[int, int]:
    """(classes, fewest images of a class) of a support set, its files counted, not read."""
    items = support_items(support)
    if not items:
        raise PredictError("the support set holds no classes")
    return len(items), min(len(v) for v in items.values())


def load_support(support: str | Path | Mapping[str, Any], prepare: Preprocessing,
                 colour: list[str]) -> Support:
    """Decode every support image; unreadable files are skipped (and reported), a class left
    with no readable image stops the prediction."""
    items = support_items(support)
    if not items:
        raise PredictError("the support set holds no classes")
    classes, images, sources, skipped = [], [], [], []
    for name, entries in items.items():
        named = [(_name(item, i, f"support {name}"), item) for i, item in enumerate(entries)]
        names, kept, failed = prepare_all(prepare, named, colour)
        skipped += failed
        if not kept:
            why = (f"{len(entries)} files could not be read as images, e.g. "
                   f"{skipped[-1][0]}: {skipped[-1][1]}" if entries else "it holds no files")
            raise PredictError(f"support class {name!r} has no readable image ({why}); add an "
                               f"image or remove the class")
        classes.append(name)
        images.append(torch.stack(kept))
        sources.append(names)
    if skipped:
        warnings.warn(f"{len(skipped)} support files could not be read as images; skipped:\n"
                      + _listing(skipped), stacklevel=3)
    return Support(classes, images, sources, skipped)


def prepare_all(prepare: Preprocessing, items: Sequence[tuple[str, ImageLike]],
                colour: list[str]) -> tuple[list[str], list[torch.Tensor], list[tuple[str, str]]]:
    """(name, image) pairs -> the names and (C, H, W) images of those that could be read,
    and (name, why) for those that could not; names of colour images dropped to gray are
    added to `colour`."""
    names, images, skipped = [], [], []
    for name, item in items:
        try:
            image, dropped = prepare(item)
        except PredictError:
            raise
        except Exception as err:  # Pillow raises many kinds of error on bad or non-image files
            skipped.append((name, f"{type(err).__name__}: {err}"))
            continue
        names.append(name)
        images.append(image)
        if dropped:
            colour.append(name)
    return names, images, skipped


def query_items(query: ImageLike | Iterable[ImageLike]) -> list[tuple[str, ImageLike]]:
    """Files, folders (every file under them) and in-memory images -> (name, image) pairs."""
    if isinstance(query, str | Path | Image.Image | torch.Tensor):
        query = [query]
    out: list[tuple[str, ImageLike]] = []
    for i, item in enumerate(query):
        if isinstance(item, str | Path) and Path(item).is_dir():
            out += [(str(p), p) for p in visible_files(Path(item))]
        else:
            out.append((_name(item, i, "query"), item))
    return out


def _listing(skipped: Sequence[tuple[str, str]]) -> str:
    lines = [f"  {p}: {why}" for p, why in skipped[:SHOWN]]
    if len(skipped) > SHOWN:
        lines.append(f"  ... and {len(skipped) - SHOWN} more")
    return "\n".join(lines)


# ---- results -------------------------------------------------------------------------------
@dataclass
class QueryPrediction:
    query: str
    predicted: str
    probability: float  # mean over support orders
    probability_sd: float  # standard deviation over orders of the predicted class's probability
    agreement: float  # fraction of orders whose top class is `predicted`
    top: list[tuple[str, float]]  # the top-k classes, most probable first
    most_read: list[tuple[str, str, float]] = field(default_factory=list)
    # with explain: (support image, its class, share of the query's read), largest first


@dataclass
class Prediction:
    classes: list[str]  # the support classes, in the order of `probabilities`' columns
    queries: list[QueryPrediction]
    probabilities: torch.Tensor  # (Q, N): mean over orders
    order_probabilities: torch.Tensor  # (orders, Q, N)
    skipped: list[tuple[str, str]]  # queries that could not be read: (query, why)
    notes: list[str]  # what the user was warned about
    model: str
    orders: int
    seed: int
    support: Support | None = None  # the images, for drawing
    query_images: torch.Tensor | None = None  # (Q, C, H, W) as the model saw them

    def draw_explanations(self, folder: str | Path, most: int = 5,
                          truths: Mapping[str, str] | None = None) -> list[Path]:
        """Per query, a PNG strip: the query, captioned with the prediction, beside the
        support images it leaned on most (blue: of the predicted class, gray: of another),
        named <index>_<query file stem>.png. `truths`: {query: its true class}, where known,
        adds the true class to the caption, green when the prediction is right, else red."""
        from .explain import explanation_strip

        if self.support is None or self.query_images is None:
            raise PredictError("nothing to draw: predict with explain=True")
        folder = Path(folder)
        folder.mkdir(parents=True, exist_ok=True)
        images = {s: img for files, imgs in zip(self.support.sources, self.support.images,
                                               strict=True) for s, img in zip(files, imgs,
                                                                              strict=True)}
        shape = tuple(self.query_images.shape[1:])
        paths = []
        for q, (pred, image) in enumerate(zip(self.queries, self.query_images, strict=True)):
            if not pred.most_read:
                raise PredictError("nothing to draw: predict with explain=True")
            read = pred.most_read[:most]
            stem = "".join(c if c.isalnum() or c in "-_" else "_" for c in Path(pred.query).stem)
            paths.append(explanation_strip(
                self.model, image.flatten(), pred.predicted, pred.probability,
                [images[s] for s, _, _ in read], [(c, w) for _, c, w in read], shape,
                folder / f"{q:04d}_{stem[:60]}.png", (truths or {}).get(pred.query)))
        return paths

    def to_dict(self) -> dict[str, Any]:
        return {"model": self.model, "classes": self.classes, "orders": self.orders,
                "seed": self.seed, "notes": self.notes,
                "predictions": [{"query": q.query, "predicted": q.predicted,
                                 "probability": q.probability,
                                 "probability_sd": q.probability_sd, "agreement": q.agreement,
                                 "top": [{"class": c, "probability": p} for c, p in q.top],
                                 **({"most_read": [{"support": s, "class": c, "share": w}
                                                   for s, c, w in q.most_read]}
                                    if q.most_read else {})}
                                for q in self.queries],
                "skipped": [{"query": q, "reason": why} for q, why in self.skipped]}

    def write(self, path: str | Path, fmt: str = "csv") -> Path:
        """CSV (one row per query, skipped ones included with their reason) or JSON."""
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        if fmt == "json":
            path.write_text(json.dumps(self.to_dict(), indent=1) + "\n")
            return path
        k = max((len(q.top) for q in self.queries), default=0)
        with open(path, "w", newline="") as f:
            writer = csv.writer(f)
            writer.writerow(["query", "predicted", "probability", "probability_sd", "agreement",
                             *[f"top{i}_{w}" for i in range(1, k + 1)
                               for w in ("class", "probability")],
                             "most_read_support", "most_read_class", "skipped"])
            for q in self.queries:
                top = [v for c, p in q.top for v in (c, f"{p:.6f}")]
                read = q.most_read[0][:2] if q.most_read else ("", "")
                writer.writerow([q.query, q.predicted, f"{q.probability:.6f}",
                                 f"{q.probability_sd:.6f}", f"{q.agreement:.4f}", *top,
                                 *read, ""])
            for query, why in self.skipped:
                writer.writerow([query, "", "", "", "", *[""] * (2 * k), "", "", why])
        return path


# ---- the predictor -------------------------------------------------------------------------
class Predictor:
    """A trained model ready to classify new images from a few labelled ones."""

    def __init__(self, model: nn.Module, kind: str, prepare: Preprocessing,
                 code: LabelCode | None = None, trained_way: int = 0,
                 trained_steps: int = 0, device: torch.device | str = "cpu",
                 checkpoint: str = "", temperature: float = 1.0) -> None:
        self.model, self.kind, self.prepare, self.code = model, kind, prepare, code
        self.trained_way = trained_way  # classes per training episode
        self.trained_steps = trained_steps  # steps per training episode (sequence models)
        self.device = torch.device(device)
        self.checkpoint = checkpoint
        self.temperature = temperature  # probabilities are softmax(log p / T) (calibration)
        self.model.to(self.device).eval()

    @classmethod
    def from_checkpoint(cls, path: str | Path, device: str = "auto",
                        invert: bool | None = None,
                        temperature: float | None = None) -> Predictor:
        """A checkpoint of any method (`fewshot-mann train --method ...`), or a zoo model's
        name (`fewshot-mann models`). `invert`: turn images light on dark; None: when the model
        was trained on Omniglot (whose files are dark ink on paper). `temperature`: of the
        probabilities; None: a zoo model's calibrated one (by name or by its file's bytes),
        else 1."""
        payload = load_checkpoint(path)
        if temperature is None:
            zoo_model = zoo_model_of(path)
            temperature = zoo_model.temperature if zoo_model else 1.0
        if not temperature > 0:
            raise PredictError(f"temperature must be positive, got {temperature}")
        model, cfg, _ = model_from_checkpoint(payload, path)
        e = cfg.episodes
        sequence = cfg.model.kind in SEQUENCE_KINDS
        return cls(model, cfg.model.kind,
                   Preprocessing(tuple(payload["image_shape"]),
                                 invert_custom(cfg.data.dataset, "", invert)),
                   code=LabelCode.make(e.labels, e.n_way) if sequence else None,
                   trained_way=e.n_way, trained_steps=e.n_way * e.presentations if sequence else 0,
                   device=pick_device(device), checkpoint=str(path), temperature=temperature)

    # ---- checks ------------------------------------------------------------------------------
    def check_support(self, support: Support, notes: list[str],
                      max_shots: int | None = None) -> None:
        """Refuse a support set the model cannot express; note what it was not trained for."""
        n = len(support.classes)
        used = sum(min(len(s), max_shots or len(s)) for s in support.sources)
        if self.kind in SEQUENCE_KINDS:
            assert self.code is not None
            limit = self.code.symbols ** self.code.groups if self.code.name == "five-hot" \
                else self.code.symbols
            if n > limit:
                advice = (f"a model trained with --labels five-hot (Santoro's 5-character "
                          f"labels, up to 3125 classes), e.g. --labels five-hot --n-way {n}"
                          if self.code.name == "one-hot" else "fewer support classes")
                raise PredictError(f"the support set has {n} classes, but this model's "
                                   f"{self.code.name} labels express at most {limit} (it was "
                                   f"trained {self.trained_way}-way): use {advice}")
            if n > self.trained_way:
                notes.append(f"the support set has {n} classes; the model was trained on "
                             f"{self.trained_way}-way episodes, so expect lower accuracy")
            if used + 1 > self.trained_steps:
                notes.append(f"the support set has {used} images; the model was "
                             f"trained on episodes of {self.trained_steps} steps, and support "
                             f"+ query is {used + 1}: longer than any sequence it has "
                             f"seen (a MANN's memory overwrites its least-used slots first): "
                             f"expect lower accuracy, or pass --max-shots to use fewer images "
                             f"a class")
        elif self.kind == "maml" and n > self.trained_way:
            raise PredictError(f"the support set has {n} classes, but this MAML network has "
                               f"{self.trained_way} outputs: train one with "
                               f"fewshot-mann train --method maml --n-way {n}")

    # ---- prediction --------------------------------------------------------------------------
    def predict(self, support: str | Path | Mapping[str, Any],
                query: ImageLike | Iterable[ImageLike], orders: int = 1, seed: int = 0,
                top_k: int = 3, max_shots: int | None = None,
                explain: bool = False) -> Prediction:
        """Classify `query` (files, folders of them, PIL images or prepared tensors) among the
        classes of `support` (a folder of class sub-folders, or {class: images}).

        `orders`: support orders (and label assignments) to average a sequence model's
        probabilities over (other models answer regardless of the order: more than one is
        noted and ignored); `max_shots`: at most this many support images a class, drawn
        afresh for each order; `explain`: record for each query which support images the
        model leaned on (`QueryPrediction.most_read`). Unreadable queries are skipped and
        listed in `Prediction.skipped`; warnings repeat what `Prediction.notes` records."""
        if orders < 1 or top_k < 1 or (max_shots is not None and max_shots < 1):
            raise PredictError("orders, top_k and max_shots must be positive")
        if explain and self.kind not in EXPLAINABLE:
            raise PredictError(f"explain shows what a MANN's memory read or which support "
                               f"images a ProtoNet found nearest; a {self.kind} model has "
                               f"neither")
        colour: list[str] = []
        support_set = load_support(support, self.prepare, colour)
        notes: list[str] = []
        if orders > 1 and self.kind not in SEQUENCE_KINDS:  # their answer has no order
            notes.append(f"orders = {orders} ignored: a {self.kind} model's answer does not "
                         f"depend on the order of the support set, one pass gives it")
            orders = 1
        self.check_support(support_set, notes, max_shots)
        items = query_items(query)
        if not items:
            raise PredictError("no query images: pass image files, folders of them, PIL images "
                               "or tensors")
        names, images, skipped = prepare_all(self.prepare, items, colour)
        if skipped:
            warnings.warn(f"{len(skipped)} queries could not be read as images; skipped:\n"
                          + _listing(skipped), stacklevel=2)
        if not images:
            raise PredictError(f"no readable query image: all {len(skipped)} could not be read, "
                               f"e.g. {skipped[0][0]}: {skipped[0][1]}")
        if colour:
            notes.append(f"{len(colour)} images are in colour; this model takes grayscale, so "
                         f"their colour is dropped as in training, e.g. {colour[:3]}")
        for note in notes:
            warnings.warn(note, stacklevel=2)
        query_tensor = torch.stack(images).flatten(1).to(self.device)  # (Q, D)
        per_order, shares = self._probabilities(support_set, query_tensor, orders, seed,
                                                max_shots, explain)
        per_order = temper(per_order, self.temperature)
        result = self._result(support_set, names, per_order, shares, skipped, notes, orders,
                              seed, top_k)
        result.query_images = torch.stack(images)
        return result

    def _probabilities(self, support: Support, query: torch.Tensor, orders: int, seed: int,
                       max_shots: int | None, explain: bool
                       ) -> tuple[torch.Tensor, torch.Tensor | None]:
        """(orders, Q, N) class probabilities, and with `explain` the (Q, S) share of each
        support image (in `support` order, flattened class by class) averaged over orders."""
        flat = [s.flatten(1).to(self.device) for s in support.images]  # N x (K_n, D)
        counts = torch.tensor([len(s) for s in flat])
        if self.kind not in SEQUENCE_KINDS:  # order-free methods: one pass
            probs = self.model.class_probabilities(flat, query).cpu()
            shares = None
            if explain:
                from .explain import support_shares

                shares = support_shares(self.model, self.kind, flat, query).cpu()
            return probs.unsqueeze(0), shares
        images = torch.cat(flat)  # (S, D)
        classes = torch.repeat_interleave(torch.arange(len(flat)), counts).to(self.device)
        runs, share_sum = [], None
        for o in range(orders):
            g = torch.Generator().manual_seed(seed * 1_000_003 + o)
            keep = pick_shots(counts, max_shots, g)  # support rows used by this order
            probs, shares = sequence_probabilities(self.model, self.code, images[keep],
                                                   classes[keep], len(flat), query, g,
                                                   explain=explain)
            runs.append(probs.cpu())
            if shares is not None:
                full = torch.zeros(len(query), len(images))
                full[:, keep] = shares.cpu()
                share_sum = full if share_sum is None else share_sum + full
        return torch.stack(runs), None if share_sum is None else share_sum / orders

    def _result(self, support: Support, names: list[str], per_order: torch.Tensor,
                shares: torch.Tensor | None, skipped: list[tuple[str, str]], notes: list[str],
                orders: int, seed: int, top_k: int) -> Prediction:
        mean = per_order.mean(0)  # (Q, N)
        best = mean.argmax(-1)  # (Q,)
        picked = per_order.gather(2, best.view(1, -1, 1).expand(orders, -1, 1))[..., 0]
        sd = picked.std(0, unbiased=True) if orders > 1 else torch.zeros(len(names))
        agree = (per_order.argmax(-1) == best).float().mean(0)
        k = min(top_k, len(support.classes))
        top_p, top_i = mean.topk(k, dim=-1)
        sources = [(s, c) for c, files in zip(support.classes, support.sources, strict=True)
                   for s in files]
        queries = []
        for q, name in enumerate(names):
            most_read = []
            if shares is not None:
                order = shares[q].argsort(descending=True)[:5].tolist()
                most_read = [(*sources[j], float(shares[q, j])) for j in order]
            queries.append(QueryPrediction(
                name, support.classes[int(best[q])], float(mean[q, best[q]]), float(sd[q]),
                float(agree[q]),
                [(support.classes[int(i)], float(p)) for p, i in zip(top_p[q], top_i[q],
                                                                     strict=True)],
                most_read))
        return Prediction(support.classes, queries, mean, per_order, skipped, notes,
                          self.kind, orders, seed, support)


def pick_shots(counts: torch.Tensor, max_shots: int | None,
               generator: torch.Generator) -> torch.Tensor:
    """Indices of the support rows to use: all, or at most `max_shots` of each class drawn at
    random. counts (N,) images per class, rows class by class."""
    if max_shots is None or int(counts.max()) <= max_shots:
        return torch.arange(int(counts.sum()))
    offsets = torch.cumsum(counts, 0) - counts
    return torch.cat([o + torch.randperm(int(n), generator=generator)[:max_shots]
                      for o, n in zip(offsets.tolist(), counts.tolist(), strict=True)])


@torch.no_grad()
def sequence_probabilities(model: nn.Module, code: LabelCode, support: torch.Tensor,
                           support_class: torch.Tensor, n_classes: int, query: torch.Tensor,
                           generator: torch.Generator, explain: bool = False
                           ) -> tuple[torch.Tensor, torch.Tensor | None]:
    """One support order: support (S, D) images of classes support_class (S,) in
    0..n_classes-1, query (Q, D) -> class probabilities (Q, n_classes), and with `explain`
    each support image's share (Q, S) of what the query step read (`inference.explain`).

    The support steps come in a random order with a random label per class (both from
    `generator`); each query is the step after the last support step, in its own episode."""
    model.eval()
    S, device = len(support), support.device
    order = torch.randperm(S, generator=generator).to(device)  # step t shows support[order[t]]
    n_labels = code.symbols if code.name == "one-hot" else n_classes
    labels = code.draw(1, n_labels, generator, torch.device("cpu"))[0, :n_classes].to(device)
    targets = labels[support_class[order]]  # (S, G) digits of each support step
    encoded = code.encode(targets)  # (S, G*Sym)
    prev = torch.cat([torch.zeros_like(encoded[:1]), encoded])  # (S+1, G*Sym): label of t-1
    steps = support[order]  # (S, D)
    probs, shares = [], []
    for chunk in query.split(QUERY_CHUNK):
        B = len(chunk)
        images = torch.cat([steps.expand(B, -1, -1), chunk.unsqueeze(1)], dim=1)  # (B, S+1, D)
        if explain:
            from .explain import record_memory

            with record_memory(model) as record:
                logits = model(images, prev.expand(B, -1, -1))[:, -1]  # (B, G, Sym)
            step_shares = record.step_shares()[:, :S]  # (B, S) in step order; the query
            # step also reads what it wrote itself: left out, the shares are among the support
            step_shares = step_shares / step_shares.sum(1, keepdim=True).clamp_min(1e-12)
            shares.append(torch.empty_like(step_shares).index_copy_(1, order, step_shares))
        else:
            logits = model(images, prev.expand(B, -1, -1))[:, -1]  # (B, G, Sym)
        logp = torch.log_softmax(logits.float(), dim=-1)  # (B, G, Sym)
        # log p(class c) = sum over groups g of log p_g(digit of c's label in group g)
        index = labels.T.unsqueeze(0).expand(B, -1, -1)  # (B, G, N)
        probs.append(torch.softmax(logp.gather(2, index).sum(1), dim=-1))  # (B, N)
    return torch.cat(probs), torch.cat(shares) if explain else None
