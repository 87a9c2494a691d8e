"""Fit each zoo model's temperature and write it, with size and sha256, into the manifest.

    python scripts/calibrate_zoo.py --data-root ../shared/data/omniglot --episodes 300

Per model, in its headline setting (the first accuracy of its manifest entry, N-way K-shot):
`--episodes` episodes of classes it is not tested on (its split's validation classes when it
did not train on them, else its training classes), half of classes drawn from all of them,
half of classes of one alphabet (harder: Lake et al.'s one-shot runs, and what a user's own
symbols of one style are like), through `Predictor.predict`, exactly as `fewshot-mann
predict` runs; the temperature T minimising the NLL of softmax(log p / T) on their queries
(`inference.calibration`); then the expected calibration error (15 bins) before and after
on `--episodes` episodes of its test classes (seed 12345, the seed of the recorded
accuracies), and on as many within-alphabet episodes of its test classes. The manifest entry
gets T, those numbers, the seconds it took and the machine; accuracies are left as they are
(they are copied from the committed records).
"""

from __future__ import annotations

import argparse
import json
import time

import torch

from fewshot_mann import zoo
from fewshot_mann.checkpoint import checkpoint_config, load_checkpoint
from fewshot_mann.config import default_cache_dir, default_data_root
from fewshot_mann.data import ImageSet, resolve
from fewshot_mann.data.omniglot import load_omniglot
from fewshot_mann.inference.calibration import (
    ECE_BINS,
    expected_calibration_error,
    fit_temperature,
    nll,
    temper,
)
from fewshot_mann.inference.predictor import Predictor
from fewshot_mann.methods.tasks import TEST_SEED, Setting, eval_episodes, split_support_query
from fewshot_mann.runtime import device_name

FIT_SEED = 0


def class_sides(name: str) -> tuple[list[str], str, list[str], str]:
    """(calibration classes, what they are, test classes, what they are) of a zoo model."""
    _, split = checkpoint_config(load_checkpoint(name), name)  # any method's checkpoint
    split_name, trained, held, test = split.name, split.train, split.val, split.test
    if held:
        fit = (held, f"the {len(held)} validation classes of split {split_name}, not trained on")
    else:
        fit = (trained, f"the {len(trained)} training classes of split {split_name} (it holds "
                        f"no validation classes the model did not train on)")
    return *fit, test, f"the {len(test)} test classes of split {split_name}"


def probabilities(predictor: Predictor, imageset: ImageSet, classes: list[str],
                  setting: Setting, episodes: int, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Uncalibrated class probabilities (Q, N) of every query of `episodes` episodes, and the
    right class of each (Q,): support = presentations 0..K-1 of each class, query = K."""
    shape = predictor.prepare.shape
    probs, labels = [], []
    done = 0
    for batch in eval_episodes(imageset, classes, setting, episodes, seed):
        tasks = split_support_query(batch, setting.shots)
        for support, query in zip(tasks.support, tasks.query, strict=True):  # (N, K, D), (N, 1, D)
            named = {f"class{n}": list(images.view(-1, *shape)) for n, images in enumerate(support)}
            result = predictor.predict(named, list(query.reshape(-1, *shape)), seed=seed + done)
            probs.append(result.probabilities)
            labels.append(torch.arange(setting.n_way).repeat_interleave(query.shape[1]))
            done += 1
    return torch.cat(probs), torch.cat(labels)


def alphabet_probabilities(predictor: Predictor, imageset: ImageSet, classes: list[str],
                           setting: Setting, episodes: int, seed: int
                           ) -> tuple[torch.Tensor, torch.Tensor]:
    """As `probabilities`, on within-alphabet episodes (Lake et al.'s one-shot runs): the N
    classes of an episode are characters of one alphabet (under one rotation), K support
    images and one query a class drawn at random."""
    index, rotation = resolve(imageset, classes)
    groups: dict[tuple[str, int], list[int]] = {}
    for i, (name, turns) in enumerate(zip(classes, rotation.tolist(), strict=True)):
        groups.setdefault((name.split("/")[0], turns), []).append(i)
    pools = [g for g in groups.values() if len(g) >= setting.n_way]
    if not pools:
        raise SystemExit(f"no alphabet has {setting.n_way} of these classes")
    g = torch.Generator().manual_seed(seed)
    probs, labels = [], []
    for episode in range(episodes):
        pool = pools[int(torch.randint(len(pools), (1,), generator=g))]
        chosen = [pool[j] for j in torch.randperm(len(pool), generator=g)[:setting.n_way]]
        support, query = {}, []
        for n, i in enumerate(chosen):
            start, count = int(imageset.offsets[index[i]]), int(imageset.counts[index[i]])
            pick = torch.randperm(count, generator=g)[:setting.shots + 1] + start
            images = torch.rot90(imageset.images[pick], int(rotation[i]), dims=(-2, -1))
            support[f"class{n}"] = list(images[:-1].float().div(255))
            query.append(images[-1].float().div(255))
        probs.append(predictor.predict(support, query, seed=seed + episode).probabilities)
        labels.append(torch.arange(setting.n_way))
    return torch.cat(probs), torch.cat(labels)


def calibrate(model: zoo.ZooModel, data_root: str, cache_dir: str, episodes: int) -> dict:
    started = time.perf_counter()
    predictor = Predictor.from_checkpoint(model.name, device="cpu", temperature=1.0)
    imageset = load_omniglot(data_root, cache_dir, predictor.prepare.shape[1])
    fit_classes, fit_what, test_classes, test_what = class_sides(model.name)
    headline = model.accuracy[0]
    setting = Setting(headline.n_way, headline.shots)
    half = episodes // 2
    fit = [probabilities(predictor, imageset, fit_classes, setting, episodes - half, FIT_SEED),
           alphabet_probabilities(predictor, imageset, fit_classes, setting, half, FIT_SEED)]
    fit_p, fit_y = (torch.cat(parts) for parts in zip(*fit, strict=True))
    t = fit_temperature(fit_p, fit_y)
    test_p, test_y = probabilities(predictor, imageset, test_classes, setting, episodes,
                                   TEST_SEED)
    calibrated = temper(test_p, t)
    within_p, within_y = alphabet_probabilities(predictor, imageset, test_classes, setting,
                                                episodes, TEST_SEED)
    return {
        "temperature": round(t, 4),
        "setting": f"{setting.n_way}-way {setting.shots}-shot",
        "fit_classes": fit_what, "fit_episodes": episodes, "fit_seed": FIT_SEED,
        "fit_episode_kinds": f"{episodes - half} of classes drawn from all, {half} of "
                             f"classes of one alphabet",
        "fit_nll_before": round(nll(fit_p, fit_y), 4),
        "fit_nll_after": round(nll(temper(fit_p, t), fit_y), 4),
        "test_classes": test_what, "test_episodes": episodes, "test_seed": TEST_SEED,
        "test_accuracy": round(float((test_p.argmax(-1) == test_y).double().mean()), 4),
        "ece_bins": ECE_BINS,
        "ece_before": round(expected_calibration_error(test_p, test_y), 4),
        "ece_after": round(expected_calibration_error(calibrated, test_y), 4),
        "nll_before": round(nll(test_p, test_y), 4),
        "nll_after": round(nll(calibrated, test_y), 4),
        "mean_confidence_before": round(float(test_p.max(-1).values.mean()), 4),
        "mean_confidence_after": round(float(calibrated.max(-1).values.mean()), 4),
        "within_alphabet": {
            "accuracy": round(float((within_p.argmax(-1) == within_y).double().mean()), 4),
            "ece_before": round(expected_calibration_error(within_p, within_y), 4),
            "ece_after": round(expected_calibration_error(temper(within_p, t), within_y), 4),
            "mean_confidence_before": round(float(within_p.max(-1).values.mean()), 4),
            "mean_confidence_after": round(float(temper(within_p, t).max(-1).values.mean()),
                                           4)},
        "seconds": round(time.perf_counter() - started, 1),
        "machine": device_name(torch.device("cpu")),
    }


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--data-root", default=default_data_root())
    p.add_argument("--cache-dir", default=default_cache_dir())
    p.add_argument("--episodes", type=int, default=300,
                   help="episodes to fit on, and as many to measure ECE on")
    p.add_argument("--models", default="", help="comma-separated names (default: all)")
    p.add_argument("--threads", type=int, default=1)
    args = p.parse_args()
    torch.set_num_threads(args.threads)
    manifest = zoo.read_manifest()
    wanted = set(args.models.split(",")) if args.models else set(zoo.names())
    command = (f"python scripts/calibrate_zoo.py --episodes {args.episodes} "
               f"--threads {args.threads} --models {{name}}")
    for entry in manifest["models"]:
        if entry["name"] not in wanted:
            continue
        file = zoo.CHECKOUT / entry["path"]
        entry["size"], entry["sha256"] = file.stat().st_size, zoo.sha256(file)
        zoo.write_manifest(manifest)  # the entry's sha256 as just measured
        entry["calibration"] = {**calibrate(zoo.get(entry["name"]), args.data_root,
                                            args.cache_dir, args.episodes),
                                "command": command.format(name=entry["name"])}
        zoo.write_manifest(manifest)
        print(entry["name"], json.dumps(entry["calibration"]), flush=True)


if __name__ == "__main__":
    main()
