"""The MQTT client of the runner's live inputs, on paho-mqtt 2 (``pip install "edgeloop[mqtt]"``).

``open_adapter(config, inbox)`` returns an ``MqttAdapter`` (the ``edge.inputs.source.Adapter`` protocol).
``run(stop)`` connects to ``inputs.url`` as ``inputs.client_id`` with MQTT 3.1.1, ``clean_session=False``
(a persistent session: the broker keeps the subscriptions and queues QoS 1 labels while the runner is away)
and ``manual_ack``; on every connection it subscribes the tag and key topics at ``tag_qos`` (0 by default:
no old tag values are replayed after an outage) and the label topics at ``qos``, and runs paho's network
loop in its own thread until the connection drops or ``stop`` is set; then it waits ``Backoff.next()`` and
connects again. Each connection is a fresh paho client, so a decision queued during an outage is never sent
after it. A message goes to ``inbox.deliver``; a QoS 1/2 message is acknowledged after ``deliver`` returned
True (a label is spooled by then), never before. ``write(decision)`` publishes the decision as JSON to
``[inputs.output] topic`` at ``qos`` (retained when ``retain``), only while connected.

TCP_NODELAY is set on the socket (paho leaves Nagle on: small messages would wait for an ACK).

With ``mqtts://`` the connection is TLS (1.2 or newer) with edge.contracts.tls's client context: the broker is
verified against ``inputs.ca_file`` and its host name checked; ``cert_file``/``key_file`` are presented when set.

Leaves out: MQTT 5; the rules of rows and labels (edge.inputs.live).
"""

from __future__ import annotations

import json
import logging
import socket
import threading
import time
from typing import Any

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion

from edge.contracts.tls import client_context
from edge.inputs.settings import InputsConfig
from edge.inputs.source import Backoff, Decision, Inbox

__all__ = ["MqttAdapter", "open_adapter"]

log = logging.getLogger("edge.inputs.mqtt")

KEEPALIVE_S = 15  # the broker drops us (and we it) after 1.5x this without traffic
HELD_S = 10.0  # a connection that lasted this long resets the backoff
LOOP_S = 0.25  # network loop select timeout: how soon ``stop`` is noticed


def open_adapter(config: InputsConfig, inbox: Inbox) -> MqttAdapter:
    return MqttAdapter(config, inbox)


class MqttAdapter:
    """See the module docstring."""

    def __init__(self, config: InputsConfig, inbox: Inbox) -> None:
        self.config, self.inbox = config, inbox
        labels = config.labels
        label_topics = set() if labels is None else {labels.source} | (
            set() if labels.key_source is None else {labels.key_source})
        self._subscriptions = [(topic, config.qos if topic in label_topics else config.tag_qos)
                               for topic in inbox.sources]
        self._topic = None if config.output is None else config.output.topic
        self._retain = config.output is not None and config.output.retain
        self._client: mqtt.Client | None = None  # while connected and subscribed
        self._lock = threading.Lock()

    # -- the connection --

    def run(self, stop: threading.Event) -> None:
        backoff = Backoff(self.config.reconnect_min_s, self.config.reconnect_max_s)
        while not stop.is_set():
            started = time.monotonic()
            held = self._session(stop)
            if stop.is_set():
                return
            if held and time.monotonic() - started >= HELD_S:
                backoff.reset()
            stop.wait(backoff.next())

    def _session(self, stop: threading.Event) -> bool:
        """One connection, until it drops or ``stop``; True when it was established."""
        client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=self.config.client_id,
                             clean_session=False, protocol=mqtt.MQTTv311, manual_ack=True)
        if self.config.ca_file is not None:  # mqtts://
            client.tls_set_context(client_context(self.config.ca_file, self.config.cert_file, self.config.key_file))
        if self.config.username is not None:
            password = None
            if self.config.password_file is not None:
                password = self.config.password_file.read_text(encoding="utf-8").strip()
            client.username_pw_set(self.config.username, password)
        state: dict[str, Any] = {"up": False, "reason": ""}
        client.on_connect = lambda c, _u, _f, rc, _p: self._on_connect(c, rc, state)
        client.on_subscribe = lambda c, _u, _m, codes, _p: self._on_subscribe(c, codes, state)
        client.on_message = self._on_message
        client.on_disconnect = lambda _c, _u, _f, rc, _p: state.update(reason=str(rc))
        try:
            client.connect(self.config.host, self.config.port, keepalive=KEEPALIVE_S)
            sock = client.socket()
            if isinstance(sock, socket.socket):
                sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        except (OSError, ValueError) as exc:  # ssl.SSLError is an OSError
            self.inbox.disconnected(f"{type(exc).__name__}: {exc}")
            return False
        try:
            while not stop.is_set():
                rc = client.loop(timeout=LOOP_S)
                if rc != mqtt.MQTT_ERR_SUCCESS:
                    state["reason"] = state["reason"] or mqtt.error_string(rc)
                    break
        finally:
            with self._lock:
                self._client = None
            if stop.is_set():
                client.disconnect()  # a clean DISCONNECT: the broker keeps the persistent session
            else:
                self.inbox.disconnected(state["reason"] or "connection lost")
            sock = client.socket()
            if sock is not None:
                sock.close()
        return bool(state["up"])

    def _on_connect(self, client: mqtt.Client, rc: Any, state: dict[str, Any]) -> None:
        if rc.is_failure:
            state["reason"] = f"broker refused the connection: {rc}"
            return
        client.subscribe(self._subscriptions)

    def _on_subscribe(self, client: mqtt.Client, codes: Any, state: dict[str, Any]) -> None:
        refused = [topic for (topic, _), code in zip(self._subscriptions, codes, strict=False) if code.is_failure]
        if refused:
            log.error("the broker refused the subscriptions to %s", refused)
        state["up"] = True
        with self._lock:
            self._client = client
        self.inbox.connected()

    def _on_message(self, client: mqtt.Client, _userdata: object, message: mqtt.MQTTMessage) -> None:
        at = time.monotonic()
        try:
            kept = self.inbox.deliver(message.topic, message.payload, at)
        except Exception:  # the core never raises for data; a bug must not stop the network loop
            log.exception("live inputs: message on %s not handled", message.topic)
            kept = False
        if kept and message.qos > 0:
            client.ack(message.mid, message.qos)

    # -- write-back --

    def write(self, decision: Decision) -> bool:
        client = self._client
        if client is None or self._topic is None:
            return False
        payload = json.dumps(decision.to_json_dict(), separators=(",", ":"), default=str)
        info = client.publish(self._topic, payload, qos=self.config.qos, retain=self._retain)
        return info.rc == mqtt.MQTT_ERR_SUCCESS
