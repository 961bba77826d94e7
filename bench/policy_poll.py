"""What following the signed runner policy costs a device per poll (issue 15), beside what it cost before.

    .venv/bin/python bench/policy_poll.py [--polls 5000] [--warmup 500]

A real release repository (one model release and one runner policy on ``canary``) served over loopback
HTTP by a plain static server in a thread of this process; the device side is ``edge.releases``, the
python-tuf client the runner uses. Three no-change polls, each ``--polls`` times after ``--warmup``
unmeasured ones, in turn:

- ``floor``: ``refresh_metadata`` alone: the top-level TUF refresh every poll needs (the next root, 404;
  ``timestamp.json``; nothing else changed);
- ``model``: ``fetch_release`` with the pointed version already active: the runner's poll before issue 15;
- ``policy``: ``fetch_policy`` with the pointed policy version already applied: what issue 15 adds to each
  poll (a second refresh on the same metadata folder, then the policy's target info; no download).

Reported per kind: HTTP requests per poll (the client's own count), wall ms median / p99 / p99.9 / max, and
the process's resident memory after the warm-up and after every fifth of the measured polls (a leak shows as
growth). A benchmark, not a test: it asserts only that no poll changed anything.
"""

from __future__ import annotations

import argparse
import json
import resource
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from edge.telemetry import switch_off

switch_off()

from edge.releases import fetch_policy, fetch_release, refresh_metadata  # noqa: E402
from edgeloop.testkit.releases import make_candidate, release_config, tiny_onnx  # noqa: E402
from flows.releases import init_repository, publish  # noqa: E402
from flows.releases.runner_config import publish_policy  # noqa: E402
from flows.releases.verify import serve_directory  # noqa: E402


def rss_mb() -> float:
    """Resident set size now (Linux /proc), in MB."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def quantile(sorted_ms: list[float], q: float) -> float:
    return sorted_ms[min(len(sorted_ms) - 1, int(q * len(sorted_ms)))]


def measure(poll: Callable[[], int | None], polls: int, warmup: int) -> dict[str, object]:
    for _ in range(warmup):
        poll()
    memory = [round(rss_mb(), 1)]
    times: list[float] = []
    requests: list[int | None] = []
    for i in range(polls):
        started = time.perf_counter()
        requests.append(poll())
        times.append((time.perf_counter() - started) * 1000)
        if (i + 1) % max(1, polls // 5) == 0:
            memory.append(round(rss_mb(), 1))
    ordered = sorted(times)
    counted = [r for r in requests if r is not None]
    return {"requests_per_poll": statistics.median(counted) if counted else None,
            "ms_median": round(statistics.median(times), 2),
            "ms_p99": round(quantile(ordered, 0.99), 2), "ms_p999": round(quantile(ordered, 0.999), 2),
            "ms_max": round(ordered[-1], 2), "rss_mb": memory}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--polls", type=int, default=5000)
    parser.add_argument("--warmup", type=int, default=500)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as scratch:
        work = Path(scratch)
        config = release_config(work)
        root = init_repository(config).read_bytes()
        version = publish(config, make_candidate(work / "cand", tiny_onnx(seed=1), "cand-000000000001"),
                          "canary").version
        policy = publish_policy(config, "canary", {"upload": {"random_rate": 0.1}})
        device = work / "device"
        with serve_directory(config.repository) as url:
            metadata, targets = f"{url}/metadata/", f"{url}/targets/"
            first = fetch_release(device / "tuf", metadata, targets, "canary", device / "staging", root)
            assert first.version == version

            def floor() -> None:
                refresh_metadata(device / "tuf", metadata)  # counts no requests: reported as null

            def model() -> int:
                got = fetch_release(device / "tuf", metadata, targets, "canary", device / "staging",
                                    current_version=version)
                assert not got.changed
                return got.requests

            def follow() -> int:
                got = fetch_policy(device / "tuf", metadata, targets, "canary", skip=lambda v: v == policy.version)
                assert got.version == policy.version and got.data is None
                return got.requests

            results = {name: measure(poll, args.polls, args.warmup)
                       for name, poll in (("floor", floor), ("model", model), ("policy", follow))}
    print(f"Command: `.venv/bin/python bench/policy_poll.py --polls {args.polls} --warmup {args.warmup}`")
    print(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
