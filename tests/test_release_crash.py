"""Publishing is atomic and serialised: a publish process killed (SIGKILL) at random moments leaves a
repository that a device (python-tuf ngclient over HTTP) verifies at the old or the new release, never
in between, and the next publish works; two publishes racing in two processes both succeed with
distinct versions and valid metadata."""

from __future__ import annotations

import json
import random
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

import pytest

from edgeloop.testkit.project import REPO
from edgeloop.testkit.releases import config_json, fetch, make_candidate, release_config, tamper_server, tiny_onnx
from flows.releases import init_repository, publish, verify_repository
from flows.releases.config import ReleaseConfig
from flows.releases.history import read_events
from flows.releases.repository import LocalRepository, bundle_versions, channel_pointers

pytestmark = pytest.mark.slow  # servers, processes or kill -9 loops: not in the fast lane

TRIALS = 30


def start_worker(config: ReleaseConfig, candidate: Path) -> subprocess.Popen[str]:
    """A process that has imported everything and publishes when told to (``go``)."""
    proc = subprocess.Popen(
        [sys.executable, "-m", "edgeloop.testkit.releases", "publish", config_json(config), str(candidate), "canary"],
        cwd=REPO, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True,
    )
    assert proc.stdout is not None and proc.stdout.readline().strip() == "ready"
    return proc


def go(proc: subprocess.Popen[str]) -> None:
    assert proc.stdin is not None
    proc.stdin.write("go\n")
    proc.stdin.flush()


def finish(proc: subprocess.Popen[str]) -> dict:
    out, _ = proc.communicate(timeout=60)
    assert proc.returncode == 0, out
    return json.loads(out.strip().splitlines()[-1])


def committed(config: ReleaseConfig) -> tuple[int | None, int]:
    """(version canary points at, highest committed release)."""
    targets = LocalRepository(config).targets()
    return channel_pointers(targets).get("canary"), max(bundle_versions(targets), default=0)


def test_publish_killed_at_random_points_leaves_the_old_or_the_new_release(tmp_path) -> None:
    config = release_config(tmp_path)
    root = init_repository(config)
    models = {seed: tiny_onnx(seed) for seed in (1, 2, 3)}
    candidates = {s: make_candidate(tmp_path / f"cand-{s}", m, f"cand-{s:012d}") for s, m in models.items()}
    publish(config, candidates[1], "canary")
    durations = []
    for _ in range(3):  # one at a time: a worker waiting for the lock would count the wait
        proc = start_worker(config, candidates[2])
        go(proc)
        durations.append(finish(proc)["seconds"])
    span = 1.25 * sorted(durations)[1]  # kill anywhere in [0, 1.25 x the median publish time]
    rng = random.Random(20261127)
    delays = [span * (i + rng.random()) / TRIALS for i in range(TRIALS)]
    rng.shuffle(delays)
    outcomes: Counter[str] = Counter()
    with tamper_server(config.repository) as server:
        metadata, targets = f"{server.url}/metadata", f"{server.url}/targets"
        for trial, delay in enumerate(delays):
            before, newest = committed(config)
            seed = 1 + trial % 3
            proc = start_worker(config, candidates[seed])
            go(proc)
            time.sleep(delay)
            proc.kill()
            proc.communicate(timeout=30)
            after, _ = committed(config)
            device = fetch(server.url, tmp_path / "devices" / str(trial), root=root.read_bytes())
            assert device.version == after
            if after == before:
                outcomes["old"] += 1
            else:  # the new release, whole: the next number, the worker's model
                assert after is not None and after > newest
                assert device.model_path.read_bytes() == models[seed]
                outcomes["new"] += 1
            report = verify_repository(config.metadata_dir / "1.root.json", metadata, targets)
            assert report["channels"]["canary"]["version"] == after
            follow = publish(config, candidates[1 + (trial + 1) % 3], "canary")  # the next publish works
            assert follow.version > max(after or 0, newest)
    print(f"kill span {span:.4f} s, outcomes {dict(outcomes)}")  # shown with pytest -s
    assert sum(outcomes.values()) == TRIALS
    assert outcomes["old"] > 0 and outcomes["new"] > 0, outcomes
    versions = sorted(bundle_versions(LocalRepository(config).targets()))
    assert versions == sorted(set(versions)) and len(versions) >= TRIALS + 1


def test_two_concurrent_publishes_both_succeed_with_distinct_versions(tmp_path) -> None:
    config = release_config(tmp_path)
    root = init_repository(config)
    candidates = [make_candidate(tmp_path / f"cand-{s}", tiny_onnx(s), f"cand-{s:012d}") for s in (1, 2)]
    seen: list[int] = []
    for _ in range(3):
        procs = [start_worker(config, c) for c in candidates]
        for proc in procs:
            go(proc)
        versions = sorted(finish(proc)["version"] for proc in procs)
        assert versions == [len(seen) + 1, len(seen) + 2]
        seen += versions
        assert committed(config) == (versions[1], versions[1])  # the later commit holds the channel
    with tamper_server(config.repository) as server:
        report = verify_repository(root, f"{server.url}/metadata", f"{server.url}/targets")
    assert report["channels"]["canary"]["version"] == 6
    assert report["targets"]["version"] == 7  # init + one targets version per publish
    assert [e["to"] for e in read_events(config)] == [1, 2, 3, 4, 5, 6]
