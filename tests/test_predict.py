"""Using a trained model on your own images: `predict` from support folders and query files
written to disk, cross-dataset `evaluate --classes`, the default split of custom data, `--explain`
and `inspect`, and every bad input of the README's predict table.

Models: a ProtoNet trained here on Omniglot's background alphabets (seconds); the committed
MANN of results/santoro-5way (trained 60 min; its test classes are held out); tiny MANN and LSTM
runs of a few steps where only the handling of input matters; and, marked slow, a MANN trained
here on the background alphabets."""

from __future__ import annotations

import csv
import itertools
import json
import os
import random
import shutil
from pathlib import Path

import matplotlib.text
import numpy as np
import pytest
import torch
from PIL import Image, ImageOps
from test_cli import TINY
from test_robustness import copy_tree

from fewshot_mann.checkpoint import (
    checkpoint_config,
    load_checkpoint,
    model_from_checkpoint,
    save_checkpoint,
)
from fewshot_mann.cli import main
from fewshot_mann.config import Config
from fewshot_mann.data import ClassSplit
from fewshot_mann.evaluation.heldout import evaluate_checkpoint
from fewshot_mann.inference.explain import draw_heatmaps, record_memory, short
from fewshot_mann.inference.predictor import PredictError, Predictor, Preprocessing
from fewshot_mann.methods.protonet import ProtoNet
from fewshot_mann.methods.tasks import (
    Setting,
    eval_episodes,
    score,
    split_support_query,
    task_sampler,
)
from fewshot_mann.training.run import make_sampler

REPO = Path(__file__).resolve().parents[1]
SANTORO = REPO / "results" / "santoro-5way" / "model.pt"  # MANN, 5-way, santoro split
PROTONET = REPO / "results" / "compare-runs" / "protonet-1shot" / "model.pt"  # 28x28, 60-way


@pytest.fixture
def cli(capsys):
    """Run the CLI in this process: (exit code, stdout, stderr)."""
    def run(*argv: object) -> tuple[int, str, str]:
        code = main([str(a) for a in argv])
        out = capsys.readouterr()
        return code, out.out, out.err
    return run


def assert_one_line_error(code: int, err: str, message: str) -> None:
    assert code == 2, err
    assert "Traceback" not in err and message in err, err
    assert len([line for line in err.splitlines() if ": error: " in line]) == 1, err


def character_files(data_root: Path, class_id: str) -> list[Path]:
    base = data_root / "omniglot-py"
    for group in ("images_background", "images_evaluation"):
        files = sorted((base / group / class_id).glob("*.png"))
        if files:
            return files
    raise FileNotFoundError(class_id)


def write_task(data_root: Path, out: Path, classes: list[str], shots: int, queries: int,
               rng: random.Random) -> dict[str, tuple[str, list[Path]]]:
    """Omniglot PNG files copied as a user would lay them out: out/support/<class>/ (shots
    files) and out/query/<class>/ (queries files, never the support ones). Returns per folder
    name the class id and the drawings used, support first."""
    used = {}
    for class_id in classes:
        name = class_id.replace("/", "_")
        files = rng.sample(character_files(data_root, class_id), shots + queries)
        for part, chosen in (("support", files[:shots]), ("query", files[shots:])):
            (out / part / name).mkdir(parents=True)
            for f in chosen:
                shutil.copy(f, out / part / name / f.name)
        used[name] = (class_id, files)
    return used


def training_images(imageset, data_root: Path, used: dict[str, tuple[str, list[Path]]]
                    ) -> dict[str, torch.Tensor]:
    """File name -> the training pipeline's tensor of that drawing, (C, H, W) uint8."""
    out = {}
    for class_id, files in used.values():
        every = character_files(data_root, class_id)
        for f in files:
            out[f.name] = imageset.class_images(class_id)[every.index(f)]
    return out


def read_rows(path: Path) -> list[dict[str, str]]:
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


def csv_accuracy(rows: list[dict[str, str]]) -> float:
    """Queries sit in query/<true class>/: right when the prediction names that folder."""
    return sum(Path(r["query"]).parent.name == r["predicted"] for r in rows) / len(rows)


# ---- images are prepared exactly as in training ------------------------------------------------
def test_a_png_from_the_dataset_reads_back_as_the_training_tensor(omniglot, data_root, tmp_path):
    """Omniglot's own files, a PIL image of one, and a 20x20 PNG of the decoded image saved the
    way the dataset looks (dark ink on white) all give the training pipeline's tensor."""
    prepare = Preprocessing((1, 20, 20), invert=True)
    class_id = "Tengwar/character03"
    expected = omniglot.class_images(class_id).float() / 255  # (20, 1, 20, 20), strokes = 1
    for i, png in enumerate(character_files(data_root, class_id)):
        image, dropped = prepare(png)
        assert torch.equal(image, expected[i]) and not dropped
    with Image.open(character_files(data_root, class_id)[0]) as im:
        assert torch.equal(prepare(im)[0], expected[0])
    small = tmp_path / "small.png"
    ImageOps.invert(Image.fromarray(omniglot.class_images(class_id)[5, 0].numpy())).save(small)
    assert torch.equal(prepare(small)[0], expected[5])
    assert torch.equal(prepare.from_tensor(omniglot.class_images(class_id)[5]), expected[5])


# ---- a model trained here on the background alphabets, files from the evaluation ones ----------
@pytest.fixture(scope="module")
def protonet_background(omniglot28, tmp_path_factory) -> Path:
    """ProtoNets trained for 150 steps (4 tasks of 5-way 1-shot, 5 queries a class) on the
    964 characters of Omniglot's background alphabets only; about 10 s on one core."""
    torch.manual_seed(0)
    background = [n for n, g in zip(omniglot28.class_names, omniglot28.groups, strict=True)
                  if g == "background"]
    sampler = task_sampler(omniglot28, background, 5, 1 + 5, seed=0)
    model = ProtoNet(image_size=28)
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)
    for _ in range(150):
        model.train()
        loss, _ = model.meta_loss(split_support_query(sampler.sample(4), 1))
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    path = tmp_path_factory.mktemp("protonet") / "model.pt"
    cfg = Config.from_dict({"model": {"kind": "protonet"}, "episodes": {"n_way": 5}})
    split = ClassSplit("background", background, evaluation_classes(omniglot28))
    save_checkpoint(path, config=cfg.to_dict(), split=split.to_dict(), image_shape=[1, 28, 28],
                    step=150, model=model.state_dict())
    return path


def evaluation_classes(omniglot) -> list[str]:
    return [n for n, g in zip(omniglot.class_names, omniglot.groups, strict=True)
            if g == "evaluation"]


@pytest.mark.train
def test_predict_from_png_files_with_a_model_trained_on_background_alphabets(
        protonet_background, omniglot28, data_root, tmp_path, cli):
    """20 tasks of 5 evaluation-alphabet characters x 1 support PNG, 2 query PNGs each, through
    `fewshot-mann predict`: far above chance (20 %), the very predictions the tensors of the
    training pipeline give, and the accuracy the package's own evaluation of ProtoNets
    (`methods.tasks.score`, 300 5-way 1-shot episodes of the same classes) reports."""
    rng = random.Random(0)
    classes = evaluation_classes(omniglot28)
    model = Predictor.from_checkpoint(protonet_background, device="cpu").model
    rows = []
    for task in range(20):
        root = tmp_path / f"task{task}"
        used = write_task(data_root, root, rng.sample(classes, 5), 1, 2, rng)
        code, _, err = cli("predict", "--checkpoint", protonet_background, "--support",
                           root / "support", "--query", root / "query", "--out",
                           root / "out.csv", "--device", "cpu", "--quiet")
        assert code == 0, err
        task_rows = read_rows(root / "out.csv")
        assert len(task_rows) == 10 and all(r["skipped"] == "" for r in task_rows)
        # the same task from the training pipeline's tensors: the same answers
        tensors = training_images(omniglot28, data_root, used)
        support = [tensors[files[0].name].flatten().float().unsqueeze(0) / 255
                   for _, (_, files) in sorted(used.items())]  # classes in folder order
        query = torch.stack([tensors[Path(r["query"]).name] for r in task_rows])
        probs = model.class_probabilities(support, query.flatten(1).float() / 255)
        assert [sorted(used)[i] for i in probs.argmax(-1).tolist()] == [
            r["predicted"] for r in task_rows]
        rows += task_rows
    accuracy = csv_accuracy(rows)
    reference = score(model, eval_episodes(omniglot28, classes, Setting(5, 1), 300), shots=1)
    assert accuracy > 0.6, accuracy
    assert abs(accuracy - reference.mean) < 0.1, (accuracy, reference)


# ---- the MANN: predict agrees with evaluate ---------------------------------------------------
def test_mann_predict_is_as_accurate_as_evaluate_says(data_root, cache_dir, tmp_path):
    """The committed 5-way MANN: 40 tasks of 5 of its held-out (test) characters x 1 support
    PNG, 3 query PNGs a class (600 queries), against `evaluate`'s 1-shot accuracy (the 2nd
    presentation) on 400 episodes of the same classes. Measured: about 93 % and 92 %."""
    _, split = checkpoint_config(load_checkpoint(SANTORO))
    result = evaluate_checkpoint(SANTORO, episodes=400, out_dir=tmp_path / "eval",
                                 device="cpu", progress=False,
                                 data_overrides={"data_root": str(data_root),
                                                 "cache_dir": str(cache_dir)})
    one_shot, ci = result.shot_accuracy["1"], result.shot_ci95["1"]
    predictor = Predictor.from_checkpoint(SANTORO, device="cpu")
    rng, right, total = random.Random(1), 0, 0
    for task in range(40):
        root = tmp_path / f"task{task}"
        write_task(data_root, root, rng.sample(split.test, 5), 1, 3, rng)
        prediction = predictor.predict(root / "support", root / "query", seed=task)
        right += sum(Path(q.query).parent.name == q.predicted for q in prediction.queries)
        total += len(prediction.queries)
    accuracy = right / total
    assert total == 600 and accuracy > 0.85, accuracy
    assert abs(accuracy - one_shot) < ci + 0.04, (accuracy, one_shot, ci)


def test_orders_average_and_files_equal_tensors(omniglot, data_root, tmp_path):
    """--orders: the mean of the orders' probabilities, their spread reported; the same
    support given as files or as training tensors gives the same probabilities."""
    _, split = checkpoint_config(load_checkpoint(SANTORO))
    root = tmp_path / "task"
    used = write_task(data_root, root, split.test[:5], 2, 2, random.Random(3))
    predictor = Predictor.from_checkpoint(SANTORO, device="cpu")
    files = predictor.predict(root / "support", root / "query", orders=6, seed=7)
    assert files.order_probabilities.shape == (6, 10, 5)
    assert torch.allclose(files.probabilities, files.order_probabilities.mean(0))
    assert torch.allclose(files.probabilities.sum(-1), torch.ones(10))
    assert all(q.probability_sd > 0 for q in files.queries)  # the MANN depends on the order
    index = training_images(omniglot, data_root, used)
    support = {name: [index[f.name] for f in sorted(fs[:2])]
               for name, (_, fs) in sorted(used.items())}
    query = [index[Path(q.query).name] for q in files.queries]
    tensors = predictor.predict(support, query, orders=6, seed=7)
    assert torch.allclose(tensors.order_probabilities, files.order_probabilities, atol=1e-6)
    one = predictor.predict(root / "support", root / "query", orders=1, seed=7)
    assert torch.allclose(one.order_probabilities[0], files.order_probabilities[0])
    assert all(q.probability_sd == 0 and q.agreement == 1 for q in one.queries)


# ---- show why ---------------------------------------------------------------------------------
def test_lrua_attribution_is_an_exact_account_of_the_memory():
    """The recorded writes (eq. 22) minus what later zeroing erased rebuild the model's final
    memory: the shares of --explain are mapped back through the real slots."""
    predictor = Predictor.from_checkpoint(SANTORO, device="cpu")
    g = torch.Generator().manual_seed(0)
    images = torch.rand(3, 30, 400, generator=g).round()
    labels = torch.nn.functional.one_hot(torch.randint(0, 5, (3, 30), generator=g), 5).float()
    with torch.no_grad(), record_memory(predictor.model) as record:
        predictor.model(images, labels)
    assert torch.allclose(record.rebuilt_memory(), record.final_memory, atol=1e-5)
    shares = record.step_shares()
    assert shares.shape == (3, 30) and torch.allclose(shares.sum(1), torch.ones(3))
    assert predictor.model.memory is not record  # the model's own memory is back


def test_explain_and_inspect(data_root, cache_dir, tmp_path, cli):
    _, split = checkpoint_config(load_checkpoint(SANTORO))
    root = tmp_path / "task"
    write_task(data_root, root, split.test[10:15], 1, 2, random.Random(5))
    code, _, err = cli("predict", "--checkpoint", SANTORO, "--support", root / "support",
                       "--query", root / "query", "--out", root / "out.json", "--explain",
                       root / "why", "--device", "cpu", "--quiet")
    assert code == 0, err
    predictions = json.loads((root / "out.json").read_text())["predictions"]
    pictures = sorted((root / "why").glob("*.png"))
    assert len(pictures) == 10 and all(p.stat().st_size > 2000 for p in pictures)
    for p in predictions:
        shares = [r["share"] for r in p["most_read"]]
        assert len(shares) == 5 and abs(sum(shares) - 1) < 1e-4 and shares == sorted(shares)[::-1]
    agree = sum(p["most_read"][0]["class"] == p["predicted"] for p in predictions)
    assert agree >= 8, predictions

    code, out, err = cli("inspect", "--checkpoint", SANTORO, "--out", tmp_path / "inspect",
                         "--tasks", "20", "--data-root", data_root, "--cache-dir", cache_dir,
                         "--device", "cpu")
    assert code == 0, err
    summary = json.loads((tmp_path / "inspect" / "inspect.json").read_text())
    assert summary["queries"] == 100 and summary["most_read_is_predicted"] > 0.8
    assert summary["accuracy"] > 0.8 and len(summary["episode"]["correct"]) == 50
    assert (tmp_path / "inspect" / "memory.png").stat().st_size > 20_000
    assert "the most-read support image is of the predicted class" in out
    assert "inspect: 100%" in err and "20/20" in err, err  # the tasks' progress bar


@pytest.fixture
def figures(monkeypatch) -> list:
    """The figures drawn, kept open (the drawing functions close each after saving)."""
    import matplotlib.pyplot as plt

    kept: list = []
    monkeypatch.setattr(plt, "close", kept.append)
    return kept


def test_explanation_strips_name_the_prediction_and_fit_the_model(data_root, tmp_path,
                                                                  figures):
    """The query's caption is the prediction (and the truth, green or red, when known);
    support images are blue (predicted class) or gray (another class), never red or green;
    the share's wording fits the model: a ProtoNet has no memory to read."""
    _, split = checkpoint_config(load_checkpoint(SANTORO))
    root = tmp_path / "task"
    write_task(data_root, root, split.test[20:25], 1, 1, random.Random(1))
    truths = {str(q): q.parent.name for q in (root / "query").glob("*/*.png")}
    for checkpoint, wording in ((SANTORO, "% of the read"), (PROTONET, "nearness")):
        figures.clear()
        result = Predictor.from_checkpoint(checkpoint, device="cpu").predict(
            root / "support", root / "query", explain=True)
        result.draw_explanations(tmp_path / checkpoint.parent.name, truths=truths)
        assert len(figures) == 5
        for figure, q in zip(figures, result.queries, strict=True):
            query_ax, *support_axes = figure.axes
            truth = truths[q.query]
            assert query_ax.get_title().startswith(
                f"predicted ({100 * q.probability:.0f} %):\n{short(q.predicted)}\n")
            assert f"true: {short(truth)}" in query_ax.get_title()
            assert query_ax.title.get_color() == ("green" if q.predicted == truth else "red")
            for ax, (_, c, _) in zip(support_axes, q.most_read, strict=True):
                assert wording in ax.get_title()
                assert ax.title.get_color() == ("tab:blue" if c == q.predicted else "dimgray")
            text = " ".join(t.get_text() for t in figure.findobj(matplotlib.text.Text))
            if checkpoint == PROTONET:
                assert "read" not in text and "memory" not in text, text


def test_memory_picture_step_labels_do_not_overlap(omniglot, tmp_path, figures):
    """memory.png of 50- and 100-step episodes: every axis's tick labels stand apart, and
    the class labels above still name at least every other step."""
    model, cfg, split = model_from_checkpoint(load_checkpoint(SANTORO))
    for presentations in (10, 20):
        episode = make_sampler(cfg, omniglot, split.test, side="test", device="cpu", seed=0,
                               presentations=presentations).sample(1)
        with torch.no_grad(), record_memory(model) as record:
            model(episode.images, episode.prev_labels)
        steps = [f"{chr(65 + c)}{p + 1}" for c, p in zip(episode.classes[0].tolist(),
                                                        episode.presentation[0].tolist(),
                                                        strict=True)]
        draw_heatmaps({k: v[0] for k, v in record.heatmaps().items()}, [True] * len(steps),
                      steps, tmp_path / "memory.png")
        figure = figures[-1]
        renderer = figure.canvas.get_renderer()
        axes = [*figure.axes, *(c for ax in figure.axes for c in ax.child_axes)]
        for ax in axes:
            boxes = sorted((t.get_window_extent(renderer) for t in ax.get_xticklabels()
                            if t.get_visible() and t.get_text()), key=lambda b: b.x0)
            assert all(a.x1 < b.x0 for a, b in itertools.pairwise(boxes)), \
                [t.get_text() for t in ax.get_xticklabels()]
        [classes] = [c for ax in figure.axes for c in ax.child_axes]
        named = [t.get_text() for t in classes.get_xticklabels() if t.get_text()]
        assert len(named) >= len(steps) // 2 and set(named) <= set(steps)


@pytest.mark.train
def test_protonet_explains_by_nearest_support_images(protonet_background, omniglot28,
                                                     data_root, tmp_path):
    root = tmp_path / "task"
    write_task(data_root, root, evaluation_classes(omniglot28)[:4], 2, 1, random.Random(0))
    result = Predictor.from_checkpoint(protonet_background, device="cpu").predict(
        root / "support", root / "query", explain=True)
    assert all(len(q.most_read) == 5 for q in result.queries)
    assert len(result.draw_explanations(root / "why")) == 4


# ---- cross-dataset evaluation --------------------------------------------------------------------
@pytest.fixture(scope="module")
def tiny_runs(image_tree, tmp_path_factory) -> dict[str, Path]:
    """MANN and LSTM runs of 2 steps on the shared custom tree (20x20, 5-way one-hot, 10
    presentations: episodes of 50 steps), and a five-hot 3-way MANN: input handling only."""
    root = tmp_path_factory.mktemp("tiny")
    runs = {}
    for name, extra in (("mann", []), ("lstm", ["--model", "lstm"]),
                        ("fivehot", ["--labels", "five-hot", "--n-way", "3"])):
        runs[name] = root / name
        assert main(["train", "--dataset", f"folder:{image_tree}", "--split", "ratio:0.5",
                     "--cache-dir", str(root / "cache"), *TINY, "--steps", "2", *extra,
                     "--out", str(runs[name])]) == 0
    return runs


def omniglot_folder(data_root: Path, out: Path, classes: list[str]) -> Path:
    """Omniglot characters as a plain custom dataset, out/<name>/<the 20 PNGs>."""
    for class_id in classes:
        shutil.copytree(character_files(data_root, class_id)[0].parent,
                        out / class_id.replace("/", "_"))
    return out


def test_evaluate_on_another_dataset(tiny_runs, data_root, tmp_path, cli):
    other = omniglot_folder(data_root, tmp_path / "other",
                            [f"Tengwar/character{i:02d}" for i in range(1, 7)])
    common = ["--dataset", f"folder:{other}", "--cache-dir", tmp_path / "cache", "--episodes",
              "20", "--quiet"]
    code, _, err = cli("evaluate", "--checkpoint", tiny_runs["mann"] / "model.pt", *common,
                       "--out", tmp_path / "no-classes")
    assert_one_line_error(code, err, "pass --classes all (or --classes FILE)")

    code, _, err = cli("evaluate", "--checkpoint", tiny_runs["mann"] / "model.pt", *common,
                       "--classes", "all", "--out", tmp_path / "all")
    assert code == 0, err
    metrics = json.loads((tmp_path / "all" / "metrics.json").read_text())
    assert metrics["split"] == "classes:all" and metrics["test_classes"] == 6
    assert metrics["dataset"] == f"folder:{other}" and len(metrics["instance_accuracy"]) == 11
    assert set(metrics["shot_accuracy"]) == {"1", "5", "10"}
    for name in ("instance_accuracy.csv", "instance_accuracy.png"):
        assert (tmp_path / "all" / name).stat().st_size > 100

    listed = tmp_path / "classes.txt"
    listed.write_text("# five of them\n" + "\n".join(sorted(os.listdir(other))[:5]) + "\n")
    code, _, err = cli("evaluate", "--checkpoint", tiny_runs["mann"] / "model.pt", *common,
                       "--classes", listed, "--out", tmp_path / "listed")
    assert code == 0, err
    assert json.loads((tmp_path / "listed" / "metrics.json").read_text())["test_classes"] == 5
    listed.write_text("Tengwar_character01\nnosuch\n")
    code, _, err = cli("evaluate", "--checkpoint", tiny_runs["mann"] / "model.pt", *common,
                       "--classes", listed, "--out", tmp_path / "bad")
    assert_one_line_error(code, err, "names 1 classes the data lacks, e.g. ['nosuch']")

    code, _, err = cli("evaluate", "--checkpoint", tiny_runs["mann"] / "model.pt",
                       "--cache-dir", tmp_path / "cache", "--classes", "all", "--episodes", "8",
                       "--quiet", "--out", tmp_path / "own")
    assert code == 0 and "of the 16 classes were training or validation classes" in err, err


def test_an_omniglot_model_transfers_to_a_folder_of_its_test_characters(data_root, tmp_path,
                                                                        cli):
    """The committed MANN on a folder of Omniglot PNGs (dark ink on white, as any scan): the
    images are turned light on dark as in its training (--invert auto), and its held-out
    accuracy holds; read as they are (--invert no) they are not recognised."""
    _, split = checkpoint_config(load_checkpoint(SANTORO))
    folder = omniglot_folder(data_root, tmp_path / "scans", split.test[:12])
    second = {}
    for invert in ("auto", "no"):
        code, _, err = cli("evaluate", "--checkpoint", SANTORO, "--dataset", f"folder:{folder}",
                           "--classes", "all", "--invert", invert, "--cache-dir",
                           tmp_path / "cache", "--episodes", "100", "--device", "cpu",
                           "--quiet", "--out", tmp_path / invert)
        assert code == 0, err
        second[invert] = json.loads((tmp_path / invert / "metrics.json").read_text())[
            "instance_accuracy"][1]
    assert second["auto"] > 0.8 and second["no"] < second["auto"] - 0.2, second


# ---- the default split of custom data ------------------------------------------------------------
def test_custom_data_gets_a_seeded_default_split(image_tree, tmp_path, cli):
    args = ["train", "--dataset", f"folder:{image_tree}", "--cache-dir", tmp_path / "cache",
            "--n-way", "3", *TINY, "--steps", "2"]
    code, out, err = cli(*args, "--out", tmp_path / "a")
    assert code == 0, err
    split = ClassSplit.load(tmp_path / "a" / "split.json")
    assert split.name == "auto (seed 0)"
    assert (len(split.train), len(split.val), len(split.test)) == (10, 3, 3)
    assert "split: auto (seed 0), chosen as no --split was given: 10 training, 3 validation" in out
    assert 'split = "auto"' in (tmp_path / "a" / "config.toml").read_text()
    code, out, err = cli(*args, "--split-seed", "4", "--out", tmp_path / "b")
    assert code == 0 and ClassSplit.load(tmp_path / "b" / "split.json").test != split.test
    code, out, err = cli(*args, "--split", "ratio:0.5", "--out", tmp_path / "c")
    assert code == 0 and "chosen as" not in out
    assert len(ClassSplit.load(tmp_path / "c" / "split.json").test) == 8
    code, out, err = cli("train", "--out", tmp_path / "a", "--resume", "--steps", "3",
                         "--quiet")
    assert code == 0, err


# ---- bad input ----------------------------------------------------------------------------------
def make_support(image_tree: Path, out: Path, classes: int = 5, images: int = 1) -> Path:
    """The first `classes` classes of the shared tree, `images` files each."""
    return copy_tree(image_tree, out, classes, images)


def _text_only(support: Path) -> None:
    (support / "broken").mkdir()
    (support / "broken" / "notes.txt").write_text("not an image")


@pytest.mark.parametrize("change, message", [
    (_text_only, "support class 'broken' has no readable image (1 files could not be read"),
    (lambda s: (s / "empty").mkdir(), "support class 'empty' has no readable image (it holds "
                                      "no files)"),
    (lambda s: shutil.rmtree(s), "does not exist"),
    (lambda s: [shutil.rmtree(p) for p in s.iterdir()], "holds no class sub-folders"),
])
def test_bad_support_is_one_clear_line(tiny_runs, image_tree, tmp_path, cli, change, message):
    support = make_support(image_tree, tmp_path / "support", classes=4)
    change(support)
    query = next(image_tree.glob("*/*.png"))
    code, _, err = cli("predict", "--checkpoint", tiny_runs["mann"] / "model.pt", "--support",
                       support, "--query", query, "--out", tmp_path / "out.csv")
    assert_one_line_error(code, err, message)
    assert not (tmp_path / "out.csv").exists()


def test_more_classes_than_the_label_code_expresses(tiny_runs, image_tree, tmp_path, cli):
    support = make_support(image_tree, tmp_path / "support", classes=6)
    query = next(image_tree.glob("*/*.png"))
    code, _, err = cli("predict", "--checkpoint", tiny_runs["mann"] / "model.pt", "--support",
                       support, "--query", query, "--out", tmp_path / "out.csv")
    assert_one_line_error(code, err, "the support set has 6 classes, but this model's one-hot "
                                     "labels express at most 5 (it was trained 5-way): use a "
                                     "model trained with --labels five-hot")
    code, _, err = cli("predict", "--checkpoint", tiny_runs["fivehot"] / "model.pt",
                       "--support", support, "--query", query, "--out", tmp_path / "out.csv")
    assert code == 0 and "the model was trained on 3-way episodes" in err, err
    assert len(read_rows(tmp_path / "out.csv")[0]) == 14  # 5 + 3 x 2 top-k + 3


@pytest.mark.parametrize("queries, message", [
    ([], "no query images"),
    (["notes.txt", "cut.png"], "no readable query image: all 2 could not be read"),
])
def test_no_usable_query_is_one_clear_line(tiny_runs, image_tree, tmp_path, cli, queries,
                                           message):
    support = make_support(image_tree, tmp_path / "support")
    folder = tmp_path / "queries"
    folder.mkdir()
    for name in queries:
        (folder / name).write_bytes(b"\x89PNG\r\n\x1a\n" if name.endswith("png") else b"text")
    code, _, err = cli("predict", "--checkpoint", tiny_runs["mann"] / "model.pt", "--support",
                       support, "--query", folder, "--out", tmp_path / "out.csv")
    assert_one_line_error(code, err, message)


def test_odd_queries_are_converted_or_skipped_and_nothing_is_lost(tiny_runs, image_tree,
                                                                   tmp_path, cli):
    support = make_support(image_tree, tmp_path / "support", images=2)
    (support / "blac00" / "bad.png").write_bytes(b"\x89PNG\r\n\x1a\n truncated")
    q = tmp_path / "q"
    q.mkdir()
    drawing = Image.open(next((image_tree / "taga01").glob("*.png"))).convert("L")
    red = Image.merge("RGB", (drawing, drawing.point(lambda v: v // 2), drawing.point(
        lambda v: v // 3)))
    red.resize((73, 41)).save(q / "colour.jpg")
    drawing.convert("RGBA").resize((300, 300)).save(q / "big_rgba.png")
    Image.fromarray(np.asarray(drawing, dtype=np.uint16) * 257).save(q / "sixteen.png")
    (q / "cut.png").write_bytes((q / "big_rgba.png").read_bytes()[:200])
    (q / "readme.txt").write_text("not an image")
    inputs = [q, tmp_path / "missing.png"]
    code, out, err = cli("predict", "--checkpoint", tiny_runs["mann"] / "model.pt",
                         "--support", support, "--query", *inputs, "--out",
                         tmp_path / "out.csv")
    assert code == 0 and "Traceback" not in err, err
    assert "warning: 3 queries could not be read as images; skipped" in err
    for name in ("cut.png", "readme.txt", "missing.png"):
        assert name in err
    assert "warning: 1 support files could not be read as images" in err
    assert "1 images are in colour; this model takes grayscale, so their colour is dropped" in err
    rows = read_rows(tmp_path / "out.csv")
    assert len(rows) == 6  # every query, skipped ones with their reason
    done = [r for r in rows if not r["skipped"]]
    assert sorted(Path(r["query"]).name for r in done) == ["big_rgba.png", "colour.jpg",
                                                          "sixteen.png"]
    assert all(r["predicted"] in os.listdir(support) for r in done)
    assert "3 queries classified among 5 classes, 3 skipped" in out


def test_a_support_set_longer_than_training_episodes_is_reported(tiny_runs, image_tree,
                                                                 tmp_path, cli):
    support = make_support(image_tree, tmp_path / "support", images=10)
    query = next(image_tree.glob("*/*.png"))
    args = ["predict", "--checkpoint", tiny_runs["mann"] / "model.pt", "--support", support,
            "--query", query, "--out", tmp_path / "out.csv"]
    code, _, err = cli(*args)
    assert code == 0 and "the support set has 50 images; the model was trained on episodes " \
                         "of 50 steps, and support + query is 51" in err, err
    code, _, err = cli(*args, "--max-shots", "4")
    assert code == 0 and "warning" not in err, err


def test_bad_options_and_models_without_an_explanation(tiny_runs, image_tree, tmp_path, cli):
    support = make_support(image_tree, tmp_path / "support")
    query = next(image_tree.glob("*/*.png"))
    base = ["--support", support, "--query", query, "--out", tmp_path / "out.csv"]
    code, _, err = cli("predict", "--checkpoint", tiny_runs["lstm"] / "model.pt", *base,
                       "--explain", tmp_path / "why")
    assert_one_line_error(code, err, "a lstm model has neither")
    code, _, err = cli("predict", "--checkpoint", tiny_runs["mann"] / "model.pt", *base,
                       "--orders", "0")
    assert_one_line_error(code, err, "must be positive")
    code, _, err = cli("predict", "--checkpoint", tmp_path / "nothing.pt", *base)
    assert_one_line_error(code, err, "checkpoint not found")
    code, _, err = cli("inspect", "--checkpoint", tiny_runs["lstm"] / "model.pt", "--out",
                       tmp_path / "inspect")
    assert_one_line_error(code, err, "holds a lstm model, which has none")
    predictor = Predictor.from_checkpoint(tiny_runs["mann"] / "model.pt", device="cpu")
    with pytest.raises(PredictError, match=r"shape \(1, 20, 20\)"):
        predictor.predict(support, torch.zeros(3, 28, 28))


def test_orders_on_a_protonet_is_ignored_with_one_warning(data_root, tmp_path, cli):
    """A ProtoNet's answer has no support order: --orders 5 gives the one-pass answer and says
    so once on stderr (it ended in a shape error)."""
    root = tmp_path / "task"
    write_task(data_root, root, ["Tifinagh/character01", "Tifinagh/character02",
                                 "Tifinagh/character03"], 1, 2, random.Random(0))
    args = ["predict", "--checkpoint", PROTONET, "--support", root / "support", "--query",
            root / "query", "--device", "cpu", "--quiet"]
    code, _, err = cli(*args, "--out", root / "one.json")
    assert code == 0 and err == "", err
    code, _, err = cli(*args, "--out", root / "five.json", "--orders", "5")
    assert code == 0, err
    assert err.count("warning:") == 1 and "orders = 5 ignored" in err, err
    one, five = (json.loads((root / f"{n}.json").read_text()) for n in ("one", "five"))
    assert five["orders"] == 1 and five["predictions"] == one["predictions"]


def test_maml_can_tell_at_most_its_ways_apart(omniglot28):
    from fewshot_mann.methods.maml import MAML

    predictor = Predictor(MAML(ways=5), "maml", Preprocessing((1, 28, 28), True), trained_way=5)
    images = {c: list(omniglot28.class_images(c)[:2]) for c in omniglot28.class_names[:6]}
    query = list(omniglot28.class_images(omniglot28.class_names[0])[2:4])
    with pytest.raises(PredictError, match="this MAML network has 5 outputs"):
        predictor.predict(images, query)
    three = predictor.predict(dict(list(images.items())[:3]), query)
    assert three.probabilities.shape == (2, 3)


# ---- slow: the MANN itself trained here ---------------------------------------------------------
@pytest.mark.slow
def test_mann_trained_on_background_alphabets_predicts_evaluation_characters(
        data_root, cache_dir, tmp_path, cli):
    """The paper's MANN trained here for 2,000 updates on the background alphabets (lake
    split; several minutes on 2 cores), then `predict` on PNG files of evaluation-alphabet
    characters, 30 tasks of 5 x 1 support and 2 queries a class, against `evaluate`'s 1-shot
    accuracy on the same split's test classes (the evaluation alphabets)."""
    run = tmp_path / "run"
    code, _, err = cli("train", "--data-root", data_root, "--cache-dir", cache_dir, "--split",
                       "lake", "--steps", "2000", "--lr-min", "3e-3", "--eval-every", "1000",
                       "--checkpoint-every", "1000", "--device", "cpu", "--quiet", "--out", run)
    assert code == 0, err
    result = evaluate_checkpoint(run / "model.pt", episodes=400, out_dir=tmp_path / "eval",
                                 device="cpu", progress=False,
                                 data_overrides={"data_root": str(data_root),
                                                 "cache_dir": str(cache_dir)})
    _, split = checkpoint_config(load_checkpoint(run / "model.pt"))
    rng, rows = random.Random(0), []
    for task in range(30):
        root = tmp_path / f"task{task}"
        write_task(data_root, root, rng.sample(split.test, 5), 1, 2, rng)
        code, _, err = cli("predict", "--checkpoint", run / "model.pt", "--support",
                           root / "support", "--query", root / "query", "--out",
                           root / "out.csv", "--seed", task, "--device", "cpu", "--quiet")
        assert code == 0, err
        rows += read_rows(root / "out.csv")
    accuracy = csv_accuracy(rows)
    assert accuracy > 0.4, accuracy
    assert abs(accuracy - result.shot_accuracy["1"]) < 0.1, (accuracy, result.shot_accuracy)
