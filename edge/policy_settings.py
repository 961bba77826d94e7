"""Check a signed runner policy's settings and apply them on top of a runner's own configuration.

``check_settings(settings)`` lists every problem of a policy's ``settings`` (section -> key -> value), each
naming ``section.key``: a key a policy may not set (``REMOTE_KEYS``), a value runner.toml's own reader for
that key refuses, or a rule between keys of a section (the section's ``__post_init__``), judged with the
section's defaults for the keys the settings leave out. The cloud checks a policy with it before signing.

``apply_settings(config, settings, pinned, allow_looser_privacy)`` returns a new ``RunnerConfig`` with the
settings applied through the same readers (``dataclasses.replace``); a problem is a ``ConfigError``
naming the key, and nothing is half-applied (the input config is frozen and returned unchanged on error).
Pinned keys keep their local value and are reported, not refused (``plan_settings`` says which);
a privacy key that the policy would loosen (``loosened_privacy``) is refused unless allowed.

Leaves out: fetching and verifying the policy (edge.policy_updates), and what the values do (the runner).
Standard library only.
"""

from __future__ import annotations

from collections.abc import Collection, Mapping
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from edge.config import ConfigError, RunnerConfig, keys_of, sections
from edge.contracts.runner_policy import REMOTE_KEYS, loosened_privacy

__all__ = ["Applied", "apply_settings", "check_settings", "plan_settings", "reader_of"]


@dataclass(frozen=True)
class Applied:
    """The outcome of applying a policy: the new configuration, what was applied, what pins kept."""

    config: RunnerConfig
    settings: dict[str, dict[str, Any]]  # section -> key -> value as applied (read, pins left out)
    kept: dict[str, Any]  # "section.key" -> the local value a pin kept


# Values for the keys without a default (none of them a remote key), to build a section of defaults.
_PLACEHOLDERS: dict[str, dict[str, Any]] = {"hub": {"token": None, "url": "http://127.0.0.1"},
                                            "releases": {"trusted_root": Path("root.json")}}


def reader_of(section: str, key: str) -> Any:
    """runner.toml's reader of ``section.key`` (KeyError when runner.toml has no such key)."""
    return keys_of(sections()[section])[key].metadata["read"]


def _read_all(settings: Any) -> tuple[dict[str, dict[str, Any]], list[str]]:
    """Every value read by runner.toml's reader: (section -> key -> value, problems)."""
    problems: list[str] = []
    out: dict[str, dict[str, Any]] = {}
    if not isinstance(settings, Mapping):
        return out, [f"settings: expected an object (section -> key -> value), got {type(settings).__name__}"]
    for section, values in settings.items():
        if section not in REMOTE_KEYS:
            problems.append(f"{section}: not a section a policy may set (one of {sorted(REMOTE_KEYS)})")
            continue
        if not isinstance(values, Mapping):
            problems.append(f"{section}: expected an object (key -> value)")
            continue
        for key, value in values.items():
            if key not in REMOTE_KEYS[section]:
                problems.append(f"{section}.{key}: not a key a policy may set "
                                f"(one of {sorted(REMOTE_KEYS[section])})")
                continue
            try:
                out.setdefault(section, {})[key] = reader_of(section, key)(value, f"{section}.{key}")
            except ConfigError as exc:
                problems.append(str(exc))
    return out, problems


def _sections_with(base: Mapping[str, Any], read: Mapping[str, Mapping[str, Any]]) -> tuple[dict[str, Any], list[str]]:
    """The section objects ``base`` (section name -> section object) with ``read`` on top (their own rules run)."""
    built: dict[str, Any] = {}
    problems: list[str] = []
    for section, values in read.items():
        try:
            built[section] = replace(base[section], **values)
        except ConfigError as exc:
            problems.append(str(exc))
    return built, problems


def check_settings(settings: Any) -> list[str]:
    """Every problem of a policy's ``settings``, each naming ``section.key``; [] when it is valid.

    Rules between keys are judged with runner.toml's defaults for the keys the settings leave out (a
    runner judges them again with its own values when it applies the policy)."""
    read, problems = _read_all(settings)
    defaults = {section: sections()[section](**_PLACEHOLDERS.get(section, {})) for section in read}
    problems += _sections_with(defaults, read)[1]
    return problems


def plan_settings(config: RunnerConfig, settings: Any, pinned: Collection[str] = (),
                  allow_looser_privacy: bool = False) -> Applied:
    """Apply ``settings`` on top of ``config`` (see ``apply_settings``) and say what was applied and kept."""
    read, problems = _read_all(settings)
    if problems:
        raise ConfigError(problems[0] if len(problems) == 1 else "; ".join(problems))
    kept: dict[str, Any] = {}
    applied: dict[str, dict[str, Any]] = {}
    for section, values in read.items():
        for key, value in values.items():
            name = f"{section}.{key}"
            local = getattr(getattr(config, section), key)
            if name in pinned:
                if value != local:
                    kept[name] = local
                continue
            applied.setdefault(section, {})[key] = value
    if not allow_looser_privacy:
        local_privacy = {"upload.local_only": config.upload.local_only, "upload.mode": config.upload.mode}
        remote = {f"upload.{k}": v for k, v in applied.get("upload", {}).items()}
        loosened = loosened_privacy(local_privacy, remote)
        if loosened:
            raise ConfigError(f"{loosened[0]}: a policy may only make this privacy rule stricter "
                              f"(local {local_privacy[loosened[0]]!r}, policy {remote[loosened[0]]!r}); "
                              f"runner.toml [policy] allow_looser_privacy = true allows it")
    current = {section: getattr(config, section) for section in applied}
    built, problems = _sections_with(current, applied)
    if problems:
        raise ConfigError("; ".join(problems))
    return Applied(config=replace(config, **built), settings=applied, kept=kept)


def apply_settings(config: RunnerConfig, settings: Any, pinned: Collection[str] = (),
                   allow_looser_privacy: bool = False) -> RunnerConfig:
    """``config`` with a policy's ``settings`` applied (a ConfigError names the first problem key).

    ``pinned`` ("section.key") keep their value in ``config``; a privacy key the policy would loosen is
    refused unless ``allow_looser_privacy``."""
    return plan_settings(config, settings, pinned, allow_looser_privacy).config
