"""Deploy the project to a Prefect work pool: the process pool, the retrain limit, then ``prefect deploy --all``.

``deploy_project(root)`` does, against the server in ``PREFECT_API_URL``, what flows/prefect.yaml's
header lists as three commands: create the process work pool the file names (an existing pool of
that name must be a process pool: the deployments run from a local checkout), create or repair the
``edgeloop-retrain`` global concurrency limit (``flows.orchestration.concurrency``), and run Prefect's
own ``prefect --no-prompt deploy --all --prefect-file flows/prefect.yaml`` from the project folder, so
the file is deployed exactly as by hand. Then it reads the deployments back from the server.
``interval_drift`` names the monitor and promotion intervals that differ from params.yaml's.

Leaves out starting workers (``prefect worker start --pool edgeloop`` on each host, with
``EDGELOOP_ROOT`` set: docs/prefect.md), the Prefect server itself, and ``edgeloop serve`` (the
one-process default, ``flows.orchestration.deployments``).
"""

from __future__ import annotations

import os
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml
from prefect.client.orchestration import get_client
from prefect.exceptions import ObjectAlreadyExists, ObjectNotFound

from edge.contracts.errors import UserError
from flows.orchestration.concurrency import ensure_retrain_limit
from flows.params import Params

__all__ = ["PREFECT_FILE", "DeployReport", "DeployedRow", "deploy_project", "ensure_process_pool", "interval_drift",
           "pool_names"]

PREFECT_FILE = Path("flows/prefect.yaml")  # relative to the project root (a checkout of the repository)
DEPLOY_TIMEOUT_S = 600.0


@dataclass(frozen=True)
class DeployedRow:
    """One deployment as the server holds it after the deploy."""

    name: str  # flow/deployment
    pool: str
    schedules: str
    concurrency: str


@dataclass(frozen=True)
class DeployReport:
    steps: list[str]
    deployments: list[DeployedRow]


def pool_names(prefect_file: Path) -> list[str]:
    """The work pools the deployments of ``prefect_file`` name, in order of first use."""
    try:
        document = yaml.safe_load(prefect_file.read_text())
    except (OSError, yaml.YAMLError) as exc:
        raise UserError(f"cannot read {prefect_file}: {exc}") from None
    deployments = document.get("deployments") if isinstance(document, dict) else None
    if not isinstance(deployments, list) or not deployments:
        raise UserError(f"{prefect_file} declares no deployments")
    names: list[str] = []
    for entry in deployments:
        pool = (entry.get("work_pool") or {}).get("name") if isinstance(entry, dict) else None
        if not pool:
            raise UserError(f"deployment {entry.get('name') if isinstance(entry, dict) else entry!r} in "
                            f"{prefect_file} names no work_pool")
        if pool not in names:
            names.append(pool)
    return names


def ensure_process_pool(name: str) -> str:
    """Create the process work pool ``name`` unless it exists; refuse a pool of another type."""
    from prefect.client.schemas.actions import WorkPoolCreate
    from prefect.workers.process import ProcessWorker

    with get_client(sync_client=True) as client:
        try:
            pool = client.read_work_pool(name)
        except ObjectNotFound:
            template = ProcessWorker.get_default_base_job_template()
            try:
                client.create_work_pool(WorkPoolCreate(name=name, type="process", base_job_template=template))
                return f"created process work pool {name}"
            except ObjectAlreadyExists:  # a worker started meanwhile created it: check its type below
                pool = client.read_work_pool(name)
    if pool.type != "process":
        raise UserError(f"work pool {name} is a {pool.type!r} pool; these deployments run from a checkout on the "
                        "worker's host and need a process pool (choose another pool name in flows/prefect.yaml)")
    return f"process work pool {name} already there"


def _run_prefect_deploy(root: Path, prefect_file: Path) -> None:
    command = [sys.executable, "-m", "prefect", "--no-prompt", "deploy", "--all", "--prefect-file", str(prefect_file)]
    env = {**os.environ, "PREFECT_CLI_WRAP_LINES": "false"}
    try:
        done = subprocess.run(command, cwd=root, env=env, capture_output=True, text=True, timeout=DEPLOY_TIMEOUT_S)
    except subprocess.TimeoutExpired:
        raise UserError(f"prefect deploy did not finish in {DEPLOY_TIMEOUT_S:.0f} s") from None
    if done.returncode != 0:
        tail = "\n".join((done.stdout + done.stderr).strip().splitlines()[-15:])
        raise UserError(f"prefect deploy failed (exit {done.returncode}):\n{tail}")


def _schedules(deployment: Any) -> str:
    parts = []
    for item in deployment.schedules:
        schedule = item.schedule
        if getattr(schedule, "cron", None):
            parts.append(f"cron {schedule.cron} {schedule.timezone or 'UTC'}")
        elif getattr(schedule, "interval", None):
            parts.append(f"every {schedule.interval.total_seconds():.0f} s")
        else:
            parts.append(type(schedule).__name__)
    return ", ".join(parts) or "on demand"


def _concurrency(deployment: Any) -> str:
    limit = deployment.global_concurrency_limit  # the deployment's own limit lives here in Prefect 3
    if limit is None:
        return "-"
    strategy = getattr(getattr(deployment.concurrency_options, "collision_strategy", None), "value", None)
    return f"{limit.limit} at a time" + (f", {strategy}" if strategy else "")


def _read_back(prefect_file: Path, pools: list[str]) -> list[DeployedRow]:
    from prefect.client.schemas.filters import DeploymentFilter, DeploymentFilterName

    names = [entry["name"] for entry in yaml.safe_load(prefect_file.read_text())["deployments"]]
    with get_client(sync_client=True) as client:
        stored = client.read_deployments(deployment_filter=DeploymentFilter(name=DeploymentFilterName(any_=names)))
        flows = {d.flow_id: client.read_flow(d.flow_id).name for d in stored}
    rows = [DeployedRow(f"{flows.get(d.flow_id, '?')}/{d.name}", d.work_pool_name or "-", _schedules(d),
                        _concurrency(d)) for d in stored if d.work_pool_name in pools]
    return sorted(rows, key=lambda row: names.index(row.name.split("/", 1)[1]))


INTERVALS = {"loop-monitor": ("loop.monitor.interval_s", "monitor"),
             "promote-soaked": ("loop.promotion.interval_s", "promotion")}


def interval_drift(prefect_file: Path, params: Params) -> list[str]:
    """Where an interval schedule in ``prefect_file`` differs from its ``params.yaml → loop`` value (the
    file cannot read params.yaml, so the two are kept in step by hand)."""
    declared = {entry.get("name"): entry for entry in yaml.safe_load(prefect_file.read_text())["deployments"]}
    lines = []
    for name, (key, section) in INTERVALS.items():
        wanted = getattr(params.loop, section).interval_s
        for schedule in (declared.get(name) or {}).get("schedules") or []:
            every = schedule.get("interval") if isinstance(schedule, dict) else None
            if every is not None and float(every) != wanted:
                lines.append(f"{name} runs every {float(every):.0f} s in {prefect_file.name} but {key} is "
                             f"{wanted:.0f} s: change one of them")
    return lines


def _check_server(url: str) -> None:
    """One clear line when the server cannot be reached or refuses us, instead of a client traceback."""
    import httpx
    from prefect.exceptions import PrefectHTTPStatusError

    with get_client(sync_client=True) as client:
        try:
            client.read_work_pools(limit=1)
        except PrefectHTTPStatusError as exc:
            code = exc.response.status_code
            hint = ": set PREFECT_API_AUTH_STRING to its user:password" if code in (401, 403) else ""
            raise UserError(f"the Prefect server at {url} answered {code}{hint}") from None
        except httpx.HTTPError as exc:
            raise UserError(f"cannot reach the Prefect server at {url}: {exc}") from None


def deploy_project(root: Path, prefect_file: Path = PREFECT_FILE) -> DeployReport:
    """Deploy ``prefect_file`` (relative to ``root``) to the server in ``PREFECT_API_URL``: its process
    pool(s), the retrain limit, ``prefect deploy --all``; the steps taken and the deployments stored."""
    url = os.environ.get("PREFECT_API_URL")
    if not url:
        raise UserError("set PREFECT_API_URL to the Prefect server to deploy to (e.g. http://127.0.0.1:4200/api)")
    root = root.resolve()
    path = prefect_file if prefect_file.is_absolute() else root / prefect_file
    if not path.is_file():
        raise UserError(f"no {prefect_file} in {root}: deploy from a checkout of the repository (its root)")
    pools = pool_names(path)
    _check_server(url)
    steps = [ensure_process_pool(pool) for pool in pools]
    steps.append(ensure_retrain_limit())
    _run_prefect_deploy(root, path)
    deployed = _read_back(path, pools)
    steps.append(f"prefect deploy --all --prefect-file {prefect_file}: {len(deployed)} deployments")
    return DeployReport(steps, deployed)
