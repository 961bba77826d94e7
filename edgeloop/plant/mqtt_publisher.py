"""The live plant on an MQTT broker (paho-mqtt): one JSON message per part, verdicts later, predictions scored.

``MqttPlant(settings, broker_url)`` connects to the broker (``mqtt://host:port``; it waits for the broker and
reconnects on its own, paho's loop thread) and, in ``run(stream, stop)``, publishes each part when it is due on
``plant/<device>/part`` as ``{"part_id": n, "at": t, "air_temp_k": x, ...}`` (null for a lost reading; ``at``:
Unix seconds) and each verdict on ``plant/<device>/quality`` as ``{"part_id": n, "verdict": 0, "at": t}``, QoS 1.
It subscribes to ``plant/+/prediction`` (the runner's decisions, ``{"key": n, "label": ..., ...}``) and scores
them on its ``Scoreboard``. Messages published while the broker is away are queued by paho and sent on
reconnect. Leaves out the broker itself (``embedded_broker``; Mosquitto in production) and the command line.
"""

from __future__ import annotations

import json
import logging
import threading
import time
from typing import Any
from urllib.parse import urlsplit

import paho.mqtt.client as mqtt

from edge.contracts.errors import UserError
from edgeloop.plant.layout import TOPIC_ROOT, topic
from edgeloop.plant.scoreboard import Scoreboard
from edgeloop.plant.source import FEATURES, Part, PlantSettings, PlantStream, Verdict

__all__ = ["MqttPlant", "broker_address"]

log = logging.getLogger("edgeloop.plant.mqtt")
QOS = 1


def broker_address(url: str) -> tuple[str, int]:
    """(host, port) of ``mqtt://host[:port]``; a ``UserError`` naming the flag otherwise."""
    try:
        parts = urlsplit(url)
        port = parts.port or 1883
    except ValueError:
        raise UserError(f"--broker: expected a URL such as mqtt://127.0.0.1:1883, got {url!r}") from None
    if parts.scheme != "mqtt" or not parts.hostname:
        raise UserError(f"--broker: expected a URL such as mqtt://127.0.0.1:1883, got {url!r}")
    return parts.hostname, port


class MqttPlant:
    """See the module docstring. ``start()`` connects (in the background), ``stop()`` disconnects."""

    def __init__(self, settings: PlantSettings, broker_url: str, scoreboard: Scoreboard | None = None,
                 client_id: str = "edgeloop-plant") -> None:
        self.settings = settings
        self.host, self.port = broker_address(broker_url)
        self.scoreboard = scoreboard or Scoreboard()
        self.published = 0
        self.verdicts = 0
        self.connected = threading.Event()
        self.client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=client_id)
        self.client.max_queued_messages_set(100_000)
        self.client.reconnect_delay_set(min_delay=1, max_delay=5)
        self.client.on_connect = self._on_connect
        self.client.on_disconnect = self._on_disconnect
        self.client.on_message = self._on_message

    def start(self) -> None:
        self.client.connect_async(self.host, self.port, keepalive=15)
        self.client.loop_start()

    def stop(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()

    def _on_connect(self, client: mqtt.Client, _userdata: Any, _flags: Any, reason: Any, _props: Any) -> None:
        if getattr(reason, "is_failure", False):
            log.warning("broker refused the connection: %s", reason)
            return
        client.subscribe(f"{TOPIC_ROOT}/+/prediction", qos=QOS)
        self.connected.set()

    def _on_disconnect(self, _client: mqtt.Client, _userdata: Any, _flags: Any, reason: Any, _props: Any) -> None:
        self.connected.clear()
        log.warning("broker connection lost (%s); reconnecting", reason)

    def _on_message(self, _client: mqtt.Client, _userdata: Any, message: mqtt.MQTTMessage) -> None:
        at = time.perf_counter()
        device = message.topic.split("/")[1]
        try:
            body = json.loads(message.payload)
            self.scoreboard.predicted(device, int(body["key"]), body.get("label"), at)
        except (ValueError, TypeError, KeyError):
            log.warning("a prediction on %s is not the runner's JSON decision", message.topic)

    def publish(self, parts: list[Part], verdicts: list[Verdict]) -> None:
        for part in parts:
            body: dict[str, Any] = {"part_id": part.part_id, "at": round(time.time(), 6)}
            body.update(zip(FEATURES, part.values, strict=True))
            self.scoreboard.made(part, time.perf_counter())
            self.client.publish(topic(part.device, "part"), json.dumps(body), qos=QOS)
            self.published += 1
        for verdict in verdicts:
            body = {"part_id": verdict.part_id, "verdict": verdict.label, "at": round(time.time(), 6)}
            self.client.publish(topic(verdict.device, "quality"), json.dumps(body), qos=QOS)
            self.verdicts += 1

    def run(self, stream: PlantStream, stop: threading.Event) -> None:
        """Publish ``stream`` as it falls due until ``stop`` is set."""
        while not stop.is_set():
            parts, verdicts = stream.due()
            self.publish(parts, verdicts)
            stop.wait(min(0.5, max(0.0, stream.next_wake() - time.time())))
