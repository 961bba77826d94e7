"""The runner's live inputs: the core between a protocol adapter and the runner (the ``Inbox`` it delivers to).

``LiveInputs(config, predict, feedback, manifest, metrics)`` routes each message an adapter delivers
(``deliver(source, payload, at)``) to the tags, key and label reading it: the payload is parsed once
(edge.inputs.payload) and each field path picked from it. Tag values go to the row assembler
(edge.inputs.assembler); when its trigger fires (or every ``period_s``) a due row is predicted with the
runner's own ``predict_one`` (the same hot path as the HTTP API) unless a required tag is missing or stale
(counted ``inputs_skipped_total{reason, tag}``; also ``no_model``, ``refused`` by the model's schema and
``unavailable``). The prediction is remembered for its label (edge.inputs.joiner) and written back as a
``Decision`` through the adapter; while the connection is down decisions are dropped, not queued (counted
``inputs_writes_total{outcome="dropped"}``), because the control system must not act on a stale one.

A label is joined to its prediction (by key, or the newest one within ``window_s`` before it) and handed to
``Runner.feedback(event_id, label, row)`` once; the row goes with it, so a prediction the pending ring has
already evicted is still recorded. ``deliver`` returns after that call: the label is spooled durably (or
refused and counted) before the adapter acknowledges the message. A label that could not be kept (the
spool's disk failed, no model) is given back to the joiner and not acknowledged, so the server redelivers it.
Outcomes: ``inputs_labels_total{outcome}`` = joined | unmatched (no prediction for it: unknown key, already
labelled, evicted, or outside the window) | refused (not one of the model's classes) | not_kept.

``start()`` imports ``edge.inputs.<protocol>`` (only then: paho-mqtt or asyncua) and runs its adapter in a
daemon thread, plus a timer thread for ``trigger = "period"``; ``stop()`` ends both. ``report()`` is the
state report's ``inputs`` block.

Leaves out: the protocol (edge.inputs.mqtt, edge.inputs.opcua), the [inputs] keys (edge.inputs.settings),
and what feedback does with a label (edge.feedback). Standard library only.
"""

from __future__ import annotations

import array
import collections
import importlib
import logging
import threading
import time
from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from typing import Any

from edge.contracts.manifest import Manifest
from edge.inference import InputError, Prediction
from edge.inputs.assembler import RowAssembler, Skip
from edge.inputs.joiner import LabelJoiner
from edge.inputs.payload import PayloadError, parse, pick
from edge.inputs.settings import KEY_TAG, InputsConfig
from edge.inputs.source import Adapter, Decision, OpenAdapter
from edge.metrics import Counter, Registry

__all__ = ["InputsUnavailable", "LiveInputs"]

log = logging.getLogger("edge.inputs")

EXTRAS = {"mqtt": "paho-mqtt", "opcua": "asyncua"}
_LABEL, _LABEL_KEY = "\x00label", "\x00label_key"  # route names that cannot clash with a feature


def _compact(values: list[object]) -> list[object]:
    """The row as the joiner keeps it: 8 bytes a value (an ``array('d')``) instead of a float object each."""
    try:
        return array.array("d", values)  # type: ignore[type-var,return-value]  # floats, once predicted
    except TypeError:
        return values


class InputsUnavailable(RuntimeError):
    """The protocol client named by ``inputs.protocol`` is not installed."""


class LiveInputs:
    """See the module docstring. Thread safe (one lock around the assembler and the joiner)."""

    def __init__(self, config: InputsConfig, predict: Callable[[list[object]], Prediction],
                 feedback: Callable[[int, Any, list[object]], object],
                 manifest: Callable[[], Manifest | None], metrics: Registry,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.config = config
        self._predict, self._feedback, self._manifest, self._clock = predict, feedback, manifest, clock
        self._names: tuple[Manifest | None, Sequence[str] | None] = (None, None)  # feature names per manifest
        self._assembler = RowAssembler(config)
        labels = config.labels
        self._joiner = LabelJoiner(config.join_capacity, labels.window_s if labels else 0.0,
                                   by_key=labels is not None and labels.join == "key")
        self._routes: dict[str, list[tuple[str, tuple[str, ...]]]] = collections.defaultdict(list)
        for tag in config.tags:
            self._routes[tag.source].append((tag.feature, tag.field))
        if config.key is not None:
            self._routes[config.key.source].append((KEY_TAG, config.key.field))
        if labels is not None:
            self._routes[labels.source].append((_LABEL, labels.field))
            if labels.key_source is not None:
                self._routes[labels.key_source].append((_LABEL_KEY, labels.key_field or ()))
        self._sources = config.sources
        self._lock = threading.Lock()
        self._label_key: object | None = None  # the latest value of labels.key_source
        self._adapter: Adapter | None = None
        self._stop = threading.Event()
        self._threads: list[threading.Thread] = []
        self.connected_now = False
        self._ever_connected = False
        self._last_message: float | None = None
        self._counts: collections.Counter[tuple[str, ...]] = collections.Counter()
        self._counts_lock = threading.Lock()  # counted from the adapter's and the period timer's threads
        self._warned: set[tuple[str, str]] = set()  # (what, tag) logged once as a warning, then at debug level
        m = metrics
        self._m: dict[str, Counter] = {
            "skipped": m.counter("inputs_skipped_total", "Due rows not predicted", ("reason", "tag")),
            "predictions": m.counter("inputs_predictions_total", "Predictions made from live inputs"),
            "writes": m.counter("inputs_writes_total", "Decisions written back", ("outcome",)),
            "labels": m.counter("inputs_labels_total", "Labels from live inputs", ("outcome",)),
            "bad": m.counter("inputs_bad_values_total", "Messages or fields that could not be read", ("tag",)),
            "reconnects": m.counter("inputs_reconnects_total", "Connections made again after a loss"),
            "evicted": m.counter("inputs_join_evicted_total", "Predictions forgotten before their label"),
        }
        self._connected_gauge = m.gauge("inputs_connected", "1 while the live-input connection is up")

    # -- the Inbox an adapter delivers to --

    @property
    def sources(self) -> tuple[str, ...]:
        return self._sources

    def deliver(self, source: str, payload: object, at: float) -> bool:
        routes = self._routes.get(source)
        if routes is None:
            return True
        self._last_message = at
        try:
            value = parse(payload)
        except PayloadError as exc:
            self._bad(routes[0][0], source, exc)
            return True
        decision = None
        labels: list[object] = []
        with self._lock:
            fire = False
            for name, path in routes:
                try:
                    picked = pick(value, path)
                except PayloadError as exc:
                    self._bad(name, source, exc)
                    continue
                if name == _LABEL:
                    labels.append(picked)
                elif name == _LABEL_KEY:
                    self._label_key = picked
                else:
                    fire = self._assembler.update(name, picked, at) or fire
            if fire:
                decision = self._predict_now(at)
        if decision is not None:
            self._write(decision)
        kept = True
        for label in labels:
            kept = self._label(label, value, at) and kept
        return kept

    def connected(self) -> None:
        if self._ever_connected:
            self._count("reconnects")
        self._ever_connected = self.connected_now = True
        self._connected_gauge.set(1)
        log.info("live inputs: connected to %s", self.config.url)

    def disconnected(self, reason: str) -> None:
        if self.connected_now:
            log.warning("live inputs: connection to %s lost: %s (reconnecting)", self.config.url, reason)
        else:
            log.info("live inputs: cannot connect to %s: %s (retrying)", self.config.url, reason)
        self.connected_now = False
        self._connected_gauge.set(0)

    # -- predictions --

    def _predict_now(self, now: float) -> Decision | None:
        """Predict the due row (the lock is held); the decision to write back, if any."""
        manifest = self._manifest()
        names = self._names[1]
        if manifest is not self._names[0]:
            names = None if manifest is None else tuple(manifest.feature_names)
            self._names = (manifest, names)
        if names is None:
            self._count("skipped", "no_model", "")
            return None
        row = self._assembler.row(names, now)
        if isinstance(row, Skip):
            self._count("skipped", row.reason, row.tag)
            return None
        values, key = row
        try:
            prediction = self._predict(values)
        except InputError as exc:
            self._count("skipped", "refused", exc.feature or "")
            self._log_once("refused", exc.feature or "", "live inputs: row refused by the model's schema: %s", exc)
            return None
        except RuntimeError as exc:  # no model, or the model failed (the health monitor has it)
            self._count("skipped", "unavailable", "")
            log.info("live inputs: no prediction: %s", exc)
            return None
        self._assembler.predicted()
        if self.config.labels is not None:
            self._joiner.remember(key, prediction.event_id, _compact(values), now)
            self._sync_evicted()
        self._count("predictions")
        if self.config.output is None:
            return None
        probabilities = {str(k): v for k, v in prediction.probabilities.items()}
        return Decision(key=key, label=prediction.label, probability=prediction.probabilities[prediction.label],
                        probabilities=probabilities, model_version=prediction.model_version,
                        event_id=prediction.event_id, at=datetime.now(UTC).isoformat())

    def _write(self, decision: Decision) -> None:
        adapter = self._adapter
        written = adapter is not None and self.connected_now and adapter.write(decision)
        self._count("writes", "written" if written else "dropped")

    def predict_due(self) -> None:
        """The period trigger's tick: predict the current row now."""
        with self._lock:
            decision = self._predict_now(self._clock())
        if decision is not None:
            self._write(decision)

    # -- labels --

    def _label(self, label: object, payload: object, at: float) -> bool:
        labels = self.config.labels
        assert labels is not None
        with self._lock:
            key: object | None = None
            if labels.join == "key":
                if labels.key_source is not None:
                    key = self._label_key
                else:
                    assert labels.key_field is not None
                    try:
                        key = pick(payload, labels.key_field)
                    except PayloadError as exc:
                        self._bad(_LABEL, labels.source, exc)
                        return True
                joined = None if key is None else self._joiner.take(key)
            else:
                joined = self._joiner.take_near(at)
        if joined is None:
            self._count("labels", "unmatched")
            return True
        event_id, row = joined
        try:
            self._feedback(event_id, label, row)
        except InputError as exc:
            self._give_back(key, joined, at)
            self._count("labels", "refused")
            log.warning("live inputs: label %r refused: %s", label, exc)
            return True
        except LookupError as exc:  # cannot happen with the row sent along; counted, never a crash
            self._count("labels", "unmatched")
            log.warning("live inputs: label for event %s not joined: %s", event_id, exc)
            return True
        except (OSError, RuntimeError) as exc:
            self._give_back(key, joined, at)
            self._count("labels", "not_kept")
            log.error("live inputs: label for event %s not kept (it will be redelivered): %s", event_id, exc)
            return False
        self._count("labels", "joined")
        return True

    def _give_back(self, key: object | None, joined: tuple[int, list[object]], at: float) -> None:
        with self._lock:
            self._joiner.give_back(key, joined, at)
            self._sync_evicted()

    # -- counting --

    def _count(self, family: str, *labels: str) -> None:
        with self._counts_lock:
            self._counts[(family, *labels)] += 1
        self._m[family].inc(*labels)

    def _bad(self, name: str, source: str, exc: PayloadError) -> None:
        tag = {_LABEL: "label", _LABEL_KEY: "label_key"}.get(name, name)
        self._count("bad", tag)
        self._log_once("bad", tag, "live inputs: %s (%s): %s", tag, source, exc)

    def _log_once(self, what: str, tag: str, message: str, *args: object) -> None:
        """A warning the first time per (what, tag), then debug lines: a bad tag at 100 Hz floods no log."""
        first = (what, tag) not in self._warned
        self._warned.add((what, tag))
        log.log(logging.WARNING if first else logging.DEBUG, message + ("" if first else " (repeated)"), *args)

    def _sync_evicted(self) -> None:
        with self._counts_lock:
            evicted = self._joiner.evicted - self._counts[("evicted",)]
            if evicted > 0:
                self._counts[("evicted",)] += evicted
        if evicted > 0:
            self._m["evicted"].inc(amount=evicted)

    def report(self) -> dict[str, Any]:
        """The state report's ``inputs`` block."""
        with self._counts_lock:
            counts = dict(self._counts)
        skipped: dict[str, dict[str, int]] = {}
        labels: dict[str, int] = {}
        writes: dict[str, int] = {}
        bad: dict[str, int] = {}
        for (family, *names), n in counts.items():
            if family == "skipped":
                skipped.setdefault(names[0], {})[names[1]] = n
            elif family == "labels":
                labels[names[0]] = n
            elif family == "writes":
                writes[names[0]] = n
            elif family == "bad":
                bad[names[0]] = n
        last = self._last_message
        return {
            "protocol": self.config.protocol,
            "url": self.config.url,
            "connected": self.connected_now,
            "last_message_age_s": None if last is None else round(self._clock() - last, 3),
            "predictions": counts.get(("predictions",), 0),
            "skipped": skipped,
            "labels": labels,
            "writes": writes,
            "bad_values": bad,
            "reconnects": counts.get(("reconnects",), 0),
            "join_evicted": counts.get(("evicted",), 0),
            "awaiting_label": len(self._joiner),
        }

    # -- lifecycle --

    def start(self) -> None:
        """Import the protocol client, open its adapter and run it (and the period timer) in threads."""
        protocol = self.config.protocol
        try:
            module = importlib.import_module(f"edge.inputs.{protocol}")
        except ImportError as exc:
            raise InputsUnavailable(
                f"inputs.protocol: {protocol!r} needs {EXTRAS[protocol]} ({exc}); install it with: "
                f"pip install \"edgeloop[{protocol}]\"") from None
        open_adapter: OpenAdapter = module.open_adapter
        self._adapter = open_adapter(self.config, self)
        self._spawn("inputs", self._run_adapter)
        if self.config.trigger == "period":
            self._spawn("inputs-period", self._run_period)

    def _spawn(self, name: str, target: Callable[[], None]) -> None:
        thread = threading.Thread(target=target, name=f"edge-runner-{name}", daemon=True)
        thread.start()
        self._threads.append(thread)

    def _run_adapter(self) -> None:
        assert self._adapter is not None
        try:
            self._adapter.run(self._stop)
        except Exception:
            log.exception("live inputs: the %s client stopped on an error", self.config.protocol)
        finally:
            self.connected_now = False
            self._connected_gauge.set(0)

    def _run_period(self) -> None:
        while not self._stop.wait(self.config.period_s):
            try:
                self.predict_due()
            except Exception:
                log.exception("live inputs: periodic prediction failed; it goes on")

    def stop(self, timeout: float = 5.0) -> None:
        self._stop.set()
        deadline = time.monotonic() + timeout
        for thread in self._threads:
            thread.join(max(0.0, deadline - time.monotonic()))
