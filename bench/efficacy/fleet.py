"""Simulated devices running edgeloop's real edge decisions, one plant hour at a time.

Each ``Device`` has a simulated machine (``edgeloop.demo.plant.device_rows``: the demo's chunked streams, the
drift from an exact row), the release it runs, and per hour: predicts its rows (``releases.Model``), gets
every row's true label at the end of the hour, passes each row through the real upload filter
(``edge.upload_filter.select`` at its current random rate, so rows keep their inclusion probability),
builds the rows the runner would upload (``edge.ground_truth.build_row``) and counts the bytes the runner
would send (``encode_rows`` batches of ``upload.batch_rows``, gzip level 6 as ``edge.hub_client`` sends
them) and the raw bytes (CSV of features + label of every row, one header per device: the demo's measure).
Drift: ``edge.drift.DriftMonitor`` of the running release over the device's last ``drift.window_rows``
rows. Updates: a new release pointed at by its channel goes through ``edge.shadow.compare`` on the
device's newest ``feedback.recent_labelled`` labelled rows (a channel pointed back at an older release is
taken without it, as ``edge.updates`` does), then an ``edge.health.WatchWindow`` on the plant clock, judged
at the end of each hour (the runner judges on every label: up to an hour later here).

Leaves out: transport (a release or rate reaches the device at the start of the next hour), label delay
within the hour, spool and disk, model errors.
"""

from __future__ import annotations

import gzip
from collections import deque
from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from bench.efficacy.releases import Model
from edge.config import DriftConfig, FeedbackConfig, UploadConfig
from edge.contracts.record import INCLUSION_PROBABILITY, MODEL_VERSION, PREDICTION, UPLOAD_REASON
from edge.ground_truth import build_row, encode_csv, encode_rows
from edge.health import ROLLING_WINDOW, WatchRules, WatchWindow
from edge.inference import Prediction
from edge.shadow import compare
from edge.upload_filter import UploadPolicy, select
from edgeloop.demo.plant import device_rows
from flows.params import Params
from simulator.fleet import device_id as device_name
from simulator.plant import LABEL_COLUMN, SENSOR_COLUMNS

__all__ = ["Device", "HourRows"]

ROWS_PER_HOUR = 60  # one row per plant minute
BLOCK_ROWS = 1440  # rows predicted per scikit-learn call (a plant day; hours never straddle a block)
START_US = int(pd.Timestamp("2026-01-01T00:00:00Z").value // 1000)


@dataclass
class HourRows:
    """What one device did in one hour (kept for the measures)."""

    hour: int
    device: str
    group: str
    version: str
    x: np.ndarray
    y: np.ndarray
    correct: np.ndarray


@dataclass
class Device:
    index: int
    group: str  # canary | stable
    params: Params
    seed: int
    drift: str
    drift_row: int | None
    model: Model
    rate: float = UploadConfig.random_rate
    name: str = ""
    previous: Model | None = None
    blocked: set[str] = field(default_factory=set)
    events: list[dict[str, object]] = field(default_factory=list)
    watch: WatchWindow | None = None
    uploaded_bytes: int = 0
    uploaded_rows: int = 0
    raw_bytes: int = 0

    def __post_init__(self) -> None:
        self.name = self.name or device_name(self.index)
        self.window: deque[np.ndarray] = deque()  # recent rows, for PSI (DriftConfig.window_rows)
        self.window_len = 0
        self.labelled_x: deque[np.ndarray] = deque()  # recent labelled rows, for the shadow check
        self.labelled_y: deque[np.ndarray] = deque()
        self.labelled_len = 0
        self.outcomes: deque[bool] = deque(maxlen=ROLLING_WINDOW)  # the runner's rolling accuracy
        self._raw_header = False

    # -- updates ------------------------------------------------------------------------------------------

    def offer(self, model: Model, now_s: float) -> str | None:
        """The channel points at ``model``: take it (shadow check first, unless it is older), or refuse.
        Returns the event kind (activated, blocked) or None when nothing changed."""
        if model.version == self.model.version or model.version in self.blocked:
            return None
        if model.number < self.model.number:  # the cloud pointed the channel back: its rollback
            self._activate(model, now_s, watch=False)
            return "activated"
        x, labels = self._labelled()
        result = compare(model, self.model, x, labels, model.manifest.edge_policy)  # type: ignore[arg-type]
        if not result.passed:
            self.blocked.add(model.version)
            self.events.append({"kind": "blocked", "version": model.version, "at_s": now_s, "detail": result.reason})
            return "blocked"
        self._activate(model, now_s, watch=True)
        return "activated"

    def _activate(self, model: Model, now_s: float, watch: bool) -> None:
        self.previous, self.model = self.model, model
        self.watch = WatchWindow(WatchRules.from_policy(model.manifest.edge_policy), now_s, model.version) \
            if watch else None

    def _labelled(self) -> tuple[np.ndarray, list[object]]:
        if not self.labelled_x:
            return np.zeros((0, len(SENSOR_COLUMNS))), []
        return np.concatenate(list(self.labelled_x)), np.concatenate(list(self.labelled_y)).tolist()

    # -- one hour -----------------------------------------------------------------------------------------

    def hour(self, hour: int, first_row: int, end_s: float) -> tuple[HourRows, list[dict[str, object]]]:
        """Predict the hour's rows, label them, filter uploads; (what happened, uploaded rows)."""
        model = self.model
        block = first_row - first_row % BLOCK_ROWS
        bx, by = device_rows(self.index, block, BLOCK_ROWS, self.seed, 1.0, self.drift, self.drift_row)
        block_codes, block_probs = model.predict_block((self.index, block), bx)
        part = slice(first_row - block, first_row - block + ROWS_PER_HOUR)
        x, y, codes, probs = bx[part], by[part], block_codes[part], block_probs[part]
        correct = codes == y
        self.outcomes.extend(correct.tolist())
        self._remember(x, y)
        uploads = self._upload(model, x, y, codes, probs, first_row)
        if self.watch is not None:
            for hit in correct.tolist():
                self.watch.feedback(hit, model.version)
            reason = self.watch.rollback_reason(end_s)
            if reason is not None and self.previous is not None:
                self.events.append({"kind": "rolled_back", "version": model.version, "at_s": end_s,
                                    "detail": reason})
                self.blocked.add(model.version)
                self.model, self.previous, self.watch = self.previous, None, None
        return HourRows(hour, self.name, self.group, model.version, x, y, correct), uploads

    def max_psi(self) -> float | None:
        if not self.window:
            return None
        return self.model.drift.max_score(np.concatenate(list(self.window)))

    def _remember(self, x: np.ndarray, y: np.ndarray) -> None:
        self.window.append(x)
        self.window_len += len(x)
        while self.window_len - len(self.window[0]) >= DriftConfig.window_rows:
            self.window_len -= len(self.window.popleft())
        self.labelled_x.append(x)
        self.labelled_y.append(y)
        self.labelled_len += len(x)
        while self.labelled_len - len(self.labelled_x[0]) >= FeedbackConfig.recent_labelled:
            self.labelled_len -= len(self.labelled_x.popleft())
            self.labelled_y.popleft()

    def _upload(self, model: Model, x: np.ndarray, y: np.ndarray, codes: np.ndarray, probs: np.ndarray,
                first_row: int) -> list[dict[str, object]]:
        manifest = model.manifest
        policy = UploadPolicy(random_rate=self.rate)
        columns = manifest.columns
        assert columns is not None
        low = np.array([f.min if f.min is not None else -np.inf for f in manifest.features])
        high = np.array([f.max if f.max is not None else np.inf for f in manifest.features])
        outside = (x < low) | (x > high)  # NaN compares False: a missing value is not out of range
        names = manifest.feature_names
        classes = model.classes
        rows: list[dict[str, object]] = []
        for i, (values, label, code, p) in enumerate(zip(x.tolist(), y.tolist(), codes.tolist(), probs.tolist(),
                                                          strict=True)):
            event_id = START_US + (first_row + i) * 60_000_000
            out = tuple(n for n, o in zip(names, outside[i].tolist(), strict=True) if o)
            prediction = Prediction(classes[code], dict(zip(classes, p, strict=True)), model.version, event_id, out)
            features = [None if v != v else v for v in values]
            chosen = select(policy, prediction, classes[label], self.name, manifest, features)
            if chosen is None:
                continue
            event_time = pd.Timestamp(event_id * 1000, tz="UTC").to_pydatetime()
            rows.append(build_row(manifest, prediction, features, classes[label], event_time, self.name, {},
                                  chosen, columns))
        self._count_bytes(rows, x, y)
        return rows

    def _count_bytes(self, rows: list[dict[str, object]], x: np.ndarray, y: np.ndarray) -> None:
        for first in range(0, len(rows), UploadConfig.batch_rows):
            body = encode_rows(rows[first : first + UploadConfig.batch_rows])
            self.uploaded_bytes += len(gzip.compress(body, compresslevel=6, mtime=0))
        self.uploaded_rows += len(rows)
        columns = [*SENSOR_COLUMNS, LABEL_COLUMN]
        raw = [dict(zip(columns, [*(None if v != v else v for v in values), int(label)], strict=True))
               for values, label in zip(x.tolist(), y.tolist(), strict=True)]
        size = len(encode_csv(raw, columns))
        if self._raw_header:
            size -= len(encode_csv([], columns))
        self._raw_header = True
        self.raw_bytes += size


UPLOAD_COLUMNS = (MODEL_VERSION, PREDICTION, UPLOAD_REASON, INCLUSION_PROBABILITY)
