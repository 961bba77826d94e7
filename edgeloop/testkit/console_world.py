"""A seeded world for the operator console: a hub with N registered devices that heartbeated, varied in
channel, version, health (with reasons), drift, backlog, staleness and revocation, and M published releases.

Built with the product's own parts: devices are registered with hub.registry.add_device (a real token
each) and report through the hub's real ``POST /v1/devices/<id>/heartbeat`` over HTTP; releases are real
signed TUF releases published by flows.releases.publish into the repository the hub serves. Publishing
many releases is slow (each re-signs the growing targets metadata), so ``release_repository`` builds
the repository once into a cache folder keyed by the count and copies it for each use. Shared by the
console tests and bench/console.py. ``write_decision_log`` gives the loop page a history: monitor passes
(quiet, and now and then a fired retrain with its outcome) and soak checks, shaped as the loop writes them,
five minutes apart up to the hub clock's start. Leaves out uploads and the device history's events.
"""

from __future__ import annotations

import json
import shutil
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import yaml

from edge.contracts.wire import device_path
from edgeloop.testkit.hub import HubHandle, ManualClock, hub_project, running_hub
from hub.clock import Clock

__all__ = ["ConsoleWorld", "DeviceSpec", "console_world", "device_specs", "heartbeat_body", "login",
           "release_repository", "seed_devices", "write_decision_log", "write_estimates"]

START = datetime(2026, 12, 2, 14, 0, tzinfo=UTC)
REASONS = {
    "degraded": ("accuracy 0.778 below floor 0.8", "spool backlog 9,120 rows above 5,000", "clock skew 42 s"),
    "error": ("model failed to load: checksum mismatch", "401 from the hub: token refused for this device"),
}
FEATURES = ("air_temperature", "process_temperature", "rotational_speed", "torque", "tool_wear")


@dataclass(frozen=True)
class DeviceSpec:
    device_id: str
    channel: str = "stable"
    version: str | None = "1"
    health: str = "ok"
    reason: str = ""
    drift: float = 0.05
    backlog: int = 0
    heartbeat: bool = True  # False: never seen
    offline: bool = False  # its heartbeat is older than the hub's staleness limit
    revoked: bool = False


def device_specs(count: int, versions: int = 5) -> list[DeviceSpec]:
    """``count`` varied devices: most ok, some degraded/error with reasons, some drifting, offline, never
    seen or revoked (deterministic)."""
    specs = []
    for i in range(count):
        health = "error" if i % 23 == 7 else "degraded" if i % 9 == 4 else "ok"
        reason = "" if health == "ok" else REASONS[health][i % len(REASONS[health])]
        specs.append(DeviceSpec(
            device_id=f"line{i // 100:02d}-dev{i:04d}", channel="canary" if i % 10 == 0 else "stable",
            version=str(1 + i % versions), health=health, reason=reason,
            drift=0.4 if i % 17 == 3 else round(0.01 * (i % 20), 3), backlog=(i * 37) % 500,
            heartbeat=i % 31 != 5, offline=i % 29 == 6, revoked=i % 97 == 11,
        ))
    return specs


def heartbeat_body(spec: DeviceSpec, now: datetime) -> dict[str, Any]:
    """A valid heartbeat (hub.schemas.heartbeats.HeartbeatBody) for ``spec``."""
    since = (now - timedelta(minutes=17)).isoformat() if spec.health != "ok" else None
    drift = {feature: round(spec.drift * (1.0 - 0.15 * k), 4) for k, feature in enumerate(FEATURES)}
    return {"model_version": spec.version, "channel": spec.channel, "health": spec.health,
            "health_reason": spec.reason, "health_since": since, "drift": drift, "rolling_accuracy": 0.9,
            "spool_backlog": spec.backlog, "clock": now.isoformat()}


def seed_devices(app: Any, clock: Clock, client: httpx.Client, specs: list[DeviceSpec]) -> dict[str, str]:
    """Register every device in the hub ``app`` and send its heartbeat through the hub's HTTP API with
    ``client`` (real HTTP, or FastAPI's TestClient); returns device -> token. Offline devices report
    first, then the hub's ManualClock moves past the staleness limit."""
    from hub.registry import add_device, revoke_device

    state = app.state
    tokens = {s.device_id: add_device(state.sessions, s.device_id, s.channel, clock=clock) for s in specs}
    stale = float(state.settings.section.stale_after_s)
    ordered = [s for s in specs if s.heartbeat and s.offline] + [s for s in specs if s.heartbeat and not s.offline]
    moved = False
    for spec in ordered:
        if not spec.offline and not moved and isinstance(clock, ManualClock):
            clock.advance(stale + 60)
            moved = True
        answer = client.post(device_path(spec.device_id, "heartbeat"), json=heartbeat_body(spec, clock.now()),
                             headers={"Authorization": f"Bearer {tokens[spec.device_id]}"})
        answer.raise_for_status()
    for spec in specs:
        if spec.revoked:
            revoke_device(state.sessions, spec.device_id, clock)
    return tokens


def write_estimates(root: Path, specs: list[DeviceSpec], rows_per_device: int = 40) -> Path:
    """The loop's estimates file (``data/loop/estimates.json``) for ``specs``, computed by the loop's own
    flows.loop.estimates from ``rows_per_device`` synthetic labelled upload rows per heartbeating device."""
    import numpy as np
    import pandas as pd

    from edge.contracts.layout import Paths
    from edge.contracts.record import INCLUSION_PROBABILITY, MODEL_VERSION, PREDICTION, UPLOAD_REASON
    from flows.loop.estimates import fleet_estimates
    from flows.loop.estimates import write_estimates as write
    from flows.params import load_params

    params = load_params(root / "params.yaml")
    label = params.schema.label
    classes = list(label.classes)
    rng = np.random.default_rng(14)
    frames = []
    for spec in specs:
        if not spec.heartbeat or spec.version is None:
            continue
        truth = rng.choice(classes, size=rows_per_device)
        wrong = rng.random(rows_per_device) < (0.25 if spec.health != "ok" else 0.08)
        predicted = np.where(wrong, rng.choice(classes, size=rows_per_device), truth)
        frames.append(pd.DataFrame({params.schema.device_id: spec.device_id, MODEL_VERSION: spec.version,
                                    PREDICTION: predicted, label.name: truth, UPLOAD_REASON: "sampled",
                                    INCLUSION_PROBABILITY: rng.uniform(0.2, 1.0, rows_per_device)}))
    frame = pd.concat(frames, ignore_index=True) if frames else pd.DataFrame()
    return write(Paths.at(root), fleet_estimates(frame, params))


def release_repository(root: Path, count: int, cache: Path | None = None) -> Path:
    """A release project under ``root`` (keys + TUF repository) with ``count`` published releases, copied
    from ``cache`` when built there before; returns the release project folder."""
    from edgeloop.testkit.releases import make_candidate, release_config, tiny_onnx
    from flows.releases import init_repository, publish

    target = root / "release-project"
    built = None if cache is None else cache / f"releases-{count}"
    if built is not None and (built / "done").is_file():
        shutil.copytree(built, target, symlinks=True)
        return target
    work = built if built is not None else target
    if work.exists():
        shutil.rmtree(work)
    config = release_config(work)
    init_repository(config)
    model = tiny_onnx(0)
    for i in range(count):
        candidate = make_candidate(work / "candidates" / f"cand-{i:012x}", model, f"cand-{i:012x}")
        publish(config, candidate, "canary" if i % 3 else "stable", create=True)
    (work / "done").write_text(json.dumps({"releases": count}))
    if built is not None:
        shutil.copytree(built, target, symlinks=True)
    return target


def _project(root: Path, releases: Path | None) -> None:
    hub_project(root)
    if releases is not None:
        raw = yaml.safe_load((root / "params.yaml").read_text())
        raw["release"]["repository"] = str(releases / "releases")
        raw["release"]["root_key"] = str(releases / "keys" / "offline")
        raw["release"]["online_keys"] = str(releases / "keys" / "online")
        (root / "params.yaml").write_text(yaml.safe_dump(raw, sort_keys=False))


@dataclass
class ConsoleWorld:
    hub: HubHandle
    specs: list[DeviceSpec]
    tokens: dict[str, str] = field(repr=False)
    releases: int = 0

    @property
    def url(self) -> str:
        return self.hub.url


@contextmanager
def console_world(root: Path, devices: int = 20, releases: int = 0, cache: Path | None = None,
                  specs: list[DeviceSpec] | None = None, estimates: bool = True,
                  decisions: int = 0) -> Iterator[ConsoleWorld]:
    """A running hub with the console, ``devices`` seeded devices (or ``specs``), the loop's estimates for
    them (``estimates``), ``releases`` published releases (0: no release repository) and ``decisions``
    entries in the loop log; the hub's clock is a ManualClock starting at 2026-12-02 14:00 UTC."""
    root.mkdir(parents=True, exist_ok=True)
    folder = release_repository(root, releases, cache) if releases else None
    _project(root, folder)
    if decisions:
        write_decision_log(root / "data/loop/decisions.jsonl", decisions, max(1, releases))
    chosen = specs if specs is not None else device_specs(devices)
    if estimates:
        write_estimates(root, chosen)
    with running_hub(root, clock=ManualClock(START), console=True) as hub, \
            httpx.Client(base_url=hub.url, timeout=30.0) as client:
        tokens = seed_devices(hub.app, hub.clock, client, chosen)
        yield ConsoleWorld(hub, chosen, tokens, releases)


def _monitor(at: datetime, accuracy: float, drift: float, fired: bool) -> dict[str, Any]:
    triggers = [
        {"name": "fleet_drift", "state": "fired" if drift >= 0.5 else "quiet", "threshold": 0.5, "value": drift,
         "detail": f"{drift:.0%} of active devices drifting (fires at share >= 0.5)", "extra": {}},
        {"name": "accuracy_drop", "state": "fired" if accuracy < 0.95 else "quiet", "threshold": 0.95,
         "value": accuracy, "detail": f"estimated accuracy {accuracy:.3f} (fires below 0.95)",
         "extra": {"interval": [accuracy - 0.01, accuracy + 0.01], "rows": 1000}},
    ]
    return {"at": at.isoformat(), "source": "monitor", "kind": "retrain", "fired": fired,
            "action": "retrain" if fired else None,
            "summary": "retrain: accuracy_drop fired" if fired else "no trigger fired",
            "observed": {"accuracy_drop": accuracy, "fleet_drift": drift, "data_volume": 1355, "cooldown_left_s": 0.0},
            "triggers": triggers, "suppressed": False, "would_fire": []}


def _soak(at: datetime, candidate: int, stable: int, accuracy: float) -> dict[str, Any]:
    estimate = {"value": accuracy, "low": accuracy - 0.012, "high": accuracy + 0.012, "rows": 400, "ignored": 0}
    return {"at": at.isoformat(), "source": "promote", "kind": "promote", "fired": False, "action": "wait",
            "summary": f"release {candidate} soaks on canary: 2/6 devices checked", "candidate": candidate,
            "stable": stable, "observed": {"candidate": candidate, "stable": stable, "candidate_accuracy": estimate,
                                           "stable_accuracy": {**estimate, "value": accuracy - 0.004}}}


def write_decision_log(path: Path, count: int, releases: int = 1) -> Path:
    """``count`` loop-log entries ending at the hub clock's start: mostly quiet monitor passes and soak
    checks, every 25th monitor pass a fired retrain followed by its published outcome."""
    lines, release = [], 1
    for i in range(count):
        at = START - timedelta(minutes=5 * (count - i))
        accuracy = 0.97 - 0.03 * ((i % 50) / 50)
        if i % 2:
            lines.append(_soak(at, min(release + 1, releases), release, accuracy))
            continue
        fired = i % 50 == 48  # the pass that sees accuracy at its lowest (below the 0.95 floor)
        lines.append(_monitor(at, accuracy, (i % 7) / 10, fired))
        if fired:
            release = min(release + 1, releases)
            lines.append({"at": (at + timedelta(seconds=40)).isoformat(), "source": "monitor",
                          "kind": "retrain_outcome", "fired": True, "decision_at": at.isoformat(),
                          "summary": f"gate passed; published release {release} to canary",
                          "observed": {"passed": True, "release": release, "channel": "canary",
                                       "state": "Completed"}})
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(json.dumps(line, sort_keys=True) + "\n" for line in lines), encoding="utf-8")
    return path


def login(client: httpx.Client, admin_token: str, who: str = "ada") -> None:
    """Log ``client`` (base_url = the hub) in to the console through the login form."""
    import re

    form = client.get("/console/login")
    value = re.search(r'name="login_csrf" value="([0-9a-f]{32})"', form.text)
    if value is None:
        raise RuntimeError("the console's login form has no login_csrf field")
    answer = client.post("/console/login", data={"who": who, "token": admin_token, "login_csrf": value.group(1),
                                                  "next": "/console/fleet"}, follow_redirects=False)
    if answer.status_code != 303:
        raise RuntimeError(f"console login failed with {answer.status_code}")

