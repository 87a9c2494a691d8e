"""The "unknown" threshold of a life-long memory, calibrated on classes its model never saw.

Calibration: the 172 validation characters of the Vinyals split (unrotated; the key-space
model trains on the training characters only), shuffled with --seed: half are written into a
memory, 15 drawings each; the held-out 5 drawings of each written class are the known queries,
5 drawings of each other class the unknown ones. The threshold is the score (cosine to the
nearest entry) that --far of the unknown queries reach (`fewshot_mann.lifelong.open_set`).

Test: the same on the 423 test characters (half written, half unknown), with 15 and with 1
drawing written a class: AUROC of known against unknown, the false-accept rate and the accuracy
on known classes at the calibrated threshold, and that accuracy with no threshold.

    python scripts/lifelong_open_set.py --data-root ../shared/data/omniglot --out results/lifelong

writes open_set.json; --write-zoo stores the threshold in the key-space model's zoo entry, from
where `fewshot-mann memory create` takes it.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import sys
import tempfile
import time
from dataclasses import asdict
from pathlib import Path

import torch

from fewshot_mann import LifelongMemory
from fewshot_mann.data.omniglot import character_files
from fewshot_mann.data.splits import unrotated_characters
from fewshot_mann.lifelong.open_set import DEFAULT_FAR, OpenSetScore, threshold_for
from fewshot_mann.runtime import device_name
from fewshot_mann.zoo import default_keyspace, set_open_set

HELD_OUT = 5  # drawings of each class queried, never written


def scores(chars: list[list[Path]], seed: int, shots: int, checkpoint: str, views: int
           ) -> tuple[list[float], list[bool], list[float]]:
    """Half of `chars` written (`shots` drawings each): the known queries' scores and whether
    their nearest class is right, and the unknown queries' scores."""
    rng = random.Random(seed)
    order = list(range(len(chars)))
    rng.shuffle(order)
    half = len(order) // 2
    written, queries = {}, []
    for i, c in enumerate(order):
        files = list(chars[c])
        rng.shuffle(files)
        if i < half:
            written[f"class{c:03d}"] = files[:shots]
            queries += [(f"class{c:03d}", q) for q in files[-HELD_OUT:]]
        else:
            queries += [(None, q) for q in files[-HELD_OUT:]]
    with tempfile.TemporaryDirectory() as folder:
        memory = LifelongMemory.create(folder, checkpoint, threshold=None, views=views,
                                       progress=False)
        memory.add(written)
        answers = memory.query([q for _, q in queries], top_k=1)
    known, correct, unknown = [], [], []
    for answer, (name, _) in zip(answers, queries, strict=True):
        if name is None:
            unknown.append(answer.similarity)
        else:
            known.append(answer.similarity)
            correct.append(answer.prediction == name)
    return known, correct, unknown


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--data-root", default="../shared/data/omniglot")
    p.add_argument("--checkpoint", default=None,
                   help="key space: a ProtoNets checkpoint or zoo name (default: the zoo's)")
    p.add_argument("--far", type=float, default=DEFAULT_FAR,
                   help="false-accept rate on the calibration classes")
    p.add_argument("--seed", type=int, default=0, help="which classes are written")
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--out", default="results/lifelong")
    p.add_argument("--views", type=int, default=0,
                   help="distorted copies averaged into each key (LifelongMemory views)")
    p.add_argument("--write-zoo", action="store_true",
                   help="store the threshold in the zoo entry of --checkpoint")
    args = p.parse_args(argv)
    torch.set_num_threads(args.threads)
    started = time.time()
    checkpoint = args.checkpoint or default_keyspace().name
    val = character_files(args.data_root, unrotated_characters("vinyals", "val"))
    known, _, unknown = scores(val, args.seed, 15, checkpoint, args.views)
    threshold = threshold_for(unknown, args.far)
    print(f"threshold {threshold:.4f}: {args.far:.0%} of {len(unknown)} unknown validation "
          f"queries reach it")
    test = character_files(args.data_root, unrotated_characters("vinyals", "test"))
    results = {}
    for shots in (15, 1):
        measured = OpenSetScore.measure(threshold, *scores(test, args.seed, shots, checkpoint,
                                                           args.views))
        results[str(shots)] = asdict(measured)
        drawings = f"{shots} drawing{'s' if shots > 1 else ''}"
        print(f"test, {drawings} a class: AUROC {measured.auroc:.4f}, false accepts "
              f"{measured.false_accept:.1%}, known accuracy {measured.known_accuracy:.1%} "
              f"({measured.known_accuracy_closed:.1%} with no threshold)")
    record = {
        "command": "python scripts/lifelong_open_set.py " + " ".join(sys.argv[1:]),
        "checkpoint": checkpoint, "views": args.views, "far": args.far, "threshold": threshold,
        "calibration": {"classes": "86 of the 172 validation characters of the vinyals split "
                                   "written (15 drawings each), the other 86 unknown",
                        "known_queries": len(known), "unknown_queries": len(unknown)},
        "test": {"classes": "212 of the 423 test characters written, the other 211 unknown; "
                            "5 held-out drawings of each queried",
                 "by_images_per_class": results},
        "machine": f"{device_name(torch.device('cpu'))}, torch {torch.__version__}, "
                   f"load average {os.getloadavg()[0]:.1f} at the end",
        "seconds": round(time.time() - started, 1),
    }
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "open_set.json").write_text(json.dumps(record, indent=1) + "\n")
    if args.write_zoo:
        set_open_set(checkpoint, {"threshold": round(threshold, 6), "views": args.views,
                                  "far": args.far,
                                  "auroc_test_15": round(results["15"]["auroc"], 4),
                                  "record": str(out / "open_set.json")})
    print(f"wrote {out / 'open_set.json'} in {record['seconds']} s")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
