"""The row assembler: the latest value of each tag, when a row is due, and whether it may be predicted.

``RowAssembler(config)`` keeps, per tag (a feature name, or ``"key"`` for the join key), the latest value and
its arrival time (``time.monotonic()``). ``update(tag, value, at)`` stores a value and says whether the
trigger fires: ``complete`` when every required tag (and the key) has a value newer than the last
prediction; ``change`` when ``trigger_tag``'s value differs from its previous one (its first value counts);
``period`` never (a timer asks instead). ``row(names, now)`` builds the row in ``names`` order (the model's
features): a required tag that has no value is ``Skip("missing", tag)``, one older than its
``stale_after_s`` is ``Skip("stale", tag)``; a tag that is not required is NaN then; a model feature no tag
maps is NaN (the model's schema decides whether it may be missing). ``predicted()`` marks a row as done
(the ``complete`` trigger waits for newer values).

Not thread safe: the caller holds one lock (edge.inputs.live). Leaves out predicting and counting.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from edge.inputs.settings import KEY_TAG, InputsConfig

__all__ = ["NAN", "RowAssembler", "Skip"]

NAN = float("nan")


@dataclass(frozen=True, slots=True)
class Skip:
    """Why a due row was not predicted: ``reason`` (missing | stale) and the tag."""

    reason: str
    tag: str


class RowAssembler:
    """See the module docstring."""

    def __init__(self, config: InputsConfig) -> None:
        self.trigger = config.trigger
        self.trigger_tag = config.trigger_tag
        limits = {t.feature: config.stale_limit(t) for t in config.tags}
        required = [t.feature for t in config.tags if t.required]
        if config.key is not None:
            limits[KEY_TAG] = config.stale_limit(config.key)
            required.append(KEY_TAG)
        self._limits = limits
        self._required = tuple(required)
        self._is_required = frozenset(required)
        self._values: dict[str, object] = {}
        self._times: dict[str, float] = {}
        self._fresh: set[str] = set()  # required tags updated since the last prediction
        self.has_key = config.key is not None

    def update(self, tag: str, value: object, at: float) -> bool:
        previous = self._values.get(tag, self)  # self: no value yet
        self._values[tag] = value
        self._times[tag] = at
        if self.trigger == "complete":
            if tag in self._is_required:
                self._fresh.add(tag)
            return len(self._fresh) == len(self._required)
        if self.trigger == "change":
            return tag == self.trigger_tag and previous != value
        return False

    def row(self, names: Sequence[str], now: float) -> tuple[list[object], object | None] | Skip:
        """(values in ``names`` order, key) or why not."""
        for tag in self._required:
            at = self._times.get(tag)
            if at is None:
                return Skip("missing", tag)
            if now - at > self._limits[tag]:
                return Skip("stale", tag)
        values: list[object] = []
        for name in names:
            at = self._times.get(name)
            if at is None or now - at > self._limits.get(name, -1.0):
                values.append(NAN)  # not required (checked above) or not mapped
            else:
                value = self._values[name]
                values.append(float(value) if type(value) is int else value)
        return values, self._values.get(KEY_TAG) if self.has_key else None

    def predicted(self) -> None:
        self._fresh.clear()

    def age(self, tag: str, now: float) -> float | None:
        at = self._times.get(tag)
        return None if at is None else now - at
