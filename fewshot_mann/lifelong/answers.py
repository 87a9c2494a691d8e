"""What a life-long memory answers a query, and the CSV / JSON files that hold the answers
(the shape of `fewshot-mann predict`'s: a row per query, its top classes, the unreadable ones
last with the reason; similarities where predict writes probabilities)."""

from __future__ import annotations

import csv
import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

UNKNOWN = "unknown"  # the prediction where the best similarity is below the threshold


@dataclass
class Answer:
    query: str
    prediction: str  # the best class; UNKNOWN below the threshold; "" when unreadable
    similarity: float  # cosine of the query's key and the nearest entry of the best class
    top: list[tuple[str, float]]  # distinct classes, each with its nearest entry's cosine
    skipped: str = ""  # why the query could not be read (then nothing else is set)


def answers_dict(answers: Sequence[Answer], about: Mapping[str, Any]) -> dict[str, Any]:
    return {**about,
            "predictions": [{"query": a.query, "predicted": a.prediction,
                             "similarity": a.similarity,
                             "top": [{"class": c, "similarity": s} for c, s in a.top]}
                            for a in answers if not a.skipped],
            "skipped": [{"query": a.query, "reason": a.skipped} for a in answers if a.skipped]}


def write_answers(answers: Sequence[Answer], path: str | Path, fmt: str = "csv",
                  about: Mapping[str, Any] | None = None) -> Path:
    """CSV (a row per query, the unreadable ones last with their reason) or JSON (`about`,
    e.g. the memory and its model, then the answers)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    if fmt == "json":
        path.write_text(json.dumps(answers_dict(answers, about or {}), indent=1) + "\n")
        return path
    k = max((len(a.top) for a in answers), default=0)
    with open(path, "w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["query", "predicted", "similarity",
                         *[f"top{i}_{w}" for i in range(1, k + 1) for w in ("class", "similarity")],
                         "skipped"])
        for a in answers:
            if not a.skipped:
                top = [v for c, s in a.top for v in (c, f"{s:.6f}")]
                writer.writerow([a.query, a.prediction, f"{a.similarity:.6f}", *top,
                                 *[""] * (2 * (k - len(a.top))), ""])
        for a in answers:
            if a.skipped:
                writer.writerow([a.query, "", "", *[""] * (2 * k), a.skipped])
    return path
