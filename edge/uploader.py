"""The uploader: moves sealed batches from the spool to the hub, and deletes them only once acknowledged.

``upload_once`` seals (or re-takes) at most one batch from the spool and sends it: rows batches to
``/uploads`` as CSV, summaries to ``/summaries``. Outcomes:

- 2xx (stored, or ``deduplicated`` because an earlier attempt got through): ``spool.acknowledge``;
- ``HubUnavailable`` (network, timeout, 5xx, 429) and ``HubRefused`` 401/403 (a token problem, not a
  batch problem): the batch stays sealed, the error propagates (``run`` backs off and sends the
  identical bytes again later);
- any other ``HubRefused``: the body goes to ``quarantine_dir/<key>.<csv|json>`` with
  ``<key>.reason.txt`` beside it (both atomic; the body first), then it is acknowledged, so one bad
  batch never blocks the rest and nothing is lost. Counted in ``batches_quarantined``.

A crash at any point is safe: an unacknowledged batch is re-sent byte for byte (same key) and the
hub deduplicates it; a quarantine interrupted before the acknowledgement is simply written again.

``run(stop)`` sends while there is backlog, waits ``idle_s`` when there is none, and after a failure
waits a full-jitter exponential backoff: ``uniform(0, min(backoff_max_s, backoff_initial_s * 2**n))``
for the n-th failure in a row (reset by a success). It waits on ``stop``, so it returns promptly.
Defaults (batch size and bytes, backoff) are the runner configuration's (edge.config).

Daily byte budget (``daily_byte_budget``, 0: none): the upload bodies sent (rows batches and summaries,
before gzip: what the hub stores) never add up to more than the budget per UTC day of ``clock``. A new
batch is cut to fit what is left of the day's budget; a batch that does not fit (or nothing left) waits
in the spool until the next day (nothing is lost; the spool quota still applies), logged once per day.
The bytes are reserved in ``budget_file`` (atomically) before a batch is sent and given back when the
hub did not take it, so a crash or restart never lets a day go over its budget.

Leaves out sealing policy (edge.spool), the HTTP details (edge.hub_client) and heartbeats.
"""

from __future__ import annotations

import json
import logging
import random
import threading
import time
from collections import deque
from collections.abc import Callable
from pathlib import Path

from edge.atomic import write_bytes_atomic, write_text_atomic
from edge.config import UploadConfig
from edge.ground_truth import encode_rows
from edge.hub_client import HubClient, HubRefused, HubUnavailable
from edge.hub_link import AUTH_STATUSES
from edge.spool import SealedBatch, Spool

__all__ = ["AUTH_STATUSES", "Uploader"]

log = logging.getLogger("edge.runner.uploads")


class Uploader:
    """Drains one spool into one hub (see the module docstring)."""

    def __init__(
        self,
        spool: Spool,
        client: HubClient,
        quarantine_dir: Path,
        batch_rows: int = UploadConfig.batch_rows,
        max_batch_bytes: int = UploadConfig.max_batch_bytes,
        backoff_initial_s: float = UploadConfig.backoff_initial_s,
        backoff_max_s: float = UploadConfig.backoff_max_s,
        rng: random.Random | None = None,
        idle_s: float = 5.0,
        daily_byte_budget: int = UploadConfig.daily_byte_budget,
        budget_file: Path | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        if batch_rows < 1 or max_batch_bytes < 1:
            raise ValueError("batch_rows and max_batch_bytes must be positive")
        if not 0 < backoff_initial_s <= backoff_max_s:
            raise ValueError("expected 0 < backoff_initial_s <= backoff_max_s")
        self.spool = spool
        self.client = client
        self.quarantine_dir = quarantine_dir
        self.batch_rows = batch_rows
        self.max_batch_bytes = max_batch_bytes
        self.backoff_initial_s = backoff_initial_s
        self.backoff_max_s = backoff_max_s
        self.idle_s = idle_s
        self.rng = rng if rng is not None else random.Random()
        self.daily_byte_budget = daily_byte_budget  # 0: unlimited; may change while running (signed policy)
        self._budget_file = budget_file
        self._clock = clock
        self._day, self._spent = self._read_budget()
        self._budget_logged_day: int | None = None
        self.failures_in_a_row = 0
        self.recent_waits: deque[float] = deque(maxlen=64)  # backoff waits drawn, newest last
        self._lock = threading.Lock()
        # bytes_uploaded: on the wire (gzip); batch_bytes: the CSV files the hub stores
        self._counts = {"rows_uploaded": 0, "batches_uploaded": 0, "bytes_uploaded": 0, "batch_bytes": 0,
                        "summaries_uploaded": 0,
                        "upload_failures": 0, "batches_quarantined": 0, "rows_quarantined": 0}

    @property
    def counters(self) -> dict[str, int]:
        """rows/batches/bytes/summaries uploaded, upload_failures, batches/rows quarantined (a copy)."""
        with self._lock:
            return dict(self._counts)

    def _count(self, **amounts: int) -> None:
        with self._lock:
            for name, amount in amounts.items():
                self._counts[name] += amount

    def upload_once(self) -> int:
        """Send at most one batch; rows the hub acknowledged. Raises HubUnavailable to mean "later"."""
        batch = self._send_one()
        return 0 if batch is None else batch.rows

    # -- the daily byte budget --

    def budget_left(self) -> int | None:
        """Body bytes still allowed today (None: no budget)."""
        budget = self.daily_byte_budget
        if budget <= 0:
            return None
        with self._lock:
            self._roll_day()
            return max(0, budget - self._spent)

    @property
    def spent_today(self) -> int:
        with self._lock:
            self._roll_day()
            return self._spent

    def _roll_day(self) -> None:
        day = int(self._clock() // 86_400)
        if day != self._day:
            self._day, self._spent = day, 0

    def _reserve(self, amount: int) -> None:
        with self._lock:
            self._roll_day()
            self._spent = max(0, self._spent + amount)
            state = {"day": self._day, "spent": self._spent}
        if self._budget_file is not None and self.daily_byte_budget > 0:
            write_text_atomic(self._budget_file, json.dumps(state) + "\n", mode=0o600)

    def _read_budget(self) -> tuple[int, int]:
        today = int(self._clock() // 86_400)
        if self._budget_file is None:
            return today, 0
        try:
            raw = json.loads(self._budget_file.read_text(encoding="utf-8"))
            day, spent = int(raw["day"]), int(raw["spent"])
        except (OSError, ValueError, KeyError, TypeError):
            return today, 0
        return (day, max(0, spent)) if day == today else (today, 0)

    def _over_budget(self, needed: int | None) -> bool:
        """True (logged once per day) when today's budget has no room for ``needed`` bytes (None: any)."""
        left = self.budget_left()
        if left is None or (left > 0 and (needed is None or needed <= left)):
            return False
        day = self._day
        if self._budget_logged_day != day:
            self._budget_logged_day = day
            log.warning("upload budget of %d bytes for today spent; %d rows wait", self.daily_byte_budget,
                        self.spool.backlog_rows())
        return True

    # -- sending --

    def _send_one(self) -> SealedBatch | None:
        if self._over_budget(None):
            return None
        left = self.budget_left()
        batch = self.spool.seal(self.batch_rows, self.max_batch_bytes if left is None else
                                max(1, min(self.max_batch_bytes, left)), encode_rows)
        if batch is None:
            return None
        size = len(batch.body)
        if left is not None:
            if self._over_budget(size):
                return None
            self._reserve(size)
        try:
            if batch.kind == "summary":
                self.client.summary(batch.body, batch.key)
            else:
                self.client.upload(batch.body, batch.key)
        except HubUnavailable:
            self._count(upload_failures=1)
            if left is not None:
                self._reserve(-size)
            raise
        except HubRefused as refused:
            self._count(upload_failures=1)
            if refused.status in AUTH_STATUSES:
                if left is not None:
                    self._reserve(-size)
                raise HubUnavailable(f"hub refused the device's credentials ({refused.status}): retry later") from None
            self._quarantine(batch, refused)
            return batch
        self.spool.acknowledge(batch.key)
        if batch.kind == "summary":
            self._count(summaries_uploaded=1, bytes_uploaded=len(batch.body))
        else:
            self._count(rows_uploaded=batch.rows, batches_uploaded=1, bytes_uploaded=self.client.last_request_bytes,
                        batch_bytes=len(batch.body))
        return batch

    def _quarantine(self, batch: SealedBatch, refused: HubRefused) -> None:
        extension = "json" if batch.kind == "summary" else "csv"
        write_bytes_atomic(self.quarantine_dir / f"{batch.key}.{extension}", batch.body, mode=0o600)
        reason = f"{refused.status} {refused.detail}\nkind={batch.kind} rows={batch.rows} bytes={len(batch.body)}\n"
        write_text_atomic(self.quarantine_dir / f"{batch.key}.reason.txt", reason, mode=0o600)
        self.spool.acknowledge(batch.key)
        self._count(batches_quarantined=1, rows_quarantined=batch.rows)
        log.warning("quarantined batch %s (%d rows): hub answered %d", batch.key[:12], batch.rows, refused.status)

    def next_backoff(self) -> float:
        """The wait after the current run of failures: full jitter over a capped exponential."""
        exponent = min(self.failures_in_a_row - 1, 62)
        ceiling = min(self.backoff_max_s, self.backoff_initial_s * 2.0 ** max(exponent, 0))
        return self.rng.uniform(0.0, ceiling)

    def run(self, stop: threading.Event) -> None:
        """Send until ``stop`` is set: back to back while there is backlog, backing off after failures."""
        while not stop.is_set():
            try:
                sent = self._send_one()
            except HubUnavailable as exc:
                self.failures_in_a_row += 1
                wait = self.next_backoff()
                self.recent_waits.append(wait)
                log.debug("upload failed (%s); next try in %.1f s", exc, wait)  # the hub link tells the story
                stop.wait(wait)
                continue
            self.failures_in_a_row = 0
            if sent is None:
                stop.wait(self.idle_s)
