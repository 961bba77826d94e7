"""The demo's own project folder: a params.yaml tuned for minutes instead of days, devices and runners.

``prepare_workspace(folder, ...)`` starts a fresh project in ``folder`` (an earlier demo there is moved
aside to ``<folder>.previous``, never deleted in place): the repository's params.yaml with the demo's
overrides (a simulated history for v1, loop thresholds and a promotion soak that fit a few minutes,
an on-device policy that judges candidates on a few hundred labels, the hub on a free loopback port).
``runner_config_text`` writes one device's edge-runner TOML (1 s polls and heartbeats). With
``DemoSettings.tls``, ``secure_workspace`` makes the plant CA and the hub's certificate and switches the
hub to HTTPS with client certificates required; the runners then enroll (edge.enroll) and authenticate
by certificate only.

Leaves out: running anything (edgeloop.demo.run).
"""

from __future__ import annotations

import os
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

__all__ = ["DemoSettings", "prepare_workspace", "runner_config_text", "secure_workspace"]


@dataclass(frozen=True)
class DemoSettings:
    canary: int = 2  # devices following the canary channel
    stable: int = 4  # devices following stable
    seed: int = 1
    history_rows: int = 1000  # simulated ground truth per device before v1
    rows_per_tick: int = 400  # rows each machine produces per tick (one simulated minute each)
    drift: str = "sensor_offset"
    drift_tick: int = 16  # the drift starts at this tick (after the runners' 5,000-row drift window filled)
    ticks: int = 72  # ticks at most (the demo ends earlier once the fleet recovered)
    bad_candidate_tick: int = 5  # a worse candidate goes to canary at this tick
    tls: bool = False  # mutual TLS: a plant CA, the hub on HTTPS, runners enrolled with keys of their own


def _override(raw: dict[str, Any], dotted: dict[str, Any]) -> None:
    for key, value in dotted.items():
        node = raw
        *parents, last = key.split(".")
        for part in parents:
            node = node[part]
        node[last] = value


def prepare_workspace(folder: Path, repo_params: Path, settings: DemoSettings, hub_port: int) -> Path:
    """A fresh demo project in ``folder`` (see the module docstring); returns its params.yaml."""
    if folder.exists():
        previous = folder.with_name(folder.name + ".previous")
        if previous.exists():
            shutil.rmtree(previous)
        folder.rename(previous)
    folder.mkdir(parents=True)
    raw = yaml.safe_load(repo_params.read_text())
    devices = settings.canary + settings.stable
    _override(raw, {
        "simulate.devices": devices,
        "simulate.rows_per_device": settings.history_rows,
        "simulate.batch_rows": 1000,
        "simulate.seed": settings.seed,
        "simulate.drift": "none",
        "ingest.data_docs": False,  # the demo's own report is the picture; Data Docs cost seconds per run
        "hub.port": hub_port,
        "hub.poll_interval_s": 1,
        "hub.stale_after_polls": 5,
        "release.edge_policy": {"shadow_margin": 0.02, "min_shadow_rows": 150, "accuracy_floor": 0.8,
                                "watch_window_s": 600, "watch_min_feedback": 40, "max_model_errors": 5},
        "loop.monitor.cooldown_s": 900,  # one retrain for the drift, however often the monitor runs
        "loop.monitor.nightly_cron": "0 2 29 2 *",  # the nightly slot never falls inside a demo
        "loop.monitor.min_new_rows": 10_000_000,
        "loop.monitor.drift_psi": 1.0,  # the plant's slow air-temperature swings reach ~0.3 without drift
        "loop.monitor.drift_device_share": 0.5,
        "loop.monitor.accuracy_floor": 0.95,
        "loop.monitor.min_rows_for_accuracy": 150,
        "split.holdout_fraction": 0.15,  # a smaller holdout leaves more of the fresh rows to teach the drift
        # compressed time: a plant day passes in seconds, but budgets and fresh-row waits count landing days
        # and rows; without these the budgets squeeze every raise back to the base rate within a minute and
        # a mild drift (seed 1) waits for 15,000 effective rows the demo's 12 plant days never bring
        "loop.collection.device_daily_bytes": 10**12,
        "loop.collection.fleet_daily_bytes": 10**13,
        "loop.monitor.fresh_rows_cap": 4000,
        # the drift lasts most of the demo's run: at the default 0.5 raised devices upload a quarter of every
        # row they see (26.7% of raw bytes, seed 3; 0.15: 11.1%); 0.1 keeps the demo within issue 6's 10% of raw
        "loop.collection.raised_rate": 0.1,
        "loop.promotion.soak_s": 6,
        "loop.promotion.min_devices": 1,
        "loop.promotion.min_labelled_rows": 40,
        "loop.promotion.accuracy_tolerance": 0.03,
    })
    path = folder / "params.yaml"
    path.write_text("# edgeloop demo: the repository's params.yaml with the demo's overrides\n"
                    + yaml.safe_dump(raw, sort_keys=False))
    return path


def secure_workspace(folder: Path) -> None:
    """The plant CA and the hub's certificate (localhost, 127.0.0.1) in ``folder``/keys, and params.yaml's
    ``hub.tls`` pointing at them with client certificates required."""
    from hub.pki import init_ca, issue_server_certificate

    path = folder / "params.yaml"
    raw = yaml.safe_load(path.read_text())
    tls = raw["hub"].setdefault("tls", {})
    ca = init_ca(folder / tls.get("ca_dir", "keys/hub-ca"))
    cert, key = issue_server_certificate(ca, ["localhost"], ["127.0.0.1"], folder / "keys" / "hub-tls")
    tls.update({"cert_file": str(cert.relative_to(folder)), "key_file": str(key.relative_to(folder)),
                "client_certificates": "required"})
    path.write_text("# edgeloop demo over mutual TLS: the repository's params.yaml with the demo's overrides\n"
                    + yaml.safe_dump(raw, sort_keys=False))


def runner_config_text(device_id: str, state_dir: Path, hub_url: str, channel: str, token_file: Path | None,
                       trusted_root: Path, tls: tuple[Path, Path, Path] | None = None) -> str:
    """The runner's TOML: with ``token_file`` it authenticates by token; with ``tls`` (CA, certificate,
    key) by its client certificate."""
    credentials = [f'token_file = "{token_file}"'] if token_file is not None else []
    certificate = [] if tls is None else ["[tls]", f'ca_file = "{tls[0]}"', f'cert_file = "{tls[1]}"',
                                          f'key_file = "{tls[2]}"']
    return "\n".join([
        f'device_id = "{device_id}"',
        f'state_dir = "{state_dir}"',
        "[hub]", f'url = "{hub_url}"', *credentials, "heartbeat_interval_s = 1",
        "timeout_s = 5",
        *certificate,
        "[releases]", f'trusted_root = "{trusted_root}"', f'channel = "{channel}"', "poll_interval_s = 1",
        "poll_jitter = 0.2",
        "[api]", "enabled = false",
        "[upload]", "batch_rows = 300", "backoff_initial_s = 0.2", "backoff_max_s = 2",
        "[drift]", "window_rows = 5000", "min_rows = 4000",  # days of a slowly swinging plant, not hours
        "",
    ])


def write_token(path: Path, token: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as handle:
        handle.write(token + "\n")
