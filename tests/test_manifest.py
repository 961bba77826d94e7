"""The release manifest contract (edge.contracts.manifest): round trip, stable JSON, errors that name the field,
and the reference statistics it carries (flows.reference_stats)."""

from __future__ import annotations

import hashlib
import json
from typing import Any

import numpy as np
import pandas as pd
import pytest

from edge.contracts.manifest import (
    DEFAULT_POLICY,
    FORMAT,
    EdgePolicy,
    FeatureSpec,
    GateResult,
    GateRule,
    Lineage,
    Manifest,
    ManifestError,
    RecordColumns,
    ReferenceStats,
    model_file,
    verify_model,
)
from flows.evaluation.bundle import build_manifest
from flows.reference_stats import bin_index, feature_stats, reference_stats
from tests.evaluation_helpers import make_params

MODEL = b"not really onnx, but bytes all the same"


def sample_manifest(classes: tuple[Any, ...] = (0, 1), positive: Any = 1) -> Manifest:
    return Manifest(
        version="cand-0123456789ab",
        created="2026-11-27T01:52:00Z",
        features=(
            FeatureSpec("temp_k", "float", 250.0, 350.0, "K", True),
            FeatureSpec("speed", "int", 0.0, None, "", False),
        ),
        label="failure",
        classes=classes,
        positive_class=positive,
        decision_threshold=0.4,
        reference={
            "temp_k": ReferenceStats((290.0, 300.0), (0.25, 0.5, 0.25), 0.01),
            "speed": ReferenceStats((), (), 1.0),
        },
        gate=GateResult(
            passed=True,
            metric="f1_macro",
            metrics={"accuracy": 0.9, "balanced_accuracy": 0.88, "f1_macro": 0.87},
            rules=(GateRule("quality_floor", True, 0.6, 0.87, "ok"), GateRule("champion", True, None, 0.87, "")),
        ),
        lineage=Lineage("d" * 64, "p" * 64, "s" * 64, None, "unknown", {"numpy": "2.1.0"}),
        min_runner_version="0.1.0",
        model=model_file(MODEL),
    )


def as_raw(manifest: Manifest) -> dict[str, Any]:
    return json.loads(manifest.to_json())


def test_round_trip_is_exact_and_json_is_stable() -> None:
    manifest = sample_manifest()
    text = manifest.to_json()
    assert Manifest.from_json(text) == manifest
    assert Manifest.from_json(text).to_json() == text
    assert list(json.loads(text)) == sorted(json.loads(text))  # sorted keys
    assert json.loads(text)["format"] == FORMAT


def test_string_multiclass_round_trip() -> None:
    manifest = sample_manifest(classes=("ok", "warn", "fail"), positive=None)
    assert Manifest.from_json(manifest.to_json()) == manifest
    assert not manifest.is_binary


def test_model_digest_and_verification() -> None:
    manifest = sample_manifest()
    assert manifest.model.sha256 == hashlib.sha256(MODEL).hexdigest()
    assert manifest.model.bytes == len(MODEL)
    verify_model(manifest, MODEL)
    with pytest.raises(ManifestError, match=r"^model\.sha256"):
        verify_model(manifest, MODEL[:-1] + b"!")
    with pytest.raises(ManifestError, match=r"^model\.bytes"):
        verify_model(manifest, MODEL + b"x")


def _set(raw: dict[str, Any], path: str, value: Any) -> None:
    node: Any = raw
    *parents, leaf = path.split("/")
    for part in parents:
        node = node[int(part)] if isinstance(node, list) else node[part]
    if value is DELETE:
        del node[leaf]
    elif isinstance(node, list):
        node[int(leaf)] = value
    else:
        node[leaf] = value


DELETE = object()


@pytest.mark.parametrize(
    ("path", "value", "named"),
    [
        ("version", DELETE, "version: required field is missing"),
        ("format", 2, "format: unsupported format 2"),
        ("version", "../evil", "version:"),
        ("created", "2026-11-27T01:52:00", "created:"),
        ("created", "yesterday", "created:"),
        ("features/1/min", "low", "features[1].min:"),
        ("features/0/dtype", "double", "features[0].dtype:"),
        ("features/0/surprise", 1, "features[0].surprise: unknown field"),
        ("classes", [0, "1"], "classes: mixes"),
        ("classes", [True, False], "classes[0]:"),
        ("positive_class", 7, "positive_class:"),
        ("positive_class", None, "positive_class: required for a binary model"),
        ("decision_threshold", 1.5, "decision_threshold:"),
        ("reference/temp_k/proportions", [0.5, 0.5], "reference.temp_k.proportions:"),
        ("reference/temp_k/edges", [300.0, 290.0], "reference.temp_k.edges[1]:"),
        ("reference/speed", DELETE, "reference.speed: required field is missing"),
        ("gate/rules/0/passed", "yes", "gate.rules[0].passed:"),
        ("gate/metrics/f1_macro", None, "gate.metrics.f1_macro:"),
        ("lineage/libraries/numpy", 2, "lineage.libraries.numpy:"),
        ("lineage/git_commit", DELETE, "lineage.git_commit: required field is missing"),
        ("min_runner_version", "latest", "min_runner_version:"),
        ("model/sha256", "abc", "model.sha256:"),
        ("model/file", "../model.onnx", "model.file:"),
        ("surprise", 1, "surprise: unknown field"),
    ],
)
def test_errors_name_the_field(path: str, value: Any, named: str) -> None:
    raw = as_raw(sample_manifest())
    _set(raw, path, value)
    with pytest.raises(ManifestError) as caught:
        Manifest.from_json(json.dumps(raw))
    assert str(caught.value).startswith(named), str(caught.value)
    assert isinstance(caught.value, ValueError)


def test_not_json_and_nan_are_errors() -> None:
    with pytest.raises(ManifestError, match="not valid JSON"):
        Manifest.from_json("{")
    text = sample_manifest().to_json().replace('"decision_threshold": 0.4', '"decision_threshold": NaN')
    with pytest.raises(ManifestError):
        Manifest.from_json(text)


def test_to_json_refuses_an_invalid_manifest() -> None:
    broken = sample_manifest(classes=("ok", "warn", "fail"), positive="ok")
    with pytest.raises(ManifestError, match="positive_class"):
        broken.to_json()


# --- reference statistics ---------------------------------------------------------------------------

def test_reference_stats_are_deterministic_and_sum_to_one() -> None:
    params = make_params()
    rng = np.random.default_rng(3)
    frame = pd.DataFrame({name: rng.gamma(2.0, 3.0, size=5000) for name in params.schema.feature_names})
    first = params.schema.feature_names[0]
    frame.loc[frame.index[::20], first] = np.nan
    one = reference_stats(frame, params.schema, 10)
    two = reference_stats(frame.copy(), params.schema, 10)
    assert one == two
    assert list(one["features"]) == params.schema.feature_names
    for stats in one["features"].values():
        edges = np.array(stats["edges"])
        assert len(stats["proportions"]) == len(edges) + 1 == 10  # continuous values: all bins kept
        assert np.all(np.diff(edges) > 0) and np.all(np.isfinite(edges))
        assert abs(sum(stats["proportions"]) - 1.0) < 1e-12
        assert min(stats["proportions"]) > 0
    assert one["features"][first]["missing_fraction"] == pytest.approx(0.05)
    ReferenceStats(**{k: tuple(v) if isinstance(v, list) else v for k, v in one["features"][first].items()})


def test_reference_bins_match_a_device_using_searchsorted() -> None:
    rng = np.random.default_rng(5)
    values = rng.normal(size=2000)
    stats = feature_stats(values, 8)
    edges = np.array(stats["edges"])
    device = np.bincount(np.searchsorted(edges, values, side="right"), minlength=len(edges) + 1) / len(values)
    assert np.allclose(device, stats["proportions"], atol=0, rtol=0)
    assert bin_index(edges, np.array([-1e9, 1e9])).tolist() == [0, len(edges)]  # out of range: end bins


def test_reference_stats_ties_constant_and_empty_features() -> None:
    ties = feature_stats(np.array([0.0] * 90 + list(range(1, 11))), 10)
    assert ties["edges"] == [1.0] and ties["proportions"] == [0.9, 0.1]  # the spike at 0 stays whole
    constant = feature_stats(np.full(50, 3.5), 10)
    assert constant == {"edges": [], "proportions": [1.0], "missing_fraction": 0.0}
    empty = feature_stats(np.full(4, np.nan), 10)
    assert empty == {"edges": [], "proportions": [], "missing_fraction": 1.0}


# --- optional fields: the device's update policy and the upload column names ------------------------

POLICY = EdgePolicy(shadow_margin=0.05, min_shadow_rows=10, accuracy_floor=0.7, watch_window_s=60.0,
                    watch_min_feedback=5, max_model_errors=0)


def with_extras() -> Manifest:
    from dataclasses import replace

    return replace(sample_manifest(), policy=POLICY, columns=RecordColumns("event_id", "device_id", "event_time"))


def test_policy_and_columns_round_trip_and_are_absent_when_none() -> None:
    plain = sample_manifest()
    assert "policy" not in as_raw(plain) and "columns" not in as_raw(plain)
    assert plain.edge_policy == DEFAULT_POLICY
    assert (DEFAULT_POLICY.shadow_margin, DEFAULT_POLICY.min_shadow_rows) == (0.02, 200)
    manifest = with_extras()
    text = manifest.to_json()
    assert Manifest.from_json(text) == manifest and Manifest.from_json(text).to_json() == text
    assert manifest.edge_policy == POLICY
    assert as_raw(manifest)["columns"] == {"event_id": "event_id", "device_id": "device_id", "event_time": "event_time"}


@pytest.mark.parametrize(
    ("path", "value", "named"),
    [
        ("policy/shadow_margin", 1.5, "policy.shadow_margin:"),
        ("policy/shadow_margin", -0.1, "policy.shadow_margin:"),
        ("policy/shadow_margin", "small", "policy.shadow_margin:"),
        ("policy/min_shadow_rows", 0, "policy.min_shadow_rows:"),
        ("policy/min_shadow_rows", 2.5, "policy.min_shadow_rows:"),
        ("policy/accuracy_floor", 2, "policy.accuracy_floor:"),
        ("policy/watch_window_s", 0, "policy.watch_window_s:"),
        ("policy/watch_min_feedback", 0, "policy.watch_min_feedback:"),
        ("policy/max_model_errors", -1, "policy.max_model_errors:"),
        ("policy/max_model_errors", True, "policy.max_model_errors:"),
        ("policy/surprise", 1, "policy.surprise: unknown field"),
        ("policy/shadow_margin", DELETE, "policy.shadow_margin: required field is missing"),
        ("policy", [1], "policy: expected an object"),
        ("columns/event_id", "", "columns.event_id:"),
        ("columns/device_id", DELETE, "columns.device_id: required field is missing"),
        ("columns/extra", "x", "columns.extra: unknown field"),
    ],
)
def test_policy_and_columns_errors_name_the_field(path: str, value: Any, named: str) -> None:
    raw = as_raw(with_extras())
    _set(raw, path, value)
    with pytest.raises(ManifestError) as caught:
        Manifest.from_json(json.dumps(raw))
    assert str(caught.value).startswith(named), str(caught.value)


def test_bundle_writes_the_params_policy_and_columns() -> None:
    params = make_params({"release.edge_policy.shadow_margin": 0.1, "release.edge_policy.min_shadow_rows": 7})
    names = params.schema.feature_names
    reference = {n: sample_manifest().reference["temp_k"] for n in names}
    manifest = build_manifest(params, "cand-0123456789ab", MODEL, reference, sample_manifest().gate,
                              sample_manifest().lineage)
    policy = manifest.edge_policy
    assert (policy.shadow_margin, policy.min_shadow_rows) == (0.1, 7)
    assert policy.accuracy_floor == params.release.edge_policy.accuracy_floor
    assert manifest.columns == RecordColumns(params.schema.event_id, params.schema.device_id, params.schema.event_time)
    assert Manifest.from_json(manifest.to_json()) == manifest
