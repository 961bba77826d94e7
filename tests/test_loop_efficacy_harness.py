"""The loop-efficacy harness (bench/loop_efficacy.py) on a tiny plant: one seed, one drift kind, a short horizon.

Static and oracle run the real edge code (upload filter, drift, bytes) on the simulator; the oracle, given
a model of the drifted plant at the onset, must lose less than static, and every measure must be
consistent. The CLI's table and targets check are read back from a real subprocess with a bad --set
refused in one line.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.slow  # about 12 s of CPU: over the fast lane's share

REPO = Path(__file__).resolve().parents[1]
os.environ.setdefault("OMP_NUM_THREADS", "1")


@pytest.fixture(scope="module")
def runs() -> dict[str, dict]:
    sys.path.insert(0, str(REPO))
    from bench.efficacy.run import run_one
    from bench.loop_efficacy import load

    params = load([])
    return {name: run_one(params, 1, "relationship", name, days_before=1, days_after=1)
            for name in ("static", "oracle")}


def test_oracle_loses_less_than_static(runs: dict[str, dict]) -> None:
    static, oracle = runs["static"], runs["oracle"]
    assert static["loss_point_hours"] > 0, "the relationship drift must cost v1 accuracy"
    assert oracle["loss_point_hours"] < static["loss_point_hours"]
    assert oracle["releases"] == 1 and static["releases"] == 0


def test_measures_are_consistent(runs: dict[str, dict]) -> None:
    horizon_h = 24
    for result in runs.values():
        assert 0.5 < result["before"] <= 1.0
        assert 0.0 < result["bytes_ratio"] <= 1.0
        assert result["uploaded_bytes"] > 0 and result["raw_bytes"] > result["uploaded_bytes"]
        assert result["recovered_h"] is None or 0 <= result["recovered_h"] <= horizon_h
        assert len(result["hourly_accuracy"]) == 24 + horizon_h
        assert result["bad_on_stable"] == len(result["bad_detail"])
    assert runs["static"]["bad_on_stable"] == 0  # v1 never replaced


def test_cli_refuses_a_bad_override_in_one_line() -> None:
    done = subprocess.run([sys.executable, str(REPO / "bench" / "loop_efficacy.py"), "--set", "loop.nosuch.key=1"],
                          capture_output=True, text=True, cwd=REPO, timeout=60)
    assert done.returncode != 0
    assert "Traceback" not in done.stderr
    assert "nosuch" in done.stderr
