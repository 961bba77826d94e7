"""The four ways to run the fleet, each a ``Policy`` the run calls at the end of every plant hour.

- ``Static``: v1 forever.
- ``Nightly``: at every ``loop.monitor.nightly_cron`` slot (02:00 UTC: every 24 plant hours) fit on the
  history plus every upload so far (``flows.stages.train.fit``: 1/p weights) and point every device at it,
  no split, no gate, no canary, no device checks: the common practice.
- ``Edgeloop``: params.yaml as configured: the monitor's real ``flows.loop.triggers.decide`` (cron, data
  volume, fleet drift from the devices' PSI, IPW accuracy from ``flows.loop.estimates``, cooldown, the
  fresh-row rule), the retrain (time split, fit, gate rules) to canary, the devices' shadow check and
  watch, the real ``flows.loop.promotion.decide`` soak rules to stable or back, and (when the rules in
  force have it) adaptive collection through ``flows.loop.collection.plan_collection``.
- ``Oracle``: at the onset hour, every device runs a model fitted on ``oracle_rows`` fully labelled rows of
  the drifted plant (another seed stream), straight away.

Leaves out: hub, Prefect, TUF, files. What the cloud sees is what the devices uploaded, landed at the end of
the hour they were made in.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from bench.efficacy.releases import Model, train_candidate
from edge.contracts.record import INCLUSION_PROBABILITY, MODEL_VERSION
from flows.loop import promotion
from flows.loop.estimates import accuracy as ipw_accuracy
from flows.loop.fresh_rows import FreshRule, effective_rows
from flows.loop.triggers import DeviceState, Observations, scheduled
from flows.stages.train import fit

if TYPE_CHECKING:
    from bench.efficacy.run import World

__all__ = ["POLICIES", "Edgeloop", "Nightly", "Oracle", "Policy", "Static"]

START = datetime(2026, 1, 1, tzinfo=UTC)


def at(seconds: float) -> datetime:
    return START + timedelta(seconds=seconds)


@dataclass
class Policy:
    """Channel pointers (canary/stable release) and what happened; ``step`` runs at the end of each hour."""

    world: World
    canary: Model
    stable: Model
    force: bool = False  # devices take a new release without shadow check or watch
    published: int = 0
    log: list[dict[str, Any]] = field(default_factory=list)

    def note(self, hour: int, kind: str, **extra: Any) -> None:
        self.log.append({"hour": hour - self.world.onset_hour, "kind": kind, **extra})

    def __post_init__(self) -> None:  # noqa: B027 - a hook: subclasses set up their own state
        pass

    def start_hour(self, hour: int, start_s: float) -> None:  # noqa: B027 - a hook, empty by default
        pass

    def step(self, hour: int, end_s: float) -> None:  # noqa: B027
        pass

    def target(self, group: str) -> Model:
        return self.canary if group == "canary" else self.stable


class Static(Policy):
    pass


class Oracle(Policy):
    def start_hour(self, hour: int, start_s: float) -> None:
        if hour == self.world.onset_hour:
            model = self.world.oracle_model(start_s)
            self.canary = self.stable = model
            self.published += 1
            self.note(hour, "publish", release=model.number, to="fleet")


class Nightly(Policy):
    def __post_init__(self) -> None:
        self.trained_s = self.world.v1.created_s

    def step(self, hour: int, end_s: float) -> None:
        slot = scheduled(self.world.params.loop.monitor.nightly_cron, at(self.trained_s), at(end_s))
        if not slot.fired:
            return
        self.trained_s = end_s
        frame = self.world.all_rows()
        estimator = fit(frame, self.world.params)
        model = self.world.new_model(estimator, frame, end_s)
        self.canary = self.stable = model
        self.published += 1
        self.note(hour, "publish", release=model.number, to="fleet", rows=len(frame))


class Edgeloop(Policy):
    def __post_init__(self) -> None:
        v1 = self.world.v1
        # v1 as the demo records it: a manual retrain that holds no trigger
        self.fired: list[dict[str, Any]] = [{"at": at(v1.created_s).isoformat(), "source": "manual", "hold_s": 0}]
        self.trained_s = v1.created_s
        self.canary_since_s = v1.created_s
        self.starved_noted = False
        self.last_wait = ""

    def step(self, hour: int, end_s: float) -> None:
        self.monitor(hour, end_s)
        self.promote(hour, end_s)
        self.world.collect(self, hour, end_s)

    # -- the monitor --------------------------------------------------------------------------------------

    def observations(self, end_s: float) -> Observations:
        w = self.world
        devices = tuple(DeviceState(d.name, d.group, True, d.max_psi()) for d in w.devices)
        uploads = w.uploads()
        fresh_rows = uploads[uploads["landed_s"] > self.trained_s] if len(uploads) else uploads
        fresh = len(fresh_rows)
        p = fresh_rows[INCLUSION_PROBABILITY].to_numpy(dtype=np.float64) if fresh else np.zeros(0)
        newest = max((self.canary, self.stable), key=lambda m: m.number)
        versions = {self.canary.version, self.stable.version}
        since = max(self.canary.created_s, self.stable.created_s)
        rows = uploads[(uploads["landed_s"] > since) & uploads[MODEL_VERSION].isin(versions)] if len(uploads) \
            else uploads
        estimate = ipw_accuracy(rows, w.params.schema.label.name) if len(rows) else None
        return Observations(
            devices=devices, new_labelled_rows=fresh,
            accuracy=None if estimate is None else estimate.value,
            accuracy_rows=0 if estimate is None else estimate.rows,
            accuracy_interval=(None, None) if estimate is None else (estimate.low, estimate.high),
            accuracy_versions=tuple(sorted(versions)),
            accuracy_note=None if estimate is not None else "no labelled rows from the current models",
            fresh_effective_rows=round(effective_rows(fresh, p), 1) if fresh else 0.0,
            accuracy_before=newest.gate_accuracy, fresh_rule=FreshRule.from_params(w.params))

    def monitor(self, hour: int, end_s: float) -> None:
        w = self.world
        obs = self.observations(end_s)
        decision = w.decide(obs, at(end_s), self.fired[-1], self.fired)
        if "waiting for fresh ground truth" in decision.summary and hour >= w.onset_hour and not self.starved_noted:
            self.starved_noted = True
            self.note(hour, "starved", summary=decision.summary)
        if self.starved_noted and not decision.fired and decision.fresh_rows is not None \
                and decision.fresh_rows.get("have", 0) >= decision.fresh_rows.get("needed", 0) \
                and not any(e["kind"] == "fresh_enough" for e in self.log):
            self.note(hour, "fresh_enough", fresh=decision.fresh_rows.get("text"), summary=decision.summary)
        if not decision.fired:
            return
        self.fired.append({"at": at(end_s).isoformat(), "source": "monitor"})
        self.trained_s = end_s
        frame = w.all_rows()
        outcome = train_candidate(frame, w.params, self.stable)
        triggers = list(decision.would_fire)
        if not outcome.passed:
            self.note(hour, "gate_blocked", triggers=triggers, candidate=outcome.candidate.get(w.params.gate.metric),
                      champion=(outcome.champion or {}).get(w.params.gate.metric))
            return
        model = w.new_model(outcome.estimator, outcome.train, end_s, outcome.candidate, outcome.rules)
        if self.canary.number != self.stable.number:  # the candidate on canary is replaced before it was promoted
            self.note(hour, "superseded", release=self.canary.number, waiting=self.last_wait)
        self.canary = model
        self.canary_since_s = end_s
        self.published += 1
        self.note(hour, "publish", release=model.number, to="canary", triggers=triggers, rows=len(frame),
                  fresh=obs.new_labelled_rows, needed=(decision.fresh_rows or {}).get("needed"))

    # -- promotion ----------------------------------------------------------------------------------------

    def promote(self, hour: int, end_s: float) -> None:
        w = self.world
        if self.canary.number == self.stable.number:
            return
        uploads = w.uploads()
        window = uploads[uploads["landed_s"] > self.canary_since_s] if len(uploads) else uploads
        label = w.params.schema.label.name

        def estimate(version: str) -> Any:
            rows = window[window[MODEL_VERSION] == version] if len(window) else window
            return ipw_accuracy(rows, label) if len(rows) else promotion.NO_ROWS

        running = tuple(sorted(d.name for d in w.devices if d.group == "canary"
                               and d.model.version == self.canary.version))
        rejected = tuple(promotion.Rejection(d.name, str(e["kind"]), str(e["at_s"]), str(e["detail"]))
                         for d in w.devices for e in d.events if e["version"] == self.canary.version)
        evidence = promotion.SoakEvidence(
            now=at(end_s), candidate=self.canary.number, stable=self.stable.number,
            on_channel_since=at(self.canary_since_s), devices=running, rejections=rejected,
            candidate_accuracy=estimate(self.canary.version), stable_accuracy=estimate(self.stable.version),
            gate_accuracy=self.canary.gate_accuracy)
        verdict = promotion.decide(evidence, w.params.loop.promotion)
        self.last_wait = verdict.summary
        if verdict.action == "promote":
            self.stable = self.canary
            self.note(hour, "promote", release=self.canary.number)
        elif verdict.action == "rollback":
            back = self.stable
            self.note(hour, "rollback", release=self.canary.number, to=back.number, why=list(verdict.reasons)[:2])
            self.canary = back
            self.canary_since_s = end_s


POLICIES = {"static": Static, "nightly": Nightly, "edgeloop": Edgeloop, "oracle": Oracle}


def ipw_rows(frame: pd.DataFrame) -> float:
    """Labelled rows the uploads stand for (sum of 1/p)."""
    if not len(frame):
        return 0.0
    return float((1.0 / frame[INCLUSION_PROBABILITY].to_numpy(dtype=np.float64)).sum())
