"""The Prefect ``monitor`` flow: the one retraining scheduler. Observe, decide, record, retrain when a trigger fires.

One run: gather observations (``flows.loop.observe``: the hub's fleet through ``flows.hub_client``, the
landing zone, the releases), refresh the IPW fleet estimates, decide with the triggers (the nightly
slot of ``loop.monitor.nightly_cron`` is one of them) and the hold of the last fired retrains of any
source (``flows.loop.triggers``: a manual or deployment retrain holds the automatic triggers too),
append the decision to the loop log (fired or not, every trigger's state, value and threshold) and
create the ``monitor-decision`` artifact. Then adaptive collection (``flows.loop.collection_step``): raise
or lower devices' random sampling through their channel's signed runner policy, logged as ``collection``
decisions when something changed (a failure there is a warning, never a reason not to retrain).
When it fired and ``action == "retrain"``, it starts the
``retrain`` flow as a subflow with ``source="monitor"`` and the decision's time; that flow appends the
outcome (kind ``retrain_outcome``), and the monitor adds the ``monitor-retrain-outcome`` artifact.

The decision is logged BEFORE the retrain runs, so a monitor run that starts while a long retrain is
still going sees the fired decision and is held by the cooldown (no storm), and a crash during the
retrain still leaves the decision on record. ``action="none"`` records the decision without running
or publishing anything. Leaves out: the rules (``flows.loop``), promotion (``flows.orchestration.promote``) and the
schedule (``flows.orchestration.deployments``).
"""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from edge.telemetry import switch_off

switch_off()  # a Prefect entrypoint (workers import it directly): before prefect loads

from prefect import flow, get_run_logger  # noqa: E402
from prefect.artifacts import create_markdown_artifact  # noqa: E402

from edge.contracts.layout import Paths  # noqa: E402
from flows.loop.estimates import refresh_estimates  # noqa: E402
from flows.loop.markdown import decision_markdown, outcome_markdown  # noqa: E402
from flows.loop.observe import gather  # noqa: E402
from flows.loop.retrains import ACTIONS, fired_retrains, outcome_of_state, outcome_summary, record_automatic  # noqa: E402
from flows.loop.triggers import decide  # noqa: E402
from flows.params import load_params  # noqa: E402

__all__ = ["monitor"]


def _collection(paths: Paths, params: Any, hub_url: str | None, token_file: Path | None, action: str,
                logger: Any) -> dict[str, Any]:
    """The adaptive-collection step (``flows.loop.collection_step``); its failure never stops the retrain.
    ``action == "none"`` (record only) publishes nothing."""
    from flows.loop.collection_step import run_collection
    from flows.loop.evidence import read_fleet

    if not params.loop.collection.enabled:
        return {"summary": "adaptive collection is off (loop.collection.enabled: false)", "published": {}}
    if action == "none":
        return {"summary": "adaptive collection not run (action none: record only)", "published": {}}
    try:
        fleet, error = read_fleet(params, paths, hub_url, token_file)
        outcome = run_collection(paths, params, fleet if error is None else None, error)
    except Exception as exc:  # noqa: BLE001 (an unattended monitor records why and goes on)
        logger.warning("monitor: adaptive collection failed: %s", exc)
        return {"summary": f"collection failed: {exc}", "published": {}}
    logger.info("monitor: %s", outcome["summary"])
    return {k: outcome[k] for k in ("summary", "published", "halted")}


@flow(name="monitor", description="Decide from fleet drift, accuracy, data volume and the nightly slot whether "
                                  "to retrain; one retrain per cooldown, whatever started the last one.")
def monitor(root: str = ".", hub_url: str | None = None, action: str = "retrain",
            hub_token_file: str | None = None) -> dict[str, Any]:
    """One monitor pass for the project at ``root``; ``action`` is ``retrain`` (run the retrain flow
    when fired) or ``none`` (record only); ``hub_url``/``hub_token_file`` override the hub client's
    rules. Returns the decision (and the retrain outcome)."""
    if action not in ACTIONS:
        raise ValueError(f"action must be one of {', '.join(ACTIONS)}, not {action!r}")
    logger = get_run_logger()
    paths = Paths.at(root)
    params = load_params(paths.params)
    log = paths.resolve(params.loop.log)
    fired = fired_retrains(log)
    last_fired = fired[-1] if fired else None
    token_file = Path(hub_token_file) if hub_token_file else None
    observations = gather(paths, params, last_fired, hub_url, token_file=token_file)
    refresh_estimates(paths, params)  # the fleet page and the promote flow read the same numbers
    decision = decide(observations, params.loop.monitor, datetime.now(UTC), last_fired, fired)
    entry = record_automatic(log, decision, action, observations.fleet_error)
    create_markdown_artifact(markdown=decision_markdown(decision), key="monitor-decision",
                             description=decision.summary)
    logger.info("monitor: %s", decision.summary)
    result: dict[str, Any] = {"decision": decision.as_dict(), "at": entry.at, "outcome": None,
                              "collection": _collection(paths, params, hub_url, token_file, action, logger)}
    if not decision.fired or action == "none":
        return result
    from flows.orchestration.retrain import retrain

    state = retrain(root=str(paths.root), source="monitor", decision_at=entry.at, return_state=True)
    outcome = outcome_of_state(state)
    create_markdown_artifact(markdown=outcome_markdown(outcome), key="monitor-retrain-outcome",
                             description=outcome_summary(outcome))
    logger.info("monitor: %s", outcome_summary(outcome))
    return result | {"outcome": outcome}
