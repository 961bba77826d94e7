"""Live inputs benchmark, OPC UA part (issue 13): a tag change -> the runner's decision written back to the node.

Run it through ``bench/live_inputs.py --protocol opcua`` (or this file directly, same flags). Everything real:
the live plant's asyncua server (edgeloop.testkit.opcua, in this process, its own thread and loop), a hub on
127.0.0.1 serving the default model (bench/default_model.py) as a signed release, and ``edge-runner run`` as a
separate process with the ``[inputs]`` section ``edgeloop plant serve --print-config press-00`` prints (six
feature nodes, the part id as key and trigger, decisions to the ``prediction.*`` nodes in one Write call).

Measured, for the runner and, in the same run against the same server, the floor:

- latency: the plant writes a part's six features and then its part id; the time from that part id write to the
  runner's Write of ``prediction.part_id`` arriving at the server (both read on the server's clock), one part in
  flight at a time; ``--messages`` changes after ``--warmup``; p50/p99/p99.9/max, median over ``--repeats`` runs
  (runner and floor interleaved);
- sustained changes/s: ``--messages`` parts written with up to ``WINDOW`` in flight, until every decision is back;
- the floor: a plain asyncua client in its own process with the same subscription (publishing 10 ms, sampling 0,
  queue, StatusValueTimestamp) on the same seven nodes of ``press-01`` (features and part id, so it receives the
  same notifications) that writes each new part id back to ``press-01.prediction.part_id`` (no row, no model);
- RSS (VmRSS) of the runner process with ``[inputs]`` (asyncua imported), beside the same runner without it.

    .venv/bin/python bench/live_inputs.py --protocol opcua [--messages 5000 --warmup 500 --repeats 3]

A benchmark, not a test: it asserts nothing.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import platform
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

from bench.live_common import get_text, median_of, percentiles, predict_ok, rss_mb, start_runner, wait  # noqa: E402

WINDOW = 64  # changes in flight for the throughput run
FLOOR_DEVICE = "press-01"


class Driver:
    """Writes parts for one machine on the plant's loop and waits for their decisions (by part id)."""

    def __init__(self, server: Any, device: str, rows: list[tuple[float | None, ...]]) -> None:
        from edgeloop.plant.source import Part

        self.server, self.device, self.rows, self.part = server, device, rows, Part
        self.seq = 0
        self.sent: dict[int, float] = {}
        self.back: dict[int, float] = {}
        self.waiter: asyncio.Event | None = None
        self.in_flight = 0

    def on_prediction(self, device: str, part_id: int, at: float) -> None:
        if device != self.device or part_id not in self.sent or part_id in self.back:
            return
        self.back[part_id] = at
        self.in_flight -= 1
        if self.waiter is not None:
            self.waiter.set()

    async def _send(self, plant: Any) -> None:
        self.seq += 1
        values = self.rows[self.seq % len(self.rows)]
        for name, value in zip(plant_features(), values, strict=True):
            await plant.write_tag(self.device, name, value)
        self.sent[self.seq] = time.perf_counter()
        self.in_flight += 1
        await plant.write_tag(self.device, "part_id", self.seq)

    async def latency(self, plant: Any, count: int) -> list[float]:
        out = []
        self.waiter = asyncio.Event()
        for _ in range(count):
            self.waiter.clear()
            await self._send(plant)
            seq = self.seq
            while seq not in self.back:
                await asyncio.wait_for(self.waiter.wait(), 10)
                self.waiter.clear()
            out.append(self.back[seq] - self.sent[seq])
        return out

    async def throughput(self, plant: Any, count: int) -> float:
        self.waiter = asyncio.Event()
        first = self.seq + 1
        started = time.perf_counter()
        for _ in range(count):
            while self.in_flight >= WINDOW:
                self.waiter.clear()
                await asyncio.wait_for(self.waiter.wait(), 10)
            await self._send(plant)
        last = self.seq
        while any(seq not in self.back for seq in range(max(first, last - WINDOW), last + 1)):
            self.waiter.clear()
            await asyncio.wait_for(self.waiter.wait(), 30)
        missing = sum(seq not in self.back for seq in range(first, last + 1))
        if missing:
            raise RuntimeError(f"throughput run: {missing} decisions missing")
        return count / (time.perf_counter() - started)


def plant_features() -> tuple[str, ...]:
    from edgeloop.plant.source import FEATURES

    return FEATURES


async def floor_client(url: str) -> None:
    """The floor: subscribe to the floor machine's part id and write each value back (no row, no model)."""
    from asyncua import Client, ua

    from edge.inputs.opcua import SAMPLING_MS
    from edge.inputs.settings import InputsConfig

    publishing_ms, queue_size = InputsConfig.publishing_interval_ms, InputsConfig.queue_size  # the runner's defaults

    async with Client(url, timeout=4) as client:
        target = client.get_node(f"ns=2;s={FLOOR_DEVICE}.prediction.part_id")
        key = client.get_node(f"ns=2;s={FLOOR_DEVICE}.part_id").nodeid
        pending: list[Any] = []

        class Handler:
            def datachange_notification(self, node: Any, val: Any, data: Any) -> None:
                if node.nodeid == key and val is not None:
                    pending.append(val)
                    if len(pending) == 1:
                        asyncio.get_running_loop().call_soon(send)

        def send() -> None:
            values = list(pending)
            pending.clear()
            asyncio.ensure_future(client.uaclient.write_attributes(
                [target.nodeid] * len(values), [ua.DataValue(ua.Variant(v, ua.VariantType.Int64)) for v in values],
                ua.AttributeIds.Value))

        params = ua.CreateSubscriptionParameters(RequestedPublishingInterval=publishing_ms,
                                                 RequestedLifetimeCount=10_000, RequestedMaxKeepAliveCount=100,
                                                 MaxNotificationsPerPublish=0, PublishingEnabled=True, Priority=0)
        subscription = await client.create_subscription(params, Handler())
        trigger = ua.DataChangeFilter(Trigger=ua.DataChangeTrigger.StatusValueTimestamp)
        names = [*plant_features(), "part_id"]  # the same notifications the runner gets for a part
        await subscription._subscribe([client.get_node(f"ns=2;s={FLOOR_DEVICE}.{name}") for name in names],
                                      ua.AttributeIds.Value, trigger, queuesize=queue_size,
                                      sampling_interval=SAMPLING_MS)
        print("ready", flush=True)
        while True:
            await asyncio.sleep(3600)


def bench_opcua(args: argparse.Namespace) -> None:
    from bench.default_model import describe, model_bytes, trained
    from edgeloop.plant.runner_config import inputs_section
    from edgeloop.plant.source import PlantSettings
    from edgeloop.testkit.hub import free_port, running_hub
    from edgeloop.testkit.opcua import PlantServer
    from edgeloop.testkit.runner_world import ReleaseWorld, runner_config, site_data
    from hub.registry import add_device

    load_before = os.getloadavg()[0]
    x, _ = site_data(1000, 31)
    rows = [tuple(float(v) for v in row) for row in np.nan_to_num(x, nan=0.0)]
    results: dict[str, list[Any]] = {"runner": [], "floor": [], "runner_tp": [], "floor_tp": []}
    runner = plain = floor = None
    with tempfile.TemporaryDirectory() as scratch_name, \
            PlantServer(PlantSettings(devices=2, rate=1000.0), drive=False) as server:
        scratch = Path(scratch_name)
        world = ReleaseWorld(scratch / "world")
        try:
            with running_hub(world.hub_root) as hub:
                token = add_device(hub.app.state.sessions, "press-1", "canary")
                world.publish(0, model=model_bytes(), reference_rows=trained()[1])
                base = runner_config(scratch / "device", hub.url, token, world.root_bytes,
                                     releases={"poll_interval_s": 3600})
                config = scratch / "device" / "live.toml"
                config.write_text(base.read_text() + "\n" + inputs_section("opcua", "press-00", server.url, 1000.0))
                port = free_port()
                runner = start_runner(config, port)
                wait(lambda: predict_ok(port))
                wait(lambda: "edgeloop_runner_inputs_connected 1" in get_text(f"http://127.0.0.1:{port}/metrics"))
                floor = subprocess.Popen([sys.executable, __file__, "--floor-client", server.url],
                                         stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
                assert floor.stdout is not None and floor.stdout.readline().strip() == "ready"
                live, echo = Driver(server, "press-00", rows), Driver(server, FLOOR_DEVICE, rows)

                def hook(device: str, part_id: int, at: float) -> None:
                    (live if device == "press-00" else echo).on_prediction(device, part_id, at)

                assert server.plant is not None
                server.plant.on_prediction = hook
                run = server.call
                run(lambda plant: live.latency(plant, args.warmup), timeout=600)
                run(lambda plant: echo.latency(plant, args.warmup), timeout=600)
                for _ in range(args.repeats):  # interleaved: runner, floor, runner, floor, ...
                    results["runner"].append(percentiles(run(lambda p: live.latency(p, args.messages), 1200)))
                    results["floor"].append(percentiles(run(lambda p: echo.latency(p, args.messages), 1200)))
                    results["runner_tp"].append(run(lambda p: live.throughput(p, args.messages), 1200))
                    results["floor_tp"].append(run(lambda p: echo.throughput(p, args.messages), 1200))
                live_rss = rss_mb(runner.pid)
                writes = [line for line in get_text(f"http://127.0.0.1:{port}/metrics").splitlines()
                          if line.startswith("edgeloop_runner_inputs_writes_total")]
                runner.terminate()
                runner.wait(30)
                runner = None
                plain_port = free_port()
                plain = start_runner(base, plain_port)
                wait(lambda: predict_ok(plain_port))
                plain_rss = rss_mb(plain.pid)
                plain.terminate()
                plain.wait(30)
                plain = None
        finally:
            for process in (runner, plain, floor):
                if process is not None:
                    process.kill()
                    process.wait(10)
    report(args, results, live_rss, plain_rss, writes, (load_before, os.getloadavg()[0]), describe())


def report(args: argparse.Namespace, results: dict[str, list[Any]], live_rss: float, plain_rss: float,
           writes: list[str], load: tuple[float, float], model: str) -> None:
    from edge.inputs.settings import InputsConfig

    publishing_ms = InputsConfig.publishing_interval_ms

    print(f"Command: `.venv/bin/python bench/live_inputs.py --protocol opcua --messages {args.messages} "
          f"--warmup {args.warmup} --repeats {args.repeats}`")
    print(f"Machine: {platform.machine()}, {os.cpu_count()} cores, Python {platform.python_version()}; {model}; "
          f"asyncua server in the bench process, runner and floor client in their own processes; publishing "
          f"interval {publishing_ms:g} ms; medians of {args.repeats} runs of {args.messages:,} changes after "
          f"{args.warmup:,} warm-up; 1-minute load average {load[0]:.1f} before, {load[1]:.1f} after")
    print()
    print(f"| part id written -> decision written back | p50 | p99 | p99.9 | max | changes/s (<= {WINDOW} in flight) |")
    print("|---|---|---|---|---|---|")
    for name, label in (("runner", "edge-runner with [inputs] (row, predict, write label/probability/version/key)"),
                        ("floor", "floor: plain asyncua client, same 7 nodes, writing the part id back (no model)")):
        runs = results[name]
        print(f"| {label} | {median_of(runs, 'p50'):.2f} ms | {median_of(runs, 'p99'):.2f} ms | "
              f"{median_of(runs, 'p999'):.2f} ms | {median_of(runs, 'max'):.1f} ms | "
              f"{statistics.median(results[name + '_tp']):,.0f} |")
    print()
    print(f"RSS of the runner process: {live_rss:.0f} MB with [inputs] (asyncua imported), {plain_rss:.0f} MB without")
    print(f"Runner write-back counters: {'; '.join(writes)}")
    print(f"Per run: runner p99 {[round(r['p99'], 2) for r in results['runner']]} ms, floor p99 "
          f"{[round(r['p99'], 2) for r in results['floor']]} ms; runner changes/s "
          f"{[round(v) for v in results['runner_tp']]}, floor {[round(v) for v in results['floor_tp']]}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--messages", type=int, default=5_000)
    parser.add_argument("--warmup", type=int, default=500)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--floor-client", metavar="URL", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.floor_client:
        import logging

        logging.getLogger("asyncua").setLevel(logging.ERROR)
        asyncio.run(floor_client(args.floor_client))
        return
    bench_opcua(args)


if __name__ == "__main__":
    main()
