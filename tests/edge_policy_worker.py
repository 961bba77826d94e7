"""A device process for tests/test_edge_policy_crash.py: applies runner policy version 2 over version 1 with
edge.policy_updates and stops (sleeps, to be SIGKILLed) at the named stage of the apply.

Usage: python -m tests.edge_policy_worker RUNNER_TOML STAGE  (STAGE: written | renamed | applied). Prints each
stage's name as it is reached. The policy's bytes come straight from edge.contracts.runner_policy (the TUF
fetch is not what is under test here: tests/test_edge_policy_updates.py covers it against a real repository).
"""

from __future__ import annotations

import sys
import time
from collections.abc import Callable
from pathlib import Path

from edge.config import load_config
from edge.contracts.runner_policy import RunnerPolicy, policy_bytes
from edge.policy_updates import PolicyFollower
from edge.releases import FetchedPolicy
from edge.state import StateDir

SETTINGS = {1: {"upload": {"random_rate": 0.1, "batch_rows": 11}, "drift": {"window_rows": 1100, "min_rows": 110}},
            2: {"upload": {"random_rate": 0.2, "batch_rows": 22}, "drift": {"window_rows": 2200, "min_rows": 220}}}


def fetch_of(version: int) -> Callable[[Callable[[int], bool]], FetchedPolicy]:
    """A fetch that serves ``version``'s document (nothing when the follower skips it)."""
    data = policy_bytes(RunnerPolicy("canary", version, SETTINGS[version]))
    return lambda skip: FetchedPolicy(version, None if skip(version) else data, 0, len(data))


def main(config_file: str, stop_at: str) -> None:
    config = load_config(Path(config_file), environ={})

    def pause(stage: str) -> None:
        print(stage, flush=True)
        if stage == stop_at:
            time.sleep(120)

    follower = PolicyFollower(config, StateDir(config.state_dir), fetch_of(2), pause=pause)
    follower.restore()
    outcome = follower.poll_now()
    pause("applied" if outcome.kind == "applied" else f"not applied: {outcome.detail}")


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2])
