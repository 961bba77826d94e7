"""Update propagation benchmark (issue 6): publish -> 95% / 100% of N runners serving the new release.

    .venv/bin/python bench/loop_propagation.py            # N=100 at 5 s and N=500 at 20 s, 3 runs each

The hub is ``edgeloop hub serve`` in its own process on 127.0.0.1, serving a TUF repository made by
``edgeloop.testkit.runner_world.ReleaseWorld`` (real HistGradientBoosting models exported to ONNX, manifests
from the real params.yaml). The runners live in ``--workers`` worker processes, one thread per runner,
and each runner runs the real update path: its own ``edge.state.StateDir`` and TUF metadata cache, one
``edge.updates.ReleaseUpdater`` polling ``channels/canary.json``, with the first poll at a uniform
random phase in [0, P) and every later wait ``P * (1 +- jitter)`` as the edge runner does. An update is
the full activation: TUF refresh + download + verify, the Predictor built and warmed (onnxruntime, one
thread), the shadow comparison on 300 labelled rows, ``install`` (fsynced) + link swap, ``on_activate``.
The releases' edge policy has ``shadow_margin`` 0.5: the comparison runs in full but never refuses (the
seeds' models differ by a few points of F1, and a refusal is not what this measures).

One fleet per scenario: it bootstraps onto release 1 (its first poll activates it), settles, and then
``--runs`` releases are published one after another (1 -> 2, 2 -> 3, ...), each after a random pause
so the fleet's poll phases are uniform with respect to the publish. The candidate folders are written
before any clock runs; ``flows.releases.publish`` itself is timed. Time is counted from the moment it
returned (the new timestamp.json is served) to each runner's activation (its poll returned
``activated``); reported in seconds and in poll intervals. Medians over the runs.

Bytes are response body bytes the TUF client received (a counting subclass of
``edge.releases.DeadlineFetcher`` installed in the workers; the path is otherwise untouched), plus the
wire size of a no-change poll (status line + headers + body of the root probe and timestamp.json). Request
rates come from the hub's own ``/metrics``; CPU from /proc (hub process, worker processes, whole machine).

Leaves out: heartbeats, uploads and inference traffic (runners here only update; "reports version 2"
means the runner activated it), TLS, and more than one hub process. A benchmark, not a test: it asserts
nothing.
"""

from __future__ import annotations

import argparse
import faulthandler
import functools
import http.client
import multiprocessing as mp
import os
import queue
import random
import re
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from collections import defaultdict
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from edge.telemetry import switch_off  # noqa: E402

switch_off()

EDGELOOP = str(Path(sys.executable).parent / "edgeloop")
CHANNEL = "canary"  # ReleaseWorld publishes to canary
SHADOW_ROWS = 300
JITTER = 0.2  # edge.config's default poll_jitter
SHADOW_MARGIN = 0.5  # the shadow comparison runs in full but never refuses
TICKS = os.sysconf("SC_CLK_TCK")
Event = tuple[Any, ...]  # (runner, kind, version, started, finished, seconds, requests, bytes, lateness)

# ---------------------------------------------------------------------------------------------- worker side


def _counting_fetcher() -> threading.local:
    """Install a DeadlineFetcher subclass that leaves itself in a thread-local (requests, bytes per poll)."""
    import edge.releases as releases

    local = threading.local()

    class CountingFetcher(releases.DeadlineFetcher):
        def __init__(self, *args: Any, **kwargs: Any) -> None:
            super().__init__(*args, **kwargs)
            local.fetcher = self

    releases.DeadlineFetcher = CountingFetcher  # type: ignore[misc]
    return local


def _runner_loop(rid: int, updater: Any, rng: random.Random, stop: threading.Event, out: Any,
                 local: threading.local, interval: float, jitter: float) -> None:
    due = time.time() + rng.uniform(0.0, interval)
    while not stop.wait(max(0.0, due - time.time())):
        started = time.time()
        local.fetcher = None
        outcome = updater.poll_once()
        finished = time.time()
        fetcher = local.fetcher
        requests, received = (fetcher.requests, fetcher.bytes) if fetcher is not None else (0, 0)
        out.put((rid, outcome.kind, outcome.version, started, finished, outcome.seconds, requests, received,
                 started - due))
        due = finished + interval * (1.0 + rng.uniform(-jitter, jitter))


def worker_main(first: int, count: int, base: str, hub_url: str, root: bytes, x: Any, labels: list[int],
                features: list[str], interval: float, seed: int, out: Any, stop: Any) -> None:
    """``count`` runners (ids ``first``...) in this process, one thread each, until ``stop`` is set."""
    switch_off()
    from edge.releases import ClientLimits
    from edge.state import StateDir
    from edge.updates import ReleaseUpdater

    local = _counting_fetcher()
    halt = threading.Event()
    slots: dict[int, Any] = {}
    threads = []
    for rid in range(first, first + count):
        state = StateDir(Path(base) / f"runner-{rid:04d}")
        updater = ReleaseUpdater(
            state, f"{hub_url}/releases/metadata/", f"{hub_url}/releases/targets/", CHANNEL, root, ClientLimits(),
            lambda: (x, labels), functools.partial(slots.__setitem__, rid), feature_names=features,
        )
        thread = threading.Thread(target=_runner_loop, name=f"runner-{rid}", daemon=True,
                                  args=(rid, updater, random.Random(seed * 100_003 + rid), halt, out, local,
                                        interval, JITTER))
        threads.append(thread)
    for thread in threads:
        thread.start()
    out.put(("ready", first, count))
    stop.wait()
    halt.set()
    for thread in threads:
        thread.join(timeout=120)


# ---------------------------------------------------------------------------------------------- main side


def _cpu_ticks(pid: int) -> int:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return int(fields[11]) + int(fields[12])  # utime + stime


def _machine_ticks() -> tuple[int, int]:
    values = [int(v) for v in Path("/proc/stat").read_text().splitlines()[0].split()[1:]]
    idle = values[3] + values[4]
    return sum(values) - idle, sum(values)


def _rss_peak_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def _hub_requests(url: str) -> dict[tuple[str, str], float]:
    """(route, status) -> requests so far, from the hub's /metrics."""
    text = urllib.request.urlopen(f"{url}/metrics", timeout=10).read().decode()
    counts: dict[tuple[str, str], float] = defaultdict(float)
    for match in re.finditer(r'^edgeloop_hub_requests_total\{(.*)\} (\S+)$', text, re.M):
        labels = dict(re.findall(r'(\w+)="([^"]*)"', match.group(1)))
        counts[(labels["route"], labels["status"])] += float(match.group(2))
    return counts


@dataclass
class Snapshot:
    at: float
    hub: int
    workers: int
    main: int
    busy: int
    total: int
    requests: dict[tuple[str, str], float]


@dataclass
class Probe:
    hub_pid: int
    worker_pids: list[int]
    url: str

    def take(self) -> Snapshot:
        busy, total = _machine_ticks()
        return Snapshot(time.time(), _cpu_ticks(self.hub_pid), sum(_cpu_ticks(p) for p in self.worker_pids),
                        _cpu_ticks(os.getpid()), busy, total, _hub_requests(self.url))

    @staticmethod
    def between(a: Snapshot, b: Snapshot) -> dict[str, float]:
        seconds = b.at - a.at
        release_routes = {k for k in b.requests if k[0].startswith("/releases/")}
        served = sum(b.requests[k] - a.requests.get(k, 0.0) for k in release_routes)
        return {
            "seconds": seconds,
            "requests_per_s": served / seconds,
            "hub_cpu": (b.hub - a.hub) / TICKS / seconds,  # cores
            "workers_cpu": (b.workers - a.workers) / TICKS / seconds,
            "main_cpu": (b.main - a.main) / TICKS / seconds,  # this process: publish, bookkeeping
            "machine_busy": (b.busy - a.busy) / max(1, b.total - a.total),  # fraction of all cores
            # cores used by processes that are not this benchmark (other jobs sharing the machine)
            "others_cpu": ((b.busy - a.busy) - (b.hub - a.hub) - (b.workers - a.workers) - (b.main - a.main))
            / TICKS / seconds,
        }


@dataclass
class Fleet:
    """Collects the workers' poll events in a background thread."""

    size: int
    events: Any
    ready: int = 0
    activated: dict[int, dict[int, float]] = field(default_factory=lambda: defaultdict(dict))  # version -> rid -> t
    update_work: dict[int, list[float]] = field(default_factory=lambda: defaultdict(list))
    polls: list[Event] = field(default_factory=list)
    kinds: dict[str, int] = field(default_factory=lambda: defaultdict(int))
    lock: threading.Lock = field(default_factory=threading.Lock)
    done: threading.Event = field(default_factory=threading.Event)

    def drain(self) -> None:
        while not self.done.is_set():
            try:
                item = self.events.get(timeout=0.2)
            except queue.Empty:
                continue
            with self.lock:
                if item[0] == "ready":
                    self.ready += item[2]
                    continue
                rid, kind, version, _, finished, seconds, *_ = item
                self.polls.append(item)
                self.kinds[kind] += 1
                if kind == "activated":
                    self.activated[version][rid] = finished
                    self.update_work[version].append(seconds)

    def count(self, version: int) -> int:
        with self.lock:
            return len(self.activated[version])

    def has_all(self, version: int) -> bool:
        return self.count(version) == self.size

    def wait_for(self, check: Callable[[], bool], timeout: float, what: str) -> None:
        deadline = time.time() + timeout
        while not check():
            if time.time() > deadline:
                raise RuntimeError(f"timed out waiting for {what}; poll outcomes so far: {dict(self.kinds)}")
            time.sleep(0.05)


@contextmanager
def hub_process(hub_root: Path, log: Path) -> Iterator[tuple[str, int]]:
    from hub.embedded import free_port

    port = free_port()
    with open(log, "wb") as sink:
        proc = subprocess.Popen([EDGELOOP, "hub", "serve", "--root", str(hub_root), "--port", str(port)],
                                stdout=sink, stderr=sink, cwd=hub_root)
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.time() + 60
        while True:
            try:
                urllib.request.urlopen(f"{url}/healthz", timeout=2).read()
                break
            except OSError:
                if proc.poll() is not None or time.time() > deadline:
                    raise RuntimeError(f"the hub did not start: see {log}") from None
                time.sleep(0.1)
        yield url, proc.pid
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def wire_bytes(url: str, metadata: Path) -> dict[str, int]:
    """Status line + headers + body of a no-change poll's two responses: the next root (404), timestamp.json."""
    roots = [int(p.name.split(".")[0]) for p in metadata.glob("*.root.json")]
    host, port = url.removeprefix("http://").split(":")
    sizes: dict[str, int] = {}
    for name, path in (("root_probe", f"{max(roots) + 1}.root.json"), ("timestamp", "timestamp.json")):
        conn = http.client.HTTPConnection(host, int(port), timeout=10)
        conn.request("GET", f"/releases/metadata/{path}", headers={"User-Agent": "edgeloop-runner"})
        response = conn.getresponse()
        body = response.read()
        head = f"HTTP/1.1 {response.status} {response.reason}\r\n" + "".join(
            f"{k}: {v}\r\n" for k, v in response.getheaders()) + "\r\n"
        sizes[name] = len(head.encode()) + len(body)
        conn.close()
    return sizes


def _say(text: str) -> None:
    print(text, file=sys.stderr, flush=True)


def median(values: list[float]) -> float:
    return float(statistics.median(values)) if values else float("nan")


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))] if ordered else float("nan")


def scenario(size: int, interval: float, runs: int, workers: int, seed: int) -> dict[str, Any]:
    from edgeloop.testkit.runner_world import FAST_POLICY, ReleaseWorld, params, site_data, write_candidate

    base = Path(tempfile.mkdtemp(prefix=f"edgeloop-prop-{size}-"))
    try:
        world = ReleaseWorld(base / "world")
        policy = replace(FAST_POLICY, shadow_margin=SHADOW_MARGIN)
        world.publish(1, policy=policy)
        # the later releases' candidate folders (model trained, exported, manifest written) before any clock runs
        candidates = [write_candidate(base / f"candidate-{s}", s, policy=policy) for s in range(2, runs + 2)]
        x, labels = site_data(SHADOW_ROWS, 7)
        features = list(params().schema.feature_names)
        ctx = mp.get_context("spawn")
        events, stop = ctx.Queue(), ctx.Event()
        with hub_process(world.hub_root, base / "hub.log") as (url, hub_pid):
            fleet = Fleet(size, events)
            collector = threading.Thread(target=fleet.drain, daemon=True)
            collector.start()
            share = [size // workers + (1 if i < size % workers else 0) for i in range(workers)]
            procs = []
            first = 0
            for i, count in enumerate(share):
                proc = ctx.Process(target=worker_main, args=(
                    first, count, str(base / "runners"), url, world.root_bytes, x, [int(v) for v in labels],
                    features, interval, seed + i, events, stop), daemon=True)
                proc.start()
                procs.append(proc)
                first += count
            try:
                pids = [p.pid for p in procs if p.pid is not None]
                return _measure(world, fleet, Probe(hub_pid, pids, url), size, interval,
                                candidates, seed)
            finally:
                stop.set()
                for proc in procs:
                    proc.join(timeout=150)
                    if proc.is_alive():
                        proc.terminate()
                fleet.done.set()
    finally:
        shutil.rmtree(base, ignore_errors=True)


def _measure(world: Any, fleet: Fleet, probe: Probe, size: int, interval: float, candidates: list[Path],
             seed: int) -> dict[str, Any]:
    from flows.releases import publish

    rng = random.Random(seed)
    fleet.wait_for(lambda: fleet.ready == size, 120, "the workers")
    started = time.time()
    fleet.wait_for(functools.partial(fleet.has_all, 1), 20 * interval + 120, "the fleet on release 1")
    bootstrap_s = time.time() - started
    _say(f"  all {size} runners on release 1 after {bootstrap_s:.1f} s")
    time.sleep(1.3 * interval)  # every runner has done a no-change poll since
    idle_a = probe.take()
    time.sleep(interval)
    idle = Probe.between(idle_a, probe.take())
    wire = wire_bytes(probe.url, world.config.metadata_dir)
    results = []
    for candidate in candidates:
        time.sleep(rng.uniform(0.0, interval))
        began = time.time()
        version = publish(world.config, candidate, CHANNEL).version
        published = time.time()
        before = probe.take()
        fleet.wait_for(functools.partial(fleet.has_all, version), 10 * interval + 120, f"release {version}")
        after = probe.take()
        _say(f"  release {version}: all {size} runners after {time.time() - published:.1f} s")
        times = sorted(t - published for t in fleet.activated[version].values())
        results.append({
            "version": version, "publish_s": published - began,
            "t95_s": times[int(0.95 * size) - 1], "t100_s": times[-1],
            "window": Probe.between(before, after), "update_work_p50_s": median(fleet.update_work[version]),
        })
        time.sleep(0.3 * interval)  # the stragglers' next poll is a no-change one
    with fleet.lock:
        polls = list(fleet.polls)
        kinds = dict(fleet.kinds)
    unchanged = [p for p in polls if p[1] == "unchanged"]
    updates = [p for p in polls if p[1] == "activated" and p[2] != 1]
    return {
        "runners": size, "interval_s": interval, "runs": results, "bootstrap_s": bootstrap_s, "idle": idle,
        "kinds": kinds, "wire": wire,
        "nochange_requests": median([p[6] for p in unchanged]), "nochange_bytes": median([p[7] for p in unchanged]),
        "nochange_ms_p50": 1000 * median([p[5] for p in unchanged]),
        "update_requests": median([p[6] for p in updates]), "update_bytes": median([p[7] for p in updates]),
        "lateness_p99_s": percentile([p[8] for p in polls], 0.99), "lateness_max_s": max(p[8] for p in polls),
        "worker_rss_peak_mb": [round(_rss_peak_mb(pid), 1) for pid in probe.worker_pids],
    }


# ---------------------------------------------------------------------------------------------- report


def _pct(value: float) -> str:
    return f"{value * 100:.0f}%"


def report(all_results: list[dict[str, Any]], command: str, cores: int, workers: int) -> str:
    lines = [f"Command: `{command}`", f"{cores} cores; hub (1 process) + {workers} worker processes holding the "
             "runners; medians over the runs.", "",
             "| runners | poll interval P | runs | publish | 95% on new | 100% on new | 95% (in P) | 100% (in P) "
             "| update poll p50 (TUF + warm-up + shadow + install) | poll start lateness p99 / max |",
             "|---|---|---|---|---|---|---|---|---|---|"]
    for r in all_results:
        runs, p = r["runs"], r["interval_s"]
        t95, t100 = median([x["t95_s"] for x in runs]), median([x["t100_s"] for x in runs])
        lines.append(
            f"| {r['runners']} | {p:g} s | {len(runs)} | {median([x['publish_s'] for x in runs]):.2f} s "
            f"| {t95:.1f} s | {t100:.1f} s | {t95 / p:.2f} | {t100 / p:.2f} "
            f"| {median([x['update_work_p50_s'] for x in runs]) * 1000:.0f} ms "
            f"| {r['lateness_p99_s']:.2f} s / {r['lateness_max_s']:.2f} s |")
    lines += ["", "Load, publish -> 100% window / an idle window of P (no-change polls only). CPU in cores "
              f"(of {cores}); 'other jobs' = processes that are not this benchmark.", "",
              "| runners | hub release req/s | hub CPU | runners CPU | publisher CPU | machine busy | other jobs CPU |",
              "|---|---|---|---|---|---|---|"]
    for r in all_results:
        runs, idle = r["runs"], r["idle"]
        w = {k: median([x["window"][k] for x in runs]) for k in runs[0]["window"]}
        lines.append(
            f"| {r['runners']} | {w['requests_per_s']:.0f} / {idle['requests_per_s']:.0f} "
            f"| {w['hub_cpu']:.2f} / {idle['hub_cpu']:.2f} | {w['workers_cpu']:.2f} / {idle['workers_cpu']:.2f} "
            f"| {w['main_cpu']:.2f} / {idle['main_cpu']:.2f} "
            f"| {_pct(w['machine_busy'])} / {_pct(idle['machine_busy'])} "
            f"| {w['others_cpu']:.2f} / {idle['others_cpu']:.2f} |")
    lines += ["", "| runners | no-change poll: requests | body bytes | wire bytes (root probe 404 + timestamp) "
              "| client time p50 | update poll: requests | body bytes | bootstrap (all on release 1) "
              "| worker RSS peak |", "|---|---|---|---|---|---|---|---|---|"]
    for r in all_results:
        wire = r["wire"]
        lines.append(
            f"| {r['runners']} | {r['nochange_requests']:.0f} | {r['nochange_bytes']:.0f} "
            f"| {wire['root_probe'] + wire['timestamp']} ({wire['root_probe']} + {wire['timestamp']}) "
            f"| {r['nochange_ms_p50']:.1f} ms | {r['update_requests']:.0f} | {r['update_bytes']:.0f} "
            f"| {r['bootstrap_s']:.0f} s | {' + '.join(f'{m:.0f}' for m in r['worker_rss_peak_mb'])} MB |")
    lines += ["", "Per run (seconds after publish returned):", ""]
    for r in all_results:
        for x in r["runs"]:
            lines.append(f"- N={r['runners']} release {x['version']}: publish {x['publish_s']:.2f} s, "
                         f"95% {x['t95_s']:.2f} s, 100% {x['t100_s']:.2f} s, "
                         f"{x['window']['requests_per_s']:.0f} req/s, "
                         f"machine busy {_pct(x['window']['machine_busy'])}, "
                         f"other jobs {x['window']['others_cpu']:.2f} cores")
        lines.append(f"- N={r['runners']} poll outcomes: {r['kinds']}")
    return "\n".join(lines)


def main() -> None:
    faulthandler.register(signal.SIGUSR1)  # kill -USR1 <pid> prints where a slow run is
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--scenario", action="append", metavar="N:INTERVAL",
                        help="runners:poll interval in seconds (default: 100:5 and 500:20)")
    parser.add_argument("--runs", type=int, default=3, help="publishes per scenario (median reported)")
    parser.add_argument("--workers", type=int, default=2, help="worker processes holding the runners")
    parser.add_argument("--seed", type=int, default=6)
    args = parser.parse_args()
    scenarios = [tuple(s.split(":")) for s in (args.scenario or ["100:5", "500:20"])]
    command = " ".join([".venv/bin/python", "bench/loop_propagation.py", *sys.argv[1:]])
    started = time.perf_counter()
    results = []
    for size, interval in scenarios:
        _say(f"N={size} P={interval}s ...")
        results.append(scenario(int(size), float(interval), args.runs, args.workers, args.seed))
    print(report(results, command, os.cpu_count() or 0, args.workers))
    print(f"\ntotal {time.perf_counter() - started:.0f} s")


if __name__ == "__main__":
    main()
