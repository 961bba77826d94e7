"""Live inputs' core, without a broker: [inputs] settings, payload fields, the row assembler's triggers and
staleness, the label joiner, and LiveInputs routing messages to a real ONNX model and joining labels once.
Protocol clients are tested in test_edge_mqtt.py (a real amqtt broker)."""

from __future__ import annotations

import math
import subprocess
import sys
import textwrap
import threading
from pathlib import Path
from typing import Any

import pytest

from edge.config import ConfigError, load_config
from edge.inference import InputError, Predictor
from edge.inputs.assembler import RowAssembler, Skip
from edge.inputs.joiner import LabelJoiner
from edge.inputs.live import LiveInputs
from edge.inputs.payload import PayloadError, parse, pick
from edge.inputs.settings import InputsConfig, read_inputs
from edge.inputs.source import Backoff, Decision
from edge.metrics import Registry
from edgeloop.testkit.releases import make_manifest, tiny_onnx

BASE = {"protocol": "mqtt", "url": "mqtt://127.0.0.1:1883",
        "tags": [{"feature": "x0", "source": "m/x", "field": "x0"},
                 {"feature": "x1", "source": "m/x1", "stale_after_s": 1.0, "required": False}]}


def config(**changes: Any) -> InputsConfig:
    return read_inputs({**BASE, **changes}, "press-1")


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


# --- settings ---------------------------------------------------------------------------------------------

def test_settings_defaults_and_sources() -> None:
    c = config(key={"source": "m/part", "field": "id"},
               labels={"source": "q/verdict", "field": "verdict", "key_field": "id"},
               output={"topic": "m/prediction", "retain": True})
    assert (c.client_id, c.trigger, c.qos, c.tag_qos) == ("press-1", "complete", 1, 0)
    assert (c.host, c.port) == ("127.0.0.1", 1883)
    assert c.sources == ("m/x", "m/x1", "m/part", "q/verdict")
    assert c.tags[0].field == ("x0",) and c.stale_limit(c.tags[0]) == 10.0 and c.stale_limit(c.tags[1]) == 1.0
    assert c.output is not None and c.output.retain


@pytest.mark.parametrize(("changes", "message"), [
    ({"protocol": "modbus"}, "inputs.protocol: expected 'mqtt' or 'opcua', got 'modbus'"),
    ({"url": "opc.tcp://h:4840"}, "inputs.url: expected a mqtt URL such as mqtt://127.0.0.1:1883"),
    ({"url": "mqtt://user:secret@h:1883"}, "inputs.url: credentials in the URL are not supported"),
    ({"tags": []}, "inputs.tags: expected one or more [[inputs.tags]] tables"),
    ({"tags": [*BASE["tags"], {"feature": "x2", "source": 3}]}, "inputs.tags[2].source: expected a non-empty string"),
    ({"tags": [*BASE["tags"], {"feature": "x0", "source": "a"}]}, "inputs.tags[2].feature: 'x0' is mapped twice"),
    ({"tags": [{"feature": "x0", "source": "a", "colour": 1}]}, "inputs.tags[0].colour: unknown key"),
    ({"tags": [{"feature": "x0", "source": "a", "field": "a..b"}]}, "inputs.tags[0].field: expected a field path"),
    ({"trigger": "change"}, "inputs.trigger_tag: required with trigger = \"change\""),
    ({"trigger_tag": "x9"}, "inputs.trigger_tag: expected a tag's feature"),
    ({"qos": 3}, "inputs.qos: expected 0, 1 or 2, got 3"),
    ({"reconnect_min_s": 5, "reconnect_max_s": 1}, "inputs.reconnect_max_s: must be >= inputs.reconnect_min_s"),
    ({"output": {"topic": "a/#"}}, "inputs.output.topic: expected a topic without wildcards"),
    ({"labels": {"source": "q"}}, "inputs.labels.key_field: required with join = \"key\""),
    ({"labels": {"source": "q", "key_field": "id"}}, "inputs.labels.join: \"key\" needs [inputs.key]"),
    ({"colour": "red"}, "inputs.colour: unknown key"),
    ({"url": "mqtts://h:8883"}, "inputs.ca_file: required with an mqtts:// url"),
    ({"ca_file": "ca.pem"}, "inputs.ca_file: only with an mqtts:// url"),
    ({"url": "mqtts://h", "ca_file": "/nonexistent/ca.pem"}, "inputs.ca_file: cannot read /nonexistent/ca.pem"),
])
def test_bad_settings_name_the_key(changes: dict[str, Any], message: str) -> None:
    with pytest.raises(ValueError) as caught:
        config(**changes)
    assert str(caught.value).startswith(message), str(caught.value)
    assert "\n" not in str(caught.value)


def test_opcua_output_nodes_are_checked() -> None:
    opc = {**BASE, "protocol": "opcua", "url": "opc.tcp://127.0.0.1:4840",
           "tags": [{"feature": "x0", "source": "ns=2;s=P.x0"}, {"feature": "x1", "source": "i=2258"}]}
    c = read_inputs({**opc, "output": {"nodes": {"label": "ns=2;s=P.Label", "probability": "ns=2;s=P.P"}}}, "d")
    assert c.output is not None and dict(c.output.nodes) == {"label": "ns=2;s=P.Label", "probability": "ns=2;s=P.P"}
    with pytest.raises(ValueError, match=r"^inputs.output.nodes.colour: unknown decision field"):
        read_inputs({**opc, "output": {"nodes": {"colour": "ns=2;s=X"}}}, "d")
    # the subscription's settings are OPC UA keys, checked; MQTT refuses them
    c = read_inputs({**opc, "publishing_interval_ms": 50, "queue_size": 200}, "d")
    assert (c.publishing_interval_ms, c.queue_size) == (50.0, 200)
    assert (read_inputs(opc, "d").publishing_interval_ms, read_inputs(opc, "d").queue_size) == (10.0, 1000)
    with pytest.raises(ValueError, match=r"^inputs.queue_size: expected an integer >= 1"):
        read_inputs({**opc, "queue_size": 0}, "d")
    with pytest.raises(ValueError, match=r"^inputs.publishing_interval_ms: only with protocol = \"opcua\""):
        read_inputs({**BASE, "publishing_interval_ms": 50}, "d")
    # a node id typo is a config error naming the key, before any client is imported
    with pytest.raises(ValueError, match=r"^inputs.tags\[1\].source: expected an OPC UA node id"):
        read_inputs({**opc, "tags": [opc["tags"][0], {"feature": "x1", "source": "P.x1"}]}, "d")
    with pytest.raises(ValueError, match=r"^inputs.output.nodes.label: expected an OPC UA node id"):
        read_inputs({**opc, "output": {"nodes": {"label": "ns=two;s=P.Label"}}}, "d")
    with pytest.raises(ValueError, match=r"^inputs.labels.source: expected an OPC UA node id"):
        read_inputs({**opc, "key": {"source": "ns=2;s=P.part"},
                     "labels": {"source": "quality", "key_source": "ns=2;s=Q.part"}}, "d")


RUNNER_TOML = """
device_id = "press-1"
state_dir = "state"
[hub]
url = "http://127.0.0.1:9"
[releases]
trusted_root = "root.json"
"""


def test_runner_toml_inputs_section_and_one_line_errors(tmp_path: Path) -> None:
    good = RUNNER_TOML + textwrap.dedent("""
        [inputs]
        protocol = "mqtt"
        url = "mqtt://127.0.0.1:1883"
        password_file = "mqtt.pw"
        username = "press-1"
        [[inputs.tags]]
        feature = "x0"
        source = "m/x"
        """)
    (tmp_path / "mqtt.pw").write_text("pw\n")
    (tmp_path / "mqtt.pw").chmod(0o644)
    (tmp_path / "runner.toml").write_text(good)
    env = {"EDGE_RUNNER_TOKEN": "t"}
    with pytest.raises(ConfigError, match=r"^inputs.password_file: .*mqtt.pw is readable by others"):
        load_config(tmp_path / "runner.toml", env)
    (tmp_path / "mqtt.pw").chmod(0o600)
    loaded = load_config(tmp_path / "runner.toml", env)
    assert loaded.inputs is not None and loaded.inputs.password_file == tmp_path / "mqtt.pw"
    assert load_config(tmp_path / "runner.toml", {**env, "EDGE_RUNNER__INPUTS__QOS": "0"}).inputs.qos == 0  # type: ignore[union-attr]
    (tmp_path / "runner.toml").write_text(RUNNER_TOML)
    assert load_config(tmp_path / "runner.toml", env).inputs is None
    (tmp_path / "runner.toml").write_text(good.replace('source = "m/x"', 'source = "m/x"\nrequired = "yes"'))
    with pytest.raises(ConfigError, match=r"^inputs.tags\[0\].required: expected true or false, got 'yes'$"):
        load_config(tmp_path / "runner.toml", env)


def test_base_runner_imports_no_protocol_client_and_cli_errors_are_one_line(tmp_path: Path) -> None:
    """`import edge.runner` and building a runner, without [inputs] and with it (not started), import neither
    paho nor asyncua; starting one whose client is not installed says which extra to install; `edge-runner
    run` with a bad [inputs] prints one line naming the key, no traceback."""
    (tmp_path / "root.json").write_text("{}")
    plain = RUNNER_TOML + "[api]\nenabled = false\n"
    (tmp_path / "plain.toml").write_text(plain)
    (tmp_path / "live.toml").write_text(plain + "[inputs]\nprotocol = \"mqtt\"\nurl = \"mqtt://127.0.0.1:1\"\n"
                                        "[[inputs.tags]]\nfeature = \"x0\"\nsource = \"m/x\"\n")
    code = textwrap.dedent(f"""
        import sys
        from pathlib import Path
        import edge.cli
        from edge.config import load_config
        from edge.runner import Runner, RunnerError
        def clients():
            return sorted(m for m in sys.modules if m.split(".")[0] in ("paho", "asyncua"))
        for name in ("plain", "live"):
            runner = Runner(load_config(Path({str(tmp_path)!r}) / f"{{name}}.toml", {{"EDGE_RUNNER_TOKEN": "t"}}))
            print(name, runner.inputs is not None, clients())
            if name == "plain":
                runner.stop()
        sys.modules["paho"] = None  # as in a base install without the mqtt extra
        try:
            runner.start()
        except RunnerError as exc:
            print(exc)
        """)
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60, cwd=tmp_path)
    assert out.returncode == 0, out.stderr
    lines = out.stdout.strip().splitlines()
    assert lines[:2] == ["plain False []", "live True []"], out.stdout
    assert lines[2].startswith("inputs.protocol: 'mqtt' needs paho-mqtt") and 'pip install "edgeloop[mqtt]"' in lines[2]
    (tmp_path / "bad.toml").write_text(RUNNER_TOML + "[inputs]\nprotocol = \"mqtt\"\nurl = \"mqtt://h\"\ntags = 3\n")
    run = subprocess.run([str(Path(sys.executable).parent / "edge-runner"), "run", "-c", str(tmp_path / "bad.toml")],
                         capture_output=True, text=True, timeout=60, env={"EDGE_RUNNER_TOKEN": "t", "PATH": ""})
    assert run.returncode != 0
    assert "inputs.tags: expected one or more [[inputs.tags]] tables, got 3" in run.stderr
    assert "Traceback" not in run.stderr and len(run.stderr.strip().splitlines()) == 1, run.stderr


# --- payloads ---------------------------------------------------------------------------------------------

def test_payload_parse_and_pick() -> None:
    assert parse(b'{"a": {"b": [1, 2.5]}}') == {"a": {"b": [1, 2.5]}}
    assert parse(b"301.5") == 301.5 and parse("PASS ") == "PASS" and parse(7) == 7
    assert pick(parse(b'{"a": {"b": [1, 2.5]}}'), ("a", "b", "1")) == 2.5
    assert pick(3.0, ()) == 3.0
    for path, message in ((("a", "c"), "field 'a.c' is not in the payload"),
                          (("a", "b", "5"), "field 'a.b.5': no such index in a list of 2"),
                          (("a", "b", "0", "x"), "field 'a.b.0.x': the payload has no fields there (int)")):
        with pytest.raises(PayloadError, match=f"^{message.replace('(', '[(]').replace(')', '[)]')}$"):
            pick({"a": {"b": [1, 2.5]}}, path)
    with pytest.raises(PayloadError, match="not UTF-8"):
        parse(b"\xff\xfe")


# --- the assembler ----------------------------------------------------------------------------------------

def test_complete_trigger_waits_for_every_required_tag_newer_than_the_last_prediction() -> None:
    a = RowAssembler(config(key={"source": "m/part"}))
    assert not a.update("x0", 1.0, 100.0)
    assert not a.update("x1", 2.0, 100.0)  # not required: never needed for a complete row
    assert a.update("key", 7, 100.1)
    assert a.row(("x0", "x1"), 100.2) == ([1.0, 2.0], 7)
    a.predicted()
    assert not a.update("key", 8, 100.3)  # x0 is not newer than the last prediction yet
    assert a.update("x0", 3, 100.4)
    assert a.row(("x0", "x1", "unmapped"), 101.5)[0][:1] == [3.0]  # type: ignore[index]
    values = a.row(("x0", "x1", "unmapped"), 101.5)[0]  # type: ignore[index]
    assert math.isnan(values[1]) and math.isnan(values[2])  # x1 is 1.5 s old (limit 1 s); unmapped: NaN


def test_stale_or_missing_required_tags_skip_the_row() -> None:
    a = RowAssembler(config(stale_after_s=5.0, trigger="change", trigger_tag="x1"))
    assert a.row(("x0", "x1"), 0.0) == Skip("missing", "x0")
    a.update("x0", 1.0, 10.0)
    assert a.update("x1", 1.0, 10.0) and not a.update("x1", 1.0, 11.0) and a.update("x1", 2.0, 12.0)
    assert a.row(("x0", "x1"), 12.5) == ([1.0, 2.0], None)
    assert a.row(("x0", "x1"), 15.1) == Skip("stale", "x0")


# --- the joiner -------------------------------------------------------------------------------------------

def test_joiner_by_key_is_bounded_and_takes_once() -> None:
    j = LabelJoiner(capacity=3, window_s=0, by_key=True)
    for key in range(5):
        j.remember(key, 1000 + key, [float(key)], 0.0)
    assert j.evicted == 2 and len(j) == 3
    assert j.take(0) is None and j.take("3") == (1003, [3.0]) and j.take(3.0) is None
    j.remember(4.0, 2000, [9.0], 1.0)  # the same part predicted again: its newest prediction
    assert j.take("4") == (2000, [9.0])


def test_joiner_by_time_window() -> None:
    j = LabelJoiner(capacity=10, window_s=2.0, by_key=False)
    j.remember(None, 1, [], 10.0)
    j.remember(None, 2, [], 11.0)
    assert j.take_near(10.5) == (1, [])  # the newest made before the label
    assert j.take_near(10.6) is None  # 1 is labelled; 2 came after the label
    assert j.take_near(14.0) is None  # 2 is 3 s before: outside the window
    assert j.take_near(12.5) == (2, [])


def test_backoff_grows_with_jitter_and_resets() -> None:
    import random

    b = Backoff(0.1, 1.0, random.Random(1))
    waits = [b.next() for _ in range(8)]
    assert all(0.1 <= w <= 1.0 for w in waits) and max(waits[4:]) > 0.4
    b.reset()
    assert b.next() == 0.1


# --- LiveInputs with a real ONNX model --------------------------------------------------------------------

@pytest.fixture(scope="module")
def predictor() -> Predictor:
    model = tiny_onnx()
    return Predictor(make_manifest(model), model)


class Adapter:
    def __init__(self) -> None:
        self.written: list[Decision] = []
        self.up = True

    def run(self, stop: threading.Event) -> None:
        stop.wait()

    def write(self, decision: Decision) -> bool:
        if self.up:
            self.written.append(decision)
        return self.up


def live(predictor: Predictor, clock: Clock, fed: list[tuple[int, Any, list[object]]], **changes: Any
         ) -> tuple[LiveInputs, Adapter, Registry]:
    registry = Registry()

    def feedback(event_id: int, label: Any, row: list[object]) -> None:
        if label not in (0, 1):
            raise InputError(f"label: {label!r} is not one of the classes [0, 1]")
        fed.append((event_id, label, row))

    inputs = LiveInputs(config(**changes), predictor.predict, feedback, lambda: predictor.manifest, registry, clock)
    adapter = Adapter()
    inputs._adapter = adapter  # the adapter a protocol module would open
    inputs.connected()
    return inputs, adapter, registry


def test_live_rows_predict_write_back_and_labels_join_once(predictor: Predictor) -> None:
    clock, fed = Clock(), []
    inputs, adapter, registry = live(
        predictor, clock, fed, key={"source": "m/x", "field": "part"}, output={"topic": "m/out"},
        labels={"source": "q", "field": "verdict", "key_field": "part"})
    assert inputs.deliver("m/x1", b"0.5", clock.now)
    assert inputs.deliver("m/x", b'{"x0": 1.25, "part": "A1"}', clock.now)  # complete: x0 and the key
    [decision] = adapter.written
    expected = predictor.predict([1.25, 0.5])
    assert (decision.key, decision.label, decision.model_version) == ("A1", expected.label, predictor.version)
    assert decision.probabilities == {str(k): v for k, v in expected.probabilities.items()}
    assert decision.probability == expected.probabilities[expected.label]
    clock.now += 2.0  # x1 (limit 1 s, not required) is stale: NaN, which the model's schema allows
    assert inputs.deliver("m/x", b'{"x0": -2.0, "part": "A2"}', clock.now)
    assert len(adapter.written) == 2 and adapter.written[1].key == "A2"
    assert inputs.deliver("q", b'{"part": "A1", "verdict": 1}', clock.now)
    assert inputs.deliver("q", b'{"part": "A1", "verdict": 1}', clock.now)  # redelivered: not fed twice
    assert inputs.deliver("q", b'{"part": "ZZ", "verdict": 0}', clock.now)  # unknown part
    assert inputs.deliver("q", b'{"part": "A2", "verdict": "bad"}', clock.now)  # refused, kept for a retry
    assert inputs.deliver("q", b'{"part": "A2", "verdict": 0}', clock.now)
    assert [(e, label) for e, label, _ in fed] == [(decision.event_id, 1), (adapter.written[1].event_id, 0)]
    assert list(fed[0][2]) == [1.25, 0.5] and fed[1][2][0] == -2.0 and math.isnan(fed[1][2][1])  # type: ignore[arg-type]
    adapter.up = False
    inputs.disconnected("test")
    assert inputs.deliver("m/x", b'{"x0": 0.1, "part": "A3"}', clock.now)  # predicted, not written back
    assert inputs.deliver("m/x", b'{"x0": "hot", "part": "A4"}', clock.now)  # refused by the model's schema
    assert inputs.deliver("m/x", b'{"part": "A5"}', clock.now)  # x0 missing from the payload
    report = inputs.report()
    assert report["predictions"] == 3 and report["writes"] == {"written": 2, "dropped": 1}
    assert report["labels"] == {"joined": 2, "unmatched": 2, "refused": 1}
    assert report["skipped"] == {"refused": {"x0": 2}} and report["bad_values"] == {"x0": 1}  # A5: x0 is still "hot"
    assert report["connected"] is False and report["awaiting_label"] == 1
    text = registry.render()
    assert 'edgeloop_runner_inputs_labels_total{outcome="joined"} 2' in text
    assert 'edgeloop_runner_inputs_skipped_total{reason="refused",tag="x0"} 2' in text


def test_live_stale_required_tag_blocks_and_is_counted(predictor: Predictor) -> None:
    clock, fed = Clock(), []
    inputs, adapter, registry = live(predictor, clock, fed, trigger="change", trigger_tag="x1",
                                     tags=[{"feature": "x0", "source": "a", "stale_after_s": 0.5},
                                           {"feature": "x1", "source": "b"}], output={"topic": "out"})
    inputs.deliver("b", b"1.0", clock.now)
    assert inputs.report()["skipped"] == {"missing": {"x0": 1}}
    inputs.deliver("a", b"1.0", clock.now)
    clock.now += 1.0
    inputs.deliver("b", b"2.0", clock.now)
    assert adapter.written == [] and inputs.report()["skipped"]["stale"] == {"x0": 1}
    assert 'edgeloop_runner_inputs_skipped_total{reason="stale",tag="x0"} 1' in registry.render()
    inputs.deliver("a", b"1.0", clock.now)
    inputs.deliver("b", b"3.0", clock.now)
    assert len(adapter.written) == 1
    assert inputs.report()["awaiting_label"] == 0  # no [inputs.labels]: no prediction is kept for one


def test_live_period_trigger_and_window_join(predictor: Predictor) -> None:
    clock, fed = Clock(), []
    inputs, adapter, _ = live(predictor, clock, fed, trigger="period", output={"topic": "out"},
                              labels={"source": "q", "join": "window", "window_s": 1.0})
    inputs.deliver("m/x", b'{"x0": 0.3}', clock.now)
    assert adapter.written == []  # period: only the timer predicts
    inputs.predict_due()
    clock.now += 0.5
    inputs.deliver("q", b"1", clock.now)
    assert [(e, label) for e, label, _ in fed] == [(adapter.written[0].event_id, 1)]
    clock.now += 5
    inputs.predict_due()  # x0 is 5.5 s old (limit 10 s): still predicted
    clock.now += 5
    inputs.predict_due()  # now stale
    assert len(adapter.written) == 2 and inputs.report()["skipped"] == {"stale": {"x0": 1}}


def test_edge_runner_status_shows_the_inputs_block_in_one_line() -> None:
    from edge.status import format_status

    report = {"device_id": "press-1", "running": True, "channel": "stable", "current_version": "3",
              "previous_version": "2", "spool_backlog": 0, "spool_bytes": 0, "blocked": {},
              "inputs": {"url": "mqtt://127.0.0.1:1883", "connected": False, "predictions": 1200,
                         "skipped": {"stale": {"air_temp_k": 3}, "missing": {"torque_nm": 1}},
                         "labels": {"joined": 118, "unmatched": 2}, "reconnects": 4}}
    line = next(x for x in format_status(report).splitlines() if x.startswith("inputs"))
    assert "mqtt://127.0.0.1:1883 NOT connected" in line and "1200 predictions" in line
    assert "missing torque_nm 1, stale air_temp_k 3" in line and "joined 118, unmatched 2" in line
    assert "reconnects 4" in line
    assert not any(x.startswith("inputs") for x in format_status({**report, "inputs": None}).splitlines())
