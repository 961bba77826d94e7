"""Prefect deployments of a project: the one retraining scheduler and what runs beside it.

- ``loop-monitor``: the ``monitor`` flow every ``loop.monitor.interval_s``. It is the only scheduler of
  retraining: its triggers include the nightly slot (``loop.monitor.nightly_cron``), and it retrains at
  most once per cooldown, whatever started the last retrain;
- ``promote-soaked``: the canary soak check every ``loop.promotion.interval_s``;
- ``retrain-on-demand``: the ``retrain`` flow with no schedule (``prefect deployment run
  retrain/retrain-on-demand``); its runs are recorded in the loop log with source ``deployment`` and
  hold the monitor's automatic triggers like any retrain (``flows.loop.retrains``);
- ``release-refresh``: re-sign the release metadata every six hours.

``build_deployments(root)`` makes them all from the project's params.yaml (defaults when it has none);
``serve_deployments`` runs them from the current process (``edgeloop serve``, polling the server in
PREFECT_API_URL). ``flows/prefect.yaml`` declares the same deployments for work pools (``prefect
deploy``). Leaves out: the flows themselves and creating the Prefect server.
"""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

from prefect.deployments.runner import RunnerDeployment

from flows.orchestration.monitor import monitor
from flows.orchestration.promote import promote_soaked
from flows.orchestration.release_flows import refresh_flow
from flows.orchestration.retrain import retrain

__all__ = [
    "MONITOR",
    "ON_DEMAND",
    "PROMOTE",
    "REFRESH",
    "REFRESH_CRON",
    "build_deployments",
    "build_loop_deployments",
    "serve_deployments",
]

ON_DEMAND = "retrain-on-demand"
REFRESH = "release-refresh"
REFRESH_CRON = "17 */6 * * *"  # four times a day: well inside the 1-day timestamp expiry
MONITOR = "loop-monitor"
PROMOTE = "promote-soaked"
MONITOR_INTERVAL_S = 300.0  # when the project has no params.yaml yet (params.yaml's defaults)
PROMOTION_INTERVAL_S = 300.0


def _intervals(root: Path) -> tuple[float, float]:
    """(``loop.monitor.interval_s``, ``loop.promotion.interval_s``) of the project at ``root``."""
    from edge.contracts.layout import Paths
    from flows.params import load_params

    paths = Paths.at(root)
    if not paths.params.is_file():
        return MONITOR_INTERVAL_S, PROMOTION_INTERVAL_S
    loop = load_params(paths.params).loop
    return loop.monitor.interval_s, loop.promotion.interval_s


def build_loop_deployments(root: Path, interval_s: float | None = None) -> list[RunnerDeployment]:
    """The closed loop's deployments: ``monitor`` every ``interval_s`` (default: params.yaml's) and the
    canary soak check ``promote-soaked`` every ``loop.promotion.interval_s``."""
    from prefect.schedules import Interval

    monitor_s, promotion_s = _intervals(root)
    parameters = {"root": str(root)}
    watch = monitor.to_deployment(
        name=MONITOR,
        schedules=[Interval(timedelta(seconds=interval_s if interval_s is not None else monitor_s))],
        parameters=parameters,
        description="The one retraining scheduler: fleet drift, estimated accuracy, new ground truth and the "
                    "nightly slot; one retrain per cooldown, whatever started the last one. Decisions: "
                    "`edgeloop loop status`.",
        tags=["edgeloop", "loop"],
    )
    soak = promote_soaked.to_deployment(
        name=PROMOTE,
        schedules=[Interval(timedelta(seconds=promotion_s))],
        parameters=parameters,
        description="Check the canary soak: promote to stable, roll canary back, or wait (see `edgeloop loop status`).",
        tags=["edgeloop", "loop"],
    )
    return [watch, soak]  # type: ignore[list-item]  # sync call: never a coroutine


def build_deployments(root: Path, timezone: str = "UTC") -> list[RunnerDeployment]:
    """Every deployment of the project at ``root`` (not yet applied to a server): retrain on demand, the
    release refresh (its cron in ``timezone``), then the loop's (``build_loop_deployments``)."""
    from prefect.schedules import Cron

    parameters = {"root": str(root)}
    on_demand = retrain.to_deployment(
        name=ON_DEMAND,
        parameters={**parameters, "source": "deployment"},
        description="Retrain now: `prefect deployment run retrain/retrain-on-demand` (recorded in the loop log; "
                    "holds the monitor's automatic triggers for the cooldown).",
        tags=["edgeloop"],
    )
    refresh = refresh_flow.to_deployment(
        name=REFRESH,
        schedules=[Cron(REFRESH_CRON, timezone=timezone)],
        parameters=parameters,
        description="Re-sign the release timestamp before it expires: an expired timestamp freezes the fleet.",
        tags=["edgeloop"],
    )
    return [on_demand, refresh, *build_loop_deployments(root)]  # type: ignore[list-item]  # sync: no coroutine


def serve_deployments(root: Path, timezone: str = "UTC") -> None:
    """Register every deployment and execute their runs from this process until interrupted."""
    from prefect import serve

    serve(*build_deployments(root, timezone))
