"""Events already curated, per device, and dropping new rows that repeat one (vectorised).

A device's event ids are int64 (the GX suites make sure of it), so each device keeps one sorted numpy
array of the ids curated so far. ``drop_repeated`` removes, from a frame of newly validated rows in
processing order, every row whose (device, event id) is already curated or appeared in an earlier row
of the same frame (an earlier batch: one batch never repeats an id), then remembers the new ids. Ids
that are not integers (a part curated before ids were checked) can never equal a checked id, so they
are not kept. Leaves out: reading the curated files (``flows.ingest.store.curated_ids``).
"""

from __future__ import annotations

from collections.abc import Iterable

import numpy as np
import pandas as pd


class SeenEvents:
    """Curated (device, event id) keys: device id -> sorted unique int64 ids."""

    def __init__(self) -> None:
        self._ids: dict[str, np.ndarray] = {}

    def add(self, device_id: str, ids: Iterable[int] | np.ndarray) -> None:
        new = np.asarray(ids, dtype=np.int64)
        old = self._ids.get(device_id)
        self._ids[device_id] = np.unique(new if old is None else np.concatenate([old, new]))

    def count(self) -> int:
        return sum(len(ids) for ids in self._ids.values())

    def drop_repeated(self, frame: pd.DataFrame, device_col: str, event_col: str) -> tuple[pd.DataFrame, np.ndarray]:
        """(the rows to keep, a bool array over ``frame`` marking the rows dropped); remembers the kept ids."""
        codes, devices = pd.factorize(frame[device_col])
        ids = frame[event_col].to_numpy(dtype=np.int64)
        repeated = pd.DataFrame({"d": codes, "e": ids}).duplicated(keep="first").to_numpy()
        order = np.argsort(codes, kind="stable")
        bounds = np.searchsorted(codes[order], np.arange(len(devices) + 1))
        for index, device in enumerate(devices):
            rows = order[bounds[index] : bounds[index + 1]]
            known = self._ids.get(device)
            if known is not None and len(known):
                repeated[rows] |= np.isin(ids[rows], known)
            self.add(device, ids[rows][~repeated[rows]])
        if not repeated.any():
            return frame, repeated
        return frame.loc[~repeated].reset_index(drop=True), repeated
