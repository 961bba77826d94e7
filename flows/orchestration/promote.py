"""The ``promote-soaked`` Prefect flow: watch the canary release soak, then promote it, roll it back or wait.

One run: gather the evidence as a task (``flows.loop.evidence``: channels and their history, the hub's
fleet through ``flows.hub_client``, labelled rows per model version), apply the soak rules
(``flows.loop.promotion.decide``), act on the verdict as a task (``flows.loop.moves.apply_verdict``: a
``promote`` moves ``to_channel`` to the candidate, a ``rollback`` moves ``from_channel`` back; the
champion follows), append the decision to the loop log (source ``promote``, acting or not) and create
the ``promotion-decision`` artifact. A hub that cannot be reached makes the run wait (recorded), and a
move the repository refuses is recorded as "could not act": the run never fails for either.

Leaves out: the rules, the evidence and the moves themselves (``flows.loop``), and the schedule
(``flows.orchestration.deployments``).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from edge.telemetry import switch_off

switch_off()  # a Prefect entrypoint (workers import it directly): before prefect loads

from prefect import flow, get_run_logger, task  # noqa: E402
from prefect.artifacts import create_markdown_artifact  # noqa: E402
from prefect.cache_policies import NO_CACHE  # noqa: E402

from edge.contracts.errors import UserError  # noqa: E402
from edge.contracts.layout import Paths  # noqa: E402
from flows.loop.evidence import gather_evidence  # noqa: E402
from flows.loop.markdown import verdict_markdown  # noqa: E402
from flows.loop.moves import apply_verdict, record_verdict  # noqa: E402
from flows.loop.promotion import SoakEvidence, Verdict, decide  # noqa: E402
from flows.params import Params, load_params  # noqa: E402

__all__ = ["ARTIFACT_KEY", "promote_soaked"]

ARTIFACT_KEY = "promotion-decision"


@task(name="soak-evidence", cache_policy=NO_CACHE)
def evidence_task(params: Params, paths: Paths, hub_url: str | None, token_file: Path | None) -> SoakEvidence:
    return gather_evidence(params, paths, hub_url, token_file=token_file)


@task(name="move-channel", cache_policy=NO_CACHE)
def move_task(params: Params, paths: Paths, verdict: Verdict, evidence: SoakEvidence) -> dict[str, Any] | None:
    return apply_verdict(params, paths, verdict, evidence)


@flow(name="promote-soaked", description="Promote the canary release to stable once soaked on healthy devices, "
                                         "or roll canary back; every decision is logged.")
def promote_soaked(root: str = ".", hub_url: str | None = None, hub_token_file: str | None = None) -> dict[str, Any]:
    """One soak check of ``loop.promotion.from_channel``; ``hub_url``/``hub_token_file`` override the hub
    client's rules. Returns the decision as logged."""
    logger = get_run_logger()
    paths = Paths.at(root)
    params = load_params(paths.params)
    evidence = evidence_task(params, paths, hub_url, Path(hub_token_file) if hub_token_file else None)
    verdict = decide(evidence, params.loop.promotion)
    move, failure = None, None
    try:
        move = move_task(params, paths, verdict, evidence)
    except UserError as exc:  # e.g. a rollback with no earlier release: recorded, the flow does not fail
        failure = str(exc)
    entry = record_verdict(paths.resolve(params.loop.log), verdict, evidence, move, failure)
    create_markdown_artifact(key=ARTIFACT_KEY, markdown=verdict_markdown(verdict, entry["fired"], move, failure),
                             description="Canary soak decision")
    logger.info("%s", entry["summary"])
    return entry
