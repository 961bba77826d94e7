"""What the live-input benchmarks (bench/live_inputs.py, bench/live_inputs_opcua.py) share: starting an
``edge-runner run`` process, waiting for it, reading its metrics and RSS, and latency percentiles.

Leaves out each protocol's driver, floor and report (their own files). Not a test: it asserts nothing.
"""

from __future__ import annotations

import json
import os
import statistics
import subprocess
import sys
import time
import urllib.request
from collections.abc import Callable
from pathlib import Path

import numpy as np

EDGE_RUNNER = str(Path(sys.executable).parent / "edge-runner")


def percentiles(seconds: list[float]) -> dict[str, float]:
    """p50, p99, p99.9 and max of ``seconds``, in milliseconds."""
    ms = np.asarray(seconds) * 1000
    return {"p50": float(np.percentile(ms, 50)), "p99": float(np.percentile(ms, 99)),
            "p999": float(np.percentile(ms, 99.9)), "max": float(ms.max())}


def median_of(runs: list[dict[str, float]], key: str) -> float:
    return statistics.median(r[key] for r in runs)


def rss_mb(pid: int) -> float:
    """VmRSS of a process, in MB."""
    status = Path(f"/proc/{pid}/status").read_text()
    return int(next(line.split()[1] for line in status.splitlines() if line.startswith("VmRSS"))) / 1024


def start_runner(config: Path, port: int) -> subprocess.Popen[bytes]:
    """``edge-runner run -c config`` with its local API on ``port``."""
    env = dict(os.environ, EDGE_RUNNER__API__PORT=str(port))
    return subprocess.Popen([EDGE_RUNNER, "run", "-c", str(config)], env=env, stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)


def get_text(url: str) -> str:
    """The body at ``url``, or "" when it does not answer (yet)."""
    try:
        with urllib.request.urlopen(url, timeout=2) as answer:
            return str(answer.read().decode())
    except OSError:
        return ""


def predict_ok(port: int) -> bool:
    """True once the runner on ``port`` answers a prediction (its model is in service)."""
    body = json.dumps({"features": [300.0, 310.0, 1500.0, 40.0, 100.0, 3.0]}).encode()
    request = urllib.request.Request(f"http://127.0.0.1:{port}/predict", body, {"Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(request, timeout=2) as answer:
            return bool(answer.status == 200)
    except OSError:
        return False


def wait(check: Callable[[], bool], timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            raise RuntimeError("timed out")
        time.sleep(0.05)
