"""``edgeloop config ...``: a channel's signed runner policy from the command line (a Typer sub-app).

``publish`` reads a YAML or JSON file (``settings:`` and optional ``devices:`` maps, or the settings sections
at the top level) and signs it as the channel's next policy version (``flows.releases.runner_config``);
``show`` prints what a channel's runners are told (a version, its settings and device overrides, when, the
note); ``rollback`` republishes an earlier version's content under a new version; ``history`` lists the
versions. ``--json`` prints the same as JSON. The release repository comes from params.yaml's ``release:``
section, as for ``edgeloop release``. User mistakes raise ``UserError`` (one line, exit 2, from
``edgeloop.cli.main``). Imports python-tuf only inside commands so ``edgeloop --help`` stays fast.
Leaves out: the policy logic (``flows.releases.runner_config``) and applying a policy (the runner).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer
from rich.console import Console
from rich.table import Table

from edge.contracts.errors import UserError
from edgeloop.cli_common import RootOption, sub_app

if TYPE_CHECKING:
    from edge.contracts.runner_policy import RunnerPolicy
    from flows.releases import ReleaseConfig

config_app = sub_app("A channel's signed runner policy (upload, drift, watch, poll settings): publish, show, "
                     "roll back, history.")

ChannelOption = Annotated[str | None, typer.Option("--channel", help="Channel (default: release.channel).")]


def _out() -> Console:
    return Console()  # made at each use, so its width follows $COLUMNS when the command runs


def _load(root: Path) -> tuple[ReleaseConfig, str]:
    from edge.contracts.layout import Paths
    from flows.params import load_params
    from flows.releases import ReleaseConfig

    paths = Paths.at(root)
    params = load_params(paths.params)
    return ReleaseConfig.from_params(params, paths), params.release.channel


def read_policy_file(path: Path) -> tuple[dict[str, Any], dict[str, Any]]:
    """``(settings, devices)`` from a YAML or JSON file; a one-line UserError for anything else."""
    import yaml

    from edge.contracts.errors import yaml_error_line

    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise UserError(f"cannot read {path}: {exc.strerror}") from None
    except UnicodeDecodeError:
        raise UserError(f"{path}: not a text file (expected YAML or JSON)") from None
    try:
        raw = yaml.safe_load(text)  # JSON is YAML
    except yaml.YAMLError as exc:
        raise UserError(yaml_error_line(path, exc)) from None
    if raw is None:
        raise UserError(f"{path}: empty; expected `settings:` (section -> key -> value) and optional `devices:`")
    if not isinstance(raw, dict):
        raise UserError(f"{path}: expected a mapping with `settings:` and optional `devices:`")
    if "settings" in raw or "devices" in raw:
        unknown = sorted(str(k) for k in set(raw) - {"settings", "devices"})
        if unknown:
            raise UserError(f"{path}: {unknown[0]}: unknown field (expected `settings:` and optional `devices:`)")
        settings, devices = raw.get("settings") or {}, raw.get("devices") or {}
    else:
        settings, devices = raw, {}
    if not isinstance(settings, dict):
        raise UserError(f"{path}: settings: expected a mapping (section -> key -> value)")
    if not isinstance(devices, dict):
        raise UserError(f"{path}: devices: expected a mapping (device id -> section -> key -> value)")
    return settings, devices


def _record(policy: RunnerPolicy) -> dict[str, Any]:
    return {"channel": policy.channel, "version": policy.version, "published_at": policy.published_at,
            "note": policy.note, "content_of": policy.content_of, "settings": policy.settings,
            "devices": policy.devices}


def _value(value: Any) -> str:
    return json.dumps(value) if not isinstance(value, str) else value


def _print_policy(policy: RunnerPolicy) -> None:
    out = _out()
    origin = f" (content of version {policy.content_of})" if policy.content_of else ""
    out.print(f"channel '{policy.channel}': runner policy version {policy.version}{origin}, published"
              f" {policy.published_at or '-'}", highlight=False)
    if policy.note:
        out.print(f"note: {policy.note}", highlight=False)
    table = Table(title="settings (a key not named keeps each runner's runner.toml value)")
    table.add_column("scope", no_wrap=True)
    table.add_column("key", no_wrap=True)
    table.add_column("value", overflow="fold")
    for section, values in sorted(policy.settings.items()):
        for key, value in sorted(values.items()):
            table.add_row("all devices", f"{section}.{key}", _value(value))
    for device_id, settings in sorted(policy.devices.items()):
        for section, values in sorted(settings.items()):
            for key, value in sorted(values.items()):
                table.add_row(device_id, f"{section}.{key}", _value(value))
    if table.row_count:
        out.print(table)
    else:
        out.print("no settings: every runner keeps its runner.toml values")


@config_app.command("publish")
def publish_command(
    file: Annotated[Path, typer.Argument(help="YAML or JSON: `settings:` and optional `devices:` maps, or the "
                                              "settings sections at the top level.", dir_okay=False)],
    channel: ChannelOption = None,
    note: Annotated[str, typer.Option("--note", help="Why (shown by `config show` and `config history`).")] = "",
    create: Annotated[bool, typer.Option("--create", help="Allow a channel that does not exist yet.")] = False,
    root: RootOption = Path("."),
) -> None:
    """Check and sign a runner policy as the channel's next version (devices verify it like a model).

    Every key and value is checked with the runner's own runner.toml readers before anything is signed; a
    file whose content equals the current version's publishes nothing."""
    from flows.releases.runner_config import publish_policy_outcome

    config, default_channel = _load(root)
    settings, devices = read_policy_file(file)
    outcome = publish_policy_outcome(config, channel or default_channel, settings, devices, note, create)
    policy = outcome.policy
    if not outcome.published:
        _out().print(f"channel '{policy.channel}' already has this runner policy (version {policy.version});"
                     " nothing published", highlight=False)
        return
    was = f" (was {outcome.previous})" if outcome.previous else ""
    _out().print(f"published runner policy version {policy.version} to channel '{policy.channel}'{was}",
                 highlight=False)


@config_app.command("show")
def show_command(
    channel: ChannelOption = None,
    version: Annotated[int | None, typer.Option("--version", help="An earlier version (default: the current).",
                                                min=1)] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print the policy as JSON.")] = False,
    root: RootOption = Path("."),
) -> None:
    """Show what a channel's runners are told: version, settings, device overrides, when and why."""
    from flows.releases.runner_config import current_policy, policy_version

    config, default_channel = _load(root)
    name = channel or default_channel
    policy = current_policy(config, name) if version is None else policy_version(config, name, version)
    if policy is None:
        if as_json:
            _out().print_json(json.dumps(None))
            return
        raise UserError(f"channel {name!r} has no runner policy yet (publish one with `edgeloop config publish`)")
    if as_json:
        _out().print_json(json.dumps(_record(policy)))
        return
    _print_policy(policy)


@config_app.command("rollback")
def rollback_command(
    channel: ChannelOption = None,
    to: Annotated[int | None, typer.Option("--to", help="Version whose content to republish (default: the one "
                                                        "before the current content).", min=1)] = None,
    root: RootOption = Path("."),
) -> None:
    """Republish an earlier version's content as a new version (versions only grow: runners refuse older ones)."""
    from flows.releases.runner_config import rollback_policy_outcome

    config, default_channel = _load(root)
    outcome = rollback_policy_outcome(config, channel or default_channel, to)
    policy = outcome.policy
    if not outcome.published:
        _out().print(f"channel '{policy.channel}' already has that content (version {policy.version});"
                     " nothing published", highlight=False)
        return
    _out().print(f"runner policy of channel '{policy.channel}' is now version {policy.version}, the content of"
                 f" version {policy.content_of} (was {outcome.previous})", highlight=False)


@config_app.command("history")
def history_command(
    channel: ChannelOption = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print the versions as a JSON list.")] = False,
    root: RootOption = Path("."),
) -> None:
    """List every runner policy version of a channel, oldest first."""
    from flows.releases.runner_config import policy_history

    config, default_channel = _load(root)
    name = channel or default_channel
    rows = policy_history(config, name)
    if as_json:
        _out().print_json(json.dumps(rows))
        return
    if not rows:
        _out().print(f"channel '{name}' has no runner policy yet", highlight=False)
        return
    table = Table(title=f"runner policy of channel '{name}'")
    table.add_column("version", no_wrap=True)
    table.add_column("published", no_wrap=True)
    table.add_column("content of", no_wrap=True)
    table.add_column("note", overflow="fold")
    for row in rows:
        marker = " (current)" if row["current"] else ""
        table.add_row(f"{row['version']}{marker}", row["published_at"] or row["time"],
                      str(row["content_of"] or "-"), row["note"])
    _out().print(table)
