"""edge.pending, the recent-predictions ring: eviction order and counting, labels taken once, unknown ids,
context kept only where given, the drift window, threads, and memory that stays put however many
predictions go through it (no Python object per prediction). Predictions come from a real onnxruntime model
through edge.serving's slot, or are recorded directly with the ring's own API."""

from __future__ import annotations

import gc
import json
import math
import threading
import tracemalloc
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest

import edge
from edge.contracts.manifest import Manifest
from edge.health import HealthMonitor
from edge.inference import Predictor
from edge.pending import PendingPredictions
from edgeloop.testkit.releases import make_manifest, tiny_onnx


@pytest.fixture(scope="module")
def predictor() -> Predictor:
    model = tiny_onnx()
    return Predictor(make_manifest(model, "7"), model)


def _ring(capacity: int, window: int = 0, manifest: Manifest | None = None) -> tuple[PendingPredictions, int]:
    pending = PendingPredictions(capacity, window)
    return pending, pending.register(manifest or make_manifest(tiny_onnx(), "7"))


def _record(pending: PendingPredictions, version: int, x: float, context: dict[str, object] | None = None) -> int:
    return pending.record(version, [0.25, 0.75], [x, -x], None if context is None else json.dumps(context))


def test_the_newest_capacity_predictions_wait_and_older_ones_are_dropped_oldest_first() -> None:
    pending, version = _ring(5)
    ids = [_record(pending, version, float(i)) for i in range(8)]
    assert ids == list(range(ids[0], ids[0] + 8))  # one sequence: strictly increasing, no gaps
    assert len(pending) == 5 and pending.dropped == 3
    assert [pending.take(i) for i in ids[:3]] == [None, None, None]  # the three oldest went first
    taken = pending.take(ids[3])
    assert taken is not None and taken.features == [3.0, -3.0] and taken.prediction.event_id == ids[3]
    assert len(pending) == 4
    _record(pending, version, 8.0)  # pushes ids[3] (labelled) and ids[4] (waiting) further out: one more drop
    _record(pending, version, 9.0)
    assert pending.dropped == 4 and pending.take(ids[4]) is None and pending.take(ids[5]) is not None


def test_a_label_is_taken_once_and_unknown_ids_are_none() -> None:
    pending, version = _ring(100)
    first = _record(pending, version, 1.0)
    other, other_version = _ring(100)
    foreign = _record(other, other_version, 1.0)  # another ring (a restart): its ids mean nothing here
    assert pending.take(first) is not None and pending.take(first) is None
    for unknown in (first + 1, first - 1, 0, -5, foreign, 2**62):
        assert pending.take(unknown) is None
    assert len(pending) == 0 and pending.dropped == 0


def test_give_back_lets_the_prediction_wait_again_unless_it_was_evicted() -> None:
    pending, version = _ring(3)
    event = _record(pending, version, 1.0, {"lot": "A12"})
    taken = pending.take(event)
    assert taken is not None and len(pending) == 0
    pending.give_back(taken)
    again = pending.take(event)
    assert again is not None and again.context == {"lot": "A12"} and again.prediction == taken.prediction
    pending.give_back(again)
    for i in range(3):
        _record(pending, version, float(i))
    pending.give_back(again)  # evicted meanwhile: nothing comes back
    assert pending.take(event) is None and len(pending) == 3


def test_context_is_kept_only_where_given() -> None:
    pending, version = _ring(10)
    with_context = _record(pending, version, 1.0, {"lot": "A12", "shift": 3, "note": None})
    without = _record(pending, version, 2.0)
    got = pending.take(with_context)
    assert got is not None and got.context == {"lot": "A12", "shift": 3, "note": None}
    assert list(got.context) == ["lot", "shift", "note"]  # in the order given: upload columns follow it
    plain = pending.take(without)
    assert plain is not None and plain.context is None


def test_a_taken_prediction_is_the_one_the_slot_answered(predictor: Predictor) -> None:
    from edge.serving import InferenceSlot

    pending = PendingPredictions(1000)
    slot = InferenceSlot(pending, HealthMonitor(), local_only=("operator",))
    slot.serve(predictor)
    rows = [[0.3, -0.2], [6.0, 0.1], [None, 1.5], [-4.9, 5.5]]  # in range, above max, missing, below/above

    def same(a: object, b: object) -> bool:  # NaN probabilities (this model on a missing value) compare equal
        return json.dumps(a) == json.dumps(b)

    answers = [slot.predict_one(row, {"lot": "A", "operator": "alice"}) for row in rows]
    assert answers[1].out_of_range == ("x0",) and answers[3].out_of_range == ("x1",)
    for row, answer in zip(rows, answers, strict=True):
        taken = pending.take(answer.event_id)
        assert taken is not None and same(taken.prediction.to_json_dict(), answer.to_json_dict())
        assert same(taken.features, [math.nan if v is None else v for v in row])
        assert taken.context == {"lot": "A"}  # the local-only field was never kept
    batch = slot.predict_batch(rows)
    for answer in batch:
        taken = pending.take(answer.event_id)
        assert taken is not None and same(taken.prediction.to_json_dict(), answer.to_json_dict())
    assert pending.predicted() == {"7": 8}


def test_the_window_is_the_newest_rows_since_a_point_in_the_sequence() -> None:
    pending, version = _ring(4, window=6)  # six rows kept for drift, four of them wait for labels
    for i in range(5):
        _record(pending, version, float(i))
    since = pending.sequence
    assert pending.window(since, 10).shape == (0, 2)
    for i in range(5, 12):
        _record(pending, version, float(i))
    assert pending.window(since, 10)[:, 0].tolist() == [6.0, 7.0, 8.0, 9.0, 10.0, 11.0]  # six slots: 5 was overwritten
    assert pending.window(since, 3)[:, 0].tolist() == [9.0, 10.0, 11.0]
    assert pending.window(0, 100)[:, 1].tolist() == [-6.0, -7.0, -8.0, -9.0, -10.0, -11.0]
    assert len(pending) == 4 and pending.dropped == 8  # capacity, not the window, bounds the labels


def test_blocks_and_single_rows_keep_the_same_things() -> None:
    one, version = _ring(7, window=9)
    many, _ = _ring(7, window=9)
    rows = np.arange(40, dtype=np.float64).reshape(20, 2)
    ids = [one.record(version, [0.5, 0.5], r, None) for r in rows.tolist()]
    firsts = [many.record_block(version, np.full((len(b), 2), 0.5), b) for b in (rows[:3], rows[3:15], rows[15:])]
    assert [f - firsts[0] for f in firsts] == [0, 3, 15]  # a block's ids follow each other
    assert np.array_equal(one.window(0, 9), rows[-9:]) and np.array_equal(many.window(0, 9), rows[-9:])
    assert (len(one), one.dropped) == (len(many), many.dropped) == (7, 13)
    assert [one.take(i) is not None for i in ids] == [many.take(firsts[0] + k) is not None for k in range(20)]


def test_no_row_is_lost_or_torn_under_threads() -> None:
    threads, per_thread = 8, 2000
    pending, version = _ring(threads * per_thread)
    ids: list[list[int]] = [[] for _ in range(threads)]

    def worker(k: int) -> None:
        for _ in range(per_thread):
            ids[k].append(pending.record(version, [0.5, 0.5], [float(k), float(-k)]))

    pool = [threading.Thread(target=worker, args=(k,)) for k in range(threads)]
    for t in pool:
        t.start()
    for t in pool:
        t.join()
    every = [i for mine in ids for i in mine]
    assert len(set(every)) == len(every) == pending.sequence == len(pending)
    window = pending.window(0, threads * per_thread)
    values, counts = np.unique(window[:, 0], return_counts=True)
    assert values.tolist() == [float(k) for k in range(threads)] and set(counts.tolist()) == {per_thread}
    assert np.array_equal(window[:, 1], -window[:, 0])  # no torn rows
    for k in (0, threads - 1):
        taken = pending.take(ids[k][-1])
        assert taken is not None and taken.features == [float(k), float(-k)]


@pytest.mark.slow  # a million predictions
def test_memory_stays_put_however_many_predictions_go_through() -> None:
    pending, version = _ring(10_000)

    def predict_and_label(count: int) -> None:  # half the predictions with context, a third of them labelled
        for i in range(count):
            event = _record(pending, version, float(i), {"lot": "A12"} if i % 2 else None)
            if i % 3 == 0:
                assert pending.take(event) is not None

    predict_and_label(30_000)  # the ring is full and has turned over: steady state
    gc.collect()
    objects = len(gc.get_objects())
    tracemalloc.start()
    predict_and_label(40_000)  # long enough for the context dict to have rebuilt its table since tracing began
    steady = tracemalloc.take_snapshot()
    predict_and_label(100_000)  # ten times the capacity more
    after = tracemalloc.take_snapshot()
    tracemalloc.stop()
    # Only what the ring's code and this test allocate: other threads of the test process (servers left by
    # earlier tests, logging) may allocate meanwhile, and that is not the ring's memory.
    ours = [tracemalloc.Filter(True, str(Path(edge.__file__).parent / "*")), tracemalloc.Filter(True, __file__)]
    grown = sum(stat.size_diff for stat in after.filter_traces(ours).compare_to(steady.filter_traces(ours), "filename"))
    assert grown < 16 * 1024, grown  # nothing accumulates: the ring is preallocated, contexts are replaced
    gc.collect()
    assert len(gc.get_objects()) - objects < 100  # and the collector has no new objects to walk
    labelled = sum(-(-count // 3) for count in (30_000, 40_000, 100_000))
    assert pending.sequence == 170_000 and len(pending) + pending.dropped + labelled == pending.sequence


def test_a_prediction_costs_its_row_and_no_python_object() -> None:
    gc.collect()
    objects = len(gc.get_objects())
    tracemalloc.start()
    pending, version = _ring(50_000)
    for i in range(50_000):
        _record(pending, version, float(i))
    held, _ = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    row = 8 * (2 + 2 + 2)  # time and version, two probabilities, two features
    assert held < 50_000 * (row + 1) + 64 * 1024, held  # the rows, a state byte each, and a little more
    gc.collect()
    assert len(gc.get_objects()) - objects < 100, len(gc.get_objects()) - objects
    assert len(pending) == 50_000


def test_a_manifest_of_another_width_starts_a_new_ring() -> None:
    pending, version = _ring(10)
    old = _record(pending, version, 1.0)
    wider = replace(make_manifest(tiny_onnx(), "8"), features=make_manifest(tiny_onnx()).features * 1)
    assert pending.register(wider) == 1 and pending.take(old) is not None  # same width: the ring stays
    three = replace(wider, version="9", features=(*wider.features, replace(wider.features[0], name="x2")),
                    reference={**wider.reference, "x2": wider.reference["x0"]})
    waiting = _record(pending, version, 2.0)
    index = pending.register(three)
    assert pending.take(waiting) is None and pending.dropped == 1  # what waited is dropped, and counted
    event = pending.record(index, [0.5, 0.5], [1.0, 2.0, 3.0])
    taken = pending.take(event)
    assert taken is not None and taken.features == [1.0, 2.0, 3.0] and taken.prediction.model_version == "9"
