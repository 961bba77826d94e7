"""In-process inference for the edge runner: one verified release folder, one warmed onnxruntime session.

``Predictor.from_folder(folder)`` reads ``manifest.json`` and the model file it names, checks the model's
size and sha256 against the manifest (``edge.contracts.manifest.verify_model``), opens an onnxruntime session
(CPU provider, one intra-op and one inter-op thread), checks the model's output has one column per
manifest class, and warms the session up on rows of feature midpoints before returning. A Predictor is
immutable once built; onnxruntime sessions may be run from many threads at once.

``predict(features)`` takes one row, either a sequence in manifest feature order or a mapping by feature
name, and returns a ``Prediction``. Inputs are checked against the manifest schema and every refusal is
an ``InputError`` (a ``ValueError``) whose message starts with the feature's name: wrong length, a
missing or unknown name, a value that is not a real number (bools and strings included), an infinity,
a non-integral value for an ``int`` feature, and NaN or None for a feature that is not ``nullable``
(for a nullable one both mean "missing" and reach the model as NaN). Values outside a feature's
``min``/``max`` are *not* refused: their names are listed in ``Prediction.out_of_range``.

Decision rule: ``edge.contracts.decision`` (the one the cloud's evaluation uses): for a binary model the
positive class when its probability (float32 from the model, compared as float64) is ``>= decision_threshold``,
else the other class; for more classes the most probable one (first on ties).

``event_id``: unless the caller passes one, a process-wide, strictly increasing integer taken from
``time.time_ns()`` (bumped by one when the clock has not moved on or went back), so ids are unique in
the process and roughly time-ordered across restarts.

``predict_batch(rows)`` does the same for many rows (a 2-D numpy array is checked column-wise with
numpy) with one model call. ``ModelSlot`` holds the active Predictor and swaps it for another between
requests: callers build and warm the new one first, and the lock guards only the reference swap.

Leaves out: the HTTP API, the spool and upload filter, fetching and activating releases, drift and
health statistics. Standard library, numpy and onnxruntime (imported lazily, after
``edge.telemetry.switch_off``).
"""

from __future__ import annotations

import math
import numbers
import threading
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from edge.contracts.decision import decide_many, decide_one, positive_index
from edge.contracts.manifest import Manifest, verify_model
from edge.contracts.release_layout import MANIFEST_FILE
from edge.contracts.schema import ClassValue
from edge.telemetry import switch_off

__all__ = [
    "MANIFEST_FILE",
    "InputError",
    "ModelError",
    "ModelSlot",
    "Prediction",
    "Predictor",
    "next_event_ids",
]

WARMUP_RUNS = 5  # single-row runs before a Predictor is returned (plus one small batch)

Row = Sequence[object] | Mapping[str, object]


class InputError(ValueError):
    """A row does not fit the manifest schema; the message starts with the feature's name."""

    def __init__(self, message: str, feature: str | None = None) -> None:
        super().__init__(message)
        self.feature = feature  # None when the problem is the row as a whole (wrong type or length)


class ModelError(RuntimeError):
    """The model file cannot serve this manifest (unreadable, or outputs that do not fit its classes)."""


@dataclass(frozen=True)
class Prediction:
    label: ClassValue
    probabilities: dict[ClassValue, float]  # class -> probability, in manifest class order
    model_version: str
    event_id: int
    out_of_range: tuple[str, ...] = ()  # features outside their manifest min/max (not refused)

    def to_json_dict(self) -> dict[str, object]:
        """The answer as JSON gives it: class keys as strings, ``out_of_range`` only when non-empty."""
        out: dict[str, object] = {
            "label": self.label, "probabilities": {str(k): v for k, v in self.probabilities.items()},
            "model_version": self.model_version, "event_id": self.event_id,
        }
        if self.out_of_range:
            out["out_of_range"] = list(self.out_of_range)
        return out


# --- event ids ---------------------------------------------------------------------------------------

_event_lock = threading.Lock()
_last_event_id = 0


def next_event_ids(count: int = 1) -> int:
    """Reserve ``count`` consecutive event ids; returns the first. Strictly increasing per process."""
    global _last_event_id
    with _event_lock:
        first = time.time_ns()
        if first <= _last_event_id:
            first = _last_event_id + 1
        _last_event_id = first + count - 1
        return first


# --- the predictor -----------------------------------------------------------------------------------

class Predictor:
    """A verified, warmed model for one manifest. Build with ``from_folder`` or ``from_bytes``."""

    def __init__(self, manifest: Manifest, model: bytes) -> None:
        verify_model(manifest, model)  # ManifestError unless size and sha256 match
        self.manifest = manifest
        self.version = manifest.version
        self._names = tuple(manifest.feature_names)
        self._name_set = frozenset(self._names)
        self._classes = manifest.classes
        self._nullable = tuple(f.nullable for f in manifest.features)
        self._integer = tuple(f.dtype == "int" for f in manifest.features)
        self._low = tuple(-math.inf if f.min is None else f.min for f in manifest.features)
        self._high = tuple(math.inf if f.max is None else f.max for f in manifest.features)
        self._specs = tuple(zip(self._names, self._nullable, self._integer, self._low, self._high, strict=True))
        self._positive = positive_index(manifest.classes, manifest.positive_class)
        self._threshold = manifest.decision_threshold
        self._session = _open_session(model)
        inputs, outputs = self._session.get_inputs(), self._session.get_outputs()
        if len(inputs) != 1 or len(outputs) != 2:
            raise ModelError(f"model: expected 1 input and 2 outputs (label, probabilities), got "
                             f"{len(inputs)} and {len(outputs)}")
        self._input = str(inputs[0].name)
        self._output = [str(outputs[1].name)]
        self._warm_up()

    @classmethod
    def from_folder(cls, folder: Path) -> Predictor:
        """The release in ``folder`` (``manifest.json`` and the model file it names)."""
        manifest = Manifest.from_json((folder / MANIFEST_FILE).read_bytes())
        return cls(manifest, (folder / manifest.model.file).read_bytes())

    # -- one row --

    def predict(self, features: Row, event_id: int | None = None) -> Prediction:
        """Check one row against the schema, run the model, apply the decision rule."""
        values, out_of_range = self._check(features)
        x = np.array(values, dtype=np.float32).reshape(1, -1)
        probs = self._session.run(self._output, {self._input: x})[0][0].tolist()
        return Prediction(
            label=self._classes[decide_one(probs, self._positive, self._threshold)],
            probabilities=dict(zip(self._classes, probs, strict=True)),
            model_version=self.version,
            event_id=next_event_ids() if event_id is None else event_id,
            out_of_range=out_of_range,
        )

    def _check(self, features: Row, where: str = "") -> tuple[list[float], tuple[str, ...]]:
        kind = type(features)
        values: Sequence[object]
        if kind is dict or (kind is not list and kind is not tuple and isinstance(features, Mapping)):
            values = self._from_mapping(features, where)  # type: ignore[arg-type]  # a Mapping here
        elif kind is list or kind is tuple or (
            isinstance(features, Sequence | np.ndarray) and not isinstance(features, str | bytes | bytearray)
        ):
            values = features  # type: ignore[assignment]  # a Sequence here
            if len(values) != len(self._names):
                raise InputError(f"{where}features: expected {len(self._names)} values in the order "
                                 f"{list(self._names)}, got {len(values)}")
        else:
            raise InputError(f"{where}features: expected a sequence in feature order or a mapping by name, "
                             f"got {type(features).__name__}")
        row: list[float] = []
        out_of_range: list[str] = []
        for (name, nullable, integer, low, high), value in zip(self._specs, values, strict=True):
            vkind = type(value)
            if vkind is float:
                x: float = value  # type: ignore[assignment]  # type checked just above
            elif vkind is int:
                x = float(value)  # type: ignore[arg-type]
            else:
                x = _number(value, f"{where}{name}")
            if x - x != 0.0:  # NaN or an infinity
                if x != x:
                    if not nullable:
                        raise InputError(f"{where}{name}: missing value (None/NaN) for a feature that is not "
                                         f"nullable", name)
                    row.append(x)
                    continue
                raise InputError(f"{where}{name}: {x} is not a finite number", name)
            if integer and not x.is_integer():
                raise InputError(f"{where}{name}: expected an integer, got {value!r}", name)
            if x < low or x > high:
                out_of_range.append(name)
            row.append(x)
        return row, tuple(out_of_range)

    def _from_mapping(self, features: Mapping[str, object], where: str) -> list[object]:
        try:
            values = [features[name] for name in self._names]
        except KeyError:
            missing = next(name for name in self._names if name not in features)
            raise InputError(f"{where}{missing}: required feature is missing", missing) from None
        if len(features) != len(self._names):
            unknown = next(str(k) for k in features if k not in self._name_set)
            raise InputError(f"{where}{unknown}: unknown feature (expected {list(self._names)})", unknown)
        return values

    # -- many rows --

    def predict_batch(self, rows: np.ndarray | Sequence[Row], event_ids: Sequence[int] | None = None
                      ) -> list[Prediction]:
        """``predict`` for many rows with one model call. A 2-D numpy array is checked with numpy."""
        if isinstance(rows, np.ndarray):
            x, out_of_range = self._check_matrix(rows)
        else:
            if isinstance(rows, str | bytes | bytearray | Mapping) or not isinstance(rows, Sequence):
                raise InputError(f"rows: expected a sequence of rows or a 2-D array, got {type(rows).__name__}")
            checked = [self._check(row, f"rows[{i}].") for i, row in enumerate(rows)]
            x = np.array([c[0] for c in checked], dtype=np.float32).reshape(len(checked), len(self._names))
            out_of_range = [c[1] for c in checked]
        count = x.shape[0]
        if event_ids is not None and len(event_ids) != count:
            raise InputError(f"event_ids: expected {count} ids (one per row), got {len(event_ids)}")
        if count == 0:
            return []
        probs = np.asarray(self._session.run(self._output, {self._input: x})[0])
        chosen = decide_many(probs, self._positive, self._threshold).tolist()
        if event_ids is None:
            first = next_event_ids(count)
            ids: Sequence[int] = range(first, first + count)
        else:
            ids = event_ids
        classes, version = self._classes, self.version
        return [
            Prediction(classes[c], dict(zip(classes, p, strict=True)), version, int(e), o)
            for c, p, e, o in zip(chosen, probs.tolist(), ids, out_of_range, strict=True)
        ]

    def _check_matrix(self, rows: np.ndarray) -> tuple[np.ndarray, list[tuple[str, ...]]]:
        names = self._names
        if rows.ndim != 2 or rows.shape[1] != len(names):
            raise InputError(f"rows: expected a 2-D array of shape [rows, {len(names)}] in the order "
                             f"{list(names)}, got shape {rows.shape}")
        if rows.dtype.kind not in "fiu":
            raise InputError(f"rows: expected a numeric array, got dtype {rows.dtype}")
        x = rows.astype(np.float64, copy=False)
        missing = np.isnan(x)
        for j, name in enumerate(names):
            column = x[:, j]
            if not self._nullable[j] and missing[:, j].any():
                i = int(np.flatnonzero(missing[:, j])[0])
                raise InputError(f"rows[{i}].{name}: missing value (None/NaN) for a feature that is not "
                                 f"nullable", name)
            infinite = np.isinf(column)
            if infinite.any():
                i = int(np.flatnonzero(infinite)[0])
                raise InputError(f"rows[{i}].{name}: {column[i]} is not a finite number", name)
            if self._integer[j]:
                bad = ~missing[:, j] & (column != np.round(column))
                if bad.any():
                    i = int(np.flatnonzero(bad)[0])
                    raise InputError(f"rows[{i}].{name}: expected an integer, got {column[i]!r}", name)
        outside = (x < np.array(self._low)) | (x > np.array(self._high))
        out_of_range: list[tuple[str, ...]] = [()] * x.shape[0]
        for i in np.flatnonzero(outside.any(axis=1)).tolist():
            out_of_range[i] = tuple(names[j] for j in np.flatnonzero(outside[i]).tolist())
        return np.ascontiguousarray(x, dtype=np.float32), out_of_range

    # -- start-up --

    def _warm_up(self) -> None:
        mid = [_midpoint(low, high) for low, high in zip(self._low, self._high, strict=True)]
        for _ in range(WARMUP_RUNS):
            probs = self._session.run(self._output, {self._input: np.array([mid], dtype=np.float32)})[0]
        batch = self._session.run(self._output, {self._input: np.array([mid] * 8, dtype=np.float32)})[0]
        for shape, rows in ((np.shape(probs), 1), (np.shape(batch), 8)):
            if shape != (rows, len(self._classes)):
                raise ModelError(f"model: probabilities have shape {shape} for {rows} row(s), expected "
                                 f"({rows}, {len(self._classes)}) for classes {list(self._classes)}")


def _number(value: object, path: str) -> float:
    if value is None:
        return math.nan
    if isinstance(value, bool | np.bool_) or not isinstance(value, numbers.Real):
        raise InputError(f"{path}: expected a number, got {_describe(value)}", path.rsplit(".", 1)[-1])
    return float(value)


def _describe(value: object) -> str:
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


def _midpoint(low: float, high: float) -> float:
    if math.isfinite(low) and math.isfinite(high):
        return (low + high) / 2.0
    if math.isfinite(low):
        return low
    return high if math.isfinite(high) else 0.0


def _open_session(model: bytes) -> Any:  # onnxruntime.InferenceSession
    switch_off()  # onnxruntime reads its telemetry switch when first imported
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.intra_op_num_threads = 1
    options.inter_op_num_threads = 1
    try:
        return ort.InferenceSession(model, sess_options=options, providers=["CPUExecutionProvider"])
    except Exception as exc:  # onnxruntime raises its own exception types for unreadable graphs
        raise ModelError(f"model: onnxruntime cannot load it: {exc}") from None


# --- the active model --------------------------------------------------------------------------------

class ModelSlot:
    """The Predictor in service. ``swap`` replaces it between requests; requests in flight finish on the
    one they started with (they hold their own reference)."""

    def __init__(self, predictor: Predictor) -> None:
        self._current = predictor
        self._lock = threading.Lock()

    @property
    def current(self) -> Predictor:
        return self._current

    def swap(self, new: Predictor) -> Predictor:
        """Make ``new`` (already built and warmed) the active Predictor; returns the previous one."""
        with self._lock:
            old, self._current = self._current, new
        return old

    def predict(self, features: Row, event_id: int | None = None) -> Prediction:
        return self._current.predict(features, event_id)

    def predict_batch(self, rows: np.ndarray | Sequence[Row], event_ids: Sequence[int] | None = None
                      ) -> list[Prediction]:
        return self._current.predict_batch(rows, event_ids)
