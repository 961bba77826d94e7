"""One run of the efficacy benchmark: a seed, a drift kind and a policy, hour by hour in plant time.

``World`` holds the plant (6 machines: 2 canary, 4 stable, as in the demo), the history v1 is trained on
(``days_before`` plant days, fully labelled, as the ``simulate`` stage lands them: inclusion probability
1), one further plant day served by v1 before the drift starts on every machine, then ``days_after``
plant days. Each hour: devices take what their channel points at, predict and upload
(``bench.efficacy.fleet``), the uploads land, the policy steps. ``run_one`` returns the measures
(``bench.efficacy.measures``) and the policy's log.

``rules`` picks the loop rules in force: ``current`` (adaptive collection through
``plan_collection`` and the fresh-row rule of ``flows.loop.triggers``, as they are on main), or ``before``
(issue 14's loop: the fixed ``loop.monitor.min_fresh_rows``, no collection: every device samples at the
runner's default random rate).

Leaves out: transport (a release or a runner policy reaches a device at the next plant hour; the runner
polls every minute or so) and the wall-clock time the cloud takes to retrain.
"""

from __future__ import annotations

import time
from datetime import datetime
from typing import Any

import numpy as np
import pandas as pd

from bench.efficacy import measures
from bench.efficacy.fleet import ROWS_PER_HOUR, START_US, Device, HourRows
from bench.efficacy.policies import POLICIES, Policy, at
from bench.efficacy.releases import Model, make_model, train_candidate
from edge.contracts.record import INCLUSION_PROBABILITY, UPLOAD_REASON
from edgeloop.demo.plant import device_rows
from flows.loop.triggers import MonitorDecision, Observations, decide
from flows.params import Params
from flows.stages.train import fit
from simulator.fleet import device_id
from simulator.plant import LABEL_COLUMN, SENSOR_COLUMNS

__all__ = ["World", "run_one"]

CANARY, STABLE = 2, 4
ORACLE_ROWS = 50_000
ORACLE_SEED_OFFSET = 10_000  # the oracle's rows: another seed stream of the same drifted plant


class World:
    def __init__(self, params: Params, seed: int, drift: str, days_before: float, days_after: float,
                 rules: str = "current", oracle_rows: int = ORACLE_ROWS) -> None:
        self.params, self.seed, self.drift, self.rules = params, seed, drift, rules
        self.oracle_rows = oracle_rows
        self.history_rows = int(round(days_before * 1440))
        self.history_rows -= self.history_rows % ROWS_PER_HOUR
        self.onset_hour = 24
        self.hours = self.onset_hour + int(round(days_after * 24))
        self.drift_row = self.history_rows + self.onset_hour * ROWS_PER_HOUR
        self.next_number = 1
        self.models: dict[int, Model] = {}
        self._uploads: list[pd.DataFrame] = []
        self._uploads_frame: pd.DataFrame | None = None
        self.history = self._history()
        outcome = train_candidate(self.history, params, None)
        if not outcome.passed:
            raise RuntimeError(f"v1 did not pass the gate: {[r.detail for r in outcome.rules]}")
        self.v1 = self.new_model(outcome.estimator, outcome.train, self.history_rows * 60.0, outcome.candidate,
                                 outcome.rules)
        self.devices = [Device(i, "canary" if i < CANARY else "stable", params, seed, drift, self.drift_row, self.v1)
                        for i in range(CANARY + STABLE)]
        self.rows: list[HourRows] = []
        self.raised: dict[str, Any] = {}  # device -> CurrentRaise (adaptive collection)
        self.rate_log: list[dict[str, Any]] = []

    # -- data ---------------------------------------------------------------------------------------------

    def _frame(self, index: int, x: np.ndarray, y: np.ndarray, first_row: int) -> pd.DataFrame:
        frame = pd.DataFrame(x, columns=list(SENSOR_COLUMNS))
        frame[LABEL_COLUMN] = y.astype(np.int64)
        event_id = START_US + (first_row + np.arange(len(y), dtype=np.int64)) * 60_000_000
        frame["event_id"] = event_id
        frame["device_id"] = device_id(index)
        frame["event_time"] = pd.to_datetime(event_id * 1000, utc=True)
        frame[UPLOAD_REASON] = "labelled"
        frame[INCLUSION_PROBABILITY] = 1.0
        return frame

    def _history(self) -> pd.DataFrame:
        parts = []
        for index in range(CANARY + STABLE):
            x, y = device_rows(index, 0, self.history_rows, self.seed, 1.0, self.drift, self.drift_row)
            parts.append(self._frame(index, x, y, 0))
        return pd.concat(parts, ignore_index=True)

    def land(self, rows: list[dict[str, Any]], landed_s: float) -> None:
        if not rows:
            return
        frame = pd.DataFrame(rows)
        frame["event_time"] = pd.to_datetime(frame["event_time"], utc=True, format="ISO8601")
        frame["landed_s"] = landed_s
        self._uploads.append(frame)
        self._uploads_frame = None

    def uploads(self) -> pd.DataFrame:
        if self._uploads_frame is None:
            self._uploads_frame = pd.concat(self._uploads, ignore_index=True) if self._uploads else pd.DataFrame(
                columns=["landed_s", "model_version", INCLUSION_PROBABILITY])
        return self._uploads_frame

    def all_rows(self) -> pd.DataFrame:
        """What the cloud trains on: the history plus every landed upload (the curated rows)."""
        uploads = self.uploads()
        if not len(uploads):
            return self.history
        keep = [c for c in self.history.columns if c in uploads.columns]
        return pd.concat([self.history, uploads[keep]], ignore_index=True)

    def new_model(self, estimator: Any, train: pd.DataFrame, created_s: float, metrics: dict[str, Any] | None = None,
                  rules: list[Any] | None = None) -> Model:
        model = make_model(self.next_number, estimator, train, self.params, created_s, metrics, rules)
        self.models[model.number] = model
        self.next_number += 1
        return model

    def oracle_model(self, created_s: float) -> Model:
        per_device = -(-self.oracle_rows // (CANARY + STABLE))
        parts = []
        for index in range(CANARY + STABLE):
            x, y = device_rows(index, 0, per_device, self.seed + ORACLE_SEED_OFFSET, 1.0, self.drift, 0)
            parts.append(self._frame(index, x, y, 0))
        frame = pd.concat(parts, ignore_index=True)
        return self.new_model(fit(frame, self.params), frame, created_s)

    # -- loop hooks (the rules in force) ------------------------------------------------------------------

    def decide(self, obs: Observations, now: datetime, last_fired: dict[str, Any], fired: list[dict[str, Any]]
               ) -> MonitorDecision:
        return decide(obs, self.params.loop.monitor, now, last_fired, fired)

    def collect(self, policy: Policy, hour: int, end_s: float) -> None:
        if self.rules == "before":
            return
        from bench.efficacy.collect import collection_pass

        collection_pass(self, policy, hour, end_s)

    # -- the run ------------------------------------------------------------------------------------------

    def run(self, policy: Policy) -> None:
        for hour in range(self.hours):
            first_row = self.history_rows + hour * ROWS_PER_HOUR
            start_s, end_s = first_row * 60.0, (first_row + ROWS_PER_HOUR) * 60.0
            policy.start_hour(hour, start_s)
            for device in self.devices:
                target = policy.target(device.group)
                if target.version != device.model.version:
                    if policy.force:
                        device.previous, device.model, device.watch = device.model, target, None
                    else:
                        kind = device.offer(target, start_s)
                        if kind == "blocked":
                            policy.note(hour, "device_blocked", device=device.name, release=target.number)
            landed = []
            for device in self.devices:
                rows, uploads = device.hour(hour, first_row, end_s)
                self.rows.append(rows)
                landed.extend(uploads)
                for event in device.events:
                    if event.get("noted") is None and event["kind"] == "rolled_back":
                        event["noted"] = True
                        policy.note(hour, "device_rolled_back", device=device.name, release=event["version"])
            self.land(landed, end_s)
            policy.step(hour, end_s)


def run_one(params: Params, seed: int, drift: str, policy_name: str, days_before: float = 3.0,
            days_after: float = 7.0, rules: str = "current", window_h: int = measures.WINDOW_H) -> dict[str, Any]:
    """Run one (seed, drift, policy); its measures, log and wall time."""
    started = time.perf_counter()
    world = World(params, seed, drift, days_before, days_after, rules)
    v1 = world.v1
    policy = POLICIES[policy_name](world, canary=v1, stable=v1, force=policy_name in ("nightly", "oracle"))
    world.run(policy)
    result = measures.measure(world, policy, window_h)
    result.update({"seed": seed, "drift": drift, "policy": policy_name, "rules": rules,
                   "wall_s": round(time.perf_counter() - started, 1), "log": policy.log,
                   "rates": world.rate_log, "start": at(world.history_rows * 60.0).isoformat()})
    return result
