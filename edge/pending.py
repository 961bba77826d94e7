"""Predictions waiting for their label: a bounded, thread-safe map from event id to what was predicted.

``/feedback`` (event id + label) joins the label to the features, prediction and context kept here.
The map holds the newest ``capacity`` predictions; older ones are dropped (counted in ``dropped``), and
a label for a dropped or already-labelled event is refused by the caller with a clear message (the
caller may then send the features with the label). Adding is O(1) under one lock: it sits on the
inference path.

Leaves out: persistence (a restart forgets pending predictions; labelled rows are durable once
spooled), and deciding what to upload.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from edge.inference import Prediction

__all__ = ["Pending", "PendingPredictions"]


@dataclass(frozen=True, slots=True)
class Pending:
    features: Sequence[object]  # in manifest feature order, as the caller sent them (already checked)
    prediction: Prediction
    context: Mapping[str, object] | None
    at: float  # time.time() of the prediction


class PendingPredictions:
    def __init__(self, capacity: int) -> None:
        if capacity < 1:
            raise ValueError("capacity must be >= 1")
        self._capacity = capacity
        self._items: OrderedDict[int, Pending] = OrderedDict()
        self._lock = threading.Lock()
        self.dropped = 0

    def add(self, event_id: int, entry: Pending) -> None:
        with self._lock:
            self._items[event_id] = entry
            if len(self._items) > self._capacity:
                self._items.popitem(last=False)
                self.dropped += 1

    def take(self, event_id: int) -> Pending | None:
        """Remove and return the prediction for ``event_id`` (None when unknown or already taken)."""
        with self._lock:
            return self._items.pop(event_id, None)

    def __len__(self) -> int:
        return len(self._items)
