"""Prefect deployments: retrain nightly and on demand, the release refresh every six hours, and the
loop's ``monitor`` every ``loop.monitor.interval_s`` seconds.

``build_deployments`` makes the retrain and refresh deployments, ``build_loop_deployments`` the loop's
(read from the project's params.yaml). ``serve_deployments`` runs them all from the current process
(``edgeloop serve``, polling the server in PREFECT_API_URL). For work pools and workers on other hosts,
flows/prefect.yaml declares deployments for ``prefect deploy`` (entrypoint of the monitor:
``flows/orchestration/monitor.py:monitor``). Nothing here creates the Prefect server itself.
"""

from __future__ import annotations

from pathlib import Path

from prefect.deployments.runner import RunnerDeployment

from flows.orchestration.monitor import monitor
from flows.orchestration.release_flows import refresh_flow
from flows.orchestration.retrain import retrain

NIGHTLY = "retrain-nightly"
ON_DEMAND = "retrain-on-demand"
REFRESH = "release-refresh"
REFRESH_CRON = "17 */6 * * *"  # four times a day: well inside the 1-day timestamp expiry
MONITOR = "loop-monitor"
MONITOR_INTERVAL_S = 300.0  # when the project has no params.yaml yet (params.yaml's default)


def build_deployments(root: Path, cron: str = "0 2 * * *", timezone: str = "UTC") -> list[RunnerDeployment]:
    """The RunnerDeployments for the project at ``root`` (not yet applied to a server)."""
    from prefect.schedules import Cron

    parameters = {"root": str(root)}
    nightly = retrain.to_deployment(
        name=NIGHTLY,
        schedules=[Cron(cron, timezone=timezone)],
        parameters=parameters,
        description="Retrain every night on whatever ground truth has landed.",
        tags=["edgeloop"],
    )
    on_demand = retrain.to_deployment(
        name=ON_DEMAND,
        parameters=parameters,
        description="Retrain now: `prefect deployment run retrain/retrain-on-demand`.",
        tags=["edgeloop"],
    )
    refresh = refresh_flow.to_deployment(
        name=REFRESH,
        schedules=[Cron(REFRESH_CRON, timezone=timezone)],
        parameters=parameters,
        description="Re-sign the release timestamp before it expires: an expired timestamp freezes the fleet.",
        tags=["edgeloop"],
    )
    return [nightly, on_demand, refresh]  # type: ignore[list-item]  # sync call: never a coroutine


def monitor_interval_s(root: Path) -> float:
    """``loop.monitor.interval_s`` of the project at ``root`` (the default when it has no params.yaml)."""
    from edge.contracts.layout import Paths
    from flows.params import load_params

    paths = Paths.at(root)
    return load_params(paths.params).loop.monitor.interval_s if paths.params.is_file() else MONITOR_INTERVAL_S


def build_loop_deployments(root: Path, interval_s: float | None = None) -> list[RunnerDeployment]:
    """The closed loop's deployments: ``monitor`` every ``interval_s`` (default: params.yaml's) and the
    canary soak check ``promote-soaked`` every ``loop.promotion.interval_s``."""
    from datetime import timedelta

    from prefect.schedules import Interval

    every = interval_s if interval_s is not None else monitor_interval_s(root)
    watch = monitor.to_deployment(
        name=MONITOR,
        schedules=[Interval(timedelta(seconds=every))],
        parameters={"root": str(root)},
        description="Watch fleet drift, estimated accuracy, new ground truth and the nightly slot; retrain "
                    "when a trigger fires (one retrain per cooldown). Decisions: `edgeloop loop status`.",
        tags=["edgeloop", "loop"],
    )
    from flows.orchestration.promote import build_promotion_deployment

    return [watch, build_promotion_deployment(root)]  # type: ignore[list-item]  # sync call: never a coroutine


def serve_deployments(root: Path, cron: str = "0 2 * * *", timezone: str = "UTC") -> None:
    """Register every deployment and execute their runs from this process until interrupted."""
    from prefect import serve

    serve(*build_deployments(root, cron, timezone), *build_loop_deployments(root))
