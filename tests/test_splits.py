"""Class splits: three disjoint sides, validation classes for every split a run decides on, and
training runs that never read the test classes."""

from __future__ import annotations

import json
import random
import runpy
from pathlib import Path

import pytest
import torch
from test_cli import TINY

from fewshot_mann.cli import main
from fewshot_mann.data import ClassSplit, SplitError, custom_split
from fewshot_mann.data.splits import base_name, omniglot_split, shipped_split

REPO = Path(__file__).resolve().parents[1]


def test_santoro_keeps_the_papers_test_classes_and_sets_validation_apart():
    split, paper = shipped_split("santoro"), shipped_split("santoro-trainval")
    assert (len(split.train), len(split.val), len(split.test)) == (1100, 100, 423)
    assert (len(paper.train), len(paper.val), len(paper.test)) == (1200, 0, 423)
    assert split.test == paper.test and sorted(split.train + split.val) == paper.train


def test_the_shipped_santoro_files_are_what_the_script_draws(data_root, capsys):
    script = runpy.run_path(str(REPO / "scripts" / "make_santoro_split.py"))
    assert script["main"](["--data-root", str(data_root), "--check"]) == 0, capsys.readouterr()


def test_lake_validates_on_whole_background_alphabets(omniglot):
    split, whole = omniglot_split("lake", omniglot), omniglot_split("lake-trainval", omniglot)
    alphabets = {side: {c.split("/")[0] for c in ids}
                 for side, ids in (("train", split.train), ("val", split.val))}
    assert len(alphabets["val"]) == 3 and not alphabets["val"] & alphabets["train"]
    assert sorted(split.train + split.val) == sorted(whole.train) and not whole.val
    assert split.test == whole.test


def test_ratio_sets_validation_apart_from_training_and_keeps_the_test_classes():
    names = [f"c{i:02d}" for i in range(40)]
    split = custom_split("ratio:0.8", names, seed=0, n_way=3)
    assert (len(split.train), len(split.val), len(split.test)) == (28, 4, 8)
    shuffled = sorted(names)
    random.Random(0).shuffle(shuffled)
    assert split.test == shuffled[32:]  # the plain 80/20 cut's test classes
    explicit = custom_split("ratio:0.8,0", names, seed=0, n_way=3)
    assert not explicit.val and explicit.test == split.test
    # too few classes to spare an episode's worth: no validation classes
    assert not custom_split("ratio:0.8", names[:10], seed=0, n_way=5).val


def test_the_default_split_of_custom_data_leaves_an_episode_of_test_classes():
    names = [f"c{i}" for i in range(10)]
    split = custom_split("auto", names, seed=0, n_way=3)
    assert (len(split.train), len(split.val), len(split.test)) == (4, 3, 3)
    assert (len(custom_split("auto", names, 0, n_way=5).test),
            len(custom_split("auto", names, 0, n_way=5).val)) == (5, 0)
    with pytest.raises(SplitError, match="lower --n-way"):
        custom_split("auto", names[:5], seed=0, n_way=3)


def test_a_folder_of_ten_classes_trains_three_way_without_a_split(tmp_path, image_tree, capsys):
    tree = tmp_path / "digits"
    tree.mkdir()
    for folder in sorted(image_tree.iterdir())[:10]:
        (tree / folder.name).symlink_to(folder)
    run = tmp_path / "run"
    assert main(["train", "--dataset", f"folder:{tree}", "--n-way", "3", "--cache-dir",
                 str(tmp_path / "cache"), *TINY, "--steps", "2", "--out", str(run)]) == 0
    split = ClassSplit.load(run / "split.json")
    assert (len(split.train), len(split.val), len(split.test)) == (4, 3, 3)
    assert "split: auto (seed 0), chosen as no --split was given: 4 training, 3 validation, " \
           "3 test classes" in capsys.readouterr().out


@pytest.fixture
def unreadable_test_classes(tmp_path, image_tree):
    """A dataset whose test classes are files of random bytes, and a lists: split naming them."""
    tree, lists = tmp_path / "tree", tmp_path / "lists"
    names = sorted(p.name for p in image_tree.iterdir())
    train, val, test = names[:8], names[8:12], names[12:]
    tree.mkdir()
    for name in train + val:
        (tree / name).symlink_to(image_tree / name)
    for name in test:
        (tree / name).mkdir()
        for i in range(12):
            (tree / name / f"{i:02d}.png").write_bytes(random.Random(i).randbytes(300))
    lists.mkdir()
    for side, ids in (("train", train), ("val", val), ("test", test)):
        (lists / f"{side}.txt").write_text("\n".join(ids) + "\n")
    return tree, lists, test


def test_training_never_reads_the_test_classes(tmp_path, unreadable_test_classes, capsys):
    """The test classes are unreadable: with --bad-files error, opening any of them would stop
    the run. It trains, evaluates on its validation classes, and decodes none of them."""
    tree, lists, test = unreadable_test_classes
    run, cache = tmp_path / "run", tmp_path / "cache"
    assert main(["train", "--dataset", f"folder:{tree}", "--split", f"lists:{lists}",
                 "--bad-files", "error", "--n-way", "3", "--cache-dir", str(cache), *TINY,
                 "--steps", "4", "--eval-every", "2", "--out", str(run)]) == 0
    records = [json.loads(line) for line in (run / "train_log.jsonl").read_text().splitlines()]
    evaluated = [r for r in records if "heldout_instance_accuracy" in r]
    assert [r["step"] for r in evaluated] == [2, 4]
    (cached,) = cache.glob("*.pt")
    names = torch.load(cached, weights_only=True)["class_names"]
    assert len(names) == 12 and not set(names) & set(test)
    assert "could not be read" not in capsys.readouterr().err
    # the resumed run reads them no more than the first
    assert main(["train", "--resume", "--steps", "6", "--out", str(run), "--quiet"]) == 0
    assert len(list(cache.glob("*.pt"))) == 1


@pytest.fixture(scope="module")
def trainval_run(tmp_path_factory, data_root, cache_dir):
    run = tmp_path_factory.mktemp("trainval") / "run"
    assert main(["train", "--split", "santoro-trainval", "--data-root", str(data_root),
                 "--cache-dir", str(cache_dir),
                 *TINY, "--steps", "4", "--eval-every", "2", "--out", str(run), "--quiet"]) == 0
    return run


def test_a_split_without_validation_classes_makes_no_heldout_decision(trainval_run, capsys,
                                                                      tmp_path):
    records = [json.loads(line)
               for line in (trainval_run / "train_log.jsonl").read_text().splitlines()]
    assert records[0]["event"] == "no_validation"
    assert not any("heldout_instance_accuracy" in r for r in records)
    assert main(["evaluate", "--checkpoint", str(trainval_run / "model.pt"), "--episodes", "4",
                 "--out", str(tmp_path / "eval"), "--quiet"]) == 0
    metrics = json.loads((tmp_path / "eval" / "metrics.json").read_text())
    assert metrics["training_decisions"].startswith("nothing: the split has no validation")


@pytest.mark.parametrize("flags, refused", [
    (["--stop-accuracy", "0.5"], "--stop-accuracy"),
    (["--n-way", "4", "--curriculum", "2"], "--curriculum"),
])
def test_decisions_on_heldout_accuracy_need_validation_classes(tmp_path, data_root, cache_dir,
                                                               capsys, flags, refused):
    assert main(["train", "--split", "vinyals-trainval", "--data-root", str(data_root),
                 "--cache-dir", str(cache_dir), *TINY,
                 *flags, "--steps", "2", "--out", str(tmp_path / "run")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and refused in err[0] and "no validation classes" in err[0]


def test_every_split_has_three_disjoint_sides(omniglot):
    for name in ("santoro", "vinyals", "lake"):
        split = omniglot_split(name, omniglot)
        sides = [{base_name(c) for c in ids} for ids in (split.train, split.val, split.test)]
        assert all(sides) and not (sides[0] & sides[1] or sides[0] & sides[2]
                                   or sides[1] & sides[2])
    with pytest.raises(SplitError, match="in both train and val"):
        ClassSplit("x", ["a/b"], ["c/d"], ["a/b/rot090"])
