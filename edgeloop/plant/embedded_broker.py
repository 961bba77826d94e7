"""An MQTT broker inside the plant process (amqtt), for trying the plant and the runner on one machine.

``EmbeddedBroker(host, port)`` runs an amqtt broker (MQTT 3.1.1, anonymous, no TLS) on its own asyncio loop in a
daemon thread; ``start()`` returns once it listens, ``stop()`` shuts it down. For a real plant use Mosquitto
(docs/plant-integration.md). Leaves out persistence, authentication and TLS.
"""

from __future__ import annotations

import asyncio
import logging
import threading
from typing import Any

__all__ = ["EmbeddedBroker"]

log = logging.getLogger("edgeloop.plant.broker")


class EmbeddedBroker:
    """See the module docstring."""

    def __init__(self, host: str = "127.0.0.1", port: int = 1883) -> None:
        self.host, self.port = host, port
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, name="plant-broker", daemon=True)
        self._broker: Any = None

    @property
    def url(self) -> str:
        return f"mqtt://{self.host}:{self.port}"

    def start(self) -> None:
        """Listen (OSError when the port is taken)."""
        for name in ("amqtt", "transitions"):
            logging.getLogger(name).setLevel(logging.ERROR)
        self._thread.start()
        asyncio.run_coroutine_threadsafe(self._start(), self._loop).result(timeout=30)

    async def _start(self) -> None:
        from amqtt.broker import Broker

        config = {"listeners": {"default": {"type": "tcp", "bind": f"{self.host}:{self.port}"}},
                  "plugins": {"amqtt.plugins.authentication.AnonymousAuthPlugin": {"allow_anonymous": True}}}
        broker = Broker(config)
        await broker.start()
        self._broker = broker

    def stop(self, timeout: float = 10.0) -> None:
        """Shut the broker down; after ``timeout`` seconds it is abandoned with a warning (amqtt's shutdown was
        seen waiting 30 s and more on a client that never said goodbye) and its loop stopped anyway."""
        if self._broker is not None:
            shutdown = asyncio.run_coroutine_threadsafe(self._broker.shutdown(), self._loop)
            try:
                shutdown.result(timeout=timeout)
            except TimeoutError:
                shutdown.cancel()
                log.warning("the embedded MQTT broker did not shut down within %.0f s; stopping its loop", timeout)
            self._broker = None
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(timeout=10)
