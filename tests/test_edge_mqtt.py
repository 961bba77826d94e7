"""Live inputs over MQTT end to end: a real amqtt broker (a subprocess the tests kill and restart), a real
runner with a real ONNX model served from a real hub's TUF repository, paho clients standing in for the plant
(machines publishing values, the quality station publishing verdicts, the control system reading decisions)."""

from __future__ import annotations

import csv
import io
import json
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pytest

from edge.config import load_config
from edge.runner import Runner
from edgeloop.testkit.hub import HubHandle, running_hub
from edgeloop.testkit.mqtt import MqttBroker, connect_client, inputs_toml
from edgeloop.testkit.runner_world import ReleaseWorld, model_bytes, params, runner_config, site_data, wait_for
from hub.registry import add_device

pytestmark = pytest.mark.slow  # a broker, a hub and runners

FEATURES = [f.name for f in params().schema.features]


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[ReleaseWorld, HubHandle, str, int]]:
    model_bytes(1)  # train outside the timed waits
    w = ReleaseWorld(tmp_path_factory.mktemp("world"))
    with running_hub(w.hub_root) as hub:
        token = add_device(hub.app.state.sessions, "press-1", "canary")
        yield w, hub, token, w.publish(1)


@pytest.fixture(scope="module")
def broker(tmp_path_factory: pytest.TempPathFactory) -> Iterator[MqttBroker]:
    b = MqttBroker(tmp_path_factory.mktemp("broker"))
    b.start()
    try:
        yield b
    finally:
        b.stop()


def start_runner(folder: Path, world: tuple[ReleaseWorld, HubHandle, str, int], inputs: dict[str, Any]) -> Runner:
    w, hub, token, version = world
    path = runner_config(folder, hub.url, token, w.root_bytes, upload={"random_rate": 1.0})
    path.write_text(path.read_text() + inputs_toml(inputs))
    runner = Runner(load_config(path, environ={}))
    runner.start()
    wait_for(lambda: runner.model_version == str(version), what="first activation")
    assert runner.inputs is not None
    wait_for(lambda: runner.inputs.connected_now, what="live inputs connected")  # type: ignore[union-attr]
    return runner


def machine_inputs(broker: MqttBroker, prefix: str, **extra: Any) -> dict[str, Any]:
    """Every feature and the part id from one JSON message on <prefix>/machine."""
    return {"protocol": "mqtt", "url": broker.url, "client_id": f"runner-{prefix}", "username": "press-1",
            "tags": [{"feature": f, "source": f"{prefix}/machine", "field": f"values.{f}"} for f in FEATURES],
            "key": {"source": f"{prefix}/machine", "field": "part_id"},
            "output": {"topic": f"{prefix}/prediction"},
            "labels": {"source": f"{prefix}/quality", "field": "verdict", "key_field": "part_id"}, **extra}


class Decisions:
    """The control system's side: every decision on a topic, by part id, with its arrival time."""

    def __init__(self, broker: MqttBroker, topic: str, ca_file: Path | None = None) -> None:
        self.by_part: dict[str, dict[str, Any]] = {}
        self.arrived: dict[str, float] = {}
        self.changed = threading.Condition()
        self.client = connect_client(broker, f"control-{topic.replace('/', '-')}", ca_file=ca_file)
        self.client.on_message = self._on_message
        self.subscribed = threading.Event()
        self.client.on_subscribe = lambda *_: self.subscribed.set()
        self.client.on_connect = lambda *_: self._subscribe(topic)  # again after a broker restart
        self._subscribe(topic)
        assert self.subscribed.wait(5), f"not subscribed to {topic}"

    def _subscribe(self, topic: str) -> None:
        self.subscribed.clear()
        self.client.subscribe(topic, 1)

    def _on_message(self, _c: Any, _u: Any, message: Any) -> None:
        decision = json.loads(message.payload)
        with self.changed:
            self.arrived[decision["key"]] = time.perf_counter()
            self.by_part[decision["key"]] = decision
            self.changed.notify_all()

    def wait(self, part: str, timeout: float = 10.0) -> dict[str, Any]:
        with self.changed:
            if not self.changed.wait_for(lambda: part in self.by_part, timeout):
                raise AssertionError(f"no decision for {part} within {timeout:g} s")
            return self.by_part[part]

    def close(self) -> None:
        self.client.loop_stop()
        self.client.disconnect()


def machine_message(part: str, row: np.ndarray) -> str:
    return json.dumps({"part_id": part, "values": dict(zip(FEATURES, map(float, row), strict=True))})


def landed_rows(hub: HubHandle) -> list[dict[str, str]]:
    landed = (hub.root / "data" / "uploads" / "press-1").glob("*.csv")
    return [r for f in landed for r in csv.DictReader(io.StringIO(f.read_text()))]


def test_tag_changes_become_decisions_and_labels_reach_the_hub_once(world, broker: MqttBroker, tmp_path: Path
                                                                      ) -> None:
    _, hub, _, version = world
    before = {r["event_id"] for r in landed_rows(hub)}
    runner = start_runner(tmp_path / "a", world, machine_inputs(broker, "a"))
    decisions = Decisions(broker, "a/prediction")
    plant = connect_client(broker, "plant-a", clean_session=False)
    try:
        x, y = site_data(200, 21)
        waits = []
        for i, row in enumerate(x):
            sent = time.perf_counter()
            plant.publish("a/machine", machine_message(f"P{i}", row), qos=0)
            decisions.wait(f"P{i}")
            waits.append(decisions.arrived[f"P{i}"] - sent)
        predictor = runner.slot.predictor
        assert predictor is not None
        for i, row in enumerate(x):  # the model's own answer on the same row
            expected, got = predictor.predict([float(v) for v in row]), decisions.by_part[f"P{i}"]
            assert got["label"] == expected.label and got["model_version"] == str(version)
            assert got["probabilities"] == {str(k): v for k, v in expected.probabilities.items()}
        assert float(np.median(waits)) < 0.05  # the benchmark measures it properly (bench/live_inputs.py)
        for i, label in enumerate(y.tolist()):
            plant.publish("a/quality", json.dumps({"part_id": f"P{i}", "verdict": label}), qos=1)
        plant.publish("a/quality", json.dumps({"part_id": "P0", "verdict": int(y[0])}), qos=1)  # again
        plant.publish("a/quality", json.dumps({"part_id": "nobody", "verdict": 1}), qos=1)
        inputs = runner.inputs
        assert inputs is not None
        wait_for(lambda: inputs.report()["labels"].get("unmatched") == 2, what="labels handled")
        assert inputs.report()["labels"] == {"joined": 200, "unmatched": 2}
        wait_for(lambda: runner.spool.backlog_rows() == 0, what="spool drained")
        rows = [r for r in landed_rows(hub) if r["event_id"] not in before]
        assert sorted(int(r["event_id"]) for r in rows) == sorted(d["event_id"] for d in decisions.by_part.values())
        report = runner.state_report()["inputs"]
        assert report["predictions"] == 200 and report["writes"] == {"written": 200} and report["connected"]
        metrics = httpx.get(f"{runner.api_url}/metrics").text
        assert "edgeloop_runner_inputs_predictions_total 200" in metrics
        assert 'edgeloop_runner_inputs_labels_total{outcome="joined"} 200' in metrics
    finally:
        decisions.close()
        plant.loop_stop()
        runner.stop()


def test_a_stale_tag_blocks_the_row_and_a_missing_optional_one_is_nan(world, broker: MqttBroker,
                                                                        tmp_path: Path) -> None:
    inputs = machine_inputs(broker, "b", trigger="change", trigger_tag="key")
    for tag in inputs["tags"]:
        if tag["feature"] == "air_temp_k":
            tag.update(source="b/air", stale_after_s=0.5, field="value")
        if tag["feature"] == "vibration_mm_s":
            tag.update(source="b/vib", required=False, field="value")
    runner = start_runner(tmp_path / "b", world, inputs)
    decisions = Decisions(broker, "b/prediction")
    plant = connect_client(broker, "plant-b")
    live = runner.inputs
    assert live is not None
    row = site_data(10, 22)[0][0]

    def send(topic: str, payload: str) -> None:
        plant.publish(topic, payload, qos=1).wait_for_publish(5)
        time.sleep(0.05)

    try:
        send("b/air", json.dumps({"value": float(row[0])}))
        send("b/machine", machine_message("P0", row))  # vibration never arrived: NaN (the schema allows it)
        decisions.wait("P0")
        predictor = runner.slot.predictor
        assert predictor is not None
        without = predictor.predict([float(v) for v in row[:5]] + [float("nan")])
        assert decisions.by_part["P0"]["probabilities"] == {str(k): v for k, v in without.probabilities.items()}
        send("b/vib", json.dumps({"value": float(row[5])}))
        time.sleep(0.6)
        send("b/machine", machine_message("P1", row))  # the air temperature is 0.65 s old: stale
        wait_for(lambda: live.report()["skipped"].get("stale") == {"air_temp_k": 1}, timeout=5,
                 what=f"stale row ({live.report()})")
        send("b/air", json.dumps({"value": float(row[0])}))
        send("b/machine", machine_message("P2", row))
        decisions.wait("P2")
        assert set(decisions.by_part) == {"P0", "P2"}
        full = predictor.predict([float(v) for v in row])
        assert decisions.by_part["P2"]["probabilities"] == {str(k): v for k, v in full.probabilities.items()}
        assert 'edgeloop_runner_inputs_skipped_total{reason="stale",tag="air_temp_k"} 1' in runner.metrics_text()
        assert runner.state_report()["inputs"]["skipped"] == {"stale": {"air_temp_k": 1}}
    finally:
        decisions.close()
        plant.loop_stop()
        runner.stop()


def test_broker_killed_mid_stream_loses_no_label(world, tmp_path: Path) -> None:
    """Labels trail predictions by 20 parts; the broker is SIGKILLed with 20 parts predicted and unlabelled,
    their labels are published during the outage (the quality station's client queues them and sends them
    when it is back; the broker queues them for the runner's persistent session when the runner is not back
    yet), the broker comes back: the runner reconnects by itself, every label reaches the spool and the hub
    exactly once, and predictions resume."""
    _, hub, _, _ = world
    before = {r["event_id"] for r in landed_rows(hub)}
    broker = MqttBroker(tmp_path / "broker")
    broker.start()
    runner = None
    try:
        runner = start_runner(tmp_path / "c", world, machine_inputs(broker, "c", reconnect_max_s=1.0))
        live = runner.inputs
        assert live is not None
        decisions = Decisions(broker, "c/prediction")
        plant = connect_client(broker, "plant-c")
        x, y = site_data(80, 23)
        lag = 20

        def part(i: int) -> None:
            plant.publish("c/machine", machine_message(f"P{i}", x[i]), qos=0)
            decisions.wait(f"P{i}")

        def label(i: int) -> None:
            plant.publish("c/quality", json.dumps({"part_id": f"P{i}", "verdict": int(y[i])}), qos=1)

        for i in range(40):
            part(i)
            if i >= lag:
                label(i - lag)
        wait_for(lambda: live.report()["labels"].get("joined") == 40 - lag, what="labels before the kill joined")
        broker.kill()  # (a label the broker took but had not passed on would die with it: a broker's own
        # durability, Mosquitto's persistence; amqtt's keeps sessions and subscriptions, not messages in flight)
        wait_for(lambda: not live.connected_now, what="the runner sees the broker gone")
        for i in range(40 - lag, 40):
            label(i)  # queued by the quality station's client while the broker is down
        answer = httpx.post(f"{runner.api_url}/predict", json={"features": [float(v) for v in x[0]]})
        assert answer.status_code == 200  # the HTTP API goes on predicting
        time.sleep(1.0)
        broker.start()
        wait_for(lambda: live.connected_now and plant.is_connected() and decisions.subscribed.is_set(),
                 what="all reconnected")
        for i in range(40, 80):
            part(i)
            if i >= 40 + lag:
                label(i - lag)
        for i in range(80 - lag, 80):
            label(i)
        wait_for(lambda: live.report()["labels"].get("joined") == 80, timeout=30,
                 what=f"80 labels joined (report: {live.report()})")
        report = live.report()
        assert report["reconnects"] >= 1 and report["predictions"] == 80 and report["labels"] == {"joined": 80}
        wait_for(lambda: runner.spool.backlog_rows() == 0, what="spool drained")
        rows = [r for r in landed_rows(hub) if r["event_id"] not in before and r["event_id"] != str(
            answer.json()["event_id"])]
        assert sorted(int(r["event_id"]) for r in rows) == sorted(d["event_id"] for d in decisions.by_part.values())
        decisions.close()
        plant.loop_stop()
    finally:
        if runner is not None:
            runner.stop()
        broker.stop()


def test_mqtts_broker_verified_against_the_plant_ca(world, tmp_path: Path) -> None:
    """mqtts://: the runner verifies the broker against inputs.ca_file and works over TLS; against a CA
    that did not sign the broker's certificate it never connects (and says why)."""
    from edgeloop.testkit.pki import make_pki

    pki, other = make_pki(tmp_path / "pki"), make_pki(tmp_path / "other")
    broker = MqttBroker(tmp_path / "broker", tls=(pki.hub_cert, pki.hub_key))
    broker.start()
    runner = wrong = None
    try:
        wrong_inputs = machine_inputs(broker, "w", ca_file=str(other.ca_file), reconnect_max_s=0.5)
        path = runner_config(tmp_path / "w", world[1].url, world[2], world[0].root_bytes)
        path.write_text(path.read_text() + inputs_toml(wrong_inputs))
        wrong = Runner(load_config(path, environ={}))
        wrong.start()
        runner = start_runner(tmp_path / "d", world, machine_inputs(broker, "d", ca_file=str(pki.ca_file)))
        decisions = Decisions(broker, "d/prediction", ca_file=pki.ca_file)
        plant = connect_client(broker, "plant-d", ca_file=pki.ca_file)
        plant.publish("d/machine", machine_message("P1", site_data(10, 24)[0][0]), qos=0)
        assert decisions.wait("P1")["model_version"] == str(world[3])
        decisions.close()
        plant.loop_stop()
        assert wrong.inputs is not None and not wrong.inputs.connected_now
        assert wrong.inputs.report()["reconnects"] == 0
    finally:
        for r in (runner, wrong):
            if r is not None:
                r.stop()
        broker.stop()
