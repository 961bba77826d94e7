"""The evaluate stage with real parts: scikit-learn models exported by skl2onnx, scored by onnxruntime,
reported by Evidently, on small frames written straight into a temporary project."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from edge.contracts.decision import decide_many as decide
from edge.contracts.errors import UserError
from flows.evaluation.quality import pr_curve, sample_indices, sklearn_quality
from flows.stages import evaluate
from tests.evaluation_helpers import make_params, project, read_json


def test_binary_evaluation_writes_every_output(tmp_path) -> None:
    params = make_params()
    paths = project(tmp_path, params)
    summary = evaluate.main(params, paths)

    for name in ("drift.html", "candidate_quality.html"):
        assert (paths.reports / "evaluate" / name).stat().st_size > 10_000
    assert not (paths.reports / "evaluate" / "champion_quality.html").exists()
    metrics = read_json(paths.metrics / "evaluate.json")
    for name in ("accuracy", "balanced_accuracy", "f1_macro"):
        assert 0.75 < metrics["candidate"][name] <= 1.0, metrics["candidate"]
        assert summary["candidate"][name] == metrics["candidate"][name]
    assert metrics["champion"] is None and metrics["champion_version"] is None
    assert metrics["rows"] == {"reference": 1200, "current": 400, "reference_sampled": 1200, "current_sampled": 400}
    assert set(metrics["drift"]["per_feature"]) == set(params.schema.feature_names)
    assert 0.0 <= metrics["drift"]["share"] <= 1.0
    assert metrics["sources"]["accuracy"] == "evidently:Accuracy"

    confusion = pd.read_csv(paths.plots / "confusion.csv")
    assert list(confusion.columns) == ["actual", "predicted"] and len(confusion) == 400
    assert set(confusion["actual"]) <= set(params.schema.label.classes)
    assert (confusion["actual"] == confusion["predicted"]).mean() == pytest.approx(metrics["candidate"]["accuracy"])
    curve = pd.read_csv(paths.plots / "pr_curve.csv")
    assert list(curve.columns) == ["precision", "recall", "threshold"] and 2 <= len(curve) <= 500
    stats = read_json(paths.data / "evaluate" / "reference_stats.json")
    assert list(stats["features"]) == params.schema.feature_names and stats["rows"] == 1200


def test_three_class_string_labels(tmp_path) -> None:
    params = make_params(three_class=True)
    paths = project(tmp_path, params)
    evaluate.main(params, paths)

    metrics = read_json(paths.metrics / "evaluate.json")
    assert metrics["candidate"]["f1_macro"] > 0.7 and metrics["candidate"]["balanced_accuracy"] > 0.7
    assert metrics["sources"]["f1_macro"] == "evidently:F1Score (macro)"
    assert "roc_auc" in metrics["candidate"]  # every class is present, so probabilities were given
    confusion = pd.read_csv(paths.plots / "confusion.csv")
    assert set(confusion["actual"]) == {"ok", "warn", "fail"}
    assert (paths.plots / "pr_curve.csv").read_text() == "precision,recall,threshold\n"  # no binary curve
    assert metrics["decision"] == {"classes": ["ok", "warn", "fail"], "positive_class": None, "threshold": None}


def test_sampling_is_deterministic_and_drift_is_found(tmp_path) -> None:
    params = make_params({"evaluate.max_rows": 300})
    first_feature = params.schema.features[0]
    span = (first_feature.max or 1.0) - (first_feature.min or 0.0)
    paths = project(tmp_path, params, shift={first_feature.name: 0.5 * span})
    evaluate.main(params, paths)
    first = (paths.metrics / "evaluate.json").read_bytes()
    evaluate.main(params, paths)
    assert (paths.metrics / "evaluate.json").read_bytes() == first

    metrics = read_json(paths.metrics / "evaluate.json")
    assert metrics["rows"]["current_sampled"] == 300 and metrics["rows"]["reference_sampled"] == 300
    assert first_feature.name in metrics["drift"]["drifted"]
    assert metrics["drift"]["per_feature"][first_feature.name] > params.evaluate.drift_threshold
    assert metrics["drift"]["method"] == "wasserstein"


def test_missing_model_is_a_user_error(tmp_path) -> None:
    params = make_params()
    paths = project(tmp_path, params)
    (paths.model / "model.onnx").unlink()
    with pytest.raises(UserError, match="export"):
        evaluate.main(params, paths)


def test_unknown_drift_method_names_the_key(tmp_path) -> None:
    params = make_params({"evaluate.drift_method": "no-such-test"})
    paths = project(tmp_path, params)
    with pytest.raises(UserError, match="evaluate.drift_method"):
        evaluate.main(params, paths)


# --- pure helpers -----------------------------------------------------------------------------------

def test_decision_rule_and_sklearn_metrics() -> None:
    probs = np.array([[0.6, 0.4], [0.5, 0.5], [0.2, 0.8]], dtype=np.float32)
    assert decide(probs, 1, 0.5).tolist() == [0, 1, 1]  # ties go to the positive class (>=)
    assert decide(probs, 0, 0.7).tolist() == [1, 1, 1]
    three = np.array([[0.2, 0.5, 0.3], [0.4, 0.4, 0.2]])
    assert decide(three, None, 0.5).tolist() == [1, 0]
    quality = sklearn_quality(np.array([0, 0, 0, 1]), np.array([0, 0, 1, 1]))
    assert quality["accuracy"] == 0.75 and quality["balanced_accuracy"] == pytest.approx(5 / 6)


def test_sample_and_pr_curve_limits() -> None:
    assert sample_indices(10, 20).tolist() == list(range(10))
    picked = sample_indices(10_000, 100)
    assert len(picked) == 100 and np.all(np.diff(picked) > 0)
    assert np.array_equal(picked, sample_indices(10_000, 100))
    rng = np.random.default_rng(0)
    truth = rng.integers(0, 2, 5000).astype(bool)
    points = pr_curve(truth, rng.random(5000))
    assert 400 < len(points) <= 500
    assert pr_curve(np.zeros(10, dtype=bool), rng.random(10)) == []


@pytest.mark.parametrize(
    ("classes", "positive", "present"),
    [((5, 3), 1, 2), ((0, 1), 1, 1), (("ok", "warn", "fail"), None, 2), (("__actual__", "b", "c"), None, 3)],
)
def test_evidently_agrees_with_sklearn_on_awkward_labels(classes, positive, present) -> None:
    """Odd class values, a class missing from the truth, class names like our own columns."""
    from flows.evaluation.reports import quality_report

    rng = np.random.default_rng(2)
    probabilities = rng.dirichlet(np.ones(len(classes)), 200).astype(np.float32)
    actual = rng.integers(0, present, 200)
    predicted = decide(probabilities, positive, 0.5)
    result = quality_report(actual, predicted, probabilities, classes, positive, 0.5)
    expected = sklearn_quality(actual, predicted)
    assert result.metrics["accuracy"] == pytest.approx(expected["accuracy"], abs=1e-12)
    assert result.metrics["f1_macro"] == pytest.approx(expected["f1_macro"], abs=1e-12)
    assert ("roc_auc" in result.metrics) == (present == len(classes))
