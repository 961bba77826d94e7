"""Object storage benchmark (issue 12): a release publish and a device's no-change TUF poll through an S3
server (moto's standalone server, its own process) against the local folder served by the hub
(`edgeloop hub serve`, its own process), in the same run.

    .venv/bin/python bench/object_storage.py [--polls 300] [--publishes 7]

- publish: seconds of ``flows.releases.publish`` of a ~0.2 MB model, the local folder alone (the hub then
  serves it) against the folder plus the ordered push to the bucket (``storage.releases_mirror``);
  median of ``--publishes`` alternating runs. Beside it, the push alone (its floor is the PUTs it makes).
- poll: one device poll that finds nothing new (python-tuf ngclient: ``N+1.root.json`` answered 404 and
  ``timestamp.json``, so two requests), p50/p99 over ``--polls`` polls, interleaved between the two
  servers; beside each, the floor: the same two GETs with a bare keep-alive urllib3 pool, no TUF.

moto is a functional S3 server written in Python, not a performance reference: the S3 numbers say
what the client side costs and that the path works, not how fast MinIO, Ceph or AWS answer. A
benchmark, not a test: it asserts only that the polls found no change.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import replace
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from edge.telemetry import switch_off

switch_off()

import urllib3  # noqa: E402
import yaml  # noqa: E402

from edgeloop.testkit.hub import free_port  # noqa: E402
from edgeloop.testkit.project import repo_params_raw  # noqa: E402
from edgeloop.testkit.releases import fetch, make_candidate, release_config, tiny_onnx  # noqa: E402
from edgeloop.testkit.s3 import DUMMY_ENV, S3Server  # noqa: E402
from flows.releases import init_repository, publish  # noqa: E402
from flows.releases.mirror import Mirror, push  # noqa: E402

BIN = Path(sys.executable).parent


def wait_http(url: str, seconds: float = 30.0) -> None:
    pool = urllib3.PoolManager()
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        try:
            pool.request("GET", url, retries=False, timeout=1.0)
            return
        except urllib3.exceptions.HTTPError:
            time.sleep(0.1)
    raise SystemExit(f"{url} did not answer within {seconds} s")


def start(cmd: list[str], env: dict[str, str], url: str) -> subprocess.Popen[bytes]:
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    wait_http(url)
    return proc


def pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def ms(values: list[float]) -> dict[str, float]:
    return {"p50_ms": round(1000 * statistics.median(values), 2), "p99_ms": round(1000 * pct(values, 0.99), 2)}


def floor_poll(pool: urllib3.PoolManager, url: str, next_root: int) -> float:
    began = time.perf_counter()
    pool.request("GET", f"{url}/metadata/{next_root}.root.json", retries=False)
    pool.request("GET", f"{url}/metadata/timestamp.json", retries=False)
    return time.perf_counter() - began


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--polls", type=int, default=300)
    parser.add_argument("--publishes", type=int, default=7)
    args = parser.parse_args()
    env = {**os.environ, **DUMMY_ENV}
    os.environ.update(DUMMY_ENV)
    procs: list[subprocess.Popen[bytes]] = []
    with tempfile.TemporaryDirectory() as scratch:
        tmp = Path(scratch)
        try:
            s3_port, hub_port = free_port(), free_port()
            endpoint = f"http://127.0.0.1:{s3_port}"
            procs.append(start([str(BIN / "moto_server"), "-H", "127.0.0.1", "-p", str(s3_port)], env, endpoint))
            server = S3Server(endpoint)
            bucket = server.new_bucket("bench", public_read=True)

            local = release_config(tmp / "local")
            mirrored = replace(release_config(tmp / "mirrored"), mirror=Mirror(f"s3://{bucket}/releases", endpoint))
            roots = {"hub": init_repository(local).read_bytes(), "s3": init_repository(mirrored).read_bytes()}
            model = tiny_onnx(seed=1, pad_bytes=200_000)
            cands = [make_candidate(tmp / f"cand-{i}", model if i == 0 else tiny_onnx(seed=2, pad_bytes=200_000),
                                    f"cand-{i:012d}") for i in range(2)]

            project = tmp / "hub-project"
            project.mkdir()
            raw = repo_params_raw()
            raw["release"]["repository"] = str(local.repository)
            raw["hub"]["port"] = hub_port
            (project / "params.yaml").write_text(yaml.safe_dump(raw, sort_keys=False))
            hub_url = f"http://127.0.0.1:{hub_port}"
            procs.append(start([str(BIN / "edgeloop"), "hub", "serve", "--root", str(project)], env,
                               f"{hub_url}/releases/metadata/timestamp.json"))
            urls = {"hub": f"{hub_url}/releases", "s3": server.http_url(bucket, "releases")}

            publish_s: dict[str, list[float]] = {"hub": [], "s3": []}
            push_s: list[float] = []
            for i in range(args.publishes):
                for name, config in (("hub", local), ("s3", mirrored)):
                    publish_s[name].append(publish(config, cands[i % 2], "canary").seconds)
                began = time.perf_counter()
                push(mirrored.repository, mirrored.mirror)  # nothing new: one listing, the push's fixed cost
                push_s.append(time.perf_counter() - began)

            polls: dict[str, list[float]] = {"hub": [], "s3": []}
            floors: dict[str, list[float]] = {"hub": [], "s3": []}
            requests: dict[str, list[int]] = {"hub": [], "s3": []}
            current = {name: fetch(urls[name], tmp / f"device-{name}", root=roots[name]).version for name in urls}
            pool = urllib3.PoolManager(maxsize=2)
            next_root = {name: 2 for name in urls}
            for _ in range(args.polls):
                for name in urls:
                    poll = fetch(urls[name], tmp / f"device-{name}", current=current[name])
                    assert not poll.changed
                    polls[name].append(poll.seconds)
                    requests[name].append(poll.requests)
                    floors[name].append(floor_poll(pool, urls[name], next_root[name]))
        finally:
            for proc in procs:
                proc.terminate()
                proc.wait(timeout=30)

    result = {
        "publish_0.2MB": {
            "hub_folder_s_median": round(statistics.median(publish_s["hub"]), 3),
            "s3_mirror_s_median": round(statistics.median(publish_s["s3"]), 3),
            "s3_push_nothing_new_s_median": round(statistics.median(push_s), 3),
        },
        "no_change_poll": {
            name: {**ms(polls[name]), "requests": statistics.median(requests[name]),
                   "floor_two_gets": ms(floors[name])}
            for name in urls
        },
        "polls": args.polls, "publishes": args.publishes,
    }
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
