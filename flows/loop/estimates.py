"""Unbiased fleet estimates from filtered uploads: inverse-probability weighting (Hajek).

Edge runners upload a labelled row with probability ``inclusion_probability`` (1 for mistakes,
uncertain and anomalous rows, the random rate for the rest), so the uploaded rows over-represent
mistakes and a plain average of them underestimates accuracy. Weighting each row by ``1/p`` gives
the Hajek estimator ``sum(w * correct) / sum(w)``, consistent for the accuracy on all labelled rows
the devices saw. Its 95% interval rests on the linearised variance ``v = sum(w^2 (y - est)^2) / sum(w)^2``
(a model-based variance: it also covers the rows' own randomness, so with every row uploaded, p = 1,
the interval stays open). For 0/1 values (accuracy, label shares) it is the Wilson score interval at
the effective sample size ``est (1 - est) / v`` (Kish's ``sum(w)^2 / sum(w^2)`` when every row agrees),
so 30 correct rows out of 30 give [0.89, 1], not [1, 1]; other values get the normal interval.
Rows whose value or probability is not finite, or whose probability is outside (0, 1], are ignored and
counted (``ignored``). ``rows`` tells how much an estimate rests on: a class the model predicts
confidently and correctly is seen only through the random sample, so with few random rows its share
is noisy and its interval too narrow (with no random-sample row at all the estimate cannot see
correct, confident rows).

``ipw_mean(values, p)`` is the core; ``accuracy`` and ``label_shares`` apply it; ``fleet_estimates``
gives fleet, per-device, per-model-version and per-device-and-version accuracy and label balance,
each with the naive (unweighted) number beside it. ``load_uploads`` reads the landing zones' edge
batches (rows that carry an inclusion probability; local folder and buckets through
``flows.loop.landing``, which reads a bucket object once); ``write_estimates`` stores the result as
``data/loop/estimates.json`` for the hub's fleet page and the loop's flows (``read_estimates`` gives
None when it is missing or unreadable); ``refresh_estimates`` does all three (every monitor pass).

Leaves out: deciding anything on these numbers (flows.loop.triggers, flows.loop.promotion).
"""

from __future__ import annotations

import json
import logging
import math
from collections.abc import Iterable
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from edge.atomic import write_text_atomic
from edge.contracts.errors import UserError
from edge.contracts.layout import Paths
from edge.contracts.record import INCLUSION_PROBABILITY, MODEL_VERSION, PREDICTION, UPLOAD_REASON
from flows.loop.landing import Landed, edge_rows, forget_gone, landed_batches, landing_zones
from flows.params import Params

__all__ = [
    "ESTIMATES_FILE",
    "Estimate",
    "accuracy",
    "fleet_estimates",
    "ipw_mean",
    "label_shares",
    "load_uploads",
    "read_estimates",
    "refresh_estimates",
    "wilson",
    "write_estimates",
]

ESTIMATES_FILE = "loop/estimates.json"  # under data/
log = logging.getLogger(__name__)
Z95 = 1.959963984540054


@dataclass(frozen=True)
class Estimate:
    value: float | None  # IPW (Hajek) estimate; None without rows
    low: float | None  # 95% interval, clipped to [0, 1]
    high: float | None
    naive: float | None  # the unweighted mean of the uploaded rows (biased under filtering)
    rows: int  # uploaded rows it rests on
    weight: float  # sum of 1/p: the number of labelled rows these stand for
    ignored: int = 0  # rows left out: value or probability not finite, or probability outside (0, 1]

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def ipw_mean(values: np.ndarray, probabilities: np.ndarray) -> Estimate:
    """Hajek estimate of the mean of ``values`` (0/1 or real) over the population the rows were sampled from."""
    y = np.asarray(values, dtype=np.float64)
    p = np.asarray(probabilities, dtype=np.float64)
    if y.shape != p.shape:
        raise ValueError(f"values and probabilities differ in shape: {y.shape} vs {p.shape}")
    keep = np.isfinite(y) & np.isfinite(p) & (p > 0) & (p <= 1)
    ignored = int(y.size - keep.sum())
    y, p = y[keep], p[keep]
    if y.size == 0:
        return Estimate(None, None, None, None, 0, 0.0, ignored)
    w = 1.0 / p
    total = float(w.sum())
    estimate = float((w * y).sum() / total)
    variance = float((w**2 * (y - estimate) ** 2).sum() / total**2)
    if np.isin(y, (0.0, 1.0)).all():
        effective = estimate * (1 - estimate) / variance if variance > 0 else total**2 / float((w**2).sum())
        low, high = wilson(estimate, effective)
    else:
        half = Z95 * math.sqrt(variance)
        low, high = estimate - half, estimate + half
    return Estimate(estimate, max(0.0, low), min(1.0, high), float(y.mean()), int(y.size), total, ignored)


def wilson(share: float, n: float, z: float = Z95) -> tuple[float, float]:
    """Wilson score interval for a proportion ``share`` observed on ``n`` (effective) rows."""
    z2 = z * z
    centre = (share + z2 / (2 * n)) / (1 + z2 / n)
    half = z * math.sqrt(max(0.0, share * (1 - share)) / n + z2 / (4 * n * n)) / (1 + z2 / n)
    return centre - half, centre + half


def _as_text(column: pd.Series) -> pd.Series:
    """Class values as text, so a label read as 1, 1.0 or "1" compares equal to a prediction "1"."""
    def one(value: object) -> str:
        if isinstance(value, float) and value.is_integer():
            return str(int(value))
        return str(value).strip()
    return column.map(one)


def accuracy(frame: pd.DataFrame, label: str) -> Estimate:
    """IPW accuracy of the uploaded labelled rows in ``frame`` (prediction == label)."""
    correct = (_as_text(frame[PREDICTION]) == _as_text(frame[label])).to_numpy(dtype=np.float64)
    return ipw_mean(correct, _probabilities(frame))


def _probabilities(frame: pd.DataFrame) -> np.ndarray:
    """The inclusion probabilities as floats; text that is no number becomes NaN (and is ignored)."""
    values: np.ndarray = pd.to_numeric(frame[INCLUSION_PROBABILITY], errors="coerce").to_numpy(dtype=np.float64)
    return values


def label_shares(frame: pd.DataFrame, label: str, classes: Iterable[object]) -> dict[str, Estimate]:
    """IPW share of each class among the labelled rows (label balance)."""
    p = _probabilities(frame)
    labels = _as_text(frame[label])
    return {str(c): ipw_mean((labels == str(c)).to_numpy(dtype=np.float64), p) for c in classes}


def _group(frame: pd.DataFrame, params: Params) -> dict[str, Any]:
    label = params.schema.label
    return {
        "accuracy": accuracy(frame, label.name).as_dict(),
        "label_shares": {c: e.as_dict() for c, e in label_shares(frame, label.name, label.classes).items()},
        "rows_by_reason": {str(k): int(v) for k, v in frame[UPLOAD_REASON].value_counts().items()},
    }


def fleet_estimates(frame: pd.DataFrame, params: Params) -> dict[str, Any]:
    """Fleet, per-device and per-model-version estimates from uploaded edge rows."""
    device = params.schema.device_id
    out: dict[str, Any] = {"computed_at": datetime.now(UTC).isoformat(), "rows": len(frame)}
    if frame.empty:
        return out | {"fleet": None, "devices": {}, "versions": {}, "device_versions": {}}
    out["fleet"] = _group(frame, params)
    out["devices"] = {str(k): _group(g, params) for k, g in frame.groupby(device, sort=True)}
    out["versions"] = {str(k): _group(g, params) for k, g in frame.groupby(MODEL_VERSION, sort=True)}
    out["device_versions"] = {
        str(d): {str(v): _group(g, params) for v, g in rows.groupby(MODEL_VERSION, sort=True)}
        for d, rows in frame.groupby(device, sort=True)
    }
    return out


def load_uploads(paths: Paths, params: Params, since: datetime | None = None,
                 model_versions: Iterable[str] | None = None, batches: list[Landed] | None = None
                 ) -> pd.DataFrame:
    """Edge rows in the landing zones (``flows.loop.landing``: ``data/uploads/<device>/<batch>.{csv,parquet}``
    and the buckets of ``storage.uploads`` and ``ingest.sources``): those that carry an inclusion
    probability and a label, optionally only batches landed after ``since`` (file or object time) and
    rows made by ``model_versions``; the loop's columns only. ``batches``: the zones' batches when
    already listed. Unreadable files are skipped: ingest quarantines them. A bucket that cannot be
    reached is a UserError."""
    schema = params.schema
    wanted = None if model_versions is None else {str(v) for v in model_versions}
    if batches is None:
        batches = landed_batches(landing_zones(params, paths))
    frames = []
    for batch in batches:
        if since is not None and batch.landed < since:
            continue
        frame = edge_rows(batch, params, paths)
        if frame is None:
            continue
        if wanted is not None:
            frame = frame[frame[MODEL_VERSION].isin(wanted)]
        frames.append(frame)
    if not frames:
        return pd.DataFrame(columns=[*schema.column_names, MODEL_VERSION, PREDICTION, UPLOAD_REASON,
                                     INCLUSION_PROBABILITY])
    return pd.concat(frames, ignore_index=True)


def write_estimates(paths: Paths, estimates: dict[str, Any]) -> Path:
    target = paths.data / ESTIMATES_FILE
    write_text_atomic(target, json.dumps(estimates, indent=2, sort_keys=True, default=str) + "\n")
    return target


def read_estimates(paths: Paths) -> dict[str, Any] | None:
    try:
        raw = json.loads((paths.data / ESTIMATES_FILE).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return raw if isinstance(raw, dict) else None


def refresh_estimates(paths: Paths, params: Params) -> Path:
    """Recompute ``data/loop/estimates.json`` from every edge row landed so far; the file written. When a
    landing zone cannot be listed (a bucket unreachable) the previous file stays, with a warning."""
    try:
        batches = landed_batches(landing_zones(params, paths))
    except (OSError, UserError) as exc:
        log.warning("fleet estimates not refreshed: %s", exc)
        return paths.data / ESTIMATES_FILE
    written = write_estimates(paths, fleet_estimates(load_uploads(paths, params, batches=batches), params))
    forget_gone(paths, batches)
    return written
