"""Prefect deployments: retrain nightly and on demand, and the release refresh every six hours.

``serve_deployments`` runs both from the current process (``edgeloop serve``, polling the server in
PREFECT_API_URL). For work pools and workers on other hosts, flows/prefect.yaml declares the same two
deployments for ``prefect deploy``. Neither creates the Prefect server itself.
"""

from __future__ import annotations

from pathlib import Path

from prefect.deployments.runner import RunnerDeployment

from flows.release_flows import refresh_flow
from flows.retrain import retrain

NIGHTLY = "retrain-nightly"
ON_DEMAND = "retrain-on-demand"
REFRESH = "release-refresh"
REFRESH_CRON = "17 */6 * * *"  # four times a day: well inside the 1-day timestamp expiry


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


def serve_deployments(root: Path, cron: str = "0 2 * * *", timezone: str = "UTC") -> None:
    """Register both deployments and execute their runs from this process until interrupted."""
    from prefect import serve

    serve(*build_deployments(root, cron, timezone))
