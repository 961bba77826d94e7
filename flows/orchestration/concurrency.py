"""One retrain at a time on a shared Prefect server: the global concurrency limit ``edgeloop-retrain``.

A retrain can start from the ``retrain-on-demand`` deployment, as the ``monitor``'s subflow (inside a
``loop-monitor`` run), or from ``edgeloop retrain`` pointed at the server; with several workers these
could run at once. The ``retrain`` flow therefore holds one slot of Prefect's global concurrency limit
``edgeloop-retrain`` (limit 1) around its stages: a second retrain, whatever started it, waits in its
flow run until the first one releases the slot. The slot is a lease the client renews while the
retrain runs; a worker that dies frees it when the lease expires (``LEASE_S``), and a retrain whose
lease cannot be renewed is stopped (it fails, with its outcome in the loop log). The
``retrain-on-demand`` deployment is also limited to one run at a time with collision strategy
``ENQUEUE`` (flows/prefect.yaml), so a queued on-demand run waits as ``AwaitingConcurrencySlot``
without taking a worker process.

``ensure_retrain_limit`` creates the limit (``edgeloop deploy`` calls it). On a server without it (the
embedded default: ``edgeloop serve``, a temporary server) ``retrain_slot`` holds nothing and logs
nothing, so that path is unchanged. Leaves out the deployment-level limits (declared in
flows/prefect.yaml) and the retrain itself (``flows.orchestration.retrain``).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from prefect.client.orchestration import get_client
from prefect.exceptions import ObjectNotFound

__all__ = ["LEASE_S", "RETRAIN_LIMIT", "ensure_retrain_limit", "retrain_limit_exists", "retrain_slot"]

RETRAIN_LIMIT = "edgeloop-retrain"
LEASE_S = 300.0  # renewed while the retrain runs; how long a dead holder keeps the slot


def retrain_limit_exists() -> bool:
    """Whether the Prefect server in use has an active ``edgeloop-retrain`` limit."""
    with get_client(sync_client=True) as client:
        try:
            limit = client.read_global_concurrency_limit_by_name(RETRAIN_LIMIT)
        except ObjectNotFound:
            return False
    return bool(limit.active)


def ensure_retrain_limit() -> str:
    """Create ``edgeloop-retrain`` with limit 1 on the server in use, or set an existing one back to 1
    and active; what was done, in words."""
    from prefect.client.schemas.actions import GlobalConcurrencyLimitCreate, GlobalConcurrencyLimitUpdate
    from prefect.exceptions import ObjectAlreadyExists

    with get_client(sync_client=True) as client:
        try:
            limit = client.read_global_concurrency_limit_by_name(RETRAIN_LIMIT)
        except ObjectNotFound:
            try:
                client.create_global_concurrency_limit(GlobalConcurrencyLimitCreate(name=RETRAIN_LIMIT, limit=1))
                return f"created global concurrency limit {RETRAIN_LIMIT} (1 slot)"
            except ObjectAlreadyExists:  # created meanwhile by another deploy: check it below
                limit = client.read_global_concurrency_limit_by_name(RETRAIN_LIMIT)
        if limit.limit == 1 and limit.active:
            return f"global concurrency limit {RETRAIN_LIMIT} already set (1 slot)"
        client.update_global_concurrency_limit(RETRAIN_LIMIT, GlobalConcurrencyLimitUpdate(limit=1, active=True))
        return f"global concurrency limit {RETRAIN_LIMIT} set back to 1 slot (was {limit.limit}, active {limit.active})"


@contextmanager
def retrain_slot(logger: logging.Logger | logging.LoggerAdapter[Any]) -> Iterator[bool]:
    """Hold the one ``edgeloop-retrain`` slot while the body runs, waiting as long as another retrain
    holds it; True when a slot is held, False on a server without the limit (nothing held)."""
    if not retrain_limit_exists():
        yield False
        return
    from prefect.concurrency.sync import concurrency

    asked = time.monotonic()
    # strict: a limit deleted meanwhile, or a lease that cannot be renewed (3 tries), stops the retrain
    # rather than let a second one run beside it
    with concurrency(RETRAIN_LIMIT, occupy=1, lease_duration=LEASE_S, strict=True,
                     raise_on_lease_renewal_failure=True):
        waited = time.monotonic() - asked
        logger.info("holding the %s slot (waited %.1f s for another retrain)", RETRAIN_LIMIT, waited)
        yield True
