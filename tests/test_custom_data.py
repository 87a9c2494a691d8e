"""Custom datasets end to end: a class-per-folder tree of mixed image files on disk, trained on
and evaluated through the CLI; CSV manifests, combined folders, the cache, class splits."""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import pytest
import torch
from PIL import Image
from test_cli import TINY

from fewshot_mann.checkpoint import load_checkpoint
from fewshot_mann.cli import main
from fewshot_mann.config import Config, replace
from fewshot_mann.data import ClassSplit, FolderDataset, SplitError, custom_split, folder
from fewshot_mann.training.trainer import Trainer


def test_train_and_evaluate_on_a_folder_of_mixed_images(tmp_path, image_tree, capsys):
    run, cache = tmp_path / "run", tmp_path / "cache"
    assert main(["train", "--dataset", f"folder:{image_tree}", "--split", "ratio:0.7",
                 "--split-seed", "3", "--channels", "3", "--image-size", "16",
                 "--cache-dir", str(cache), *TINY, "--steps", "4", "--out", str(run)]) == 0
    split = ClassSplit.load(run / "split.json")
    assert (len(split.train), len(split.val), len(split.test)) == (6, 5, 5)
    assert split.to_dict() == custom_split("ratio:0.7", sorted(os.listdir(image_tree)), 3,
                                           n_way=5).to_dict()
    assert load_checkpoint(run / "checkpoint.pt")["image_shape"] == [3, 16, 16]
    assert 'dataset = "folder:' in (run / "config.toml").read_text()

    out = tmp_path / "eval"
    assert main(["evaluate", "--checkpoint", str(run / "model.pt"), "--episodes", "12",
                 "--batch-size", "6", "--out", str(out), "--quiet"]) == 0
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["split"] == "ratio:0.7 (seed 3)" and metrics["test_classes"] == 5
    assert metrics["episodes"] == 12 and metrics["n_way"] == 5 and metrics["trained_steps"] == 4
    assert len(metrics["instance_accuracy"]) == 11 and set(metrics["shot_accuracy"]) == {
        "1", "5", "10"}
    assert all(0.0 <= a <= 1.0 for a in metrics["instance_accuracy"])
    assert "warning" not in capsys.readouterr().err  # every file of every format was read


def test_decoding_shows_a_progress_bar_unless_quiet(tmp_path, image_tree, capsys):
    """Decoding files (tens of seconds for Omniglot) draws a bar on stderr, in a terminal or
    not; --quiet draws none."""
    run = tmp_path / "run"
    assert main(["train", "--dataset", f"folder:{image_tree}", "--split", "ratio:0.5",
                 "--cache-dir", str(tmp_path / "quiet"), *TINY, "--steps", "1", "--out",
                 str(run)]) == 0
    assert "decoding" not in capsys.readouterr().err  # TINY has --quiet
    assert main(["evaluate", "--checkpoint", str(run / "model.pt"), "--episodes", "4",
                 "--batch-size", "4", "--cache-dir", str(tmp_path / "shown"), "--out",
                 str(tmp_path / "eval")]) == 0
    err = capsys.readouterr().err
    assert f"decoding folder:{image_tree}" in err and "320/320" in err, err


def test_mixed_files_decode_alike(image_tree, tmp_path):
    """Each format, size and mode of the same drawing lands on the same grid: no inversion, no
    Omniglot size assumed. (Image 02 is stored inverted and must stay so.)"""
    ds = FolderDataset.from_spec(f"folder:{image_tree}", image_size=20, cache_dir=tmp_path)
    images = ds.imageset
    assert images.images.shape == (320, 1, 20, 20) and images.counts.tolist() == [20] * 16
    assert images.class_names == sorted(os.listdir(image_tree)) and not ds.skipped
    drawings = images.class_images("taga00").float()
    paper = drawings[[0, 1, 3, 4]].mean((1, 2, 3))  # png, jpg, gif, webp: dark ink on paper
    assert (paper > 180).all() and drawings[2].mean() < 75  # the bmp was written inverted
    png, jpg = drawings[0], drawings[1]
    assert (png - jpg).abs().mean() < (png - drawings[2]).abs().mean() / 3


def test_csv_manifest_and_combined_folders(tmp_path, image_tree):
    manifest = tmp_path / "labels.csv"
    rows = [f"{Path(image_tree.name) / cls / f.name},{'odd' if int(cls[-1]) % 2 else 'even'}"
            for cls in ("taga00", "taga01", "blac02") for f in sorted((image_tree / cls).iterdir())]
    manifest.write_text("\ufeffpath,label\n" + "\n".join(rows) + "\n", encoding="utf-8")
    shutil.copytree(image_tree, tmp_path / image_tree.name)
    ds = FolderDataset.from_spec(f"csv:{manifest}", cache_dir=tmp_path / "cache")
    assert ds.imageset.class_names == ["even", "odd"] and ds.imageset.counts.tolist() == [40, 20]

    second = tmp_path / "more"
    shutil.copytree(image_tree / "taga00", second / "extra")
    both = FolderDataset.from_spec(f"folder:{image_tree},{second}", cache_dir=tmp_path / "cache")
    assert both.imageset.num_classes == 17
    assert "more/extra" in both.imageset and "symbols/taga00" in both.imageset


@pytest.mark.parametrize("spec", ["csv", "combined"])
def test_cli_trains_on_a_manifest_and_on_combined_folders(tmp_path, image_tree, spec):
    if spec == "csv":
        manifest = tmp_path / "all.csv"
        manifest.write_text("path,label\n" + "".join(
            f"{f},{f.parent.name}\n" for f in sorted(image_tree.glob("*/*"))))
        dataset = f"csv:{manifest}"
    else:
        other = tmp_path / "other"
        for cls in ("taga00", "blac00"):
            shutil.copytree(image_tree / cls, other / f"copy_{cls}")
        dataset = f"folder:{image_tree},{other}"
    run = tmp_path / "run"
    assert main(["train", "--dataset", dataset, "--split", "ratio:0.6", "--cache-dir",
                 str(tmp_path / "cache"), *TINY, "--steps", "2", "--out", str(run)]) == 0
    split = ClassSplit.load(run / "split.json")
    assert len(split.train) + len(split.val) + len(split.test) == (16 if spec == "csv" else 18)


def test_cache_is_reused_until_a_file_changes(tmp_path, image_tree, monkeypatch):
    tree, cache = tmp_path / "tree", tmp_path / "cache"
    shutil.copytree(image_tree, tree)
    decoded: list[int] = []
    real = folder.decode_files
    monkeypatch.setattr(folder, "decode_files",
                        lambda files, *a, **k: decoded.append(len(files)) or real(files, *a, **k))

    def load() -> FolderDataset:
        return FolderDataset.from_spec(f"folder:{tree}", cache_dir=cache)

    first = load()
    assert load().imageset.images.equal(first.imageset.images) and decoded == [320]

    Image.new("L", (33, 33), 0).save(tree / "taga00" / "new.png")  # a file added
    assert len(load().imageset.class_images("taga00")) == 21 and decoded == [320, 321]

    black = load().imageset.class_images("taga01")[0]
    Image.new("L", (105, 105), 255).save(tree / "taga01" / "00.png")  # a file rewritten
    assert load().imageset.class_images("taga01")[0].float().mean() == 255 != black.float().mean()
    assert decoded == [320, 321, 321]

    (tree / "taga00" / "new.png").unlink()  # and removed
    current = load().imageset
    assert len(current.class_images("taga00")) == 20 and decoded == [320, 321, 321, 320]
    [cached] = cache.glob("*.pt")  # one cache file per dataset, rewritten in place

    cached.write_bytes(cached.read_bytes()[:5000])  # a damaged cache is rebuilt, not trusted
    assert load().imageset.images.equal(current.images)
    assert decoded == [320, 321, 321, 320, 320]


def test_ratio_split_is_fixed_by_its_seed():
    names = [f"class{i:03d}" for i in range(40)]
    a, b, c = (custom_split("ratio:0.75", names, seed) for seed in (3, 3, 4))
    assert a == b and a.train != c.train
    for split in (a, c):
        assert (len(split.train), len(split.val)) == (26, 4)  # 10 % of the classes validate
        assert sorted(split.train + split.val + split.test) == names
    with_val = custom_split("ratio:0.6,0.2", list(reversed(names)), 3)
    assert (len(with_val.train), len(with_val.val), len(with_val.test)) == (24, 8, 8)
    assert with_val == custom_split("ratio:0.6,0.2", names, 3)  # listing order does not matter


def test_lists_split_is_saved_with_the_run(tmp_path, image_tree):
    lists = tmp_path / "lists"
    lists.mkdir()
    classes = sorted(os.listdir(image_tree))
    (lists / "train.txt").write_text("\n".join(classes[:8]) + "\n")
    (lists / "val.txt").write_text("\n".join(classes[8:11]) + "\n\n")
    (lists / "test.txt").write_text("\n".join(classes[11:]))
    run = tmp_path / "run"
    assert main(["train", "--dataset", f"folder:{image_tree}", "--split", f"lists:{lists}",
                 "--n-way", "3", "--cache-dir", str(tmp_path / "cache"), *TINY, "--steps", "2",
                 "--out", str(run)]) == 0
    split = ClassSplit.load(run / "split.json")
    assert (split.train, split.val, split.test) == (classes[:8], classes[8:11], classes[11:])

    (lists / "test.txt").write_text("\n".join(classes[7:]))  # blac07 on both sides
    with pytest.raises(SplitError, match="1 classes are in both train and test"):
        custom_split(f"lists:{lists}", classes, 0)
    (lists / "test.txt").write_text("\n".join([*classes[11:], classes[11]]))
    with pytest.raises(SplitError, match="1 test classes are listed more than once"):
        custom_split(f"lists:{lists}", classes, 0)
    (lists / "test.txt").write_text("\n".join([*classes[11:], "nosuch"]))
    with pytest.raises(SplitError, match=r"test\.txt names 1 classes the data lacks"):
        custom_split(f"lists:{lists}", classes, 0)


def test_python_api_from_a_notebook(tmp_path, image_tree):
    ds = FolderDataset.from_spec(f"folder:{image_tree}", image_size=20,
                                 cache_dir=tmp_path / "cache")
    split = ds.split("ratio:0.6", seed=1, n_way=5)  # as the run below, 5-way by default
    assert set(split.train) | set(split.val) | set(split.test) == set(ds.imageset.class_names)
    cfg = replace(Config(), data={"dataset": f"folder:{image_tree}", "split": "ratio:0.6",
                                  "split_seed": 1, "cache_dir": str(tmp_path / "cache")},
                  model={"controller_size": 16, "memory_slots": 8, "memory_width": 4,
                         "read_heads": 1},
                  train={"steps": 2, "batch_size": 2, "eval_episodes": 4, "device": "cpu"})
    trainer = Trainer.build(cfg, tmp_path / "run", progress=False)
    trainer.run()
    assert trainer.split == split  # and the run holds its training and validation images alone
    assert trainer.imageset.images.equal(ds.imageset.subset(split.train + split.val).images)
    assert torch.isfinite(torch.tensor(trainer.history[-1]["loss"]))
