"""Edge runner benchmark (issue 5): publish -> activation, cold start, RSS, stream mode, install size.

The in-process hot path (``Runner.predict_one`` beside raw onnxruntime, over a million calls) is
bench/edge_steady_state.py's; the local HTTP API's latency is bench/edge_http.py's.

Everything real: a hub on 127.0.0.1 (uvicorn, in this process) serving a python-tuf repository, the
default model (params.yaml's HistGradientBoosting on 4 x 10,000 simulator rows, exported by the
pipeline's own exporter), and ``edge-runner`` as a separate process where a gateway would run it.

- publish -> activation: ``flows.releases.publish`` of a new release until the running runner serves it
  (poll interval 1 s, no jitter, published at a random moment of the poll cycle: on average half a
  second is waiting for the next poll, the rest is work);
  also the update's own time (TUF refresh + download + verify + warm-up + shadow on 300 labelled rows +
  install + activate) as the runner measured it. ``RUNS`` releases; medians.
- cold start: ``edge-runner run`` spawned -> first ``POST /predict`` answered 200, the model already
  in the state dir (as after a reboot); RSS (VmRSS) after 1,000 predictions. ``RUNS`` starts; medians.
- stream mode: ``edge-runner predict`` on ``STREAM_ROWS`` CSV rows and as many JSON lines, end to end
  (process start included); rows/s, median of 3.
- ``--install-size``: a fresh venv with ``pip install .`` (base: no extras) -> its size with and without
  pip/setuptools, and ``edge-runner --help`` and stream mode run from it (proof the base install works).

    .venv/bin/python bench/edge_runner.py [--install-size]

A benchmark, not a test: it asserts nothing.
"""

from __future__ import annotations

import argparse
import http.client
import json
import os
import platform
import random
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from edge.telemetry import switch_off  # noqa: E402

switch_off()

import numpy as np  # noqa: E402
import yaml  # noqa: E402

from bench.default_model import describe, model_bytes, trained  # noqa: E402
from edge.config import load_config  # noqa: E402
from edge.runner import Runner  # noqa: E402
from edgeloop.testkit.hub import free_port, running_hub  # noqa: E402
from edgeloop.testkit.runner_world import ReleaseWorld, params, runner_config, site_data  # noqa: E402
from hub.registry import add_device  # noqa: E402

RUNS = 5
STREAM_ROWS = 20_000
EDGE_RUNNER = str(Path(sys.executable).parent / "edge-runner")


def _wait(check, timeout: float = 60.0) -> float:  # type: ignore[no-untyped-def]
    started = time.perf_counter()
    while not check():
        if time.perf_counter() - started > timeout:
            raise RuntimeError("timed out")
        time.sleep(0.005)
    return time.perf_counter() - started


def _rows(x: np.ndarray) -> list[list[float | None]]:
    return [[None if np.isnan(v) else float(v) for v in row] for row in x]


def publish_to_activation(world: ReleaseWorld, hub_url: str, token: str | None, folder: Path,
                          tls: dict[str, str] | None = None) -> dict[str, float]:
    model, reference = model_bytes(), trained()[1]
    config = runner_config(folder, hub_url, token, world.root_bytes, **({"tls": tls} if tls else {}))
    runner = Runner(load_config(config, environ={}))
    world.publish(100, model=model, reference_rows=reference)
    runner.start()
    try:
        _wait(lambda: runner.model_version is not None)
        x, y = site_data(300, 21)
        for row, label in zip(_rows(x), y.tolist(), strict=True):  # labelled rows: the shadow check runs
            runner.feedback(runner.predict_one(row).event_id, label)
        walls, works = [], []
        rng = random.Random(0)
        for i in range(RUNS):
            before = runner.model_version
            time.sleep(rng.uniform(0.0, 1.0))  # publish at a random phase of the 1 s poll cycle
            started = time.perf_counter()
            world.publish(101 + i, model=model, reference_rows=reference)
            published = time.perf_counter()
            _wait(lambda b=before: runner.model_version != b)
            walls.append(time.perf_counter() - started)
            works.append(float((runner.updates.last_poll or {}).get("seconds", float("nan"))))
            print(f"  release {runner.model_version}: publish {published - started:.3f} s, "
                  f"publish->active {walls[-1]:.3f} s, update work {works[-1]:.3f} s", file=sys.stderr)
    finally:
        runner.stop()
    return {"wall_s": statistics.median(walls), "work_s": statistics.median(works)}


def secure(world: ReleaseWorld, folder: Path) -> None:
    """The world's hub on HTTPS with the plant CA, client certificates required."""
    from edgeloop.testkit.pki import make_pki

    pki = make_pki(folder)
    raw = yaml.safe_load((world.hub_root / "params.yaml").read_text())
    raw["hub"]["tls"] = pki.tls_params("required")
    (world.hub_root / "params.yaml").write_text(yaml.safe_dump(raw, sort_keys=False))


def enroll_device(hub: Any, folder: Path) -> dict[str, str]:
    """Enroll press-1 as ``edge-runner enroll`` does; the runner's ``[tls]`` keys."""
    from edge.enroll import enroll
    from hub.registry import issue_enrollment_code

    code = issue_enrollment_code(hub.app.state.sessions, "press-1", 600)
    ca = Path(hub.settings.root) / yaml.safe_load((Path(hub.settings.root) / "params.yaml").read_text())[
        "hub"]["tls"]["ca_dir"] / "ca.pem"
    enroll(hub.url, code, ca, config_dir=folder, state_dir=folder / "state")
    identity = folder / "identity" / "current"
    return {"ca_file": str(folder / "ca.pem"), "cert_file": str(identity / "device.pem"),
            "key_file": str(identity / "device.key")}


def _post(port: int, body: bytes) -> int:
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
    try:
        connection.request("POST", "/predict", body, {"Content-Type": "application/json"})
        return connection.getresponse().status
    except OSError:
        return 0
    finally:
        connection.close()


def cold_start(config: Path) -> dict[str, float]:
    x, _ = site_data(1000, 22)
    bodies = [json.dumps({"features": row}).encode() for row in _rows(x)]
    starts, rss = [], []
    for _ in range(RUNS):
        port = free_port()
        env = dict(os.environ, EDGE_RUNNER__API__PORT=str(port))
        started = time.perf_counter()
        process = subprocess.Popen([EDGE_RUNNER, "run", "-c", str(config)], env=env, stdout=subprocess.DEVNULL,
                                   stderr=subprocess.DEVNULL)
        try:
            _wait(lambda p=port: _post(p, bodies[0]) == 200, timeout=30)
            starts.append(time.perf_counter() - started)
            connection = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
            for body in bodies:
                connection.request("POST", "/predict", body, {"Content-Type": "application/json"})
                connection.getresponse().read()
            connection.close()
            status = Path(f"/proc/{process.pid}/status").read_text()
            rss.append(int(next(line.split()[1] for line in status.splitlines() if line.startswith("VmRSS"))) / 1024)
        finally:
            process.terminate()
            process.wait(30)
    return {"cold_start_s": statistics.median(starts), "rss_mb": statistics.median(rss)}


def stream_mode(config: Path, executable: str = EDGE_RUNNER) -> dict[str, float]:
    x, _ = site_data(STREAM_ROWS, 23)
    names = params().schema.feature_names
    csv_text = ",".join(names) + "\n" + "\n".join(
        ",".join("" if np.isnan(v) else repr(float(v)) for v in row) for row in x) + "\n"
    jsonl_text = "\n".join(json.dumps(dict(zip(names, row, strict=True))) for row in _rows(x)) + "\n"
    out: dict[str, float] = {}
    for name, text in (("csv", csv_text), ("jsonl", jsonl_text)):
        rates = []
        for _ in range(3):
            started = time.perf_counter()
            done = subprocess.run([executable, "predict", "-c", str(config)], input=text, capture_output=True,
                                  text=True, check=True)
            rates.append(STREAM_ROWS / (time.perf_counter() - started))
            assert done.stdout.count("\n") >= STREAM_ROWS
        out[f"{name}_rows_s"] = statistics.median(rates)
    return out


def install_size(scratch: Path, config: Path) -> dict[str, float]:
    venv = scratch / "edge-venv"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
    started = time.perf_counter()
    subprocess.run([str(venv / "bin" / "pip"), "install", "-q", str(REPO)], check=True)
    seconds = time.perf_counter() - started
    site = next((venv / "lib").glob("python*/site-packages"))

    def size(path: Path) -> int:
        return sum(f.stat().st_size for f in path.rglob("*") if f.is_file() and not f.is_symlink())

    total = size(venv)
    tooling = sum(size(p) for p in site.iterdir() if p.name.split("-")[0].lower() in ("pip", "setuptools",
                                                                                          "_distutils_hack"))
    modules = subprocess.run([str(venv / "bin" / "python"), "-c",
                              "import importlib.util as u; print([m for m in ('pandas','sklearn','prefect','pyarrow')"
                              " if u.find_spec(m)])"], capture_output=True, text=True, check=True).stdout.strip()
    help_ok = subprocess.run([str(venv / "bin" / "edge-runner"), "--help"], capture_output=True).returncode == 0
    stream = stream_mode(config, str(venv / "bin" / "edge-runner"))
    return {"total_mb": total / 1e6, "without_tooling_mb": (total - tooling) / 1e6, "pip_install_s": seconds,
            "cloud_modules_present": modules, "help_ok": help_ok, "stream_csv_rows_s": stream["csv_rows_s"]}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--install-size", action="store_true", help="also measure a fresh base install (~1 min)")
    parser.add_argument("--tls", action="store_true",
                        help="the hub on HTTPS and the runner enrolled: every request over mutual TLS")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as scratch_name:
        scratch = Path(scratch_name)
        world = ReleaseWorld(scratch / "world")
        if args.tls:
            secure(world, scratch / "pki")
        with running_hub(world.hub_root) as hub:
            token = add_device(hub.app.state.sessions, "press-1", "canary")
            tls = enroll_device(hub, scratch / "enrolled") if args.tls else None
            updates = publish_to_activation(world, hub.url, None if tls else token, scratch / "device", tls)
            config = scratch / "device" / "runner.toml"
            start = cold_start(config)
            stream = stream_mode(config)
            installed = install_size(scratch, config) if args.install_size else None
    flags = (" --tls" if args.tls else "") + (" --install-size" if args.install_size else "")
    print(f"Command: `.venv/bin/python bench/edge_runner.py{flags}`; transport: "
          f"{'mutual TLS (client certificates required)' if args.tls else 'plain HTTP on loopback, token'}")
    print(f"Machine: {platform.machine()}, {os.cpu_count()} cores, Python {platform.python_version()}; "
          f"{describe()}; medians of {RUNS} runs (stream: 3)")
    print()
    print("| measure | value | target |")
    print("|---|---|---|")
    print(f"| publish -> active on one runner (poll every 1 s) | {updates['wall_s'] * 1000:.0f} ms | - |")
    print(f"| of which the update itself (TUF + download + verify + shadow on 300 rows + activate) | "
          f"{updates['work_s'] * 1000:.0f} ms | - |")
    print(f"| cold start: `edge-runner run` spawned -> first /predict 200 | {start['cold_start_s'] * 1000:.0f} ms "
          f"| <= 1000 ms |")
    print(f"| RSS after 1,000 predictions (model loaded, API, spool, loops) | {start['rss_mb']:.0f} MB | <= 100 MB |")
    print(f"| stream mode, CSV ({STREAM_ROWS:,} rows, process start included) | {stream['csv_rows_s']:,.0f} rows/s "
          f"| - |")
    print(f"| stream mode, JSON lines | {stream['jsonl_rows_s']:,.0f} rows/s | - |")
    if installed is not None:
        print(f"| base install (`pip install .`, no extras): venv size | {installed['total_mb']:.0f} MB "
              f"({installed['without_tooling_mb']:.0f} MB without pip/setuptools) | <= 200 MB |")
        print(f"| base install: cloud modules importable | {installed['cloud_modules_present']} | [] |")
        print(f"| base install: `edge-runner --help` works / stream mode CSV | {installed['help_ok']} / "
              f"{installed['stream_csv_rows_s']:,.0f} rows/s | - |")
    shutil.rmtree(scratch_name, ignore_errors=True)


if __name__ == "__main__":
    main()
