"""The unknown threshold and AUROC of fewshot_mann.lifelong.open_set."""

from __future__ import annotations

import numpy as np
import pytest
from sklearn.metrics import roc_auc_score

from fewshot_mann.errors import ConfigError
from fewshot_mann.lifelong.open_set import OpenSetScore, auroc, threshold_for


def test_threshold_accepts_the_asked_share_of_unknown_queries():
    unknown = np.random.default_rng(0).normal(0.4, 0.1, 1000)
    for far in (0.01, 0.05, 0.2):
        accepted = (unknown >= threshold_for(unknown, far)).mean()
        assert far <= accepted <= far + 1e-3
    with pytest.raises(ConfigError, match="fraction"):
        threshold_for(unknown, 1.5)
    with pytest.raises(ConfigError, match="unknown queries"):
        threshold_for([], 0.05)


def test_auroc_is_sklearns_with_ties():
    rng = np.random.default_rng(1)
    known = rng.integers(0, 20, 300) / 20  # many ties
    unknown = rng.integers(0, 14, 200) / 20
    labels = np.r_[np.ones_like(known), np.zeros_like(unknown)]
    assert auroc(known, unknown) == pytest.approx(roc_auc_score(labels, np.r_[known, unknown]))
    assert auroc([0.9, 0.8], [0.1, 0.2]) == 1.0 and auroc([0.1], [0.9]) == 0.0


def test_open_set_score_counts_rejections_and_right_answers():
    score = OpenSetScore.measure(0.5, known_scores=[0.9, 0.6, 0.4, 0.7],
                                 known_correct=[True, False, True, True],
                                 unknown_scores=[0.2, 0.55, 0.3, 0.1])
    assert score.false_accept == 0.25 and score.known_rejected == 0.25
    assert score.known_accuracy == 0.5 and score.known_accuracy_closed == 0.75


def test_a_memory_takes_the_zoos_calibrated_threshold_unless_told(tmp_path, monkeypatch):
    import shutil

    from fewshot_mann import LifelongMemory, zoo

    manifest = tmp_path / "zoo.json"
    shutil.copy(zoo.MANIFEST, manifest)
    monkeypatch.setattr(zoo, "MANIFEST", manifest)
    zoo.models.cache_clear()
    try:
        zoo.set_open_set("protonet-cnn", {"threshold": 0.625, "far": 0.05})
        assert zoo.get("protonet-cnn").open_set["threshold"] == 0.625
        calibrated = LifelongMemory.create(tmp_path / "a", "protonet-cnn", progress=False)
        never = LifelongMemory.create(tmp_path / "b", "protonet-cnn", threshold=None,
                                      progress=False)
        assert calibrated.settings.threshold == 0.625 and never.settings.threshold is None
        assert calibrated.settings.views == 0  # the views the threshold was calibrated with
        with pytest.raises(ConfigError, match="threshold"):
            LifelongMemory.create(tmp_path / "c", "protonet-cnn", threshold="high")
        with pytest.warns(UserWarning, match="calibrated for keys of 0 views, not 4"):
            other = LifelongMemory.create(tmp_path / "d", "protonet-cnn", views=4,
                                          progress=False)
        assert other.settings.threshold is None and other.settings.views == 4
        zoo.set_open_set("protonet-cnn", {"threshold": 0.7, "far": 0.05, "views": 4})
        viewed = LifelongMemory.create(tmp_path / "e", "protonet-cnn", progress=False)
        assert (viewed.settings.threshold, viewed.settings.views) == (0.7, 4)
    finally:
        zoo.models.cache_clear()
