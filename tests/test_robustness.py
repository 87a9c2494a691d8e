"""Bad input never crashes with a bare traceback: the CLI says what is wrong in one line and
exits 2, or skips the bad part and reports it. Real files on disk throughout: dataset trees
with missing, empty, short, corrupt and odd files; broken configs; damaged checkpoints; a loss
that becomes NaN. (The bad flag values already in test_cli.py are not repeated here.)"""

from __future__ import annotations

import json
import os
import shutil
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from test_cli import TINY

from fewshot_mann.checkpoint import load_checkpoint, save_checkpoint
from fewshot_mann.cli import main
from fewshot_mann.data import DatasetError, FolderDataset
from fewshot_mann.data import imageset as imageset_module
from fewshot_mann.training import trainer as train_module


@pytest.fixture
def cli(capsys) -> Callable[..., tuple[int, str]]:
    """Run the CLI in this process: (exit code, stderr)."""
    def run(*argv: str) -> tuple[int, str]:
        code = main([str(a) for a in argv])
        return code, capsys.readouterr().err
    return run


def copy_tree(image_tree: Path, out: Path, classes: int = 12, images: int = 20) -> Path:
    """The first `classes` classes of the shared tree, `images` files each."""
    for cls in sorted(os.listdir(image_tree))[:classes]:
        (out / cls).mkdir(parents=True)
        for f in sorted((image_tree / cls).iterdir())[:images]:
            shutil.copy(f, out / cls / f.name)
    return out


def train_args(tmp_path: Path, dataset: str, *extra: str) -> list[str]:
    return ["train", "--dataset", dataset, "--split", "ratio:0.5", "--cache-dir",
            str(tmp_path / "cache"), *TINY, "--steps", "1", *extra, "--out", str(tmp_path / "run")]


def assert_one_line_error(code: int, err: str, message: str) -> None:
    assert code == 2, err
    assert "Traceback" not in err and message in err, err
    errors = [line for line in err.splitlines() if ": error: " in line]
    assert len(errors) == 1 and errors[0].startswith("fewshot-mann "), err


# ---- datasets -------------------------------------------------------------------------------
def no_class_folders(root: Path) -> None:
    root.mkdir()
    Image.new("L", (8, 8)).save(root / "loose.png")


def only_empty_class_folders(root: Path) -> None:
    for cls in ("a", "b"):
        (root / cls).mkdir(parents=True)


def same_named_trees(root: Path) -> None:
    for parent in ("x", "y"):
        (root / parent / "data" / "a").mkdir(parents=True)


@pytest.mark.parametrize("make, dataset, extra, message", [
    (None, "folder:{tmp}/nowhere", [], "dataset folder does not exist"),
    (lambda root: root.mkdir(), "folder:{root}", [], "holds no class sub-folders"),
    (no_class_folders, "folder:{root}", [], "holds no class sub-folders"),
    (lambda root: root.write_text("x"), "folder:{root}", [], "is not a folder"),
    (only_empty_class_folders, "folder:{root}", [], "no image files under"),
    (same_named_trees, "folder:{root}/x/data,{root}/y/data", [], "must have different names"),
    (None, "folder:", [], "use folder:PATH[,PATH...] or csv:FILE"),
    (None, "pictures", [], "unknown dataset 'pictures'"),
    (None, "csv:{tmp}/missing.csv", [], "manifest not found"),
    (lambda root: root.write_text("file,class\na.png,x\n"), "csv:{root}", [],
     "must name the columns 'path' and 'label'"),
    (lambda root: root.write_text("path,label\nmissing.png,x\n"), "csv:{root}", [],
     "1 listed files do not exist"),
    (lambda root: root.write_text("path,label\na.png,x\n./a.png,y\n"), "csv:{root}", [],
     "a.png is listed twice (first on line 2)"),
    (lambda root: root.write_text("path,label\n"), "csv:{root}", [], "no rows"),
    (lambda root: root.write_text("path,label\na.png,\n"), "csv:{root}", [],
     "data:2: empty path or label"),
    (None, "tree", ["--channels", "2"], "data.channels must be one of [1, 3]"),
    (None, "omniglot", ["--channels", "3"], "Omniglot is grayscale"),
    (None, "tree", ["--split", "santoro"], "not usable with custom data"),
    (None, "tree", ["--split", "ratio:eighty"], "use ratio:0.8"),
    (None, "tree", ["--split", "ratio:0.99"], "needs training and test classes"),
    (None, "tree", ["--split", "ratio:0.8"], "5-way episodes need at least 5 test classes; the "
                                             "split has 2: lower --n-way"),
    (None, "tree", ["--split", "lists:{tmp}/nolists"], "train.txt not found"),
    (None, "tree", ["--device", "nonsense"], "unknown device 'nonsense'"),
])
def test_bad_dataset_is_one_clear_line(tmp_path, image_tree, cli, make, dataset, extra, message):
    root = tmp_path / "data"
    if make is not None:
        make(root)
    if dataset == "tree":
        dataset = f"folder:{copy_tree(image_tree, root, classes=12)}"
    fill = {"tmp": tmp_path, "root": root}
    code, err = cli(*train_args(tmp_path, dataset.format(**fill),
                                *(e.format(**fill) for e in extra)))
    assert_one_line_error(code, err, message)
    assert not (tmp_path / "run").exists()  # refused before anything was written


def test_debug_variable_shows_the_traceback(tmp_path, cli, monkeypatch):
    monkeypatch.setenv("FEWSHOT_MANN_DEBUG", "1")
    with pytest.raises(DatasetError, match="dataset folder does not exist"):
        cli(*train_args(tmp_path, f"folder:{tmp_path / 'nowhere'}"))


def test_an_empty_class_folder_is_left_out_and_reported(tmp_path, image_tree, cli):
    root = copy_tree(image_tree, tmp_path / "data", classes=12)
    (root / "zz_empty").mkdir()
    (root / "zz_hidden").mkdir()
    (root / "zz_hidden" / ".DS_Store").write_bytes(b"\0")
    (root / "README.txt").write_text("not a class")
    (root / ".git").mkdir()
    (root / ".git" / "HEAD").write_text("ref: refs/heads/main")
    code, err = cli(*train_args(tmp_path, f"folder:{root}"))
    assert code == 0, err
    assert f"warning: class folder {root / 'zz_empty'} holds no files; left out" in err
    assert f"class folder {root / 'zz_hidden'} holds no files" in err  # hidden files ignored
    assert f"1 files directly in {root} are in no class folder; ignored" in err
    assert ".git" not in err and len(err.splitlines()) == 3


@pytest.mark.parametrize("policy", ["error", "skip"])
def test_classes_with_too_few_images(tmp_path, image_tree, cli, policy):
    root = copy_tree(image_tree, tmp_path / "data", classes=12)
    classes = sorted(os.listdir(root))
    for cls in classes[:2]:
        for f in sorted((root / cls).iterdir())[6:]:
            f.unlink()
    lists = tmp_path / "lists"
    lists.mkdir()
    (lists / "train.txt").write_text("\n".join(classes[:7]))
    (lists / "test.txt").write_text("\n".join(classes[7:]))
    code, err = cli(*train_args(tmp_path, f"folder:{root}", "--split", f"lists:{lists}",
                                "--min-images", policy))
    message = ("2 of 7 train classes have fewer than 10 images (the presentations per class), "
               "e.g. ['blac00', 'blac01']")
    if policy == "error":
        assert_one_line_error(code, err, message)
        assert "pass --min-images skip to leave them out" in err
    else:
        assert code == 0, err
        assert f"warning: {message}; left out" in err


def write_bad_files(folder: Path) -> list[Path]:
    """A truncated PNG, a truncated JPEG, random bytes, an empty file and a text file."""
    noise = np.random.default_rng(0).integers(0, 256, (64, 64, 3), dtype=np.uint8)
    Image.fromarray(noise).save(folder / "whole.png")
    jpg = sorted(folder.glob("*.jpg"))[0]
    bad = [folder / "cut.png", folder / "cut.jpg", folder / "noise.gif", folder / "empty.bmp",
           folder / "notes.txt"]
    bad[0].write_bytes((folder / "whole.png").read_bytes()[:6000])
    bad[1].write_bytes(jpg.read_bytes()[: jpg.stat().st_size // 2])
    bad[2].write_bytes(np.random.default_rng(0).bytes(3000))
    bad[3].write_bytes(b"")
    bad[4].write_text("taken on a Tuesday")
    return bad


@pytest.mark.parametrize("policy", ["skip", "error"])
def test_unreadable_files_are_skipped_and_named_or_stop_the_run(tmp_path, image_tree, cli,
                                                               policy):
    root = copy_tree(image_tree, tmp_path / "data", classes=12)
    bad = write_bad_files(root / "blac03")
    (root / "zz_broken").mkdir()
    shutil.copy(bad[0], root / "zz_broken" / "only.png")
    # both damaged classes train: a training run opens the files of its own classes alone
    lists = tmp_path / "lists"
    lists.mkdir()
    names = sorted(p.name for p in root.iterdir())
    test = [n for n in names if n not in ("blac03", "zz_broken")][:5]
    (lists / "train.txt").write_text("\n".join(n for n in names if n not in test))
    (lists / "test.txt").write_text("\n".join(test))
    code, err = cli(*train_args(tmp_path, f"folder:{root}", "--bad-files", policy,
                                "--split", f"lists:{lists}"))
    assert "Traceback" not in err
    for path in [*bad, root / "zz_broken" / "only.png"]:
        assert str(path) in err
    assert "6 files could not be read as images (1 classes had no readable image" in err
    if policy == "skip":
        assert code == 0 and "warning: 6 files" in err
        with pytest.warns(UserWarning, match="6 files could not be read"):  # from the cache
            ds = FolderDataset.from_spec(f"folder:{root}", cache_dir=tmp_path / "cache")
        assert ds.imageset.num_classes == 12 and len(ds.skipped) == 6
    else:
        assert_one_line_error(code, err, "pass --bad-files skip to leave them out")


def test_images_of_any_mode_and_bit_depth_are_converted(tmp_path):
    """A gradient saved in 14 modes and formats decodes to the same picture, in 1 or 3
    channels; 16-bit and float images are scaled (Pillow alone would clip them to white),
    transparency lands on white."""
    ramp = np.tile(np.linspace(0, 255, 32), (32, 1)).astype(np.uint8)
    gray = Image.fromarray(ramp)
    root = tmp_path / "modes" / "ramp"
    root.mkdir(parents=True)
    for mode, fmt in (("L", "png"), ("RGB", "png"), ("P", "png"), ("CMYK", "jpg"),
                      ("LAB", "tiff"), ("LA", "png"), ("I", "tiff")):
        gray.convert(mode).save(root / f"{mode}.{fmt}")
    Image.fromarray(ramp.astype(np.uint16) * 257).save(root / "16bit.png")
    Image.fromarray(ramp.astype(np.float32) / 255).save(root / "float.tiff")
    rgba = np.zeros((32, 32, 4), np.uint8)  # fully transparent: white paper
    Image.fromarray(rgba).save(root / "clear.png")
    gray.save(root / "web.webp", lossless=True)
    gray.resize((16, 16)).save(root / "small.png")
    gray.resize((32, 96)).save(root / "stretched.bmp")
    gray.convert("RGB").save(root / "colour.jpg", quality=95)
    assert Image.open(root / "16bit.png").mode == "I;16"
    for channels in (1, 3):
        ds = FolderDataset.from_spec(f"folder:{root.parent}", image_size=32, channels=channels,
                                     cache_dir=tmp_path / "cache")
        images = ds.imageset.class_images("ramp").float()
        files = sorted(p.name for p in root.iterdir())
        assert images.shape == (14, channels, 32, 32) and not ds.skipped
        expected = torch.from_numpy(ramp).float()
        for name, image in zip(files, images, strict=True):
            target = torch.full_like(expected, 255) if name == "clear.png" else expected
            assert (image - target).abs().mean() < 6, name


# ---- configs -------------------------------------------------------------------------------
@pytest.mark.parametrize("toml, message", [
    ("[model]\ncontroller_sise = 32\n", "unknown key model.controller_sise"),
    ("[modle]\nkind = 'mann'\n", "unknown config section(s): ['modle']"),
    ("model = 3\n", "[model] must be a table"),
    ("[train]\nlr = 'fast'\n", "train.lr must be float, got 'fast'"),
    ("[episodes]\nn_way = 5.5\n", "episodes.n_way must be int, got 5.5"),
    ("[train]\nsteps = true\n", "train.steps must be int, got True"),
    ("[data]\nimage_size = -4\n", "data.image_size must be a positive integer, got -4"),
    ("[train]\nlr = nan\n", "train.lr must be a finite number, got nan"),
    ("[model]\nkey_strength_init = inf\n", "model.key_strength_init must be a finite number"),
    ("[model]\nmemory_slots = 1\n", "model.read_heads (4) cannot exceed model.memory_slots (1)"),
    ("[train]\nwarmup_steps = -1\n", "train.warmup_steps, train.grad_clip, train.threads"),
    ("[model]\ncosine_eps = 0.0\n", "model.cosine_eps must be > 0, got 0.0"),
    ("[train]\nskip_grad_spikes = 0.5\n", "train.skip_grad_spikes must be 0 (off) or > 1, got 0.5"),
    ("[train\nlr = 1\n", "not valid TOML"),
    (None, "config file not found"),
])
def test_bad_config_file_is_one_clear_line(tmp_path, cli, toml, message):
    config = tmp_path / "run.toml"
    if toml is not None:
        config.write_text(toml)
    code, err = cli("train", "--config", config, "--out", tmp_path / "run")
    assert_one_line_error(code, err, message)
    assert not (tmp_path / "run").exists()


# ---- checkpoints ----------------------------------------------------------------------------
@pytest.fixture(scope="module")
def trained(image_tree, tmp_path_factory) -> Path:
    """A finished 4-step run on the shared tree (copy before changing)."""
    run = tmp_path_factory.mktemp("trained") / "run"
    assert main(["train", "--dataset", f"folder:{image_tree}", "--split", "ratio:0.5",
                 "--cache-dir", str(run.parent / "cache"), *TINY, "--steps", "4",
                 "--out", str(run)]) == 0
    return run


def truncate(path: Path) -> None:
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])


def flip_a_bit(path: Path) -> None:
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0x10  # inside a weight tensor: torch.load alone would not notice
    path.write_bytes(bytes(data))


def other_configuration(path: Path) -> None:
    payload = torch.load(path, weights_only=True)
    payload["config"]["model"]["controller_size"] = 48
    torch.save(payload, path)


@pytest.mark.parametrize("damage, message", [
    (truncate, "is not a readable checkpoint (truncated or corrupt?)"),
    (flip_a_bit, "is corrupt: record"),
    (lambda p: p.write_bytes(b""), "is not a readable checkpoint"),
    (lambda p: p.write_text("hello"), "is not a readable checkpoint"),
    (lambda p: torch.save({"weights": torch.zeros(2)}, p), "is not a fewshot-mann checkpoint"),
    (other_configuration, "holds weights of a different model configuration"),
    (Path.unlink, "checkpoint not found"),
])
@pytest.mark.parametrize("command", ["evaluate", "resume"])
def test_bad_checkpoint_is_one_clear_line(tmp_path, trained, cli, damage, message, command):
    run = tmp_path / "run"
    shutil.copytree(trained, run)
    damage(run / "checkpoint.pt")
    if command == "evaluate":
        code, err = cli("evaluate", "--checkpoint", run / "checkpoint.pt", "--episodes", "4",
                        "--out", tmp_path / "eval", "--quiet")
    else:
        code, err = cli("train", "--out", run, "--resume", "--steps", "6", "--quiet")
    assert_one_line_error(code, err, message)
    assert "size mismatch" not in err  # torch's multi-line report is summarised
    if message.startswith("holds weights"):
        assert "reshaped, e.g. controller." in err and "in the file" in err


def test_a_crash_while_writing_leaves_the_previous_file(tmp_path, trained, monkeypatch):
    target = tmp_path / "checkpoint.pt"
    shutil.copy(trained / "checkpoint.pt", target)
    before = target.read_bytes()

    def dies_halfway(obj: object, f) -> None:
        f.write(before[:1000])
        raise KeyboardInterrupt  # as good as a kill for the file system

    monkeypatch.setattr(imageset_module.torch, "save", dies_halfway)
    with pytest.raises(KeyboardInterrupt):
        save_checkpoint(target, step=99)
    assert target.read_bytes() == before and os.listdir(tmp_path) == ["checkpoint.pt"]


def test_resume_refuses_flags_that_contradict_the_run(tmp_path, trained, cli):
    run = tmp_path / "run"
    shutil.copytree(trained, run)
    code, err = cli("train", "--out", run, "--resume", "--steps", "6", "--n-way", "3",
                    "--memory-slots", "16", "--quiet")
    assert_one_line_error(code, err, "drop or fix episodes.n_way = 3 (the run has 5)")
    assert "memory_slots" not in err  # a flag that agrees with the run is fine
    code, err = cli("train", "--out", run, "--resume", "--steps", "6", "--lr", "0.001",
                    "--quiet")
    assert code == 0, err  # the schedule may change
    assert load_checkpoint(run / "checkpoint.pt")["step"] == 6


def test_evaluate_on_data_without_the_split_classes(tmp_path, trained, image_tree, cli):
    other = copy_tree(image_tree, tmp_path / "other", classes=6)
    code, err = cli("evaluate", "--checkpoint", trained / "model.pt", "--dataset",
                    f"folder:{other}", "--cache-dir", tmp_path / "cache", "--episodes", "4",
                    "--out", tmp_path / "eval", "--quiet")
    assert_one_line_error(code, err, "classes of the split are not in the data")


# ---- a loss or gradient that becomes NaN/inf ------------------------------------------------
def nan_loss(loss: torch.Tensor) -> torch.Tensor:
    return loss * float("nan")


def inf_loss(loss: torch.Tensor) -> torch.Tensor:
    return loss * float("inf")


def inf_gradient(loss: torch.Tensor) -> torch.Tensor:
    return loss + torch.sqrt(loss - loss.detach())  # the same value, an infinite gradient


@pytest.mark.parametrize("poison, bad_step, message", [
    (nan_loss, 7, "the loss became nan at step 7 (caught before that update) (weights: "
                  "diverged-step6.pt); training stopped. {ckpt} keeps step 6, the last good "
                  "checkpoint: --resume from it"),
    (inf_gradient, 7, "the gradient norm became"),
    (inf_loss, 1, "the loss became inf at step 1 (caught before that update) (weights: "
                  "diverged-step0.pt); training stopped. no checkpoint had been written yet: "
                  "start again with a lower --lr"),
])
def test_divergence_stops_and_keeps_the_last_good_checkpoint(tmp_path, image_tree, cli,
                                                             monkeypatch, poison, bad_step,
                                                             message):
    real, calls = train_module.episode_loss, []

    def loss_going_bad(logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        calls.append(1)
        loss = real(logits, targets)
        return poison(loss) if len(calls) == bad_step else loss

    monkeypatch.setattr(train_module, "episode_loss", loss_going_bad)
    run = tmp_path / "run"
    args = ["train", "--dataset", f"folder:{image_tree}", "--split", "ratio:0.5", "--cache-dir",
            tmp_path / "cache", *TINY, "--grad-clip", "0", "--steps", "10",
            "--on-divergence", "stop", "--out", run]
    code, err = cli(*args)
    assert_one_line_error(code, err, message.format(ckpt=run / "checkpoint.pt"))
    assert not (run / "model.pt").exists()
    if bad_step == 1:
        assert not (run / "checkpoint.pt").exists()
        return
    kept = load_checkpoint(run / "checkpoint.pt")
    assert kept["step"] == 6 and all(torch.isfinite(t).all() for t in kept["model"].values())

    monkeypatch.setattr(train_module, "episode_loss", real)
    code, err = cli(*args, "--resume")  # the advice works
    assert code == 0, err
    assert load_checkpoint(run / "model.pt")["step"] == 10
    # and the log still says that the run stopped once, and why
    records = [json.loads(line) for line in (run / "train_log.jsonl").read_text().splitlines()]
    stops = [r for r in records if r.get("event") == "stop"]
    assert len(stops) == 1 and stops[0]["reason"].startswith(message.split(" (")[0])
    assert records[-1]["step"] == 10
