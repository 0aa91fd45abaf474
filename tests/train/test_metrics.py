"""Classification metrics against scikit-learn and hand-computed cases."""

from __future__ import annotations

import numpy as np
import pytest

from relpos.train.metrics import classification_report, cohen_kappa, confusion_matrix, format_report


def test_against_sklearn():
    metrics = pytest.importorskip("sklearn.metrics")
    rng = np.random.default_rng(0)
    y = rng.integers(0, 5, 2000)
    p = np.where(rng.random(2000) < 0.6, y, rng.integers(0, 5, 2000))
    rep = classification_report(y, p, ["W", "N1", "N2", "N3", "R"])
    assert rep["kappa"] == pytest.approx(metrics.cohen_kappa_score(y, p))
    assert rep["accuracy"] == pytest.approx(metrics.accuracy_score(y, p))
    assert rep["macro_f1"] == pytest.approx(metrics.f1_score(y, p, average="macro"))
    per = metrics.f1_score(y, p, average=None)
    assert [rep["per_class"][c]["f1"] for c in ["W", "N1", "N2", "N3", "R"]] == pytest.approx(per)
    assert np.array_equal(np.array(rep["confusion"]), metrics.confusion_matrix(y, p))


def test_hand_computed_kappa():
    cm = np.array([[20, 5], [10, 15]])  # p_o = 0.7, p_e = 0.5
    assert cohen_kappa(cm) == pytest.approx(0.4)
    assert cohen_kappa(np.diag([3, 4])) == 1.0
    assert np.isnan(cohen_kappa(np.zeros((2, 2))))


def test_absent_classes_and_errors():
    rep = classification_report([0, 0, 1], [0, 1, 1], ["a", "b", "c"])
    assert rep["per_class"]["c"]["support"] == 0
    assert rep["macro_f1"] == pytest.approx((2 / 3 + 2 / 3) / 2)
    assert "kappa" in format_report(rep)
    with pytest.raises(ValueError, match="y_pred holds labels outside"):
        confusion_matrix([0, 1], [0, 3], 3)
    with pytest.raises(ValueError, match="differ in shape"):
        confusion_matrix([0, 1], [0], 3)
