"""``edgeloop plant serve``: the simulator's machines live over a real OPC UA server and a real MQTT broker.

Slow tests start an asyncua server (edgeloop/testkit/opcua.py), an amqtt broker or the command itself on
127.0.0.1; the fast ones check the command line and the printed runner configuration.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
import threading
import time
import tomllib
from datetime import timedelta
from pathlib import Path

import pytest

from edge.inputs.settings import read_inputs
from edgeloop.demo.plant import device_rows
from edgeloop.plant.runner_config import inputs_section
from edgeloop.plant.source import FEATURES, PlantSettings, PlantStream
from edgeloop.testkit.opcua import PlantServer, free_port

EDGELOOP = [sys.executable, "-c", "from edgeloop.cli import main; main()"]
RATE = 20.0
DELAY_S = 0.5


def _truth(settings: PlantSettings, device_index: int, part_id: int) -> tuple[list[float | None], int]:
    x, y = device_rows(device_index, part_id, 1, settings.seed, settings.minutes_per_row)
    return [None if v != v else v for v in x[0].tolist()], int(y[0])


# -- the stream (no server) -------------------------------------------------------------------------------

def test_stream_makes_parts_at_the_rate_and_reports_true_labels_after_the_delay() -> None:
    settings = PlantSettings(devices=2, rate=10.0, label_delay_s=1.0, seed=3)
    stream = PlantStream(settings, start=1_000.0)
    parts, verdicts = stream.due(1_000.0)
    assert [p.part_id for p in parts] == [10_000, 10_000] and verdicts == []
    parts, verdicts = stream.due(1_002.0)  # 2 s later: 20 more parts per machine, the first 10 labelled
    assert len(parts) == 2 * 20 and len(verdicts) == 2 * 11
    assert {v.part_id for v in verdicts} == set(range(10_000, 10_011))
    for verdict in verdicts:  # the quality station reports the simulator's true label of that very part
        assert verdict.label == _truth(settings, int(verdict.device[-2:]), verdict.part_id)[1]
    first = next(p for p in parts if p.device == "press-01")
    assert list(first.values) == _truth(settings, 1, first.part_id)[0]
    # a restarted plant carries on: the same part id gives the same values
    again = PlantStream(settings, start=1_000.05).due(1_000.1)[0]
    assert next(p for p in again if p.device == "press-01" and p.part_id == first.part_id).values == first.values


def test_bad_settings_read_as_one_line() -> None:
    from edge.contracts.errors import UserError

    for kwargs, words in (({"rate": 0}, "--rate"), ({"drift": "bogus"}, "--drift: unknown kind"),
                          ({"drift": "sensor_offset"}, "--drift-after-s"), ({"label_delay_s": -1}, "--label-delay-s")):
        with pytest.raises(UserError, match=words):
            PlantSettings(**kwargs)  # type: ignore[arg-type]


@pytest.mark.parametrize(("protocol", "url"), [("opcua", "opc.tcp://127.0.0.1:4840"),
                                                ("mqtt", "mqtt://127.0.0.1:1883")])
def test_printed_config_is_a_valid_inputs_section(protocol: str, url: str) -> None:
    text = inputs_section(protocol, "press-03", url, RATE)
    config = read_inputs(tomllib.loads(text)["inputs"], "dev-1")
    assert [t.feature for t in config.tags] == list(FEATURES)
    assert config.trigger == "change" and config.trigger_tag == "key" and config.key is not None
    assert config.labels is not None and config.labels.join == "key"
    assert all("press-03" in source for source in config.sources)
    if protocol == "opcua":
        assert config.output is not None and list(config.output.nodes)[-1] == "key"  # the part id written last
        assert config.labels.key_source == "ns=2;s=press-03.quality.part_id"
    else:
        assert config.output is not None and config.output.topic == "plant/press-03/prediction"


# -- the command line -------------------------------------------------------------------------------------

def _edgeloop(*args: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    return subprocess.run([*EDGELOOP, *args], capture_output=True, text=True, timeout=timeout)


def test_help_and_bad_arguments_give_one_line() -> None:
    from typer.testing import CliRunner

    from edge.contracts.errors import UserError
    from edgeloop.cli import app

    cli = CliRunner()
    shown = cli.invoke(app, ["plant", "serve", "--help"])
    assert shown.exit_code == 0 and "--embedded-broker" in shown.output and "--write-configs" in shown.output
    for args, words in ((["--rate", "0", "--opcua"], "--rate"), (["--opcua", "--print-config", "press-09"],
                                                                  "no machine 'press-09'"),
                        (["--mqtt", "--broker", "http://x"], "--broker"),
                        (["--opcua", "--embedded-broker"], "--embedded-broker goes with --mqtt")):
        result = cli.invoke(app, ["plant", "serve", *args])
        assert isinstance(result.exception, UserError) and words in str(result.exception), (args, result.output)
    printed = cli.invoke(app, ["plant", "serve", "--opcua", "--port", "4999", "--print-config", "press-01"])
    assert printed.exit_code == 0
    assert read_inputs(tomllib.loads(printed.output)["inputs"], "d").url == "opc.tcp://127.0.0.1:4999"
    done = _edgeloop("plant", "serve", "--opcua", "--mqtt")  # the real entry point: one line, exit code 2
    assert done.returncode == 2 and done.stderr == "error: choose one protocol: --opcua or --mqtt\n"


# -- OPC UA ------------------------------------------------------------------------------------------------

class _Recorder:
    """Every data change as (arrival, node string id, value, source timestamp)."""

    def __init__(self) -> None:
        self.seen: list[tuple[float, str, object, object]] = []

    def datachange_notification(self, node: object, val: object, data: object) -> None:
        value = data.monitored_item.Value  # type: ignore[attr-defined]
        self.seen.append((time.monotonic(), node.nodeid.Identifier, val, value.SourceTimestamp))  # type: ignore[attr-defined]


async def _watch(url: str, names: list[str], seconds: float, write: bool = False) -> tuple[_Recorder, int | None]:
    from asyncua import Client, ua

    recorder = _Recorder()
    async with Client(url) as client:
        sub = await client.create_subscription(10, recorder)
        nodes = [client.get_node(f"ns=2;s=press-00.{name}") for name in names]
        trigger = ua.DataChangeFilter(Trigger=ua.DataChangeTrigger.StatusValueTimestamp)
        await sub._subscribe(nodes, ua.AttributeIds.Value, trigger, queuesize=1000, sampling_interval=0)
        await asyncio.sleep(seconds)
        written = None
        if write:  # a prediction for the latest part, label 1, written back the way the runner does
            written = await client.get_node("ns=2;s=press-00.part_id").read_value()
            fields = [("label", 1, ua.VariantType.Int32), ("probability", 0.9, ua.VariantType.Double),
                      ("model_version", "v1", ua.VariantType.String), ("part_id", written, ua.VariantType.Int64)]
            await client.write_values([client.get_node(f"ns=2;s=press-00.prediction.{n}") for n, _, _ in fields],
                                      [ua.Variant(v, t) for _, v, t in fields])
        await sub.delete()
    return recorder, written


@pytest.mark.slow
def test_opcua_server_changes_tags_at_the_rate_and_reports_labels_after_the_delay() -> None:
    settings = PlantSettings(devices=2, rate=RATE, label_delay_s=DELAY_S, seed=5)
    with PlantServer(settings) as server:
        recorder, written = asyncio.run(_watch(server.url, [*FEATURES, "part_id", "quality.part_id",
                                                             "quality.verdict"], 2.0, write=True))
        time.sleep(0.2)
        stats = server.stats()
    by_node: dict[str, list[tuple[float, object, object]]] = {}
    for at, node, value, stamp in recorder.seen:
        by_node.setdefault(node, []).append((at, value, stamp))
    part_ids = [v for _, v, _ in by_node["press-00.part_id"] if v is not None]
    assert 0.7 * 2.0 * RATE <= len(part_ids) <= 1.3 * 2.0 * RATE + 2, len(part_ids)  # the rate asked for
    assert part_ids == list(range(part_ids[0], part_ids[0] + len(part_ids)))  # one new id per part, none lost
    # every feature changes with every part (the source timestamp changes even when the value repeats)
    assert all(abs(len(by_node[f"press-00.{f}"]) - len(part_ids)) <= 2 for f in FEATURES)
    # the values of a part are the simulator's values for that part id
    stamps = {stamp: value for _, value, stamp in by_node["press-00.part_id"]}
    checked = 0
    for feature_index, feature in enumerate(FEATURES[:2]):
        for _, value, stamp in by_node[f"press-00.{feature}"][1:6]:
            part = next(pid for s, pid in stamps.items() if s is not None and stamp is not None and s > stamp)
            expected = _truth(settings, 0, int(part))[0][feature_index]  # type: ignore[call-overload]
            assert value == expected or (value is None and expected is None)
            checked += 1
    assert checked == 10
    # the quality station: the true label of that part id, label_delay_s after the part appeared
    made = {v: at for at, v, _ in by_node["press-00.part_id"]}
    verdicts = {stamp: v for _, v, stamp in by_node["press-00.quality.verdict"]}
    keys = [(at, v, stamp) for at, v, stamp in by_node["press-00.quality.part_id"] if v is not None]
    assert len(keys) >= 0.7 * (2.0 - DELAY_S) * RATE
    for at, key, stamp in keys[1:]:
        verdict = verdicts[stamp + timedelta(microseconds=1)]  # type: ignore[operator]  # written right after
        assert verdict == _truth(settings, 0, int(key))[1]  # type: ignore[call-overload]
        if key in made:
            assert DELAY_S - 0.1 <= at - made[key] <= DELAY_S + 1.0, at - made[key]
    # the prediction written back was scored against the truth of that part
    assert written is not None and stats["predictions"] == 1 and stats["scored"] == 1
    assert stats["correct"] == int(_truth(settings, 0, written)[1] == 1)


@pytest.mark.slow
def test_opcua_command_serves_writes_configs_and_stops_on_ctrl_c(tmp_path: Path) -> None:
    port = free_port()
    proc = subprocess.Popen([*EDGELOOP, "plant", "serve", "--opcua", "--port", str(port), "--rate", "10",
                             "--devices", "1", "--write-configs", str(tmp_path / "cfg"), "--report-s", "0.5"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 60
        recorder = None
        while time.monotonic() < deadline:
            try:
                recorder, _ = asyncio.run(_watch(f"opc.tcp://127.0.0.1:{port}", ["part_id"], 0.5))
                break
            except (OSError, TimeoutError):
                time.sleep(0.3)
        assert recorder is not None and len([v for _, _, v, _ in recorder.seen if v is not None]) >= 2
        config = read_inputs(tomllib.loads((tmp_path / "cfg" / "press-00.toml").read_text())["inputs"], "d")
        assert config.url == f"opc.tcp://127.0.0.1:{port}"
    finally:
        proc.send_signal(signal.SIGINT)
        out, err = proc.communicate(timeout=30)
    assert proc.returncode == 0, err
    assert "stopped" in out and "Traceback" not in err


# -- MQTT --------------------------------------------------------------------------------------------------

@pytest.mark.slow
def test_mqtt_plant_publishes_parts_and_labels_to_a_real_broker() -> None:
    import paho.mqtt.client as mqtt

    from edgeloop.plant.embedded_broker import EmbeddedBroker
    from edgeloop.plant.mqtt_publisher import MqttPlant

    settings = PlantSettings(devices=2, rate=RATE, label_delay_s=DELAY_S, seed=7)
    broker = EmbeddedBroker(port=free_port())
    broker.start()
    received: list[tuple[float, str, dict[str, object]]] = []
    listener = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2)
    listener.on_message = lambda _c, _u, m: received.append((time.monotonic(), m.topic, json.loads(m.payload)))
    listener.connect(broker.host, broker.port)
    listener.subscribe("plant/press-01/#", qos=1)
    listener.loop_start()
    plant = MqttPlant(settings, broker.url)
    stop = threading.Event()
    try:
        plant.start()
        assert plant.connected.wait(10)
        time.sleep(0.3)  # the listener's subscription is in place
        worker = threading.Thread(target=plant.run, args=(PlantStream(settings), stop))
        worker.start()
        time.sleep(2.0)
        parts = [body for _, t, body in received if t == "plant/press-01/part"]
        if parts:  # a prediction for one part, as the runner publishes it
            listener.publish("plant/press-01/prediction", json.dumps({"key": parts[0]["part_id"], "label": 0}), qos=1)
        time.sleep(0.3)
        stop.set()
        worker.join(10)
    finally:
        plant.stop()
        listener.disconnect()
        listener.loop_stop()
        broker.stop()
    assert 0.7 * 2.0 * RATE <= len(parts) <= 1.3 * 2.0 * RATE + 2, len(parts)
    ids = [int(p["part_id"]) for p in parts]  # type: ignore[call-overload]
    assert ids == list(range(ids[0], ids[0] + len(ids)))
    for body in parts[:5]:
        values, _ = _truth(settings, 1, int(body["part_id"]))  # type: ignore[call-overload]
        assert [body[f] for f in FEATURES] == values
    made = {int(b["part_id"]): at for at, t, b in received if t == "plant/press-01/part"}  # type: ignore[call-overload]
    verdicts = [(at, b) for at, t, b in received if t == "plant/press-01/quality"]
    assert len(verdicts) >= 0.7 * (2.0 - DELAY_S) * RATE
    for at, body in verdicts:
        key = int(body["part_id"])  # type: ignore[call-overload]
        assert body["verdict"] == _truth(settings, 1, key)[1]
        if key in made:
            assert DELAY_S - 0.1 <= at - made[key] <= DELAY_S + 1.0
    stats = plant.scoreboard.stats()
    assert stats["scored"] == 1 and stats["correct"] == int(_truth(settings, 1, ids[0])[1] == 0)


@pytest.mark.slow
def test_mqtt_command_with_embedded_broker_runs_for_its_duration() -> None:
    port = free_port()
    done = _edgeloop("plant", "serve", "--mqtt", "--embedded-broker", "--port", str(port), "--rate", "10",
                     "--duration-s", "1.5", "--report-s", "0.5")
    assert done.returncode == 0, done.stderr
    assert f"mqtt://127.0.0.1:{port}" in done.stdout and "stopped" in done.stdout
    assert "Traceback" not in done.stderr and os.linesep in done.stdout
