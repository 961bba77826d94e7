"""The plant's view of the predictions written back: how many, how fast, how many right.

The plant knows every part's true label, so it can score what a runner writes back.
``Scoreboard.made(part, at)`` records a part when its key signal is published (``at``: a
``time.perf_counter()`` reading); ``predicted(device, part_id, label, at)`` records a prediction that came
back and its latency from the part's publication. Bounded: parts older than the newest ``keep`` per machine are
forgotten (a prediction for them counts as ``unknown``). Thread safe. Leaves out protocols.
"""

from __future__ import annotations

import contextlib
import threading
from collections import OrderedDict, deque
from typing import Any

from edgeloop.plant.source import Part

__all__ = ["Scoreboard"]


class Scoreboard:
    """See the module docstring."""

    def __init__(self, keep: int = 100_000, latencies: int = 100_000) -> None:
        self.keep = keep
        self._parts: dict[str, OrderedDict[int, tuple[int, float]]] = {}  # device -> part id -> (label, at)
        self.latencies_s: deque[float] = deque(maxlen=latencies)
        self.predictions = 0
        self.correct = 0
        self.unknown = 0
        self.repeated = 0
        self._seen: dict[str, set[int]] = {}
        self._lock = threading.Lock()

    def made(self, part: Part, at: float) -> None:
        with self._lock:
            parts = self._parts.setdefault(part.device, OrderedDict())
            parts[part.part_id] = (part.label, at)
            while len(parts) > self.keep:
                old, _ = parts.popitem(last=False)
                self._seen.get(part.device, set()).discard(old)

    def predicted(self, device: str, part_id: int, label: Any, at: float) -> None:
        with self._lock:
            self.predictions += 1
            known = self._parts.get(device, {}).get(part_id)
            if known is None:
                self.unknown += 1
                return
            seen = self._seen.setdefault(device, set())
            if part_id in seen:
                self.repeated += 1
                return
            seen.add(part_id)
            truth, made_at = known
            self.latencies_s.append(at - made_at)
            with contextlib.suppress(TypeError, ValueError):
                self.correct += int(label) == truth

    def stats(self) -> dict[str, Any]:
        with self._lock:
            scored = self.predictions - self.unknown - self.repeated
            ordered = sorted(self.latencies_s)
            p50 = ordered[len(ordered) // 2] * 1000 if ordered else None
            return {"predictions": self.predictions, "scored": scored, "correct": self.correct,
                    "accuracy": self.correct / scored if scored else None, "unknown": self.unknown,
                    "repeated": self.repeated, "latency_p50_ms": p50}
