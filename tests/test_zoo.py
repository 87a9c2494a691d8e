"""The model zoo: named pretrained models, their manifest against the committed records and
files, sha256-checked resolution, `fewshot-mann models`, zoo names wherever a checkpoint is
taken, predict choosing a model, and calibrated probabilities."""

from __future__ import annotations

import csv
import json
import shutil
from pathlib import Path

import pytest
import torch
from conftest import REPO, write_image_tree

from fewshot_mann import zoo
from fewshot_mann.cli import main
from fewshot_mann.errors import CheckpointError
from fewshot_mann.inference.calibration import expected_calibration_error, fit_temperature, temper
from fewshot_mann.inference.predictor import Predictor


@pytest.fixture(autouse=True)
def no_user_zoo(monkeypatch, tmp_path):
    """No $FEWSHOT_MANN_ZOO and an empty user cache unless a test sets them."""
    monkeypatch.delenv(zoo.ENV, raising=False)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "no-cache"))


@pytest.fixture(scope="module")
def strangers(data_root, tmp_path_factory) -> Path:
    """Someone else's images: the first character of each of the 20 evaluation alphabets,
    re-encoded (mixed formats and sizes, plain names)."""
    root = tmp_path_factory.mktemp("mine") / "symbols"
    for alphabet in sorted((data_root / "omniglot-py" / "images_evaluation").iterdir()):
        write_image_tree(data_root, root, alphabet.name, 1, background=False)
    assert len(list(root.iterdir())) == 20
    return root


def support_and_queries(tree: Path, out: Path, classes: int, shots: int,
                        queries: int = 2) -> tuple[Path, Path]:
    """out/support/<class>/ with the first `shots` images of `classes` classes, and
    out/query/ with `queries` later images of each, named <class>_<image>; the BMP files, light
    strokes on dark unlike the rest (they would need --invert no), left out."""
    support, query = out / "support", out / "query"
    for folder in sorted(tree.iterdir())[:classes]:
        images = [p for p in sorted(folder.iterdir()) if p.suffix != ".bmp"]
        (support / folder.name).mkdir(parents=True)
        query.mkdir(exist_ok=True)
        for image in images[:shots]:
            shutil.copy(image, support / folder.name / image.name)
        for image in images[shots:shots + queries]:
            shutil.copy(image, query / f"{folder.name}_{image.name}")
    return support, query


def predictions(csv_path: Path) -> list[dict[str, str]]:
    return list(csv.DictReader(csv_path.read_text().splitlines()))


def accuracy_of(csv_path: Path) -> float:
    rows = predictions(csv_path)
    assert rows and all(r["predicted"] for r in rows)
    return sum(Path(r["query"]).name.startswith(r["predicted"] + "_") for r in rows) / len(rows)


# ---- the manifest --------------------------------------------------------------------------
def test_models_lists_every_model_with_its_numbers(capsys):
    assert main(["models"]) == 0
    text = capsys.readouterr().out
    assert len(zoo.models()) >= 4
    for m in zoo.models():
        assert f"{m.name}: " in text and m.sha256 in text
    assert text.count("accuracy     ") >= 4 and text.count("ECE (15 bins)") == len(zoo.models())
    assert main(["models", "--json"]) == 0
    entries = json.loads(capsys.readouterr().out)
    assert [e["name"] for e in entries] == zoo.names()
    for e in entries:
        assert len(e["sha256"]) == 64 and e["size"] > 0 and e["found"]
        assert e["calibration"]["temperature"] > 0 and e["accuracy"][0]["ci95"] > 0
        assert {"ece_before", "ece_after", "fit_classes", "command", "within_alphabet"} <= set(
            e["calibration"])


def test_manifest_accuracies_are_the_committed_records():
    """Every accuracy in the manifest is copied from the record it names, not typed in."""
    for m in zoo.models():
        for a in m.accuracy:
            record = json.loads((REPO / a.record).read_text())
            if a.key == "mean, ci95":
                mean, ci95 = record["mean"], record["ci95"]
            elif a.key == "accuracy, ci95":  # an evaluate of N-way K-shot tasks
                mean, ci95 = record["accuracy"], record["ci95"]
            else:
                k = str(a.shots)
                assert a.key == f"shot_accuracy.{k}, shot_ci95.{k}"
                mean, ci95 = record["shot_accuracy"][k], record["shot_ci95"][k]
            assert (a.mean, a.ci95, a.episodes) == (mean, ci95, record["episodes"]), a.record
            assert record.get("n_way", a.n_way) == a.n_way


def test_every_model_resolves_by_name_to_its_checked_file():
    for m in zoo.models():
        path = zoo.resolve_checkpoint(m.name)
        assert path == REPO / m.path and path.stat().st_size == m.size
        assert zoo.sha256(path) == m.sha256
    assert zoo.resolve_checkpoint("runs/elsewhere/model.pt") == Path("runs/elsewhere/model.pt")


# ---- resolution ----------------------------------------------------------------------------
def test_a_copy_in_the_zoo_folder_is_used_and_a_corrupted_one_refused(tmp_path, monkeypatch,
                                                                       capsys):
    m = zoo.get("kv-mann-20way")
    folder = tmp_path / "zoo"
    folder.mkdir()
    shutil.copy(REPO / m.path, folder / m.file)
    monkeypatch.setenv(zoo.ENV, str(folder))
    assert zoo.resolve_checkpoint(m.name) == folder / m.file
    data = bytearray((folder / m.file).read_bytes())
    data[len(data) // 2] ^= 0xFF
    (folder / m.file).write_bytes(bytes(data))
    with pytest.raises(CheckpointError, match="sha256"):
        Predictor.from_checkpoint(m.name, device="cpu")
    code = main(["evaluate", "--checkpoint", m.name, "--episodes", "10", "--out",
                 str(tmp_path / "eval")])
    err = capsys.readouterr().err
    assert code == 2 and err.count("\n") == 1 and "sha256" in err and str(folder) in err
    assert not (tmp_path / "eval").exists()


def test_a_missing_file_says_where_to_put_it(tmp_path, monkeypatch, capsys):
    monkeypatch.setattr(zoo, "CHECKOUT", tmp_path / "no-checkout")  # an install without it
    code = main(["inspect", "--checkpoint", "lrua-5way", "--out", str(tmp_path / "x")])
    err = capsys.readouterr().err
    assert code == 2 and err.count("\n") == 1
    assert str(tmp_path / "no-cache" / "fewshot-mann" / "zoo" / "lrua-5way.pt") in err
    assert "results/santoro-5way/model.pt" in err


def test_an_unknown_name_is_a_missing_checkpoint(capsys, tmp_path):
    code = main(["evaluate", "--checkpoint", "lrua-6way", "--out", str(tmp_path / "x")])
    err = capsys.readouterr().err
    assert code == 2 and err.count("\n") == 1 and "checkpoint not found: lrua-6way" in err


# ---- choosing a model ----------------------------------------------------------------------
@pytest.mark.parametrize(("classes", "shots", "name"), [
    (5, 1, "protonet-cnn"),  # 98.3 % at 5-way 1-shot, above protonet-keys' 98.2 %
    (20, 1, "protonet-keys"),  # 94.8 % at 20-way 1-shot, above protonet-cnn's 94.4 %
    (20, 5, "kv-mann-20way"),  # the one model measured at 20-way 5-shot
    (15, 1, "kv-mann-15way"),  # the one model measured at 15 classes
    (40, 1, "protonet-keys"),  # of the two ProtoNets that take 40 classes, the better at 20
])
def test_choose_picks_the_model_measured_closest_and_best(classes, shots, name):
    chosen, why = zoo.choose(classes, shots)
    assert chosen.name == name and name in why and f"{classes} classes" in why


def test_choose_refuses_a_support_set_no_model_handles():
    with pytest.raises(CheckpointError, match="no zoo model handles 1 classes"):
        zoo.choose(1, 1)


# ---- predict -------------------------------------------------------------------------------
def test_predict_with_a_zoo_name_classifies_someone_elses_images(strangers, tmp_path, capsys):
    support, query = support_and_queries(strangers, tmp_path, 5, 1)
    out = tmp_path / "predictions.csv"
    code = main(["predict", "--checkpoint", "lrua-5way", "--support", str(support),
                 "--query", str(query), "--out", str(out), "--device", "cpu", "--quiet"])
    assert code == 0, capsys.readouterr().err
    assert len(predictions(out)) == 10
    assert accuracy_of(out) >= 0.6  # chance: 0.2


@pytest.mark.parametrize(("classes", "shots", "name"), [(5, 1, "protonet-cnn"),
                                                        (20, 5, "kv-mann-20way")])
def test_predict_without_a_checkpoint_picks_a_zoo_model(strangers, tmp_path, capsys, classes,
                                                        shots, name):
    support, query = support_and_queries(strangers, tmp_path, classes, shots, queries=1)
    out = tmp_path / "predictions.csv"
    code = main(["predict", "--support", str(support), "--query", str(query), "--out",
                 str(out), "--device", "cpu", "--quiet"])
    err = capsys.readouterr().err
    assert code == 0, err
    assert f"chose zoo model {name} for {classes} classes, {shots} shot" in err
    assert len(predictions(out)) == classes
    assert accuracy_of(out) >= 0.6  # chance: 1 / classes


# ---- calibration ---------------------------------------------------------------------------
def test_zoo_probabilities_are_tempered_by_the_manifests_temperature(strangers, tmp_path):
    m = zoo.get("kv-mann-20way")
    assert abs(m.temperature - 1) > 0.05
    support, query = support_and_queries(strangers, tmp_path, 20, 1)
    calibrated = Predictor.from_checkpoint(m.name, device="cpu")
    raw = Predictor.from_checkpoint(m.name, device="cpu", temperature=1.0)
    by_file = Predictor.from_checkpoint(REPO / m.path, device="cpu")  # the same bytes
    assert calibrated.temperature == by_file.temperature == m.temperature
    p = calibrated.predict(support, query, seed=3).probabilities
    q = raw.predict(support, query, seed=3).probabilities
    assert not torch.allclose(p, q, atol=1e-3)
    assert torch.allclose(p, torch.softmax(q.log() / m.temperature, -1), atol=1e-5)
    assert torch.equal(p.argmax(-1), q.argmax(-1))


def test_fit_temperature_finds_the_temperature_that_made_the_labels():
    g = torch.Generator().manual_seed(0)
    logits = 3 * torch.randn(20_000, 10, generator=g)
    labels = torch.multinomial(torch.softmax(logits / 2.5, -1), 1, generator=g)[:, 0]
    over_confident = torch.softmax(logits, -1)
    t = fit_temperature(over_confident, labels)
    assert abs(t - 2.5) < 0.1
    before = expected_calibration_error(over_confident, labels)
    after = expected_calibration_error(temper(over_confident, t), labels)
    assert before > 0.1 and after < 0.02
