"""Prefect deployments of the retrain flow: a nightly cron schedule and an on-demand one.

``serve_deployments`` runs both from the current process (``edgeloop serve``, polling the server in
PREFECT_API_URL). For work pools and workers on other hosts, flows/prefect.yaml declares the same two
deployments for ``prefect deploy``. Neither creates the Prefect server itself.
"""

from __future__ import annotations

from pathlib import Path

from prefect.deployments.runner import RunnerDeployment

from flows.retrain import retrain

NIGHTLY = "retrain-nightly"
ON_DEMAND = "retrain-on-demand"


def build_deployments(root: Path, cron: str = "0 2 * * *", timezone: str = "UTC") -> list[RunnerDeployment]:
    """The two RunnerDeployments for the project at ``root`` (not yet applied to a server)."""
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
    return [nightly, on_demand]  # type: ignore[list-item]  # sync call: never a coroutine


def serve_deployments(root: Path, cron: str = "0 2 * * *", timezone: str = "UTC") -> None:
    """Register both deployments and execute their runs from this process until interrupted."""
    from prefect import serve

    serve(*build_deployments(root, cron, timezone))
