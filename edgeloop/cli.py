"""The ``edgeloop`` command line: simulate ground truth, run a stage or the whole retrain, serve the schedules.

Commands here: ``simulate``, ``stage`` (one stage without Prefect), ``retrain`` (the Prefect retrain
flow, recorded in the loop log as a manual retrain), ``serve`` (every Prefect deployment, the
``loop-monitor`` being the one retraining scheduler) and ``check-params``; the sub-apps ``release``,
``loop``, ``hub``, ``devices``, ``fleet``, ``demo`` and ``deploy`` live in their own ``edgeloop.*_cli`` modules,
``plant`` in ``edgeloop.plant.cli``.
Thin by design: every command parses flags, calls the library, and shows progress and results with rich.
User mistakes (``UserError``, including bad params.yaml) print one line and exit 2, without a traceback.
Heavy libraries (Prefect among them) are imported inside commands so ``--help`` stays fast.
Leaves out the logic itself (``flows``, ``hub``) and the sub-apps' commands.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer
from rich.console import Console
from rich.table import Table

from edge.contracts.errors import UserError
from edge.contracts.release_layout import MODEL_FILE
from edge.telemetry import switch_off
from edgeloop.cli_common import RootOption, check_port_free
from edgeloop.config_cli import config_app
from edgeloop.demo_cli import demo as demo_command
from edgeloop.deploy_cli import deploy as deploy_command
from edgeloop.devices_cli import devices_app
from edgeloop.fleet_cli import fleet as fleet_command
from edgeloop.hub_cli import hub_app
from edgeloop.import_cli import import_history as import_command
from edgeloop.ingest_cli import ingest as ingest_command
from edgeloop.loop_cli import loop_app
from edgeloop.plant.cli import plant_app
from edgeloop.release_cli import release_app
from edgeloop.schema_cli import schema_app
from edgeloop.status_cli import status as status_command

if TYPE_CHECKING:
    from edge.contracts.layout import Paths
    from flows.params import Params

app = typer.Typer(
    name="edgeloop",
    help="edgeloop: the continuous-improvement loop between edge devices and the cloud.",
    no_args_is_help=True,
    add_completion=True,  # --install-completion / --show-completion for bash, zsh, fish and PowerShell
    pretty_exceptions_enable=False,
)


def _print_version(asked: bool) -> None:
    if asked:
        from edgeloop import __version__

        print(f"edgeloop {__version__}")
        raise typer.Exit()


@app.callback()
def _main(
    version: Annotated[bool, typer.Option("--version", help="Print the version and exit.", is_eager=True,
                                          callback=_print_version)] = False,
) -> None:
    """edgeloop: the continuous-improvement loop between edge devices and the cloud."""
app.add_typer(release_app, name="release")
app.add_typer(config_app, name="config")
app.add_typer(loop_app, name="loop")
app.add_typer(hub_app, name="hub")
app.add_typer(plant_app, name="plant")
app.add_typer(schema_app, name="schema")
app.add_typer(devices_app, name="devices",
              help="Register devices (one-time enrollment codes, tokens shown once), list and revoke them.")
app.command("fleet")(fleet_command)
app.command("status")(status_command)
app.command("demo")(demo_command)
app.command("deploy")(deploy_command)
app.command("ingest")(ingest_command)
app.command("import")(import_command)
console = Console(stderr=True)
out = Console()


def _load(root: Path) -> tuple[Params, Paths]:
    from edge.contracts.layout import Paths
    from flows.params import load_params

    paths = Paths.at(root)
    return load_params(paths.params), paths


@app.command()
def simulate(
    devices: Annotated[int, typer.Option(help="Number of simulated machines (devices).", min=1)] = 4,
    rows: Annotated[int, typer.Option(help="Ground-truth rows per device.", min=1)] = 5000,
    seed: Annotated[int, typer.Option(help="Random seed: same seed, same batches.")] = 1,
    drift: Annotated[
        str, typer.Option(help="Drift to inject: none, sensor_offset, new_regime or relationship.")
    ] = "none",
    drift_start: Annotated[
        float, typer.Option(help="Fraction of each device's rows after which drift applies.", min=0.0, max=1.0)
    ] = 0.5,
    batch_rows: Annotated[int, typer.Option(help="Rows per uploaded batch file.", min=1)] = 1000,
    start: Annotated[str, typer.Option(help="Event time of the first row (ISO 8601, UTC).")] = "2026-03-01T00:00:00Z",
    interval_s: Annotated[float, typer.Option(help="Seconds between a device's rows.", min=0.001)] = 60.0,
    out_dir: Annotated[
        Path | None, typer.Option("--out", help="Landing zone to write to (default: data/uploads under --root).")
    ] = None,
    root: RootOption = Path("."),
) -> None:
    """Simulate a plant and write ground-truth batches into the landing zone, as edge runners upload them."""
    from rich.progress import Progress

    import simulator
    from edge.contracts.layout import Paths

    if drift not in simulator.DRIFT_KINDS:
        raise UserError(f"--drift {drift!r} is not one of: {', '.join(simulator.DRIFT_KINDS)}")
    target = out_dir or Paths.at(root).uploads
    total = devices * -(-rows // batch_rows)
    with Progress(console=console, transient=True) as progress:
        bar = progress.add_task("simulating batches", total=total)
        written = simulator.write_fleet(
            target, devices, rows, batch_rows, seed, start, interval_s, drift=drift, drift_start=drift_start,
            on_batch=lambda _path: progress.advance(bar),
        )
    out.print(f"wrote {len(written)} batches ({devices} devices x {rows} rows) to {target}")


@app.command()
def stage(
    name: Annotated[str, typer.Argument(help="Stage: simulate, ingest, split, train, export, evaluate or gate.")],
    root: RootOption = Path("."),
) -> None:
    """Run one pipeline stage without Prefect (what dvc repro runs)."""
    import json

    from flows.stages import STAGES, run_stage

    if name not in STAGES:
        raise UserError(f"unknown stage {name!r}; stages are: {', '.join(STAGES)}")
    params, paths = _load(root)
    out.print_json(json.dumps(run_stage(name, params, paths), default=str))


def _stage_progress(progress: Any, bar: Any) -> Callable[[str, str, dict[str, Any] | None], None]:
    def listener(stage_name: str, event: str, summary: dict[str, Any] | None) -> None:
        if stage_name == "publish" and event == "start":
            progress.update(bar, description="publishing")
        elif stage_name in ("publish", "request"):
            return
        elif event == "start":
            progress.update(bar, description=f"running {stage_name}")
        else:
            seconds = (summary or {}).get("seconds", 0.0)
            progress.console.print(f"  [green]done[/] {stage_name:<9} {seconds:7.2f} s")
            progress.advance(bar)

    return listener


def _number(value: Any) -> str:
    if value is None:
        return "-"
    return f"{value:.4g}" if isinstance(value, float) else str(value)


def _print_result(paths: Any, result: dict[str, Any]) -> None:
    gate = result["stages"]["gate"]
    table = Table(title="gate decision", show_lines=False)
    for column in ("rule", "threshold", "observed", "result"):
        table.add_column(column)
    for rule in gate.get("rules", []):
        verdict = "[green]pass[/]" if rule.get("passed") else "[red]FAIL[/]"
        table.add_row(str(rule.get("name")), _number(rule.get("threshold")), _number(rule.get("observed")), verdict)
    out.print(table)
    out.print(f"model        {paths.model / MODEL_FILE}")
    out.print(f"overview     {paths.candidate / 'index.html'}  (open in a browser; works offline)")
    out.print(f"candidate    {paths.candidate}  (decision.md, manifest.json when passed)")
    out.print(f"reports      {paths.reports}  (ingest/data_docs, evaluate/*.html)")
    out.print(f"metrics      {paths.metrics}  (dvc metrics show)")
    release = result.get("release")
    if release and release.get("already_published"):
        out.print(f"release      already published as release {release['version']} (same data, params and model): "
                  f"nothing new signed; channel '{release['channel']}' points at it")
    elif release:
        out.print(f"release      {release['version']} signed and published to channel '{release['channel']}'")


@app.command()
def retrain(
    root: RootOption = Path("."),
    verbose: Annotated[bool, typer.Option("--verbose", "-v", help="Show Prefect's own logs.")] = False,
    publish: Annotated[
        bool, typer.Option(help="Sign and publish the candidate to the release channel when the gate passes.")
    ] = True,
    hold: Annotated[
        float | None,
        typer.Option(help="Seconds this retrain holds the monitor's automatic triggers (default: "
                          "loop.monitor.cooldown_s; 0 leaves them free).", min=0),
    ] = None,
    wait: Annotated[
        bool, typer.Option("--wait", help="When another retrain of this project is running, wait for it to end "
                                          "(default: refuse at once).")
    ] = False,
) -> None:
    """Retrain now through the Prefect retrain flow: ingest, validate, train, export, evaluate, gate, publish.

    Recorded in the loop log (`edgeloop loop status`) as a manual retrain with its outcome. It is never
    refused, not even inside the monitor's cooldown, and it then holds the monitor's automatic triggers
    (the nightly slot included) for the cooldown. Uses the Prefect server in PREFECT_API_URL when set,
    else a temporary local one. Exit code 3 when the gate blocks the candidate. One retrain per project at a
    time: another one running is refused in one line, or waited for with --wait. Ctrl-C stops it within
    seconds, says what was left as it was, and exits 130.
    """
    if not verbose:
        os.environ.setdefault("PREFECT_LOGGING_LEVEL", "WARNING")
    params, paths = _load(root)  # fail fast on bad params, before Prefect starts
    from rich.progress import Progress, SpinnerColumn, TextColumn, TimeElapsedColumn

    from edgeloop.retrain_stop import RetrainStop

    columns = (SpinnerColumn(), TextColumn("{task.description}"), TimeElapsedColumn())
    progress = Progress(*columns, console=console, transient=True)
    with RetrainStop(on_stop=progress.stop) as stop:  # Ctrl-C from here on: one line, exit 130
        from flows.retrain_lock import hold_retrain_lock
        from flows.retrain_preflight import check_has_data

        check_has_data(params, paths)  # no data at all: one line now, not a failed flow run
        with hold_retrain_lock(paths, wait=wait, on_wait=lambda line: console.print(line, soft_wrap=True)):
            state = _run_retrain_flow(paths, progress, stop.listener, publish=publish, hold=hold, verbose=verbose)
    result = state.result(raise_on_failure=False)
    if isinstance(result, UserError):  # a user mistake found inside the flow: its own line, nothing more
        raise UserError(str(result))
    if not isinstance(result, dict):
        raise UserError(f"retrain flow {state.name}: {state.message or result}")
    _print_result(paths, result)
    held = params.loop.monitor.cooldown_s if hold is None else hold
    console.print(f"recorded in {paths.resolve(params.loop.log)} as a manual retrain; the monitor's automatic "
                  f"triggers wait {held:.0f} s", soft_wrap=True)
    if not result["passed"]:
        console.print(f"[red]gate blocked the candidate[/]: {state.message}", soft_wrap=True)
        raise typer.Exit(3)
    console.print(f"[green]{state.message}[/]", soft_wrap=True)


def _run_retrain_flow(paths: Paths, progress: Any, stop_listener: Callable[[str, str, dict[str, Any] | None], None],
                      publish: bool, hold: float | None, verbose: bool) -> Any:
    """The retrain flow in this process, its stages shown on ``progress``; its final state."""
    import logging

    from edgeloop.cli_common import QuietUserErrors
    from flows.orchestration.retrain import add_stage_listener, remove_stage_listener
    from flows.orchestration.retrain import retrain as retrain_flow
    from flows.stages import STAGES

    where = os.environ.get("PREFECT_API_URL") or "a temporary local Prefect server"
    console.print(f"retrain flow on {where}")
    quiet = QuietUserErrors()
    loggers = [] if verbose else [logging.getLogger(name) for name in ("prefect.task_runs", "prefect.flow_runs")]
    with progress:
        bar = progress.add_task("starting Prefect", total=len(STAGES))
        listeners = [stop_listener, _stage_progress(progress, bar)]  # Ctrl-C knows a stage ended before it shows
        for listener in listeners:
            add_stage_listener(listener)
        for logger in loggers:
            logger.addFilter(quiet)
        try:
            return retrain_flow(root=str(paths.root), publish=publish, source="manual",
                                requested_by="edgeloop retrain", hold_s=hold, return_state=True)
        finally:
            for listener in listeners:
                remove_stage_listener(listener)
            for logger in loggers:
                logger.removeFilter(quiet)


@app.command()
def serve(
    root: RootOption = Path("."),
    timezone: Annotated[str, typer.Option(help="Time zone of the release-refresh cron.")] = "UTC",
) -> None:
    """Serve every deployment from this process: loop-monitor (the one retraining scheduler; the nightly
    slot is its loop.monitor.nightly_cron trigger), promote-soaked, retrain-on-demand, release-refresh.
    Needs PREFECT_API_URL."""
    if not os.environ.get("PREFECT_API_URL"):
        raise UserError("set PREFECT_API_URL to a running Prefect server (prefect server start) before serving")
    _load(root)  # fail fast on bad params
    from prefect.settings import get_current_settings

    runner_server = get_current_settings().runner.server
    if runner_server.enable:  # the only port `serve` binds (Prefect's runner webserver, off by default)
        check_port_free(runner_server.host, runner_server.port, "another `edgeloop serve`?",
                        "set PREFECT_RUNNER_SERVER_PORT to another one")
    from flows.orchestration.deployments import serve_deployments

    serve_deployments(Path(root).resolve(), timezone=timezone)


@app.command("check-params")
def check_params(root: RootOption = Path(".")) -> None:
    """Validate params.yaml and print the data schema it declares."""
    params, paths = _load(root)
    table = Table(title=f"schema in {paths.params}")
    for column in ("column", "role", "dtype", "range", "nullable"):
        table.add_column(column)
    for feature in params.schema.features:
        span = f"[{feature.min}, {feature.max}] {feature.unit}".strip()
        table.add_row(feature.name, "feature", feature.dtype, span, str(feature.nullable))
    table.add_row(params.schema.label.name, "label", "class", str(list(params.schema.label.classes)), "False")
    for role in ("event_id", "device_id", "event_time"):
        table.add_row(getattr(params.schema, role), role, "", "", "False")
    out.print(table)
    out.print(f"params.yaml is valid (schema {params.schema.fingerprint()[:12]})")


def main() -> None:
    """Console entry point: telemetry off first, user mistakes as one line."""
    switch_off()
    try:
        app(standalone_mode=True)
    except UserError as exc:
        print(f"error: {exc}", file=sys.stderr)  # one line, never wrapped
        sys.exit(2)
    except KeyboardInterrupt:  # Ctrl-C before a command took over its own (e.g. while its libraries import)
        print("interrupted", file=sys.stderr)
        sys.exit(130)


if __name__ == "__main__":
    main()
