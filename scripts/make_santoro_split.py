"""Regenerate (or, with --check, verify) the shipped Santoro split of Omniglot.

1,200 training / 423 test characters drawn once from all 1,623 with random.Random(0) over the
sorted character names ("Alphabet/characterNN"), as Santoro et al. 2016 split them; then 100 of
the 1,200 drawn with random.Random(1) as validation classes, so that every decision taken while
training (held-out curves, stopping, curriculum, collapse checks) reads classes that are neither
trained on nor tested. The files in fewshot_mann/data/splits/santoro/ are the pinned split:

    trainval.txt  the 1,200 training characters (split `santoro-trainval`, the paper's protocol)
    train.txt     1,100 of them, trained on by the split `santoro`
    val.txt       the other 100: the validation classes of `santoro`
    test.txt      the 423 test characters of both

    python scripts/make_santoro_split.py --data-root ../shared/data/omniglot [--check]
"""

import argparse
import random
import sys
from pathlib import Path

from fewshot_mann.data.omniglot import BACKGROUND, EVALUATION, find_omniglot

OUT = Path(__file__).resolve().parents[1] / "fewshot_mann" / "data" / "splits" / "santoro"
TRAIN, VAL = 1200, 100


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data-root", default="data")
    parser.add_argument("--check", action="store_true", help="compare with the shipped files")
    args = parser.parse_args(argv)

    folder = find_omniglot(args.data_root)
    names = sorted(f"{p.parent.name}/{p.name}" for group in (BACKGROUND, EVALUATION)
                   for p in (folder / group).glob("*/*") if p.is_dir())
    assert len(names) == 1623, len(names)
    random.Random(0).shuffle(names)
    trainval = sorted(names[:TRAIN])
    val = sorted(random.Random(1).sample(trainval, VAL))
    parts = {"trainval": trainval, "train": sorted(set(trainval) - set(val)), "val": val,
             "test": sorted(names[TRAIN:])}
    for part, ids in parts.items():
        text = "\n".join(ids) + "\n"
        path = OUT / f"{part}.txt"
        if args.check:
            if not path.is_file() or path.read_text() != text:
                print(f"{path} differs from the regenerated split", file=sys.stderr)
                return 1
        else:
            path.write_text(text)
    sizes = {k: len(v) for k, v in parts.items()}
    print("santoro split:", sizes, "checked" if args.check else "written")
    return 0


if __name__ == "__main__":
    sys.exit(main())
