"""What ``edgeloop hub serve`` sets up in each hub process besides the app: logging and the garbage collector.

- Logging: ``configure_logging(access_log)`` (the serving command, before uvicorn starts) sends the
  hub's log records to stderr at INFO: start-up, TLS reloads, warnings and server errors (hub.observe
  logs every response with status >= 500). The access log, one line per request, is off unless asked
  for (``--access-log``): the choice travels to uvicorn's worker processes in ``EDGELOOP_HUB_ACCESS_LOG``,
  which ``access_log_requested`` reads in each of them. uvicorn's own access log stays off.
- Garbage collector: ``settle_gc()`` runs once the app is built (every import done, the database
  engine and caches made): it moves every object alive then into the permanent generation
  (``gc.freeze``), so a full collection no longer walks the ~125,000 objects of the hub's libraries on
  every pass (measured 130-330 ms each on the 2-core benchmark machine; bench/hub.py), and raises the
  first generation's threshold so the many short-lived objects of a request burst are collected in
  fewer, still short, passes.

Leaves out the app (hub.app), TLS and listening (hub.tls), and the command line (edgeloop.hub_cli).
"""

from __future__ import annotations

import gc
import logging
import os

__all__ = ["ACCESS_LOG_ENV", "GC_THRESHOLDS", "access_log_requested", "configure_logging", "settle_gc"]

ACCESS_LOG_ENV = "EDGELOOP_HUB_ACCESS_LOG"
LOG_FORMAT = "%(asctime)s %(name)s %(message)s"
GC_THRESHOLDS = (10_000, 20, 20)  # CPython's defaults: (700, 10, 10)


def configure_logging(access_log: bool = False) -> None:
    """Hub log records at INFO on stderr; the access log on only when asked (also in worker processes)."""
    logging.basicConfig(level=logging.INFO, format=LOG_FORMAT)
    os.environ[ACCESS_LOG_ENV] = "1" if access_log else "0"


def access_log_requested() -> bool:
    """Whether ``edgeloop hub serve --access-log`` asked for a line per request; in a uvicorn worker process
    (which starts with no logging set up) this also sends log records to stderr as the serving command does."""
    if not logging.getLogger().handlers:
        logging.basicConfig(level=logging.INFO, format=LOG_FORMAT)
    return os.environ.get(ACCESS_LOG_ENV) == "1"


def settle_gc() -> None:
    """Freeze what start-up made (it lives as long as the process) and collect young objects less often."""
    gc.collect()
    gc.freeze()
    gc.set_threshold(*GC_THRESHOLDS)
