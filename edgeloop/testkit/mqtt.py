"""Test kit: a real MQTT broker (amqtt, from pip) in a subprocess on 127.0.0.1, which tests can kill and restart.

``MqttBroker(folder)`` writes an amqtt config into ``folder`` and ``start()`` runs the broker as a child
process bound to 127.0.0.1 on a free port (kept across restarts, so clients reconnect to the same URL);
``tls=(cert_file, key_file)`` serves ``mqtts://`` with that certificate. ``kill()`` is ``SIGKILL``
(nothing flushed, as a crash), ``restart()`` starts it again, ``stop()`` ends it.
``running_broker(folder)`` is the context manager. The config is persistent-session friendly: anonymous
clients are refused (amqtt forgets an anonymous client's session on disconnect), so clients give a
username (any; no password is checked); amqtt's ``SessionDBPlugin`` keeps sessions and subscriptions in
SQLite across a kill, so QoS 1 messages published while a subscriber is away are queued for it again.
``connect_client(broker, client_id)`` returns a connected paho client (its loop running, the test
username), for tests and benchmarks that publish. ``inputs_toml(inputs)`` renders a runner's ``[inputs]``
section from a dict (``tags`` a list of tables, ``key``/``output``/``labels`` sub-tables).

Leaves out: client certificates, passwords and MQTT 5 (amqtt speaks 3.1.1); messages a killed broker had
queued in memory are lost with it (as with Mosquitto without ``persistence true``).
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

__all__ = ["USERNAME", "MqttBroker", "connect_client", "inputs_toml", "running_broker"]

USERNAME = "edgeloop-test"
_START = "from amqtt.scripts.broker_script import main; main()"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class MqttBroker:
    """See the module docstring."""

    def __init__(self, folder: Path, port: int | None = None, tls: tuple[Path, Path] | None = None) -> None:
        self.folder = folder
        folder.mkdir(parents=True, exist_ok=True)
        self.port = port or _free_port()
        self.config = folder / "amqtt.json"  # JSON is YAML: amqtt reads it as its YAML config
        config: dict[str, Any] = {
            "listeners": {"default": {"type": "tcp", "bind": f"127.0.0.1:{self.port}", "max_connections": 200}
                          | ({} if tls is None else {"ssl": True, "certfile": str(tls[0]), "keyfile": str(tls[1])})},
            "timeout_disconnect_delay": 0,
            "plugins": {
                "amqtt.plugins.authentication.AnonymousAuthPlugin": {"allow_anonymous": False},
                "amqtt.contrib.persistence.SessionDBPlugin": {
                    "connection": f"sqlite+aiosqlite:///{folder / 'sessions.db'}", "clear_on_shutdown": False},
            },
        }
        self.config.write_text(json.dumps(config, indent=2))
        self.tls = tls is not None
        self.log = folder / "broker.log"
        self._process: subprocess.Popen[bytes] | None = None
        self.starts = 0

    @property
    def url(self) -> str:
        return f"{'mqtts' if self.tls else 'mqtt'}://127.0.0.1:{self.port}"

    @property
    def pid(self) -> int | None:
        return None if self._process is None else self._process.pid

    def start(self, timeout: float = 30.0) -> None:
        if self._process is not None and self._process.poll() is None:
            raise RuntimeError("the broker is already running")
        with self.log.open("ab") as out:
            self._process = subprocess.Popen([sys.executable, "-c", _START, "-c", str(self.config)],
                                             stdout=out, stderr=subprocess.STDOUT, cwd=self.folder,
                                             env={**os.environ, "PYTHONUNBUFFERED": "1"})
        self.starts += 1
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self._process.poll() is not None:
                raise RuntimeError(f"amqtt exited with {self._process.returncode}: {self.log.read_text()[-2000:]}")
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=0.5):
                    return
            except OSError:
                time.sleep(0.05)
        self.stop()
        raise RuntimeError(f"amqtt did not listen on 127.0.0.1:{self.port} within {timeout:g} s")

    def kill(self) -> None:
        """SIGKILL: the broker dies as in a crash."""
        if self._process is not None and self._process.poll() is None:
            self._process.send_signal(signal.SIGKILL)
            self._process.wait(10)

    def restart(self) -> None:
        self.kill()
        self.start()

    def stop(self) -> None:
        process, self._process = self._process, None
        if process is None or process.poll() is not None:
            return
        process.terminate()
        try:
            process.wait(10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(10)


@contextmanager
def running_broker(folder: Path) -> Iterator[MqttBroker]:
    broker = MqttBroker(folder)
    broker.start()
    try:
        yield broker
    finally:
        broker.stop()


def connect_client(broker: MqttBroker, client_id: str, *, clean_session: bool = True, timeout: float = 10.0,
                   ca_file: Path | None = None) -> Any:
    """A paho client connected to ``broker`` (its network loop running in a thread, reconnecting by itself
    after a broker restart; over TLS verified against ``ca_file`` for a TLS broker); ``loop_stop()`` and
    ``disconnect()`` when done."""
    import paho.mqtt.client as mqtt
    from paho.mqtt.enums import CallbackAPIVersion

    client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=client_id, clean_session=clean_session,
                         protocol=mqtt.MQTTv311)
    client.username_pw_set(USERNAME)
    if ca_file is not None:
        import ssl

        client.tls_set_context(ssl.create_default_context(cafile=str(ca_file)))
    client.reconnect_delay_set(1, 1)
    client.max_inflight_messages_set(0)  # no cap: every queued QoS 1 message goes out at once after a reconnect
    client.connect("127.0.0.1", broker.port, keepalive=15)
    client.loop_start()
    deadline = time.monotonic() + timeout
    while not client.is_connected():
        if time.monotonic() > deadline:
            client.loop_stop()
            raise RuntimeError(f"{client_id}: not connected to {broker.url} within {timeout:g} s")
        time.sleep(0.01)
    sock = client.socket()
    if isinstance(sock, socket.socket):
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    return client


def _toml(value: Any) -> str:
    return str(value).lower() if isinstance(value, bool) else json.dumps(value)


def inputs_toml(inputs: dict[str, Any]) -> str:
    """``[inputs]`` as TOML: plain keys, ``[[inputs.tags]]`` and one level of sub-tables."""
    lines = ["[inputs]"] + [f"{k} = {_toml(v)}" for k, v in inputs.items() if not isinstance(v, dict | list)]
    for tag in inputs.get("tags", []):
        lines += ["[[inputs.tags]]"] + [f"{k} = {_toml(v)}" for k, v in tag.items()]
    for name, table in inputs.items():
        if isinstance(table, dict):
            lines += [f"[inputs.{name}]"] + [f"{k} = {_toml(v)}" for k, v in table.items()]
    return "\n".join(lines) + "\n"
