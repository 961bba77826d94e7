"""edge.inference with real onnxruntime: parity with flows.inference + decide, schema checks, event ids,
hot swap under load, and refusal of a model that is not the one the manifest names."""

from __future__ import annotations

import functools
import json
import math
import threading
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest

from edge.contracts.decision import decide_many as decide
from edge.contracts.manifest import Manifest, ManifestError, ReferenceStats, model_file
from edge.contracts.schema import FeatureSpec
from edge.health import HealthMonitor
from edge.inference import InputError, Predictor
from edge.pending import PendingPredictions
from edge.serving import InferenceSlot
from edgeloop.testkit.releases import make_manifest
from flows.inference import score

FEATURES = (
    FeatureSpec("temp", "float", 0.0, 100.0, "C", True),
    FeatureSpec("load", "float", 0.0, 10.0, "kN", False),
    FeatureSpec("count", "int", 0.0, 50.0, "", False),
)
NAMES = [f.name for f in FEATURES]


def _data(seed: int, classes: int) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    x = np.column_stack([rng.uniform(0, 100, 600), rng.uniform(0, 10, 600), rng.integers(0, 51, 600)])
    signal = x[:, 0] / 100 + x[:, 1] / 10 + rng.normal(0, 0.2, 600)
    y = np.digitize(signal, np.quantile(signal, np.linspace(0, 1, classes + 1)[1:-1])).astype(np.int64)
    x[rng.random(600) < 0.1, 0] = np.nan  # temp is nullable: the model learns missing values
    return x, y


@functools.lru_cache(maxsize=4)
def _model(seed: int = 0, classes: int = 2) -> bytes:
    from sklearn.ensemble import HistGradientBoostingClassifier

    from flows.stages.export import to_onnx_bytes

    x, y = _data(seed, classes)
    estimator = HistGradientBoostingClassifier(max_iter=20, random_state=seed).fit(x, y)
    return to_onnx_bytes(estimator, len(FEATURES), 17, {})


def _manifest(model: bytes, version: str, classes: int = 2, threshold: float = 0.3) -> Manifest:
    return replace(
        make_manifest(model, version),
        features=FEATURES,
        classes=tuple(range(classes)),
        positive_class=1 if classes == 2 else None,
        decision_threshold=threshold,
        reference={name: ReferenceStats((50.0,), (0.5, 0.5), 0.0) for name in NAMES},
        model=model_file(model),
    )


def _release(folder: Path, version: str, seed: int = 0, classes: int = 2) -> Path:
    folder.mkdir(parents=True)
    model = _model(seed, classes)
    (folder / "model.onnx").write_bytes(model)
    (folder / "manifest.json").write_text(_manifest(model, version, classes).to_json())
    return folder


@pytest.fixture(scope="module")
def predictor(tmp_path_factory: pytest.TempPathFactory) -> Predictor:
    return Predictor.from_folder(_release(tmp_path_factory.mktemp("rel") / "v1", "v1"))


def _rows(seed: int = 7, n: int = 300) -> np.ndarray:
    x, _ = _data(seed, 2)
    return x[:n]


@pytest.mark.parametrize("classes", [2, 3])
def test_predictions_equal_flows_score_and_decide(tmp_path: Path, classes: int) -> None:
    p = Predictor.from_folder(_release(tmp_path / "r", "v1", classes=classes))
    rows = _rows()
    reference = score(_model(0, classes), rows)
    chosen = decide(reference.probabilities, 1 if classes == 2 else None, 0.3)
    if classes == 2:  # the threshold must matter on these rows, or the test proves little
        assert (chosen != reference.labels).any()
    singles = [p.predict([None if math.isnan(v) else float(v) for v in row]) for row in rows]
    batch = p.predict_batch(rows)
    for i, (one, many) in enumerate(zip(singles, batch, strict=True)):
        expected_probs = [float(v) for v in reference.probabilities[i]]
        assert one.label == many.label == int(chosen[i])
        assert list(one.probabilities.values()) == list(many.probabilities.values()) == expected_probs
        assert one.model_version == many.model_version == "v1"


def test_mapping_sequence_and_batch_forms_agree(predictor: Predictor) -> None:
    row = [42.0, 3.5, 7]
    by_name = {"count": 7, "load": 3.5, "temp": 42.0}
    a, b = predictor.predict(row), predictor.predict(by_name)
    c = predictor.predict(np.array(row))
    assert a.probabilities == b.probabilities == c.probabilities and a.label == b.label == c.label
    listed = predictor.predict_batch([row, by_name, tuple(row)])
    assert {p.label for p in listed} == {a.label} and all(p.probabilities == a.probabilities for p in listed)
    assert set(a.probabilities) == {0, 1} and math.isclose(sum(a.probabilities.values()), 1.0, rel_tol=1e-5)


def test_the_single_row_fast_path_answers_like_the_batch_path(predictor: Predictor) -> None:
    # in range (the fast check), near and past the bounds, an int, a missing value, and a finite value
    # beyond float32 (the model sees an infinity, as numpy's conversion gives it)
    rows = [[42.0, 3.5, 7.0], [0.0, 10.0, 50.0], [100.5, -0.1, 7], [None, 3.5, 7], [3.5e38 * 10, 3.5, 7]]
    for row in rows:
        with np.errstate(over="ignore"):  # numpy says so when it makes the last one an infinity
            one, [many] = predictor.predict(row), predictor.predict_batch([row])
        assert json.dumps(one.probabilities) == json.dumps(many.probabilities) and one.label == many.label
        assert one.out_of_range == many.out_of_range
    assert predictor.predict(rows[2]).out_of_range == ("temp", "load")


@pytest.mark.parametrize(("features", "named", "text"), [
    ([1.0, 2.0], None, "expected 3 values"),
    ([1.0, 2.0, 3, 4.0], None, "expected 3 values"),
    ({"temp": 1.0, "load": 2.0}, "count", "count: required feature is missing"),
    ({"temp": 1.0, "load": 2.0, "count": 3, "speed": 9.0}, "speed", "speed: unknown feature"),
    ([1.0, "2.0", 3], "load", "load: expected a number"),
    ([1.0, True, 3], "load", "load: expected a number"),
    ([1.0, 2.0, [3]], "count", "count: expected a number"),
    ([1.0, 2.0, 3.5], "count", "count: expected an integer"),
    ([1.0, math.inf, 3], "load", "load: inf is not a finite number"),
    ([1.0, math.nan, 3], "load", "load: missing value"),
    ([1.0, None, 3], "load", "load: missing value"),
    ({"temp": 1.0, "load": 2.0, "count": None}, "count", "count: missing value"),
    ("abc", None, "expected a sequence"),
    (42, None, "expected a sequence"),
])
def test_bad_input_is_refused_naming_the_feature(
    predictor: Predictor, features: object, named: str | None, text: str
) -> None:
    with pytest.raises(InputError, match=text) as caught:
        predictor.predict(features)  # type: ignore[arg-type]
    assert caught.value.feature == named
    if named is not None:
        assert str(caught.value).startswith(named)


def test_bad_rows_in_a_batch_name_the_row_and_feature(predictor: Predictor) -> None:
    with pytest.raises(InputError, match=r"rows\[1\]\.load: missing value"):
        predictor.predict_batch([[1.0, 2.0, 3], [1.0, None, 3]])
    matrix = np.array([[1.0, 2.0, 3], [1.0, 2.0, 3], [1.0, np.nan, 3]])
    with pytest.raises(InputError, match=r"rows\[2\]\.load: missing value"):
        predictor.predict_batch(matrix)
    with pytest.raises(InputError, match=r"rows\[0\]\.count: expected an integer"):
        predictor.predict_batch(np.array([[1.0, 2.0, 3.25]]))
    with pytest.raises(InputError, match=r"rows: expected a 2-D array of shape \[rows, 3\]"):
        predictor.predict_batch(np.zeros((2, 4)))
    with pytest.raises(InputError, match="rows: expected a numeric array"):
        predictor.predict_batch(np.array([["a", "b", "c"]]))


def test_nan_is_allowed_only_where_nullable(predictor: Predictor) -> None:
    missing = predictor.predict([math.nan, 2.0, 3])
    assert predictor.predict([None, 2.0, 3]).probabilities == missing.probabilities
    assert predictor.predict({"temp": None, "load": 2.0, "count": 3}).probabilities == missing.probabilities
    assert all(math.isfinite(v) for v in missing.probabilities.values()) and missing.out_of_range == ()
    reference = score(_model(), np.array([[np.nan, 2.0, 3.0]]))
    assert list(missing.probabilities.values()) == [float(v) for v in reference.probabilities[0]]
    with pytest.raises(InputError, match="load: missing value"):
        predictor.predict([1.0, math.nan, 3])
    assert len(predictor.predict_batch(np.array([[np.nan, 2.0, 3.0]]))) == 1


def test_out_of_range_is_reported_not_refused(predictor: Predictor) -> None:
    assert predictor.predict([100.0, 0.0, 50]).out_of_range == ()  # bounds are inclusive
    assert predictor.predict([150.0, 2.0, 3]).out_of_range == ("temp",)
    assert predictor.predict({"temp": -1.0, "load": 11.0, "count": 3}).out_of_range == ("temp", "load")
    batch = predictor.predict_batch(np.array([[1.0, 2.0, 3.0], [1.0, 2.0, 51.0], [-5.0, -1.0, 60.0]]))
    assert [p.out_of_range for p in batch] == [(), ("count",), ("temp", "load", "count")]


def test_event_ids_are_unique_and_increasing_across_threads(predictor: Predictor) -> None:
    per_thread: list[list[int]] = [[] for _ in range(8)]

    def work(out: list[int]) -> None:
        for i in range(300):
            if i % 50 == 0:
                out.extend(p.event_id for p in predictor.predict_batch([[1.0, 2.0, 3]] * 5))
            else:
                out.append(predictor.predict([1.0, 2.0, 3]).event_id)

    threads = [threading.Thread(target=work, args=(out,)) for out in per_thread]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    every = [i for out in per_thread for i in out]
    assert len(set(every)) == len(every) == 8 * (294 + 6 * 5)
    for out in per_thread:
        assert out == sorted(out) and len(set(out)) == len(out)  # strictly increasing within a thread
    assert predictor.predict([1.0, 2.0, 3]).event_id > max(every)
    assert predictor.predict([1.0, 2.0, 3], event_id=17).event_id == 17
    assert [p.event_id for p in predictor.predict_batch([[1.0, 2.0, 3]] * 2, event_ids=[5, 6])] == [5, 6]


def test_inference_slot_swaps_under_concurrent_predictions(tmp_path: Path, predictor: Predictor) -> None:
    new = Predictor.from_folder(_release(tmp_path / "v2", "v2", seed=1))
    pending = PendingPredictions(10_000)
    slot = InferenceSlot(pending, HealthMonitor())
    assert slot.serve(predictor) is None
    errors: list[BaseException] = []
    seen: list[set[str]] = [set() for _ in range(4)]
    stop = threading.Event()

    def work(versions: set[str]) -> None:
        try:
            while not stop.is_set():
                versions.add(slot.predict_one([1.0, 2.0, 3]).model_version)
                versions.update(p.model_version for p in slot.predict_batch([[5.0, 1.0, 2]] * 3))
        except BaseException as exc:  # noqa: BLE001 - any failure in a worker fails the test
            errors.append(exc)

    threads = [threading.Thread(target=work, args=(versions,)) for versions in seen]
    for t in threads:
        t.start()
    current, other = predictor, new
    for _ in range(200):  # swap back and forth while the workers predict
        replaced = slot.serve(other)
        assert replaced is not None and replaced.predictor is current
        current, other = other, current
    if slot.predictor is not new:
        slot.serve(new)
    after = slot.predict_one([1.0, 2.0, 3])
    stop.set()
    for t in threads:
        t.join()
    assert errors == []
    assert after.model_version == "v2" and slot.predictor is new
    assert set().union(*seen) <= {"v1", "v2"} and all(seen)
    counted = pending.predicted()  # every answer was kept for its label and counted under its version
    assert sum(counted.values()) == pending.sequence == len(pending) + pending.dropped
    assert set(counted) == {"v1", "v2"}


def test_manifest_that_does_not_match_the_model_is_refused(tmp_path: Path) -> None:
    folder = _release(tmp_path / "r", "v1")
    (folder / "model.onnx").write_bytes(_model(seed=1))  # another model: different bytes
    with pytest.raises(ManifestError, match="model\\.(bytes|sha256)"):
        Predictor.from_folder(folder)
    model = _model()
    same_size = bytearray(model)
    same_size[-1] ^= 1
    (folder / "model.onnx").write_bytes(bytes(same_size))
    with pytest.raises(ManifestError, match="model.sha256"):
        Predictor.from_folder(folder)


def test_manifest_classes_must_fit_the_model(tmp_path: Path) -> None:
    from edge.inference import ModelError

    model = _model(0, 3)
    manifest = replace(_manifest(model, "v1", classes=2), model=model_file(model))
    with pytest.raises(ModelError, match="probabilities have shape"):
        Predictor(manifest, model)
