"""The Prefect ``retrain`` flow: every retrain, whoever started it, runs here and is in the loop log.

One run: the decision (``flows.loop.retrains``: an explicit request from ``manual`` or ``deployment``
is appended as a fired ``retrain`` decision with its source; the ``monitor`` appends its own decision
before it starts this flow as a subflow and passes ``decision_at``), then the pipeline stages as tasks
(each the same ``flows.stages.<name>.main`` that ``dvc repro`` runs through ``python -m flows``;
retries on the I/O stages, timings), ``dvc commit`` so a later ``dvc repro`` sees the flow's outputs
as up to date, the gate decision as artifacts, the candidate signed and published to
``release.channel`` when the gate passed (``publish_task``), and finally the outcome appended to the
loop log (gate passed or blocked, the release, or why the run failed) with the same source. The run
ends Failed, with the reasons, when the gate blocks. On a server with the ``edgeloop-retrain`` global
concurrency limit (``edgeloop deploy`` creates it), the stages run only while holding its one slot, so
two retrains never run at once whatever started them (``flows.orchestration.concurrency``). Before that
slot, the run holds the project's own lock (``flows.retrain_lock``, an flock in ``data/``), waiting for
another retrain of the same project to end, so two retrains of one project never overlap even without a
server limit. A rerun whose candidate is already a release publishes nothing and says "already published
as release N". Listeners (``add_stage_listener``) hear each stage's start and end, ``publish`` start and
end, and ``request`` (where the loop log entry is: the CLI's Ctrl-C handling records the outcome there).

The source defaults to ``deployment`` inside a deployment run and ``manual`` otherwise
(``edgeloop retrain``, a direct call). How a request relates to the monitor's cooldown:
``flows.loop.retrains``. Leaves out: deciding automatic retrains (``flows.orchestration.monitor``) and
running stages in parallel (they form a chain).
"""

from __future__ import annotations

import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from edge.telemetry import switch_off

switch_off()  # this module is also a Prefect entrypoint (workers import it directly): before prefect loads

from prefect import Task, flow, get_run_logger, task  # noqa: E402
from prefect.artifacts import create_markdown_artifact, create_table_artifact  # noqa: E402
from prefect.cache_policies import NO_CACHE  # noqa: E402
from prefect.client.schemas.objects import State  # noqa: E402
from prefect.states import Completed, Failed  # noqa: E402

from edge.contracts.layout import Paths  # noqa: E402
from flows.loop.retrains import EXPLICIT, SOURCES, outcome_of, record_outcome, record_request  # noqa: E402
from flows.orchestration.concurrency import retrain_slot  # noqa: E402
from flows.params import Params, load_params  # noqa: E402
from flows.retrain_lock import hold_retrain_lock  # noqa: E402
from flows.stages import STAGES, run_stage  # noqa: E402

# Stages that read or write shared storage: a transient I/O fault is worth a retry. They are idempotent.
IO_STAGES: frozenset[str] = frozenset({"simulate", "ingest", "gate"})
# (stage | "publish" | "request", "start"|"done", summary)
StageListener = Callable[[str, str, dict[str, Any] | None], None]
_listeners: list[StageListener] = []


def add_stage_listener(listener: StageListener) -> None:
    """Be told when each stage starts and ends (the CLI drives its progress display with this)."""
    _listeners.append(listener)


def remove_stage_listener(listener: StageListener) -> None:
    _listeners.remove(listener)


def _notify(stage: str, event: str, summary: dict[str, Any] | None = None) -> None:
    for listener in list(_listeners):
        listener(stage, event, summary)


def _stage_task(name: str) -> Task[..., dict[str, Any]]:
    def run(params: Params, paths: Paths) -> dict[str, Any]:
        _notify(name, "start")
        started = time.perf_counter()
        summary = run_stage(name, params, paths)
        summary["seconds"] = round(time.perf_counter() - started, 3)
        _notify(name, "done", summary)
        return summary

    run.__name__ = run.__qualname__ = f"stage_{name}"
    retries = 2 if name in IO_STAGES else 0
    return task(name=name, retries=retries, retry_delay_seconds=2, cache_policy=NO_CACHE)(run)


TASKS = {name: _stage_task(name) for name in STAGES}


@task(name="record", retries=1, retry_delay_seconds=2, cache_policy=NO_CACHE)
def record_dvc_lock(root: Path, stages: list[str]) -> str:
    """``dvc commit`` the outputs these stages produced, so dvc.lock matches them (no-op outside DVC)."""
    if not (root / ".dvc").is_dir():
        return "not a DVC project: dvc.lock not recorded"
    result = subprocess.run(
        [sys.executable, "-m", "dvc", "commit", "--force", "--quiet", *stages],
        cwd=root, capture_output=True, text=True, timeout=600,
    )
    if result.returncode != 0:
        raise RuntimeError(f"dvc commit failed: {result.stderr.strip() or result.stdout.strip()}")
    return f"dvc.lock recorded for {', '.join(stages)}"


def _publish_artifacts(paths: Paths, summaries: dict[str, dict[str, Any]]) -> None:
    gate = summaries["gate"]
    decision_md = paths.candidate / "decision.md"
    markdown = decision_md.read_text() if decision_md.is_file() else f"gate passed: {gate.get('passed')}"
    create_markdown_artifact(markdown=markdown, key="retrain-gate-decision", description="Gate decision")
    rows: list[dict[str, Any]] = [
        {"stage": name, "item": "seconds", "value": s.get("seconds")} for name, s in summaries.items()
    ]
    for rule in gate.get("rules", []):
        rows.append({"stage": "gate", "item": rule.get("name"), "value": rule.get("observed")})
    for report in sorted((paths.reports).rglob("*.html")):
        rows.append({"stage": "report", "item": report.name, "value": str(report)})
    create_table_artifact(table=rows, key="retrain-metrics", description="Stage timings, gate values, reports")


def _source(source: str | None) -> str:
    """The given source, else ``deployment`` inside a deployment run, else ``manual``."""
    if source is None:
        from prefect.runtime import deployment

        return "deployment" if deployment.id else "manual"
    if source not in SOURCES:
        raise ValueError(f"source must be one of {', '.join(SOURCES)}, not {source!r}")
    return source


def _flow_run_id() -> str | None:
    from prefect.runtime import flow_run

    return str(flow_run.id) if flow_run.id else None


def _requested_by(source: str) -> str:
    if source == "deployment":
        from prefect.runtime import deployment

        name = deployment.name or deployment.id
        return f"deployment {name}" if name else "a deployment run"
    return "a direct call of the retrain flow"


def run_pipeline(params: Params, paths: Paths, publish: bool) -> State:
    """Every stage as a task, dvc.lock recorded, the gate's artifacts, publish when it passed: Completed
    with the result, or Failed with the gate's reasons."""
    from flows.orchestration.release_flows import publish_task

    logger = get_run_logger()
    summaries: dict[str, dict[str, Any]] = {}
    for name in STAGES:
        if name == "gate":
            # The gate hashes dvc.lock into the release's lineage: it must describe this run's stages,
            # exactly as under `dvc repro`, where each stage's lock entry is written before the next runs.
            logger.info(record_dvc_lock(paths.root, list(STAGES[:-1])))
        summaries[name] = TASKS[name](params, paths)
        logger.info("stage %s done in %.2fs", name, summaries[name]["seconds"])
    logger.info(record_dvc_lock(paths.root, ["gate"]))
    _publish_artifacts(paths, summaries)
    gate = summaries["gate"]
    result: dict[str, Any] = {"passed": gate["passed"], "version": gate.get("version"), "stages": summaries}
    if gate["passed"] and publish:
        _notify("publish", "start")
        result["release"] = publish_task(params, paths)
        _notify("publish", "done", result["release"])
    if not gate["passed"]:
        reasons = "; ".join(gate.get("reasons", [])) or "see decision.md"
        return Failed(message=f"gate blocked the candidate: {reasons}", data=result)
    release = result.get("release")
    published = ""
    if release and release.get("already_published"):
        published = (f"; already published as release {release['version']} (the same data and params produced "
                     f"the same model): nothing new to publish")
    elif release:
        published = f"; published release {release['version']} to {release['channel']}"
    return Completed(message=f"candidate {gate.get('version')} passed the gate{published}", data=result)


@flow(name="retrain", description="Ingest, validate, train, export, evaluate, gate and publish a new model; "
                                  "every run is a decision in the loop log with its source and outcome.")
def retrain(root: str = ".", publish: bool = True, source: str | None = None, requested_by: str | None = None,
            hold_s: float | None = None, decision_at: str | None = None) -> State:
    """Retrain the project at ``root``: record the request (unless the monitor already recorded its
    decision at ``decision_at``), run every stage, publish when the gate passed (``publish``), record the
    outcome. ``source``: monitor, manual or deployment (default: see the module docstring); ``hold_s``:
    how long an explicit request holds the monitor's automatic triggers (default ``loop.monitor.cooldown_s``).
    Failed (with the reasons) when the gate blocks."""
    logger = get_run_logger()
    paths = Paths.at(root)
    params = load_params(paths.params)
    log = paths.resolve(params.loop.log)
    who = _source(source)
    run_id = _flow_run_id()
    if decision_at is None:
        if who not in EXPLICIT:
            raise ValueError(f"a {who} retrain is started by its own decision: pass decision_at")
        entry = record_request(log, who, requested_by or _requested_by(who), params.loop.monitor.cooldown_s,
                               hold_s, flow_run=run_id)
        decision_at = entry.at
        logger.info("%s", entry.summary)
    _notify("request", "done", {"log": str(log), "source": who, "decision_at": decision_at, "flow_run": run_id})
    try:
        # one retrain at a time on this project (flows.retrain_lock; the CLI may hold it already), then on a
        # shared server (flows.orchestration.concurrency): always in this order, so two never wait on each other
        with hold_retrain_lock(paths, wait=True, on_wait=logger.warning), retrain_slot(logger):
            state = run_pipeline(params, paths, publish)
    except Exception as exc:  # the run fails; its outcome is still on record
        record_outcome(log, who, outcome_of(None, "Failed", False, f"{type(exc).__name__}: {exc}"), decision_at,
                       flow_run=run_id)
        raise
    outcome = outcome_of(state.data, str(state.name), state.is_completed(), state.message)
    logger.info("%s", record_outcome(log, who, outcome, decision_at, flow_run=run_id).summary)
    return state
