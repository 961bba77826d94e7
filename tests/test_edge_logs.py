"""The runner's log tells its story (issue 14, item 4), at INFO, rate-limited, journald-friendly under systemd.

Real parts: a hub on 127.0.0.1 serving a python-tuf repository (stopped and started again on the same
port for the outage), a runner with a tiny spool, onnxruntime models trained on the simulator, and
``edge-runner run`` as a process whose stderr is a file named by ``JOURNAL_STREAM`` (as systemd does).
Covers: activation and a shadow rejection with its numbers; the hub going away (one line however many
requests fail) and coming back (how long, what waits); spool eviction (one line with the counts);
journald lines (``<N>`` priority on every line, no timestamp) versus timestamped lines elsewhere; the
throttle's "N more times in the last 5 min".
"""

from __future__ import annotations

import logging
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx
import numpy as np
import pytest

from edge.config import load_config
from edge.logs import Throttle
from edge.runner import Runner
from edgeloop.testkit.hub import free_port, running_hub
from edgeloop.testkit.runner_world import ReleaseWorld, closed_port, model_bytes, runner_config, site_data, wait_for
from hub.registry import add_device

EDGE_RUNNER = str(Path(sys.executable).parent / "edge-runner")


def said(caplog: pytest.LogCaptureFixture, pattern: str) -> list[str]:
    return [r.getMessage() for r in caplog.records if re.search(pattern, r.getMessage())]


@pytest.mark.slow
def test_activation_rejection_outage_reconnection_and_eviction_are_told_once(
        tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="edge")
    model_bytes(1), model_bytes(3, True)
    w = ReleaseWorld(tmp_path / "world")
    port = free_port()
    w.publish(1)
    with running_hub(w.hub_root, port=port) as hub:
        token = add_device(hub.app.state.sessions, "press-1", "canary")
        config = load_config(runner_config(tmp_path / "device", hub.url, token, w.root_bytes,
                                           upload={"random_rate": 1.0, "spool_quota_bytes": 65536}), environ={})
        runner = Runner(config)
        runner.start()
        try:
            wait_for(lambda: runner.model_version == "1", what="activation")
            api = httpx.Client(base_url=runner.api_url)
            x, y = site_data(400, 41)
            rows = [[None if np.isnan(v) else float(v) for v in row] for row in x]

            def label(first: int, last: int) -> None:
                answers = api.post("/predict", json={"rows": rows[first:last]}).json()
                for answer, truth in zip(answers, y[first:last].tolist(), strict=True):
                    assert api.post("/feedback", json={"event_id": answer["event_id"], "label": truth}).is_success

            label(0, 150)
            w.publish(3, flip=True)  # confidently wrong: the device's own labels refuse it
            wait_for(lambda: said(caplog, "^release 2 rejected"), what="the rejection")
            wait_for(lambda: runner.spool.backlog_rows() == 0, what="spool drained")
        except BaseException:
            runner.stop()
            raise
    try:
        wait_for(lambda: runner.link.state == "unreachable", what="the hub missed")
        label(150, 400)  # 250 rows for a 64 KiB spool that cannot drain
        time.sleep(2)  # more heartbeats and upload retries fail meanwhile
        evicted = sum(runner.spool.evictions().values())
        assert evicted > 0
        with running_hub(w.hub_root, port=port):
            back = wait_for(lambda: said(caplog, "^hub reachable again"), what="the reconnection")
            runner.stop()  # while the hub is there: no second outage
    finally:
        runner.stop()
    assert said(caplog, "^release 1 activated \\(was none\\): not enough labelled rows")
    rejected = said(caplog, "^release 2 rejected")
    assert len(rejected) == 1 and re.match(
        r"release 2 rejected, 1 stays in service: shadow: \w+ 0\.\d{4} on 1\d\d labelled rows: worse than "
        r"the active model's 0\.\d{4} minus margin 0\.02$", rejected[0]), rejected
    outage = said(caplog, "^hub (still )?unreachable since")
    assert len(outage) == 1 and re.match(r"hub unreachable since \d\d:\d\d:\d\d UTC \(hub at http://127\.0\.0\.1:"
                                         rf"{port} unreachable: \w+\); predictions go on, uploads wait$", outage[0])
    assert len(back) == 1 and re.match(r"hub reachable again after \d+ s \(\d+ requests failed meanwhile\); "
                                       r"\d+ rows waiting for upload$", back[0])
    eviction = said(caplog, "^spool full")
    assert len(eviction) == 1, eviction  # rate-limited: not one line per evicted row
    assert re.match(r"spool full \(quota 65536 bytes\): evicted \d+ rows \(\d+ random\) to keep a new one; \d+ rows "
                    r"waiting for upload \(totals: \{'random': \d+\}\)$", eviction[0])
    assert all(token not in r.getMessage() for r in caplog.records)


@pytest.mark.slow
def test_under_systemd_lines_carry_a_priority_and_no_timestamp(tmp_path: Path) -> None:
    """``edge-runner run`` against a hub that is not there, once as systemd starts it (stderr is the
    journal's stream) and once from a shell."""
    config = runner_config(tmp_path / "device", f"http://127.0.0.1:{closed_port()}", "t" * 32, b"{}")
    (tmp_path / "device" / "root.json").write_text('{"signed": {}, "signatures": []}')
    outputs = {}
    for mode in ("journald", "shell"):
        log_file = tmp_path / f"{mode}.log"
        with log_file.open("w") as stderr:
            info = os.fstat(stderr.fileno())
            inode = info.st_ino if mode == "journald" else info.st_ino + 1  # another file: not the journal
            env = os.environ | {"JOURNAL_STREAM": f"{info.st_dev}:{inode}"}
            process = subprocess.Popen([EDGE_RUNNER, "run", "-c", str(config), "--port", "0"], stderr=stderr,
                                       stdout=subprocess.DEVNULL, env=env)
            try:
                wait_for(lambda f=log_file: "unreachable since" in f.read_text(), timeout=30, what="the outage line")
                time.sleep(2.5)  # more heartbeats fail: still one line
            finally:
                process.send_signal(signal.SIGTERM)
                assert process.wait(timeout=30) == 0
        outputs[mode] = log_file.read_text().splitlines()
    journal = outputs["journald"]
    assert journal and all(re.match(r"<[0-7]>[\w.]+: ", line) for line in journal), journal
    assert any(re.match(r"<6>edge.runner: press-1 serving model \(none yet\) at http://127.0.0.1:\d+$", line)
               for line in journal), journal
    outage = [line for line in journal if "unreachable since" in line]
    assert len(outage) == 1 and outage[0].startswith("<4>edge.runner.hub: hub unreachable since ")
    assert "<3>edge.runner: health error: no model loaded yet" in journal
    refused = [line for line in journal if "rejected" in line]  # the root.json is no TUF root: every poll fails
    assert refused == ["<4>edge.runner: release (repository) rejected, no model stays in service: repository: "
                       "DeserializationError: Failed to deserialize JSON"]
    shell = outputs["shell"]
    assert all(re.match(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ (INFO|WARNING|ERROR) [\w.]+: ", line) for line in shell)
    assert sum("WARNING edge.runner.hub: hub unreachable since" in line for line in shell) == 1


def test_a_repeating_condition_logs_once_then_a_count_per_window(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="edge.test")
    now = [0.0]
    throttle = Throttle(logging.getLogger("edge.test"), every_s=300.0, clock=lambda: now[0])
    assert throttle.log("down", logging.WARNING, "hub unreachable")
    for _ in range(41):
        now[0] += 7.0
        assert not throttle.log("down", logging.WARNING, "hub still unreachable")
    now[0] = 300.0
    assert throttle.log("down", logging.WARNING, "hub still unreachable")
    now[0] = 330.0
    assert not throttle.log("down", logging.WARNING, "hub still unreachable")
    assert throttle.clear("down") == 1 and throttle.clear("down") == 0
    throttle.log("down", logging.WARNING, "hub unreachable again")
    throttle.log("down", logging.WARNING, "hub still unreachable")
    assert throttle.forget("down") == 1 and not throttle.active("down")  # the caller tells the end itself
    assert [r.getMessage() for r in caplog.records] == [
        "hub unreachable",
        "hub still unreachable (41 more times in the last 5 min)",
        "hub still unreachable (1 more time in the last 30 s)",
        "hub unreachable again",
    ]
