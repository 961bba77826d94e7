"""Test kit for the edge runner end to end: a plant's data, real models, a real hub serving a real TUF
repository, and a runner config pointing at it.

Models are scikit-learn HistGradientBoosting on the simulator's sensors, exported with the pipeline's own
``flows.stages.export.to_onnx_bytes``; manifests are built by the gate's ``build_manifest`` from the
repository's params.yaml (so features, classes and upload columns are the real ones), with an edge
policy a test can tighten. ``flip=True`` trains on inverted labels: a model that is confidently wrong.
"""

from __future__ import annotations

import functools
import os
import textwrap
import time
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np
import yaml

from edge.contracts.manifest import EdgePolicy
from edge.contracts.release_layout import MANIFEST_FILE
from edgeloop.testkit.project import REPO, override, repo_params_raw
from edgeloop.testkit.releases import make_candidate, make_manifest, release_config
from flows.params import Params, load_params
from flows.releases import init_repository, publish
from flows.releases.config import ReleaseConfig

FAST_POLICY = EdgePolicy(shadow_margin=0.02, min_shadow_rows=100, accuracy_floor=0.8, watch_window_s=600.0,
                         watch_min_feedback=40, max_model_errors=5)


@functools.lru_cache(maxsize=1)
def params() -> Params:
    return load_params(REPO / "params.yaml")


@functools.lru_cache(maxsize=4)
def site_data(rows: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """``rows`` rows of one simulated machine: features (NaN for dropouts) in schema order, labels."""
    from simulator.fleet import simulate_device

    frame = simulate_device(0, rows, seed, "2026-03-01", 60.0)
    names = params().schema.feature_names
    return frame[names].to_numpy(dtype=np.float64), frame[params().schema.label.name].to_numpy(dtype=np.int64)


@functools.lru_cache(maxsize=4)
def model_bytes(seed: int, flip: bool = False) -> bytes:
    from sklearn.ensemble import HistGradientBoostingClassifier

    from flows.stages.export import to_onnx_bytes

    x, y = site_data(6000, seed)
    if flip:
        y = 1 - y
    estimator = HistGradientBoostingClassifier(max_iter=40, random_state=seed).fit(x, y)
    return to_onnx_bytes(estimator, x.shape[1], 17, {})


def write_candidate(folder: Path, seed: int, flip: bool = False, policy: EdgePolicy = FAST_POLICY,
                    model: bytes | None = None, reference_rows: np.ndarray | None = None) -> Path:
    """A candidate folder as the gate writes it, with a manifest from the real params.yaml (``model``
    replaces the small model trained from ``seed``; ``reference_rows`` its training rows)."""
    import pandas as pd

    from flows.evaluation.bundle import build_manifest, reference_from_json
    from flows.reference_stats import reference_stats

    model = model_bytes(seed, flip) if model is None else model
    name = f"cand-{seed:06d}{'f' if flip else 'g'}00000"
    make_candidate(folder, model, name)
    x = site_data(6000, seed)[0] if reference_rows is None else reference_rows
    frame = pd.DataFrame(x, columns=params().schema.feature_names)
    reference = reference_from_json(reference_stats(frame, params().schema, 10))
    template = make_manifest(model, name)
    manifest = build_manifest(params(), name, model, reference, template.gate, template.lineage)
    (folder / MANIFEST_FILE).write_text(replace(manifest, policy=policy).to_json())
    return folder


class ReleaseWorld:
    """A TUF repository in ``base/project`` served by a hub rooted at ``base/hub``."""

    def __init__(self, base: Path) -> None:
        self.base = base
        self.config: ReleaseConfig = release_config(base / "project")
        self.root_bytes = init_repository(self.config).read_bytes()
        self.hub_root = base / "hub"
        self.hub_root.mkdir(parents=True, exist_ok=True)
        raw = override(repo_params_raw(), {"release.repository": str(self.config.repository)})
        (self.hub_root / "params.yaml").write_text(yaml.safe_dump(raw, sort_keys=False))
        self.published = 0

    def publish(self, seed: int, flip: bool = False, policy: EdgePolicy = FAST_POLICY, model: bytes | None = None,
                reference_rows: np.ndarray | None = None) -> int:
        self.published += 1
        folder = write_candidate(self.base / f"cand-{self.published}", seed, flip, policy, model, reference_rows)
        return publish(self.config, folder, "canary").version


def runner_config(folder: Path, hub_url: str, token: str, root_bytes: bytes, **sections: dict[str, Any]) -> Path:
    """A runner config file in ``folder`` (state dir ``folder/state``); ``sections`` override keys."""
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "token").write_text(token + "\n")
    os.chmod(folder / "token", 0o600)
    (folder / "root.json").write_bytes(root_bytes)
    values: dict[str, dict[str, Any]] = {
        "hub": {"url": hub_url, "token_file": "token", "heartbeat_interval_s": 1, "timeout_s": 5},
        "releases": {"trusted_root": "root.json", "poll_interval_s": 1, "poll_jitter": 0.0},
        "api": {"port": 0},
        "upload": {"batch_rows": 200, "backoff_initial_s": 0.05, "backoff_max_s": 0.5},
    }
    for name, keys in sections.items():
        values.setdefault(name, {}).update(keys)
    lines = ['device_id = "press-1"', 'state_dir = "state"']
    for name, keys in values.items():
        lines.append(f"[{name}]")
        lines.extend(f"{key} = {_toml(value)}" for key, value in keys.items())
    path = folder / "runner.toml"
    path.write_text(textwrap.dedent("\n".join(lines)) + "\n")
    return path


def _toml(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str):
        return f'"{value}"'
    if isinstance(value, list | tuple):
        return "[" + ", ".join(_toml(v) for v in value) + "]"
    return repr(value)


def wait_for(check: Callable[[], Any], timeout: float = 30.0, what: str = "condition") -> Any:
    """Poll ``check`` every 50 ms until it returns something truthy (returned); fail after ``timeout``."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = check()
        if value:
            return value
        time.sleep(0.05)
    raise AssertionError(f"timed out waiting for {what}")
