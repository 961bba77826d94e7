"""Live inputs benchmark (issue 13): a tag change -> the runner's decision written back, over a local broker.

``--protocol mqtt`` (this file's MQTT part; ``--protocol opcua`` is the OPC UA part's function, added beside
it). Everything real: an amqtt broker in its own process (edgeloop.testkit.mqtt), a hub on 127.0.0.1 serving
the default model (bench/default_model.py) as a signed release, and ``edge-runner run`` as a separate
process with an ``[inputs]`` section: every feature and the part id in one JSON message on
``plant/m1/machine``, trigger ``change`` on the part id, decisions to ``plant/m1/prediction`` at QoS 1.

Measured, for the runner and, in the same run against the same broker, the floor:

- latency: publish of a machine message -> its decision received by a subscriber (both paho clients in
  this process), one message in flight at a time; ``--messages`` after ``--warmup``; p50/p99/p99.9/max,
  median over ``--repeats`` runs (runner and floor interleaved);
- sustained messages/s: ``--messages`` published with up to ``WINDOW`` in flight, until every decision is
  back; median over the repeats;
- the floor: a plain paho client that echoes each machine message to the output topic (no parsing, no model),
  and raw onnxruntime on the same row (one ``InferenceSession.run`` per row, in this process);
- RSS (VmRSS) of the runner process after the runs, beside a runner without ``[inputs]`` (paho not imported).

    .venv/bin/python bench/live_inputs.py --protocol mqtt [--messages 20000 --warmup 2000 --repeats 3]

A benchmark, not a test: it asserts nothing.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from edge.telemetry import switch_off  # noqa: E402

switch_off()

import numpy as np  # noqa: E402

from bench.default_model import describe, model_bytes, trained  # noqa: E402
from bench.live_common import get_text, median_of, percentiles, predict_ok, rss_mb, start_runner, wait  # noqa: E402
from edgeloop.testkit.hub import free_port, running_hub  # noqa: E402
from edgeloop.testkit.mqtt import MqttBroker, connect_client, inputs_toml  # noqa: E402
from edgeloop.testkit.runner_world import ReleaseWorld, params, runner_config, site_data  # noqa: E402
from hub.registry import add_device  # noqa: E402

WINDOW = 64  # messages in flight for the throughput run
FEATURES = [f.name for f in params().schema.features]
MACHINE, OUTPUT = "plant/m1/machine", "plant/m1/prediction"
FLOOR_IN, FLOOR_OUT = "plant/floor/machine", "plant/floor/echo"


class Loop:
    """Publishes machine messages on ``inbound`` and waits for their answers on ``outbound`` (by part id)."""

    def __init__(self, broker: MqttBroker, name: str, inbound: str, outbound: str) -> None:
        self.inbound = inbound
        self.answers: dict[int, float] = {}
        self.received = 0  # answers since the throughput run began
        self.cond = threading.Condition()
        self.sub = connect_client(broker, f"{name}-control")
        self.sub.on_message = self._answer
        done = threading.Event()
        self.sub.on_subscribe = lambda *_: done.set()
        self.sub.subscribe(outbound, 1)
        done.wait(5)
        self.pub = connect_client(broker, f"{name}-plant")
        x, _ = site_data(1000, 31)
        self.rows = [dict(zip(FEATURES, map(float, row), strict=True)) for row in np.nan_to_num(x, nan=0.0)]
        self.seq = 0

    def _answer(self, _c: Any, _u: Any, message: Any) -> None:
        at = time.perf_counter()
        body = json.loads(message.payload)
        part = body.get("key", body.get("part_id"))
        with self.cond:
            self.answers[int(part)] = at
            self.received += 1
            self.cond.notify_all()

    def send(self) -> tuple[int, float]:
        self.seq += 1
        payload = json.dumps({"part_id": self.seq, "values": self.rows[self.seq % len(self.rows)]})
        sent = time.perf_counter()
        self.pub.publish(self.inbound, payload, qos=0)
        return self.seq, sent

    def latency(self, count: int) -> list[float]:
        out = []
        for _ in range(count):
            seq, sent = self.send()
            with self.cond:
                if not self.cond.wait_for(lambda s=seq: s in self.answers, 10):
                    raise RuntimeError(f"no answer for message {seq} within 10 s")
                out.append(self.answers.pop(seq) - sent)
        return out

    def throughput(self, count: int) -> float:
        """Messages/s with at most ``WINDOW`` in flight, until every answer is back."""
        with self.cond:
            self.answers.clear()
            self.received = 0
        started = time.perf_counter()
        for sent in range(count):
            with self.cond:
                if not self.cond.wait_for(lambda s=sent: s - self.received < WINDOW, 10):
                    raise RuntimeError("throughput run: answers stopped")
            self.send()
        with self.cond:
            if not self.cond.wait_for(lambda: self.received >= count, 30):
                raise RuntimeError(f"throughput run: {count - self.received} answers missing")
            self.answers.clear()
        return count / (time.perf_counter() - started)

    def close(self) -> None:
        for client in (self.sub, self.pub):
            client.loop_stop()
            client.disconnect()


def echo_floor(broker: MqttBroker) -> Callable[[], None]:
    """A plain paho client: every message on ``FLOOR_IN`` republished to ``FLOOR_OUT`` as it is (no model),
    at the runner's QoS (tags 0, decisions 1)."""
    client = connect_client(broker, "floor-echo")
    client.on_message = lambda c, _u, m: c.publish(FLOOR_OUT, m.payload, qos=1)
    client.subscribe(FLOOR_IN, 0)
    time.sleep(0.3)

    def stop() -> None:
        client.loop_stop()
        client.disconnect()
    return stop


def onnx_floor(count: int) -> dict[str, float]:
    """Raw onnxruntime, one row per call (the same rows), as the runner's session options leave it."""
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.intra_op_num_threads = 1
    session = ort.InferenceSession(model_bytes(), options, providers=["CPUExecutionProvider"])
    name = session.get_inputs()[0].name
    out = [session.get_outputs()[1].name]
    x, _ = site_data(1000, 31)
    rows = [row.reshape(1, -1).astype(np.float32) for row in x]
    for row in rows:
        session.run(out, {name: row})
    times = []
    for i in range(count):
        started = time.perf_counter()
        session.run(out, {name: rows[i % len(rows)]})
        times.append(time.perf_counter() - started)
    return percentiles(times)


def metrics(port: int) -> str:
    return get_text(f"http://127.0.0.1:{port}/metrics")


def bench_mqtt(args: argparse.Namespace) -> None:
    load_before = os.getloadavg()[0]
    with tempfile.TemporaryDirectory() as scratch_name:
        scratch = Path(scratch_name)
        broker = MqttBroker(scratch / "broker")
        broker.start()
        world = ReleaseWorld(scratch / "world")
        runner = plain = None
        try:
            with running_hub(world.hub_root) as hub:
                token = add_device(hub.app.state.sessions, "press-1", "canary")
                world.publish(0, model=model_bytes(), reference_rows=trained()[1])
                base = runner_config(scratch / "device", hub.url, token, world.root_bytes,
                                     releases={"poll_interval_s": 3600})
                config = scratch / "device" / "live.toml"
                config.write_text(base.read_text() + inputs_toml({
                    "protocol": "mqtt", "url": broker.url, "client_id": "press-1-bench", "username": "press-1",
                    "trigger": "change", "trigger_tag": "key",
                    "tags": [{"feature": f, "source": MACHINE, "field": f"values.{f}"} for f in FEATURES],
                    "key": {"source": MACHINE, "field": "part_id"}, "output": {"topic": OUTPUT}}))
                port = free_port()
                runner = start_runner(config, port)
                wait(lambda: predict_ok(port))  # the release is active
                wait(lambda: "edgeloop_runner_inputs_connected 1" in metrics(port))
                results: dict[str, list[Any]] = {"runner": [], "floor": [], "runner_tp": [], "floor_tp": []}
                live, floor = Loop(broker, "bench", MACHINE, OUTPUT), Loop(broker, "floor", FLOOR_IN, FLOOR_OUT)
                stop_echo = echo_floor(broker)
                try:
                    live.latency(args.warmup)
                    floor.latency(args.warmup)
                    for _ in range(args.repeats):  # interleaved: runner, floor, runner, floor, ...
                        results["runner"].append(percentiles(live.latency(args.messages)))
                        results["floor"].append(percentiles(floor.latency(args.messages)))
                        results["runner_tp"].append(live.throughput(args.messages))
                        results["floor_tp"].append(floor.throughput(args.messages))
                finally:
                    stop_echo()
                    live.close()
                    floor.close()
                live_rss = rss_mb(runner.pid)
                skipped = [line for line in metrics(port).splitlines()
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
            for process in (runner, plain):
                if process is not None:
                    process.kill()
            broker.stop()
        ort = onnx_floor(args.messages)
    report(args, results, ort, live_rss, plain_rss, skipped, (load_before, os.getloadavg()[0]))


def report(args: argparse.Namespace, results: dict[str, list[Any]], ort: dict[str, float], live_rss: float,
           plain_rss: float, writes: list[str], load: tuple[float, float]) -> None:
    print(f"Command: `.venv/bin/python bench/live_inputs.py --protocol mqtt --messages {args.messages} "
          f"--warmup {args.warmup} --repeats {args.repeats}`")
    print(f"Machine: {platform.machine()}, {os.cpu_count()} cores, Python {platform.python_version()}; "
          f"{describe()}; amqtt broker (Python) in its own process; medians of {args.repeats} runs of "
          f"{args.messages:,} messages after {args.warmup:,} warm-up; 1-minute load average {load[0]:.1f} before, "
          f"{load[1]:.1f} after")
    print()
    print("| tag change -> decision received | p50 | p99 | p99.9 | max | messages/s (<= 64 in flight) |")
    print("|---|---|---|---|---|---|")
    for name, label in (("runner", "edge-runner with [inputs] (parse, row, predict, write back)"),
                        ("floor", "floor: plain paho echo client (no model)")):
        runs = results[name]
        print(f"| {label} | {median_of(runs, 'p50'):.2f} ms | {median_of(runs, 'p99'):.2f} ms | "
              f"{median_of(runs, 'p999'):.2f} ms | {median_of(runs, 'max'):.1f} ms | "
              f"{statistics.median(results[name + '_tp']):,.0f} |")
    print(f"| floor: raw onnxruntime, one row per call | {ort['p50']:.3f} ms | {ort['p99']:.3f} ms | "
          f"{ort['p999']:.3f} ms | {ort['max']:.1f} ms | - |")
    print()
    print(f"RSS of the runner process: {live_rss:.0f} MB with [inputs] (paho-mqtt imported), "
          f"{plain_rss:.0f} MB without")
    print(f"Runner write-back counters: {'; '.join(writes)}")
    print(f"Per run: runner p99 {[round(r['p99'], 2) for r in results['runner']]} ms, floor p99 "
          f"{[round(r['p99'], 2) for r in results['floor']]} ms")


def bench_opcua(args: argparse.Namespace) -> None:
    """The OPC UA part, in its own file (bench/live_inputs_opcua.py)."""
    from bench.live_inputs_opcua import bench_opcua as run

    run(args)


PROTOCOLS: dict[str, Callable[[argparse.Namespace], None]] = {"mqtt": bench_mqtt, "opcua": bench_opcua}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--protocol", choices=["mqtt", "opcua"], default="mqtt")
    parser.add_argument("--messages", type=int, default=20_000)
    parser.add_argument("--warmup", type=int, default=2_000)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    if args.protocol not in PROTOCOLS:
        parser.error(f"--protocol {args.protocol}: not measured by this file yet")
    PROTOCOLS[args.protocol](args)


if __name__ == "__main__":
    main()
