"""Plots of accuracy show chance, 1/N of an N-way task, as a dashed line with a legend entry."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from matplotlib.figure import Figure

from fewshot_mann.evaluation import plots
from fewshot_mann.evaluation.scoring import EvalResult, write_outputs

REPO = Path(__file__).resolve().parents[1]
SANTORO = REPO / "results" / "santoro-5way"  # a 5-way MANN's metrics and training log


@pytest.fixture
def drawn(monkeypatch) -> list[Figure]:
    """The figures the plot functions draw, kept open (they close each after saving)."""
    figures: list[Figure] = []
    monkeypatch.setattr(plots.plt, "close", figures.append)
    return figures


def chance_lines(figure: Figure) -> list[tuple[str, list[float]]]:
    """(legend label, y values) of each dashed line labelled as chance, over all panels."""
    return [(line.get_label(), [float(y) for y in line.get_ydata()])
            for ax in figure.axes for line in ax.get_lines()
            if line.get_linestyle() == "--" and line.get_label().startswith("chance")]


def legend_texts(figure: Figure) -> list[str]:
    return [t.get_text() for ax in figure.axes if ax.get_legend()
            for t in ax.get_legend().get_texts()]


def test_evaluations_accuracy_curve_has_a_chance_line(tmp_path, drawn):
    metrics = json.loads((SANTORO / "metrics.json").read_text())
    result = EvalResult(**{k: metrics[k] for k in EvalResult.__dataclass_fields__})
    write_outputs(result, tmp_path, {}, title="mann")
    [figure] = drawn
    assert chance_lines(figure) == [("chance (1/5)", [20.0, 20.0])]
    assert "chance (1/5)" in legend_texts(figure)


def test_learning_curves_have_a_chance_line(tmp_path, drawn):
    plots.plot_learning_curves({"run": ([1, 2, 3], [30.0, 60.0, 90.0])}, tmp_path / "c.png",
                               n_way=20)
    assert chance_lines(drawn[0]) == [("chance (1/20)", [5.0, 5.0])]
    assert "chance (1/20)" in legend_texts(drawn[0])


def test_training_plot_has_chance_in_its_accuracy_panel(tmp_path, drawn):
    records = [json.loads(line) for line in
               (SANTORO / "train_log.jsonl").read_text().splitlines()]
    plots.plot_training(records, tmp_path / "t.png", n_way=5)
    assert chance_lines(drawn[0]) == [("chance (1/5)", [20.0, 20.0])]
    assert "chance (1/5)" in legend_texts(drawn[0])


def test_a_curriculums_chance_follows_its_widths(tmp_path, data_root, cache_dir, drawn):
    from test_divergence import log_records, tiny_config

    from fewshot_mann.training.trainer import Trainer

    cfg = tiny_config(data_root, cache_dir, steps=6, curriculum="2", curriculum_accuracy=0.01)
    Trainer.build(cfg, tmp_path / "run", progress=False).run()
    plots.plot_training(log_records(tmp_path / "run"), tmp_path / "t.png")
    [(label, chance)] = chance_lines(drawn[0])
    assert label == "chance (1/N)" and chance[0] == 50.0, chance  # 2-way, then 3-way
    assert chance[-1] == pytest.approx(100 / 3), chance
