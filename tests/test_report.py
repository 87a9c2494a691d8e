"""scripts/report.py end to end on tiny real checkpoints: measured where a run exists, "not run"
where it does not (or holds another configuration), published numbers labelled as such."""

from __future__ import annotations

import importlib.util
import json
import shutil
from pathlib import Path

import pytest
import torch

from experiments.compare import SANTORO_INSTANCES
from fewshot_mann.cli import main as fewshot_mann
from fewshot_mann.errors import CheckpointError

SCRIPT = Path(__file__).resolve().parents[1] / "scripts" / "report.py"
TINY = ["--controller-size", "32", "--memory-slots", "16", "--memory-width", "8",
        "--read-heads", "2", "--batch-size", "4", "--eval-every", "2", "--eval-episodes", "8",
        "--checkpoint-every", "2", "--device", "cpu", "--quiet", "--steps", "2"]
SETTING_KEYS = {"mean", "ci95", "episodes", "status", "checkpoint", "checkpoint_committed",
                "train_wall_s", "eval_wall_s", "machine", "torch", "train_command",
                "eval_command"}


def load_script(name: str = SCRIPT.name):
    """A script of scripts/ as a module (report.py by default)."""
    spec = importlib.util.spec_from_file_location(f"{Path(name).stem}_script",
                                                  SCRIPT.parent / name)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.mark.train
def test_report_from_tiny_checkpoints(tmp_path, data_root, cache_dir, omniglot, omniglot28):
    runs, out = tmp_path / "runs", tmp_path / "results"
    data = ["--data-root", str(data_root), "--cache-dir", str(cache_dir)]
    assert fewshot_mann(["train", *data, *TINY, "--split", "santoro-trainval", "--n-way", "5",
                         "--out", str(runs / "mann-santoro5")]) == 0
    assert fewshot_mann(["train", *data, *TINY, "--split", "vinyals", "--image-size", "28",
                         "--no-rotate", "--n-way", "5", "--out", str(runs / "mann-vinyals5")]) == 0
    shutil.copytree(runs / "mann-santoro5", runs / "lstm-santoro5")  # a MANN where an LSTM goes
    base = ["train", *data, "--device", "cpu", "--quiet", "--shots", "1", "--n-way", "5",
            "--eval-episodes", "10"]
    assert fewshot_mann([*base, "--method", "protonet", "--steps", "2",
                         "--out", str(runs / "protonet-1shot")]) == 0
    assert fewshot_mann([*base, "--method", "maml", "--steps", "1", "--batch-size", "2",
                         "--out", str(runs / "maml-5w1s")]) == 0

    args = ["--runs", str(runs), "--out", str(out), "--episodes", "20", *data, "--quiet"]
    assert load_script().main(args) == 0
    report = json.loads((out / "report.json").read_text())

    santoro = report["mann"]["santoro5-inst2"]
    assert set(santoro) >= SETTING_KEYS and santoro["status"] == "ok"
    assert santoro["episodes"] == 20 and 0 <= santoro["mean"] <= 1 and santoro["ci95"] > 0
    assert {f"santoro5-inst{i}" for i in SANTORO_INSTANCES} <= set(report["mann"])
    assert santoro["train_command"].startswith("fewshot-mann train")
    assert santoro["checkpoint_committed"] is False and santoro["trained_steps"] == 2
    assert santoro["train_machine"].endswith("threads)")  # the MANN checkpoint records it
    for method, setting in [("mann", "5w1s"), ("mann", "5w5s"), ("protonet", "5w1s"),
                            ("protonet", "20w1s"), ("maml", "5w1s"), ("sklearn-knn", "20w5s"),
                            ("sklearn-logreg", "5w1s")]:
        entry = report[method][setting]
        assert entry["status"] == "ok" and entry["episodes"] == 20, (method, setting)
        assert 0 <= entry["mean"] <= 1 and entry["eval_wall_s"] > 0 and entry["machine"]
    assert report["protonet"]["5w1s"]["train_command"].startswith(
        "fewshot-mann train --method protonet --n-way 5 --steps 2 --device cpu")
    assert report["maml"]["5w1s"]["train_command"].startswith(
        "fewshot-mann train --method maml --steps 1 --batch-size 2")
    assert report["sklearn-knn"]["5w1s"]["checkpoint"] is None
    # missing runs, and a checkpoint of another configuration, are "not run", never numbers
    for method, setting in [("mann", "20w1s"), ("mann-conv", "5w1s"), ("protonet", "5w5s"),
                            ("feedforward", "santoro15-inst10"), ("lstm", "santoro5-inst1")]:
        entry = report[method][setting]
        assert entry["status"] == "not run" and entry["mean"] is None, (method, setting)
    assert "model.kind = 'mann' (expected 'lstm')" in report["lstm"]["santoro5-inst1"]["reason"]
    assert report["published: MANN (Santoro et al. 2016)"]["santoro5-inst2"]["mean"] == 0.828
    assert report["published: ProtoNets (Snell et al. 2017)"]["20w5s"]["status"] == "published"

    md = (out / "REPORT.md").read_text()
    assert "not run" in md and "*published: MAML (Finn et al. 2017)*" in md
    assert "![accuracy by presentation, 5-way, one-hot labels](santoro5_curves.png)" in md
    assert (out / "santoro5_curves.png").stat().st_size > 1000
    assert not (out / "santoro15_curves.png").exists()  # nothing was run there
    record = out / "compare" / "protonet" / "5w1s.json"
    assert json.loads(record.read_text())["checkpoint_sha256"]

    # --reuse keeps the scores of unchanged checkpoints instead of evaluating again
    stamp = record.stat().st_mtime_ns
    assert load_script().main([*args, "--reuse"]) == 0
    assert record.stat().st_mtime_ns == stamp
    assert json.loads((out / "report.json").read_text())["protonet"]["5w1s"] == \
        report["protonet"]["5w1s"]


def test_nearest_neighbour_scores_both_kinds_of_checkpoint(capsys, tmp_path, data_root,
                                                           cache_dir):
    """scripts/shared_episodes.py --nearest-neighbour on the committed ProtoNets CNN and on the
    encoder and query projection of the committed encoder-queried key-value MANN: far above
    chance (20 %) on the shared 5-way 1-shot test episodes; a file of neither kind is refused."""
    module = load_script("shared_episodes.py")
    runs = SCRIPT.parents[1] / "results" / "compare-runs"
    for run in ("protonet-1shot", "mann-kv-frozen-vinyals5"):
        module.main([str(runs / run / "model.pt"), "--settings", "5w1s", "--episodes", "20",
                     "--nearest-neighbour", "--data-root", str(data_root),
                     "--cache-dir", str(cache_dir)])
        accuracy = float(capsys.readouterr().out.split("5w1s: ")[1].split()[0])
        assert accuracy > 85, (run, accuracy)
    torch.save({"format": "something else"}, tmp_path / "other.pt")
    with pytest.raises(CheckpointError, match="not a fewshot-mann checkpoint"):
        module.main([str(tmp_path / "other.pt"), "--nearest-neighbour"])


@pytest.mark.train
def test_shared_episodes_script_scores_like_the_report(capsys, data_root, cache_dir):
    """scripts/shared_episodes.py gives a checkpoint the score the report recorded for it on
    the same 1,000 shared 5-way 1-shot test episodes (both kinds of checkpoint)."""
    module = load_script("shared_episodes.py")
    results = SCRIPT.parents[1] / "results"
    for method, run in (("protonet", "protonet-1shot"),
                        ("mann-kv-frozen", "mann-kv-frozen-vinyals5")):
        module.main([str(results / "compare-runs" / run / "model.pt"), "--settings", "5w1s",
                     "--data-root", str(data_root), "--cache-dir", str(cache_dir)])
        printed = capsys.readouterr().out.split("5w1s: ")[1].split()[0]
        recorded = json.loads((results / "compare" / method / "5w1s.json").read_text())
        assert printed == f"{100 * recorded['mean']:.2f}", (run, printed)
    with pytest.raises(SystemExit):
        module.main([str(results / "compare-runs" / "protonet-1shot" / "model.pt"),
                     "--settings", "5w2s"])


def test_reuse_keeps_the_scores_of_runs_whose_checkpoint_is_not_committed(tmp_path):
    """The longer runs' checkpoints are not in the tree: with --reuse their stored scores stand
    (the report keeps its numbers); without it, or with a record missing, the run is "not
    run"."""
    from experiments.compare import PLAN, Context, evaluate_run

    run = next(r for r in PLAN if r.folder == "mann-kv-vinyals5")
    stored = Path("results")
    ctx = Context(runs=tmp_path / "runs", results=stored, reuse=True, progress=False)
    kept = evaluate_run(run, ctx)
    recorded = [json.loads(ctx.record_path(run.method, s).read_text()) for s in run.settings]
    assert [r.mean for r in kept] == [r["mean"] for r in recorded]
    assert all(r.status == "ok" for r in kept)
    fresh = Context(runs=tmp_path / "runs", results=stored, reuse=False, progress=False)
    assert {r.status for r in evaluate_run(run, fresh)} == {"not run"}
    partial = tmp_path / "results"
    shutil.copytree(stored / "compare" / run.method, partial / "compare" / run.method)
    ctx = Context(runs=tmp_path / "runs", results=partial, reuse=True, progress=False)
    assert len(evaluate_run(run, ctx)) == 2
    ctx.record_path(run.method, run.settings[0]).unlink()
    assert {r.status for r in evaluate_run(run, ctx)} == {"not run"}
