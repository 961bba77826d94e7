"""Runner health: rolling accuracy from feedback, error counters, the status word, and the post-activation watch.

``HealthMonitor`` counts model errors (the model failed on valid input), input errors (the caller sent
a row the schema refuses) and feedback, and keeps the last ``window`` feedback outcomes for
``rolling_accuracy()``; ``model_ok()`` says a model call succeeded (predictions themselves are counted
where they are kept, edge.pending). ``status(...)`` gives the word the hub heartbeat accepts:

* "error": no model is loaded, or the most recent model call failed (no success since the last model error);
* "degraded": a model error within the last ``error_memory_s`` seconds, rolling accuracy below a given
  floor on at least ``min_feedback`` outcomes, or "major" drift;
* "ok": otherwise.

``assess(...)`` gives the word with its reasons in words ("model errors: 3 in the last 300 s",
"accuracy 0.778 below floor 0.8 on the last 200 labels", "drift major: temperature PSI 0.41 >= 0.25"):
what ``/health``, ``status`` and the heartbeat's ``health_reason`` show.

``WatchWindow`` watches a freshly activated model for ``rules.watch_window_s`` seconds from its activation
time. ``rollback_reason(now)`` returns why it should be rolled back, or None: more than
``rules.max_model_errors`` model errors since activation, or, with at least ``rules.watch_min_feedback``
feedback outcomes since activation, accuracy on them below ``rules.accuracy_floor``. After the window
ends it always returns None (the model has been kept). Feedback given with a ``model_version`` other than
the watched one (a prediction the previous model made) is not counted. ``HealthMonitor.start_watch``
attaches a window so ``feedback``/``model_error`` feed both. ``WatchRules`` has the field names of the
manifest's edge policy; the runner maps one onto the other, with runner.toml's (or a signed policy's)
``[watch]`` values on top where set (``WatchRules.from_policy(policy, overrides)``); ``HealthMonitor.
retune_watch(rules)`` gives the watch in progress new rules without losing what it counted.

All times are seconds on one clock (``time.time`` by default; pass ``clock`` to use another). A watch
rebuilt after a restart counts only what it sees after it is rebuilt.

Leaves out: performing the rollback (edge.update_loop), counting predictions (edge.pending), persistence
of counters, and drift (edge.drift). Standard library only.
"""

from __future__ import annotations

import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol

from edge.config import WatchConfig

__all__ = ["ROLLING_WINDOW", "STATUSES", "HealthMonitor", "PolicyLike", "WatchRules", "WatchWindow"]

STATUSES = ("ok", "degraded", "error")  # exactly the words the hub heartbeat accepts
ERROR_TIMES_KEPT = 10_000  # model error times kept to count the recent ones

Clock = Callable[[], float]
ROLLING_WINDOW = 500  # feedback outcomes the rolling accuracy covers (the heartbeat's rolling_accuracy)


class PolicyLike(Protocol):
    """Anything carrying the four watch fields (edge.contracts.manifest.EdgePolicy does)."""

    @property
    def accuracy_floor(self) -> float: ...
    @property
    def watch_window_s(self) -> float: ...
    @property
    def watch_min_feedback(self) -> int: ...
    @property
    def max_model_errors(self) -> int: ...


@dataclass(frozen=True)
class WatchRules:
    """When a newly activated model is rolled back (same field names as the manifest's edge policy)."""

    accuracy_floor: float  # roll back when accuracy since activation is below this (0..1)
    watch_window_s: float  # how long after activation the rules apply
    watch_min_feedback: int  # feedback outcomes needed before accuracy is judged
    max_model_errors: int  # roll back on more model errors than this since activation

    def __post_init__(self) -> None:
        if not 0.0 <= self.accuracy_floor <= 1.0:
            raise ValueError(f"accuracy_floor: {self.accuracy_floor} is not between 0 and 1")
        if self.watch_window_s < 0:
            raise ValueError(f"watch_window_s: {self.watch_window_s} is negative")
        if self.watch_min_feedback < 1:
            raise ValueError(f"watch_min_feedback: {self.watch_min_feedback} is below 1")
        if self.max_model_errors < 0:
            raise ValueError(f"max_model_errors: {self.max_model_errors} is negative")

    @classmethod
    def from_policy(cls, policy: PolicyLike, overrides: WatchConfig | None = None) -> WatchRules:
        """The watch fields of a policy object (e.g. the manifest's ``EdgePolicy``), each replaced by the
        runner's ``[watch]`` value where that is set."""
        o = overrides or WatchConfig()
        return cls(policy.accuracy_floor if o.accuracy_floor is None else o.accuracy_floor,
                   policy.watch_window_s if o.window_s is None else o.window_s,
                   policy.watch_min_feedback if o.min_feedback is None else o.min_feedback,
                   policy.max_model_errors if o.max_model_errors is None else o.max_model_errors)


class WatchWindow:
    """Feedback and model errors of one model since its activation; decides a rollback. Thread-safe."""

    def __init__(self, rules: WatchRules, activated_at: float, version: str | None = None) -> None:
        self.rules = rules
        self.activated_at = activated_at
        self.version = version
        self._feedback = 0
        self._correct = 0
        self._model_errors = 0
        self._lock = threading.Lock()

    @property
    def ends_at(self) -> float:
        return self.activated_at + self.rules.watch_window_s

    def active(self, now: float) -> bool:
        return self.activated_at <= now <= self.ends_at

    def feedback(self, correct: bool, model_version: str | None = None) -> None:
        """Count one feedback outcome (skipped when it is about another model's prediction)."""
        if model_version is not None and self.version is not None and model_version != self.version:
            return
        with self._lock:
            self._feedback += 1
            self._correct += bool(correct)

    def model_error(self) -> None:
        with self._lock:
            self._model_errors += 1

    def accuracy(self) -> float | None:
        """Accuracy on feedback since activation, None without feedback."""
        with self._lock:
            return self._correct / self._feedback if self._feedback else None

    def counts(self) -> dict[str, int]:
        with self._lock:
            return {"feedback": self._feedback, "correct": self._correct, "model_errors": self._model_errors}

    def rollback_reason(self, now: float) -> str | None:
        """Why the watched model should be rolled back now, or None (always None outside the window)."""
        if not self.active(now):
            return None
        rules = self.rules
        with self._lock:
            feedback, correct, errors = self._feedback, self._correct, self._model_errors
        if errors > rules.max_model_errors:
            return f"{errors} model errors since activation (more than max_model_errors {rules.max_model_errors})"
        if feedback >= rules.watch_min_feedback and correct / feedback < rules.accuracy_floor:
            return (f"accuracy {correct / feedback:.3f} on {feedback} feedback rows since activation is below "
                    f"accuracy_floor {rules.accuracy_floor}")
        return None


class HealthMonitor:
    """Counters, rolling accuracy and the status word of a runner. Thread-safe."""

    def __init__(self, window: int = ROLLING_WINDOW, error_memory_s: float = 300.0, clock: Clock = time.time) -> None:
        if window < 1:
            raise ValueError(f"window: expected a positive number of feedback rows, got {window}")
        self.window = window
        self.error_memory_s = error_memory_s
        self._clock = clock
        self._outcomes: deque[bool] = deque(maxlen=window)
        self._rolling_correct = 0
        self._model_errors = 0
        self._input_errors = 0
        self._feedback = 0
        self._correct = 0
        self._last_model_error: float | None = None
        self._error_times: deque[float] = deque(maxlen=ERROR_TIMES_KEPT)
        self._failing = False  # the most recent model call failed
        self._watch: WatchWindow | None = None
        self._lock = threading.Lock()

    # -- events --

    def model_ok(self) -> None:
        """A model call succeeded. Hot path: a flag read unless the previous call failed."""
        if self._failing:
            with self._lock:
                self._failing = False

    def model_error(self) -> None:
        """The model failed on input the schema accepted."""
        with self._lock:
            self._model_errors += 1
            self._last_model_error = self._clock()
            self._error_times.append(self._last_model_error)
            self._failing = True
            watch = self._watch
        if watch is not None:
            watch.model_error()

    def input_error(self) -> None:
        """A caller sent a row the schema refused (counted only; it says nothing about the model)."""
        with self._lock:
            self._input_errors += 1

    def feedback(self, correct: bool, model_version: str | None = None) -> None:
        """A label arrived for an earlier prediction; ``correct`` = the prediction matched it."""
        correct = bool(correct)
        with self._lock:
            if len(self._outcomes) == self.window:
                self._rolling_correct -= self._outcomes[0]
            self._outcomes.append(correct)
            self._rolling_correct += correct
            self._feedback += 1
            self._correct += correct
            watch = self._watch
        if watch is not None:
            watch.feedback(correct, model_version)

    # -- the watch --

    def start_watch(self, rules: WatchRules, activated_at: float, version: str | None = None) -> WatchWindow:
        """Watch a newly activated model; feedback and model errors from now on feed it too."""
        watch = WatchWindow(rules, activated_at, version)
        with self._lock:
            self._watch = watch
        return watch

    def retune_watch(self, rules: WatchRules) -> None:
        """New rules for the watch in progress (its counts are kept); nothing without a watch."""
        watch = self._watch
        if watch is not None:
            watch.rules = rules

    def stop_watch(self) -> None:
        with self._lock:
            self._watch = None

    @property
    def watch(self) -> WatchWindow | None:
        return self._watch

    def rollback_reason(self, now: float | None = None) -> str | None:
        """The attached watch's decision (None without a watch)."""
        watch = self._watch
        return None if watch is None else watch.rollback_reason(self._clock() if now is None else now)

    # -- readings --

    def rolling_accuracy(self) -> float | None:
        """Accuracy over the last ``window`` feedback outcomes, None without feedback."""
        with self._lock:
            return self._rolling_correct / len(self._outcomes) if self._outcomes else None

    def counters(self) -> dict[str, int]:
        with self._lock:
            return {
                "model_errors": self._model_errors,
                "input_errors": self._input_errors,
                "feedback": self._feedback,
                "feedback_correct": self._correct,
            }

    def status(self, model_loaded: bool = True, accuracy_floor: float | None = None, min_feedback: int = 20,
               drift_level: str = "none", now: float | None = None) -> str:
        """"ok", "degraded" or "error" (rules in the module docstring)."""
        drift = ("a feature", float("nan"), float("nan")) if drift_level == "major" else None
        return self.assess(model_loaded, accuracy_floor, min_feedback, drift, now)[0]

    def assess(self, model_loaded: bool = True, accuracy_floor: float | None = None, min_feedback: int = 20,
               major_drift: tuple[str, float, float] | None = None, now: float | None = None
               ) -> tuple[str, list[str]]:
        """The status word and why it is not "ok". ``major_drift``: (feature, PSI, threshold) of the worst
        feature when drift is "major" (edge.drift decides), else None."""
        now = self._clock() if now is None else now
        with self._lock:
            failing, last_error = self._failing, self._last_model_error
            outcomes, correct = len(self._outcomes), self._rolling_correct
            recent_errors = sum(1 for at in self._error_times if now - at <= self.error_memory_s)
        if not model_loaded:
            return "error", ["no model loaded yet"]
        window = f"{self.error_memory_s:g} s"
        if failing:
            return "error", [f"model errors: the last model call failed ({recent_errors} in the last {window})"]
        reasons = []
        if last_error is not None and now - last_error <= self.error_memory_s:
            reasons.append(f"model errors: {max(recent_errors, 1)} in the last {window}")
        if accuracy_floor is not None and outcomes >= min_feedback and correct / outcomes < accuracy_floor:
            reasons.append(f"accuracy {correct / outcomes:.3f} below floor {accuracy_floor:g} on the last "
                           f"{outcomes} labels")
        if major_drift is not None:
            feature, psi, threshold = major_drift
            reasons.append(f"drift major: {feature} PSI {psi:.2f} >= {threshold:g}")
        return ("degraded" if reasons else "ok"), reasons
