"""``edgeloop release ...``: signed releases from the command line (a Typer sub-app).

Thin: each command loads params.yaml's ``release:`` section into a ``ReleaseConfig``, calls
``flows.releases`` or ``flows.project_releases`` and prints the outcome (rich tables for list/show).
``promote``/``rollback`` run as the Prefect ``promote``/``rollback`` flows when PREFECT_API_URL is set
(so they show in the UI history), else directly; either way the move is recorded in the loop log as
``manual`` and its user mistakes (an unknown channel without ``--create``, a missing release) are found
before anything starts. User mistakes raise ``UserError``, which ``edgeloop.cli.main`` prints as one
line (exit 2). Imports python-tuf and Prefect only inside commands so ``edgeloop --help`` stays fast.
``halt``/``resume`` freeze and unfreeze a channel (``flows.loop.halts``): no automatic move touches a halted
channel, and ``promote`` into one is refused unless ``--force``. ``list --json`` prints the table's rows as
JSON; its table follows ``edgeloop.cli_tables`` (fits the terminal, 80 columns included, by hiding the least
important columns and naming them; never cuts a version, channel or candidate name; ``--wide`` for all).
Leaves out: the release logic itself and deciding promotions (``edgeloop loop``, the promote-soaked flow).
"""

from __future__ import annotations

import getpass
import json
import os
from pathlib import Path
from types import SimpleNamespace
from typing import TYPE_CHECKING, Annotated, Any

import typer
from rich.console import Console
from rich.table import Table

from edge.contracts.errors import UserError
from edgeloop.cli_common import RootOption, sub_app

if TYPE_CHECKING:
    from edge.contracts.layout import Paths
    from flows.params import Params
    from flows.releases import ReleaseConfig

release_app = sub_app("Signed, versioned model releases (TUF): publish, promote, roll back, halt, verify.")


class _Out:
    """A rich console made at each use, so its width follows $COLUMNS when the command runs."""

    def __getattr__(self, name: str) -> Any:
        return getattr(Console(), name)


out = _Out()


def _load(root: Path) -> tuple[Params, Paths, ReleaseConfig]:
    from edge.contracts.layout import Paths
    from flows.params import load_params
    from flows.releases import ReleaseConfig

    paths = Paths.at(root)
    params = load_params(paths.params)
    return params, paths, ReleaseConfig.from_params(params, paths)


@release_app.command()
def init(root: RootOption = Path(".")) -> None:
    """Create the release repository and its keys (root key offline, online keys apart)."""
    from flows.releases import init_repository

    _, _, config = _load(root)
    trusted = init_repository(config)
    out.print(f"release repository created at {config.repository}")
    out.print(f"root of trust  {trusted}  (ship it with every device)")
    out.print(f"root key       {config.root_key}  (move it offline; it is needed only for rotate-key)")
    out.print(f"online keys    {config.online_keys}  (targets, snapshot, timestamp)")


@release_app.command("publish")
def publish_command(
    candidate: Annotated[
        Path | None, typer.Argument(help="Release candidate folder (default: data/candidate).")
    ] = None,
    channel: Annotated[
        str | None, typer.Option(help="Channel to point at the new release (default: release.channel).")
    ] = None,
    create: Annotated[bool, typer.Option("--create", help="Make the channel if it does not exist yet.")] = False,
    force: Annotated[bool, typer.Option("--force", help="Publish even though the channel is halted.")] = False,
    root: RootOption = Path("."),
) -> None:
    """Sign and publish a passed candidate as the next release version and move a channel to it.

    A channel that does not exist yet (and is not named in params.yaml) is refused unless --create; a halted
    channel (`release halt`) unless --force."""
    from flows.loop.halts import refuse_if_halted
    from flows.project_releases import publish_candidate

    params, paths, _ = _load(root)
    if not force:
        refuse_if_halted(_halts_file(params, paths), channel or params.release.channel,
                         "nothing published; --force publishes anyway")
    folder = candidate or paths.candidate
    result = publish_candidate(params, paths, channel, folder, initialise=False, create=create)
    if result["already_published"]:
        out.print(f"{folder} is already release {result['version']}; channel '{result['channel']}' points at it")
        return
    out.print(f"published release {result['version']} to channel '{result['channel']}' from {folder}"
              f" ({len(result['targets'])} targets, {result['seconds']:.3f} s)")


@release_app.command()
def promote(
    version: Annotated[int, typer.Argument(help="Release version to promote.", min=1)],
    to: Annotated[str, typer.Option("--to", help="Channel to point at it (e.g. stable).")],
    create: Annotated[bool, typer.Option("--create", help="Make the channel if it does not exist yet.")] = False,
    force: Annotated[bool, typer.Option("--force", help="Promote even though the channel is halted.")] = False,
    root: RootOption = Path("."),
) -> None:
    """Point a channel at an existing release (only the signed pointer moves).

    A channel that does not exist yet is refused (a typo must not make a channel no device follows) unless
    --create is given; a halted channel (`release halt`) is refused unless --force. Runs as the Prefect
    ``promote`` flow when PREFECT_API_URL is set, so it shows in the UI history."""
    _print_move(_move_channel(root, "promote", to, version, create, force))


@release_app.command()
def rollback(
    channel: Annotated[str, typer.Option(help="Channel to move back.")],
    to: Annotated[
        int | None, typer.Option("--to", help="Release version (default: the one before the current).", min=1)
    ] = None,
    root: RootOption = Path("."),
) -> None:
    """Move a channel back to an earlier release.

    Runs as the Prefect ``rollback`` flow when PREFECT_API_URL is set, so it shows in the UI history."""
    _print_move(_move_channel(root, "rollback", channel, to))


def cli_user() -> str:
    """Who runs the command, as the loop log records it."""
    try:
        name = getpass.getuser()
    except (KeyError, OSError):
        name = "unknown user"
    return f"{name} via cli"


def _halts_file(params: Params, paths: Paths) -> Path:
    from flows.loop.halts import halts_path

    return halts_path(paths.resolve(params.loop.log))


def _move_channel(root: Path, kind: str, channel: str, version: int | None, create: bool = False,
                  force: bool = False) -> SimpleNamespace:
    """Through the Prefect flow when a server is configured, else directly (same functions underneath)."""
    from flows.loop.halts import read_halts, refuse_if_halted
    from flows.project_releases import check_move

    params, paths, _ = _load(root)
    check_move(params, paths, kind, channel, version, create)  # a typo is one line, not a failed flow run
    halted = read_halts(_halts_file(params, paths)).get(channel)
    if kind == "promote" and not force:  # a rollback of a halted channel is the operator's way out: allowed
        refuse_if_halted(_halts_file(params, paths), channel, "nothing moved; --force promotes anyway")
    extra = {"forced_over_halt": halted.describe()} if halted is not None and kind == "promote" else {}
    if os.environ.get("PREFECT_API_URL"):  # the flows record the move in the loop log themselves
        os.environ.setdefault("PREFECT_LOGGING_LEVEL", "WARNING")
        from flows.orchestration.release_flows import promote_flow, rollback_flow

        if kind == "promote" and version is not None:
            result = promote_flow(root=str(paths.root), version=version, channel=channel, create=create,
                                  by=cli_user(), extra=extra)
        else:
            result = rollback_flow(root=str(paths.root), channel=channel, to=version, by=cli_user())
    else:
        from flows.loop.moves import record_manual_move
        from flows.project_releases import move_channel

        result = move_channel(params, paths, kind, channel, version, create)
        record_manual_move(params, paths, kind, result, by=cli_user(), **extra)
    return SimpleNamespace(**result)


def _print_move(move: Any) -> None:
    if move.from_version == move.to_version:
        out.print(f"channel '{move.channel}' already points at release {move.to_version}; nothing changed")
    else:
        out.print(f"channel '{move.channel}': {move.from_version or '-'} -> {move.to_version}")


def _metric(metrics: dict[str, float], name: str) -> str:
    return "-" if name not in metrics else f"{metrics[name]:.4f}"


LIST_COLUMNS = (  # edgeloop.cli_tables: "whole" names are never cut; higher drop ranks go first when narrow
    ("version", True, 0), ("channels", False, 0), ("created (UTC)", True, 3), ("f1_macro", True, 1),
    ("candidate", True, 2), ("accuracy", True, 4), ("data hash", True, 5),
)


def release_rows(root: Path) -> tuple[str, list[dict[str, Any]], dict[str, Any]]:
    """(repository, every release newest first as plain data, halted channels) for ``release list``."""
    from flows.loop.halts import read_halts
    from flows.releases import list_releases

    params, paths, config = _load(root)
    halts = read_halts(_halts_file(params, paths))
    releases = [{"version": r.version, "channels": list(r.channels), "created": r.created, "metric": r.metric,
                 "metrics": dict(r.metrics), "data_hash": r.data_hash, "candidate": r.candidate}
                for r in reversed(list_releases(config))]
    halted = {name: {"by": h.by, "at": h.at, "reason": h.reason} for name, h in sorted(halts.items())}
    return str(config.repository), releases, halted


@release_app.command("list")
def list_command(
    root: RootOption = Path("."),
    as_json: Annotated[bool, typer.Option("--json", help="Print the releases as a JSON list.")] = False,
    wide: Annotated[bool, typer.Option("--wide", help="Every column, however wide the table gets.")] = False,
) -> None:
    """Releases, newest first: version, channels, created, key metrics, data hash, candidate.

    Halted channels are marked and listed under the table (with --json: each release's ``halted`` channels)."""
    repository, releases, halted = release_rows(root)
    console = Console()
    if as_json:
        for r in releases:
            r["halted"] = [c for c in r["channels"] if c in halted]
        console.print_json(json.dumps(releases))
        return
    from edgeloop.cli_tables import Col, fit_table, show

    rows = [[str(r["version"]), ", ".join(f"{c} (halted)" if c in halted else c for c in r["channels"]) or "-",
             r["created"][:16].replace("T", " "), _metric(r["metrics"], "f1_macro"), r["candidate"] or "-",
             _metric(r["metrics"], "accuracy"), r["data_hash"][:12]] for r in releases]
    longest = max((len(c) for r in releases for c in r["channels"]), default=0)  # a channel name never folds
    columns = [Col(name, whole=whole, drop=drop, min_width=longest if name == "channels" else 0)
               for name, whole, drop in LIST_COLUMNS]
    console.print(f"releases in {repository}")  # a long path wraps (folds), never cut short
    show(console, fit_table(columns, rows, console.width, wide=wide), wide)
    for name, h in halted.items():
        console.print(f"channel {name} is halted by {h['by']} at {h['at'][:19].replace('T', ' ')} UTC: {h['reason']}")
    if not releases:
        console.print("no releases yet: `edgeloop release publish`")


@release_app.command()
def halt(
    channel: Annotated[str, typer.Argument(help="Channel to freeze (e.g. stable).")],
    reason: Annotated[str, typer.Option("--reason", help="Why (shown wherever the halt is; up to 200 characters).")],
    root: RootOption = Path("."),
) -> None:
    """Halt a channel: no automatic promotion or rollback moves it, and `release promote` into it needs --force.

    Recorded in the loop log as a manual decision with who and when; `release resume` lifts it."""
    from flows.loop.halts import halt_channel, record_halt
    from flows.project_releases import declared_channels
    from flows.releases import list_channels

    params, paths, config = _load(root)
    known = set(list_channels(config)) | declared_channels(params)
    if channel not in known:
        raise UserError(f"channel {channel!r} does not exist (channels: {', '.join(sorted(known))}); nothing halted")
    by = cli_user()
    done = halt_channel(_halts_file(params, paths), channel, by, reason)
    record_halt(paths.resolve(params.loop.log), "halt", done, by)
    out.print(f"channel '{channel}' halted: {done.reason}")


@release_app.command()
def resume(
    channel: Annotated[str, typer.Argument(help="Halted channel to let move again.")],
    root: RootOption = Path("."),
) -> None:
    """Lift a channel's halt: automatic promotion may move it again. Recorded in the loop log as manual."""
    from flows.loop.halts import record_halt, resume_channel

    params, paths, _ = _load(root)
    by = cli_user()
    lifted = resume_channel(_halts_file(params, paths), channel)
    record_halt(paths.resolve(params.loop.log), "resume", lifted, by)
    out.print(f"channel '{channel}' resumed (it was {lifted.describe()})")


@release_app.command()
def show(
    version: Annotated[int, typer.Argument(help="Release version.", min=1)],
    root: RootOption = Path("."),
    as_json: Annotated[bool, typer.Option("--json", help="Print the full record as JSON.")] = False,
) -> None:
    """A release's manifest summary, gate decision and files."""
    from flows.releases import show_release

    _, _, config = _load(root)
    shown = show_release(config, version)
    if as_json:
        out.print_json(json.dumps(shown))
        return
    lineage = shown["lineage"]
    out.print(f"release {version}  candidate {shown['candidate']}  created {shown['created']}"
              f"  channels: {', '.join(shown['channels']) or '-'}")
    out.print(f"data {lineage['data_hash'][:16]}  params {lineage['params_hash'][:16]}"
              f"  git {lineage['git_commit'][:16]}  dvc.lock {(lineage['dvc_lock_hash'] or '-')[:16]}")
    gate = Table(title=f"gate: {'passed' if shown['gate']['passed'] else 'BLOCKED'} ({shown['gate']['metric']})")
    gate.add_column("rule", no_wrap=True)
    for column in ("threshold", "observed", "result", "detail"):
        gate.add_column(column, overflow="fold")
    for rule in shown["gate"]["rules"]:
        gate.add_row(rule["name"], _number(rule["threshold"]), _number(rule["observed"]),
                     "pass" if rule["passed"] else "FAIL", rule["detail"])
    out.print(gate)
    files = Table(title="files (TUF targets)")
    files.add_column("file", no_wrap=True)
    files.add_column("bytes", no_wrap=True)
    files.add_column("sha256", overflow="fold", min_width=16)
    for name, info in shown["files"].items():
        files.add_row(name, str(info["length"]), info["sha256"])
    out.print(files)


def _number(value: Any) -> str:
    return "-" if value is None else f"{value:.4g}" if isinstance(value, float) else str(value)


@release_app.command()
def verify(
    url: Annotated[
        str | None, typer.Option(help="Base URL serving metadata/ and targets/ (default: serve the local repository).")
    ] = None,
    trusted_root: Annotated[
        Path | None,
        typer.Option("--root-metadata", help="Root of trust file (default: the repository's 1.root.json)."),
    ] = None,
    channel: Annotated[
        list[str] | None, typer.Option(help="Channel to verify (repeatable; default: every channel).")
    ] = None,
    root: RootOption = Path("."),
) -> None:
    """Verify the repository as a device would: python-tuf ngclient over HTTP, from a root of trust."""
    from flows.releases import serve_directory, verify_repository

    _, _, config = _load(root)
    anchor = trusted_root or config.metadata_dir / "1.root.json"
    if url is None:
        if not (config.metadata_dir / "timestamp.json").is_file():
            raise UserError(f"no release repository at {config.repository}: run `edgeloop release init` first")
        with serve_directory(config.repository) as served:
            report = verify_repository(anchor, f"{served}/metadata/", f"{served}/targets/", channel)
    else:
        base = url.rstrip("/")
        report = verify_repository(anchor, f"{base}/metadata/", f"{base}/targets/", channel)
    roles = ", ".join(f"{r} v{report[r]['version']} (expires {report[r]['expires']})"
                      for r in ("root", "targets", "snapshot", "timestamp"))
    out.print(f"verified from {anchor}: {roles}")
    table = Table(title="channels")
    table.add_column("channel", no_wrap=True)
    table.add_column("release", no_wrap=True)
    table.add_column("model sha256", overflow="fold", min_width=16)
    table.add_column("bytes", no_wrap=True)
    for name, info in report["channels"].items():
        table.add_row(name, str(info["version"]), info["model_sha256"], str(info["model_bytes"]))
    out.print(table)
    if report.get("policies"):
        policies = Table(title="runner policies (signed configuration)")
        for column in ("channel", "version", "content of", "device overrides", "bytes"):
            policies.add_column(column, no_wrap=True)
        for name, info in report["policies"].items():
            content = "" if info["content_of"] is None else f"v{info['content_of']}"
            policies.add_row(name, str(info["version"]), content, str(info["devices"]), str(info["bytes"]))
        out.print(policies)


@release_app.command()
def refresh(
    force: Annotated[bool, typer.Option(help="Also re-sign targets and snapshot now.")] = False,
    root: RootOption = Path("."),
) -> None:
    """Re-sign the timestamp (and snapshot/targets near expiry) so devices do not freeze."""
    from flows.releases import refresh as refresh_repository

    _, _, config = _load(root)
    report = refresh_repository(config, force=force)
    out.print(f"re-signed {', '.join(report['resigned'])}")
    for role in ("timestamp", "snapshot", "targets", "root"):
        out.print(f"  {role:<9} v{report[role]['version']}  expires {report[role]['expires']}")
    if report["root_near_expiry"]:
        out.print("[yellow]root expires within half its validity: renew it with `edgeloop release rotate-key root`[/]")


@release_app.command("rotate-key")
def rotate_key_command(
    role: Annotated[str, typer.Argument(help="Role whose key to replace: root, targets, snapshot or timestamp.")],
    signer_uri: Annotated[
        str | None, typer.Option(help="Use this securesystemslib signer URI (KMS/HSM) instead of a new key file.")
    ] = None,
    public_key: Annotated[
        Path | None, typer.Option(help="PEM public key of the --signer-uri key.", dir_okay=False)
    ] = None,
    root: RootOption = Path("."),
) -> None:
    """Replace a role's key by a new root version; devices follow it on their next poll."""
    from flows.releases import rotate_key

    _, _, config = _load(root)
    pem = None
    if public_key is not None:
        try:
            pem = public_key.read_bytes()
        except OSError as exc:
            raise UserError(f"cannot read {public_key}: {exc.strerror}") from None
    report = rotate_key(config, role, signer_uri, pem)
    out.print(f"{role} key is now {report['new_keyid'][:16]} (root version {report['root_version']})")
    if "note" in report:
        out.print(report["note"])


@release_app.command()
def reproduce(
    version: Annotated[int, typer.Argument(help="Release version to rebuild.", min=1)],
    root: RootOption = Path("."),
) -> None:
    """Rebuild a release from its recorded data and params and compare predictions and ONNX bytes."""
    from flows.releases.reproduce import reproduce_release

    _, paths, config = _load(root)
    report = reproduce_release(config, version, paths.root)
    out.print_json(json.dumps(report, default=str))
