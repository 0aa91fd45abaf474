"""Classification metrics against scikit-learn: hypothesis-generated labels (absent classes,
classes predicted but absent from the truth, single-class subjects) and hand-computed cases."""

from __future__ import annotations

import json
import warnings

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from relpos.train.metrics import (
    UndefinedMetricWarning,
    classification_report,
    cohen_kappa,
    confusion_matrix,
    format_report,
    json_safe,
)

metrics = pytest.importorskip("sklearn.metrics")

NAMES = ["W", "N1", "N2", "N3", "R"]


@st.composite
def label_pairs(draw: st.DrawFn) -> tuple[np.ndarray, np.ndarray]:
    """``(y_true, y_pred)`` over 5 classes, each drawn from a random subset of them (so classes
    go missing from the truth, the prediction or both; single-class arrays included)."""
    n = draw(st.integers(1, 60))
    true_set = draw(st.lists(st.integers(0, 4), min_size=1, max_size=5, unique=True))
    pred_set = draw(st.lists(st.integers(0, 4), min_size=1, max_size=5, unique=True))
    y = draw(st.lists(st.sampled_from(true_set), min_size=n, max_size=n))
    p = draw(st.lists(st.sampled_from(pred_set), min_size=n, max_size=n))
    return np.array(y), np.array(p)


@settings(max_examples=120, deadline=None)
@given(label_pairs())
def test_matches_sklearn_on_generated_labels(pair: tuple[np.ndarray, np.ndarray]) -> None:
    y, p = pair
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        rep = classification_report(y, p, NAMES)
        kappa = metrics.cohen_kappa_score(y, p)
        f1 = metrics.f1_score(y, p, average="macro", zero_division=0)
        per = metrics.f1_score(y, p, average=None, labels=range(5), zero_division=0)
    assert rep["kappa"] == pytest.approx(kappa, nan_ok=True, abs=1e-12)
    assert rep["macro_f1"] == pytest.approx(f1, abs=1e-12)
    assert rep["accuracy"] == pytest.approx(metrics.accuracy_score(y, p))
    assert [rep["per_class"][c]["f1"] for c in NAMES] == pytest.approx(per)
    cm = metrics.confusion_matrix(y, p, labels=range(5))
    assert np.array_equal(np.array(rep["confusion"]), cm)


def test_against_sklearn_large():
    rng = np.random.default_rng(0)
    y = rng.integers(0, 5, 2000)
    p = np.where(rng.random(2000) < 0.6, y, rng.integers(0, 5, 2000))
    rep = classification_report(y, p, NAMES)
    assert rep["kappa"] == pytest.approx(metrics.cohen_kappa_score(y, p))
    assert rep["macro_f1"] == pytest.approx(metrics.f1_score(y, p, average="macro"))
    assert np.array_equal(np.array(rep["confusion"]), metrics.confusion_matrix(y, p))


def test_the_issues_cases():
    # class 2 is predicted but absent from the truth: F1 0 counts (0.433, not 0.650)
    y, p = [0, 0, 0, 1, 1], [0, 0, 1, 1, 2]
    rep = classification_report(y, p, ["a", "b", "c"])
    assert rep["macro_f1"] == pytest.approx(metrics.f1_score(y, p, average="macro"))
    assert rep["macro_f1"] == pytest.approx(1.3 / 3)
    assert rep["per_class"]["c"]["support"] == 0 and rep["per_class"]["c"]["f1"] == 0
    # a single-class subject scored perfectly: kappa undefined (sklearn: nan), not 1.0
    with pytest.warns(UndefinedMetricWarning, match="one and the same class"):
        k = classification_report([2, 2, 2], [2, 2, 2], NAMES)["kappa"]
    assert np.isnan(k)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        assert np.isnan(metrics.cohen_kappa_score([2, 2, 2], [2, 2, 2]))
    # a single-class truth with a mistake is defined (0), as in sklearn
    assert classification_report([0, 0, 0, 0], [0, 0, 1, 0], NAMES)["kappa"] == 0.0


def test_hand_computed_kappa():
    cm = np.array([[20, 5], [10, 15]])  # p_o = 0.7, p_e = 0.5
    assert cohen_kappa(cm) == pytest.approx(0.4)
    assert cohen_kappa(np.diag([3, 4])) == 1.0
    with pytest.warns(UndefinedMetricWarning, match="no examples"):
        assert np.isnan(cohen_kappa(np.zeros((2, 2))))


def test_json_safe_keeps_metrics_json_valid():
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UndefinedMetricWarning)
        rep = classification_report([1, 1], [1, 1], NAMES)
    rep["per_subject_kappa"] = {"s1": float("nan"), "s2": np.float64(0.5)}
    text = json.dumps(json_safe(rep))

    def refuse(name: str) -> None:
        raise ValueError(f"invalid JSON constant {name}")

    back = json.loads(text, parse_constant=refuse)
    assert back["kappa"] is None and back["per_subject_kappa"] == {"s1": None, "s2": 0.5}
    assert "kappa nan" in format_report(back)


def test_absent_classes_and_errors():
    rep = classification_report([0, 0, 1], [0, 1, 1], ["a", "b", "c"])
    assert rep["per_class"]["c"]["support"] == 0
    assert rep["macro_f1"] == pytest.approx((2 / 3 + 2 / 3) / 2)
    assert "kappa" in format_report(rep)
    with pytest.raises(ValueError, match="y_pred holds labels outside"):
        confusion_matrix([0, 1], [0, 3], 3)
    with pytest.raises(ValueError, match="differ in shape"):
        confusion_matrix([0, 1], [0], 3)
