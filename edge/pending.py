"""Recent predictions in one fixed-size ring: what ``/feedback`` joins a label to, and the drift window.

``PendingPredictions(capacity, window)`` keeps the newest ``max(capacity, window)`` predictions as rows
of ONE preallocated float64 buffer (time, model version index, class probabilities, features in manifest
order with NaN for missing; a row is written with one ``struct.pack_into``, read through a numpy view)
plus one state byte each: no Python object per prediction, so memory is fixed and the garbage collector
has nothing to walk. Only context fields, when a caller sent any, are
kept per entry (as JSON text, in a dict keyed by ring slot; local-only fields never get here).

Event ids are the ring's own sequence: ``base + n`` for the n-th prediction recorded, where ``base``
comes from ``edge.inference.next_event_ids`` when the ring is made (the clock in ns, above every id this
process gave before). So ids are unique and strictly increasing per runner, and above those of an
earlier run unless it predicted more times than nanoseconds passed before the restart; and the slot of
an id is arithmetic (``n % slots``), with no id -> slot map.

``record`` (the hot path: one lock, one row write) returns the new prediction's event id;
``record_block`` does the same for a batch. The newest ``capacity`` predictions wait for a label:
``take(event_id)`` returns a ``Pending`` once (None when the id is unknown, labelled already, or
evicted), ``give_back`` undoes a take (a label typo must not lose the prediction). A prediction leaving
the newest ``capacity`` unlabelled is counted in ``dropped``. ``window(since, rows)`` copies the
features of the newest ``rows`` predictions recorded at sequence ``since`` or later (the drift window of
the model in service). ``predicted()`` counts predictions per model version.

The ring's width comes from the first manifest ``register``-ed; a manifest of another width (the
updates refuse one, so this never happens in service) starts a new ring, and what was pending is dropped.

Leaves out: persistence (a restart forgets pending predictions; labelled rows are durable once spooled),
deciding what to upload, and the drift statistics (edge.drift). Standard library and numpy.
"""

from __future__ import annotations

import json
import struct
import threading
import time
from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np

from edge.contracts.manifest import Manifest
from edge.inference import Prediction, describe, next_event_ids

__all__ = ["Pending", "PendingPredictions"]

EMPTY, WAITING, LABELLED = 0, 1, 2  # state byte of a ring slot
_AT, _VERSION, _PROBS = 0, 1, 2  # ring columns: time, version index, then probabilities, then features


@dataclass(frozen=True)
class Pending:
    """A prediction taken for its label."""

    features: list[float]  # manifest order, NaN for missing
    prediction: Prediction
    context: Mapping[str, object] | None
    at: float  # time.time() of the prediction


class PendingPredictions:
    """See the module docstring. Thread safe."""

    def __init__(self, capacity: int, window: int = 0) -> None:
        if capacity < 1:
            raise ValueError("capacity must be >= 1")
        self.capacity = capacity
        self.slots = max(capacity, window)
        self._lag = self.slots - capacity  # prediction n - capacity sits this many slots after prediction n
        self.dropped = 0
        self._lock = threading.Lock()
        self._base = next_event_ids()
        self._next = 0  # sequence number of the next prediction
        self._waiting = 0
        self._state = bytearray(self.slots)
        self._states = np.frombuffer(self._state, dtype=np.uint8)  # the same bytes, for block updates
        self._buffer = bytearray()
        self._rows = np.zeros((0, 0), dtype=np.float64)  # a view of _buffer
        self._pack = struct.Struct("0d").pack_into
        self._stride = 0
        self._classes = 0
        self._contexts: dict[int, str] = {}
        self._manifests: list[Manifest] = []
        self._index: dict[str, int] = {}
        self._counts: list[int] = []

    def __len__(self) -> int:
        """Predictions waiting for a label."""
        return self._waiting

    @property
    def sequence(self) -> int:
        """Predictions recorded so far (the sequence number of the next one)."""
        return self._next

    # -- model versions --

    def register(self, manifest: Manifest) -> int:
        """The index ``record`` takes for predictions of ``manifest``'s model."""
        width = 2 + len(manifest.classes) + len(manifest.features)
        with self._lock:
            if self._rows.shape[1] != width:
                self._start_ring(width, len(manifest.classes))
            index = self._index.get(manifest.version)
            if index is None:
                index = self._index[manifest.version] = len(self._manifests)
                self._manifests.append(manifest)
                self._counts.append(0)
            else:
                self._manifests[index] = manifest
            return index

    def _start_ring(self, width: int, classes: int) -> None:
        self.dropped += self._waiting
        self._waiting = 0
        self._states[:] = EMPTY
        self._contexts.clear()
        self._buffer = bytearray(self.slots * width * 8)
        self._rows = np.frombuffer(self._buffer, dtype=np.float64).reshape(self.slots, width)
        self._pack = struct.Struct(f"={width}d").pack_into
        self._stride = width * 8
        self._classes = classes

    def predicted(self) -> dict[str, int]:
        """Predictions recorded per model version."""
        with self._lock:
            return {m.version: count for m, count in zip(self._manifests, self._counts, strict=True) if count}

    # -- recording --

    def record(self, version: int, probabilities: list[float], values: list[float], context: str | None = None,
               waiting: bool = True) -> int:
        """Keep one prediction; its event id. ``context``: JSON text of its context fields; ``waiting``
        False: it needs no label (it came with one). The hot path: one lock, one row write."""
        state = self._state
        with self._lock:
            n = self._next
            self._next = n + 1
            self._counts[version] += 1
            slot = n % self.slots
            gone = (slot + self._lag) % self.slots if self._lag else slot  # prediction n - capacity's slot
            if state[gone] == WAITING:
                self._drop(gone)
            self._pack(self._buffer, slot * self._stride, time.time(), version, *probabilities, *values)
            if waiting:
                state[slot] = WAITING
                self._waiting += 1
                if context is not None:
                    self._contexts[slot] = context
            else:
                state[slot] = LABELLED
        return self._base + n

    def _drop(self, slot: int) -> None:
        """The prediction in ``slot`` leaves the newest ``capacity`` without a label."""
        self._state[slot] = EMPTY
        self._waiting -= 1
        self.dropped += 1
        if self._contexts:
            self._contexts.pop(slot, None)

    def _expire(self, n: int) -> None:
        """Prediction ``n`` leaves the newest ``capacity``: dropped if it still waited for a label."""
        slot = n % self.slots
        if self._state[slot] == WAITING:
            self._drop(slot)

    def record_block(self, version: int, probabilities: np.ndarray, values: np.ndarray,
                     context: str | None = None) -> int:
        """Keep many predictions (one row each); the first one's event id (the others follow it)."""
        count = values.shape[0]
        block = np.empty((count, self._rows.shape[1]), dtype=np.float64)
        block[:, _AT] = time.time()
        block[:, _VERSION] = version
        block[:, _PROBS:_PROBS + probabilities.shape[1]] = probabilities
        block[:, _PROBS + probabilities.shape[1]:] = values
        with self._lock:
            first = self._next
            self._next = first + count
            self._counts[version] += count
            for n in range(max(0, first - self.capacity), min(first, first + count - self.capacity)):
                self._expire(n)  # older predictions pushed out of the newest `capacity`
            self.dropped += max(0, count - self.capacity)  # and this block's own oldest, when it is that large
            kept = range(max(first, first + count - self.slots), first + count)
            slots = np.arange(kept.start, kept.stop) % self.slots
            self._rows[slots] = block[kept.start - first:]
            self._states[slots] = EMPTY
            pending = range(max(kept.start, first + count - self.capacity), kept.stop)
            for n in pending:
                slot = n % self.slots
                self._state[slot] = WAITING
                if context is not None:
                    self._contexts[slot] = context
            self._waiting += len(pending)
        return self._base + first

    # -- labels --

    def take(self, event_id: int) -> Pending | None:
        """The prediction ``event_id`` names, once (None when unknown, already labelled or evicted)."""
        n = event_id - self._base
        with self._lock:
            if n < 0 or n < self._next - self.capacity or n >= self._next:
                return None
            slot = n % self.slots
            if self._state[slot] != WAITING:
                return None
            self._state[slot] = LABELLED
            self._waiting -= 1
            row = self._rows[slot].tolist()
            context = self._contexts.pop(slot, None) if self._contexts else None
            classes = self._classes
        manifest = self._manifests[int(row[_VERSION])]
        probabilities, values = row[_PROBS:_PROBS + classes], row[_PROBS + classes:]
        return Pending(values, describe(manifest, probabilities, values, event_id),
                       None if context is None else json.loads(context), row[_AT])

    def give_back(self, pending: Pending) -> None:
        """Undo ``take`` (the label was refused): the prediction waits again, unless evicted meanwhile."""
        n = pending.prediction.event_id - self._base
        with self._lock:
            slot = n % self.slots
            if n < self._next - self.capacity or self._state[slot] != LABELLED:
                return
            self._state[slot] = WAITING
            self._waiting += 1
            if pending.context is not None:
                self._contexts[slot] = json.dumps(pending.context)

    # -- the drift window --

    def window(self, since: int, rows: int) -> np.ndarray:
        """Features of the newest ``rows`` predictions recorded at sequence ``since`` or later, oldest
        first (``[rows, features]``; fewer when fewer were recorded)."""
        with self._lock:
            end = self._next
            start = max(since, end - rows, end - self.slots, 0)
            features = slice(_PROBS + self._classes, None)
            first, last = start % self.slots, end % self.slots
            if start >= end:
                return np.zeros((0, max(0, self._rows.shape[1] - _PROBS - self._classes)), dtype=np.float64)
            if first < last or last == 0:
                return self._rows[first:last or self.slots, features].copy()
            return np.concatenate([self._rows[first:, features], self._rows[:last, features]])
