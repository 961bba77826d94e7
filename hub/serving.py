"""What ``edgeloop hub serve`` sets up in each hub process besides the app: logging and the garbage collector.

- Logging: ``configure_logging(access_log)`` (the serving command, before uvicorn starts) sends log
  records to stderr at INFO: start-up, TLS reloads, warnings and server errors (hub.observe logs every
  response with status >= 500). The access log, one line per request (DEBUG records of
  ``edgeloop.hub.access``), is off unless asked for (``--access-log`` turns that logger to DEBUG). The
  choice travels to uvicorn's worker processes in ``EDGELOOP_HUB_ACCESS_LOG``, and
  ``configure_worker_logging`` applies it in each (a spawned worker starts with no logging set up).
  uvicorn's own access log stays off.
- Garbage collector: ``settle_gc()`` runs once the app is built (every import done, the database
  engine and caches made): it moves every object alive then into the permanent generation
  (``gc.freeze``), so a full collection no longer walks the ~125,000 objects of the hub's libraries
  (130-330 ms per full collection on the 2-core benchmark machine; bench/hub.py), and raises the first
  generation's threshold so a burst of requests is collected in fewer passes.

Leaves out the app (hub.app), TLS and listening (hub.tls), and the command line (edgeloop.hub_cli).
"""

from __future__ import annotations

import gc
import logging
import os

__all__ = ["ACCESS_LOG_ENV", "ACCESS_LOGGER", "GC_THRESHOLDS", "configure_logging", "configure_worker_logging",
           "settle_gc"]

ACCESS_LOG_ENV = "EDGELOOP_HUB_ACCESS_LOG"
ACCESS_LOGGER = "edgeloop.hub.access"
LOG_FORMAT = "%(asctime)s %(name)s %(message)s"
GC_THRESHOLDS = (10_000, 20, 20)  # CPython's defaults: (700, 10, 10)


def _access_log(on: bool) -> None:
    logging.getLogger(ACCESS_LOGGER).setLevel(logging.DEBUG if on else logging.INFO)


def configure_logging(access_log: bool = False) -> None:
    """Log records at INFO on stderr; the access log on only when asked (also in worker processes)."""
    logging.basicConfig(level=logging.INFO, format=LOG_FORMAT)
    _access_log(access_log)
    os.environ[ACCESS_LOG_ENV] = "1" if access_log else "0"


def configure_worker_logging() -> None:
    """In a process uvicorn started for ``edgeloop hub serve``: logging as the command set it up."""
    if not logging.getLogger().handlers:
        logging.basicConfig(level=logging.INFO, format=LOG_FORMAT)
    _access_log(os.environ.get(ACCESS_LOG_ENV) == "1")


def settle_gc() -> None:
    """Freeze what start-up made (it lives as long as the process) and collect young objects less often."""
    gc.collect()
    gc.freeze()
    gc.set_threshold(*GC_THRESHOLDS)
