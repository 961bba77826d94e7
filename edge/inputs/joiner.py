"""The label joiner: which prediction a quality verdict belongs to, each prediction labelled at most once.

``LabelJoiner(capacity, window_s, by_key)`` remembers each prediction made from live inputs: ``remember(key,
event_id, row, at)``. By key (``by_key``, ``take(key)``): a map key -> (event id, row), bounded to ``capacity`` entries,
the oldest evicted first (``evicted`` counts them); a key predicted again points at its newest prediction.
By time (otherwise, ``take_near(at)``): the newest prediction made at most ``window_s`` before ``at`` and not labelled
yet. A taken prediction is gone (a redelivered label finds nothing: labels reach feedback once);
``give_back`` restores one whose label could not be kept. Keys compare as text (``17``, ``17.0`` and
``"17"`` are one part).

Not thread safe: the caller holds one lock (edge.inputs.live). Leaves out feeding the label (the runner).
"""

from __future__ import annotations

from collections import OrderedDict

__all__ = ["Joined", "LabelJoiner", "key_text"]

Joined = tuple[int, list[object]]  # (event id, the row it was predicted on)


def key_text(key: object) -> str:
    if isinstance(key, float) and key.is_integer():
        return str(int(key))
    return str(key)


class LabelJoiner:
    """See the module docstring."""

    def __init__(self, capacity: int, window_s: float, by_key: bool) -> None:
        self.capacity, self.window_s, self.by_key = capacity, window_s, by_key
        self._by_key: OrderedDict[str, Joined] = OrderedDict()
        self._by_time: OrderedDict[int, tuple[float, list[object]]] = OrderedDict()  # event id -> (at, row)
        self.evicted = 0

    def remember(self, key: object | None, event_id: int, row: list[object], at: float) -> None:
        if self.by_key:
            if key is None:
                return
            text = key_text(key)
            self._by_key[text] = (event_id, row)
            self._by_key.move_to_end(text)
            while len(self._by_key) > self.capacity:
                self._by_key.popitem(last=False)
                self.evicted += 1
            return
        self._by_time[event_id] = (at, row)
        while len(self._by_time) > self.capacity:
            self._by_time.popitem(last=False)
            self.evicted += 1

    def take(self, key: object) -> Joined | None:
        return self._by_key.pop(key_text(key), None)

    def take_near(self, at: float) -> Joined | None:
        for event_id in reversed(self._by_time):
            made, row = self._by_time[event_id]
            if made > at:
                continue
            if at - made > self.window_s:
                return None
            del self._by_time[event_id]
            return event_id, row
        return None

    def give_back(self, key: object | None, joined: Joined, at: float) -> None:
        self.remember(key, joined[0], joined[1], at)

    def __len__(self) -> int:
        return max(len(self._by_key), len(self._by_time))
