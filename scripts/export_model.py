"""model.pt from a run's checkpoint.pt: config, split and weights, without the optimiser and RNG
state (a run paused by --time-limit writes checkpoint.pt only; `train` writes model.pt at its
last step). The training log travels inside as `history`.

    python scripts/export_model.py RUN_DIR/checkpoint.pt RUN_DIR/model.pt
"""

from __future__ import annotations

import argparse
from pathlib import Path

from fewshot_mann.checkpoint import load_checkpoint, save_checkpoint

KEPT = ("config", "split", "image_shape", "step", "model", "machine", "torch", "history",
        "curriculum_stage", "lr_scale", "rollbacks")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("checkpoint", type=Path)
    parser.add_argument("out", type=Path)
    args = parser.parse_args()
    payload = load_checkpoint(args.checkpoint)
    save_checkpoint(args.out, **{key: payload[key] for key in KEPT if key in payload})
    print(f"{args.out}: step {payload['step']}")


if __name__ == "__main__":
    main()
