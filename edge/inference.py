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
``min``/``max`` are *not* refused: their names are listed in ``Prediction.out_of_range``. Callers that
keep what they predicted (edge.serving) use ``infer``: the row as floats in feature order (NaN for
missing), its out-of-range names, the label, and the probabilities by class and as a list;
``describe(manifest, ...)`` rebuilds a Prediction from those floats.

Decision rule: ``edge.contracts.decision`` (the one the cloud's evaluation uses): for a binary model the
positive class when its probability (float32 from the model, compared as float64) is ``>= decision_threshold``,
else the other class; for more classes the most probable one (first on ties).

``event_id``: unless the caller passes one, a process-wide, strictly increasing integer taken from
``time.time_ns()`` (bumped by one when the clock has not moved on or went back), so ids are unique in
the process and roughly time-ordered across restarts.

``predict_batch(rows)`` does the same for many rows (a 2-D numpy array is checked column-wise with
numpy) with one model call.

A single row goes to the model through a float32 buffer of the calling thread (one ``struct.pack_into``,
no new array per call), and the session is called through its C binding (``InferenceSession._sess.run``)
when that exists and answers like ``InferenceSession.run`` on the warm-up rows: the Python wrapper only
re-validates the input names on every call, which the Predictor checked once at load.

Leaves out: holding and swapping the model in service (edge.serving), the HTTP API, the spool and
upload filter, fetching and activating releases, drift and health statistics. Standard library, numpy
and onnxruntime (imported lazily, after ``edge.telemetry.switch_off``).
"""

from __future__ import annotations

import math
import numbers
import struct
import sys
import threading
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, NamedTuple

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
    "Prediction",
    "Predictor",
    "describe",
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


class Prediction(NamedTuple):
    """One answer (immutable; a tuple, so building one on the hot path is cheap)."""

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


# --- the schema's bounds, shared by the checks and by describe() ------------------------------------

def _bounds(manifest: Manifest) -> tuple[tuple[float, ...], tuple[float, ...]]:
    low = tuple(-math.inf if f.min is None else f.min for f in manifest.features)
    high = tuple(math.inf if f.max is None else f.max for f in manifest.features)
    return low, high


def _outside(names: Sequence[str], values: Sequence[float], low: Sequence[float], high: Sequence[float]
             ) -> tuple[str, ...]:
    return tuple(n for n, x, lo, hi in zip(names, values, low, high, strict=True) if x < lo or x > hi)


def describe(manifest: Manifest, probabilities: Sequence[float], values: Sequence[float], event_id: int
             ) -> Prediction:
    """The Prediction ``manifest``'s model gave for ``values`` (checked floats, NaN for missing) when its
    probabilities were ``probabilities``: the same label and out-of-range names ``predict`` gave."""
    classes = manifest.classes
    probs = [float(p) for p in probabilities]
    label = classes[decide_one(probs, positive_index(classes, manifest.positive_class), manifest.decision_threshold)]
    low, high = _bounds(manifest)
    return Prediction(label, dict(zip(classes, probs, strict=True)), manifest.version, event_id,
                      _outside(manifest.feature_names, values, low, high))


# --- the predictor -----------------------------------------------------------------------------------

class Predictor:
    """A verified, warmed model for one manifest. Build with ``from_folder`` or ``Predictor(manifest, bytes)``."""

    def __init__(self, manifest: Manifest, model: bytes) -> None:
        verify_model(manifest, model)  # ManifestError unless size and sha256 match
        self.manifest = manifest
        self.version = manifest.version
        self.classes = manifest.classes
        self._names = tuple(manifest.feature_names)
        self._name_set = frozenset(self._names)
        self._nullable = tuple(f.nullable for f in manifest.features)
        self._integer = tuple(f.dtype == "int" for f in manifest.features)
        self._low, self._high = _bounds(manifest)
        self._specs = tuple(zip(self._names, self._nullable, self._integer, self._low, self._high, strict=True))
        # the fast check: a float inside these bounds needs nothing else (int features always take the slow one)
        big = sys.float_info.max
        self._fast = tuple(
            (math.inf, -math.inf) if integer else (max(low, -big), min(high, big))
            for integer, low, high in zip(self._integer, self._low, self._high, strict=True)
        )
        self._positive = positive_index(manifest.classes, manifest.positive_class)
        self._threshold = manifest.decision_threshold
        session = _open_session(model)
        inputs, outputs = session.get_inputs(), session.get_outputs()
        if len(inputs) != 1 or len(outputs) != 2:
            raise ModelError(f"model: expected 1 input and 2 outputs (label, probabilities), got "
                             f"{len(inputs)} and {len(outputs)}")
        self._input = str(inputs[0].name)
        self._output = [str(outputs[1].name)]
        self._session = _Runnable(session)
        self._pack = struct.Struct(f"={len(self._names)}f").pack_into
        self._buffers = threading.local()  # per thread: (bytearray, float32 [1, features] array over it)
        self._pair = self.classes if len(self.classes) == 2 else None
        self._warm_up(session)

    @classmethod
    def from_folder(cls, folder: Path) -> Predictor:
        """The release in ``folder`` (``manifest.json`` and the model file it names)."""
        manifest = Manifest.from_json((folder / MANIFEST_FILE).read_bytes())
        return cls(manifest, (folder / manifest.model.file).read_bytes())

    # -- one row --

    def predict(self, features: Row, event_id: int | None = None) -> Prediction:
        """Check one row against the schema, run the model, apply the decision rule."""
        _, out_of_range, label, by_class, _ = self.infer(features)
        return Prediction(label, by_class, self.version, next_event_ids() if event_id is None else event_id,
                          out_of_range)

    def infer(self, features: Row) -> tuple[list[float], tuple[str, ...], ClassValue, dict[ClassValue, float],
                                             list[float]]:
        """One row through the model: the row as checked floats (``check_row``), its out-of-range names,
        the decided class, the probabilities by class, and the same probabilities as a list (float32
        values as Python floats). ``InputError`` when the schema refuses the row; any other exception is
        the model's."""
        values, out_of_range = self.check_row(features)
        probabilities: list[float] = self._session.run(self._output, {self._input: self._row(values)}, None
                                                       )[0].tolist()[0]
        label = self.classes[decide_one(probabilities, self._positive, self._threshold)]
        pair = self._pair
        if pair is not None:
            return values, out_of_range, label, {pair[0]: probabilities[0], pair[1]: probabilities[1]}, probabilities
        return values, out_of_range, label, dict(zip(self.classes, probabilities, strict=True)), probabilities

    def _row(self, values: list[float]) -> np.ndarray:
        """``values`` as the float32 ``[1, features]`` model input, in this thread's buffer (reused)."""
        buffer: bytearray
        row: np.ndarray
        try:
            buffer, row = self._buffers.row
        except AttributeError:
            buffer = bytearray(4 * len(self._names))
            row = np.frombuffer(buffer, dtype=np.float32).reshape(1, len(self._names))
            self._buffers.row = buffer, row
        try:
            self._pack(buffer, 0, *values)
        except OverflowError:  # a finite value beyond float32: numpy makes it an infinity, as it always did
            return np.array((values,), dtype=np.float32)
        return row

    def check_row(self, features: Row, where: str = "") -> tuple[list[float], tuple[str, ...]]:
        """One row as floats in feature order (NaN for missing) and its out-of-range feature names;
        ``InputError`` naming the feature (prefixed by ``where``) when the schema refuses it. A list of
        in-range floats comes back as it is (not copied)."""
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
        for value, (low, high) in zip(values, self._fast, strict=True):
            if type(value) is not float or not low <= value <= high:
                return self._check_slowly(values, where)  # missing, an int, near or past a bound, or refused
        return (values if kind is list else list(values)), ()  # type: ignore[return-value,arg-type]  # floats

    def _check_slowly(self, values: Sequence[object], where: str) -> tuple[list[float], tuple[str, ...]]:
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
        values, out_of_range = self.check_rows(rows)
        count = values.shape[0]
        if event_ids is not None and len(event_ids) != count:
            raise InputError(f"event_ids: expected {count} ids (one per row), got {len(event_ids)}")
        if count == 0:
            return []
        if event_ids is None:
            first = next_event_ids(count)
            event_ids = range(first, first + count)
        return self.describe_rows(self.probabilities_of_rows(values), event_ids, out_of_range)

    def check_rows(self, rows: np.ndarray | Sequence[Row]) -> tuple[np.ndarray, list[tuple[str, ...]]]:
        """Many rows as a float64 ``[rows, features]`` array (NaN for missing) and each row's
        out-of-range names; ``InputError`` naming the row and feature when the schema refuses one."""
        if isinstance(rows, np.ndarray):
            return self._check_matrix(rows)
        if isinstance(rows, str | bytes | bytearray | Mapping) or not isinstance(rows, Sequence):
            raise InputError(f"rows: expected a sequence of rows or a 2-D array, got {type(rows).__name__}")
        checked = [self.check_row(row, f"rows[{i}].") for i, row in enumerate(rows)]
        values = np.array([c[0] for c in checked], dtype=np.float64).reshape(len(checked), len(self._names))
        return values, [c[1] for c in checked]

    def probabilities_of_rows(self, values: np.ndarray) -> np.ndarray:
        """Class probabilities ``[rows, classes]`` for rows ``check_rows`` returned (one model call)."""
        if values.shape[0] == 0:
            return np.zeros((0, len(self.classes)), dtype=np.float32)
        x = np.ascontiguousarray(values, dtype=np.float32)
        return np.asarray(self._session.run(self._output, {self._input: x}, None)[0])

    def describe_rows(self, probabilities: np.ndarray, event_ids: Sequence[int],
                      out_of_range: Sequence[tuple[str, ...]]) -> list[Prediction]:
        """The Predictions for rows whose probabilities the model gave (decision rule applied)."""
        chosen = decide_many(probabilities, self._positive, self._threshold).tolist()
        classes, version = self.classes, self.version
        return [
            Prediction(classes[c], dict(zip(classes, p, strict=True)), version, int(e), o)
            for c, p, e, o in zip(chosen, probabilities.tolist(), event_ids, out_of_range, strict=True)
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
        return x, out_of_range

    # -- start-up --

    def _warm_up(self, session: Any) -> None:
        mid = [_midpoint(low, high) for low, high in zip(self._low, self._high, strict=True)]
        one, eight = np.array([mid], dtype=np.float32), np.array([mid] * 8, dtype=np.float32)
        for _ in range(WARMUP_RUNS):
            probs = self._session.run(self._output, {self._input: one}, None)[0]
        batch = self._session.run(self._output, {self._input: eight}, None)[0]
        for shape, rows in ((np.shape(probs), 1), (np.shape(batch), 8)):
            if shape != (rows, len(self.classes)):
                raise ModelError(f"model: probabilities have shape {shape} for {rows} row(s), expected "
                                 f"({rows}, {len(self.classes)}) for classes {list(self.classes)}")
        self._session.settle(session, self._output, {self._input: eight})


class _Runnable:
    """``run(outputs, feed, options)`` of a session: the C binding's once ``settle`` found it answers like
    the public ``InferenceSession.run``, the public one until then (or for good)."""

    __slots__ = ("run",)

    def __init__(self, session: Any) -> None:
        self.run: Any = session.run

    def settle(self, session: Any, outputs: list[str], feed: dict[str, np.ndarray]) -> None:
        inner = getattr(getattr(session, "_sess", None), "run", None)
        if not callable(inner):
            return
        try:
            same = np.array_equal(np.asarray(inner(outputs, feed, None)[0]), np.asarray(session.run(outputs, feed)[0]))
        except Exception:  # noqa: BLE001 - any surprise: keep the public call
            return
        if same:
            self.run = inner


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
