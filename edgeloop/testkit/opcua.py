"""A live plant's OPC UA server for tests and benchmarks: in a background thread, on an ephemeral port, restartable.

``PlantServer(settings)`` runs ``edgeloop.plant.opcua_server.OpcUaPlant`` on its own asyncio loop in a daemon
thread on 127.0.0.1. ``start()`` listens (and, with ``drive=True``, publishes the plant's stream as it falls due);
``stop_server()`` closes the server (clients see the connection drop) and ``restart()`` serves again on the same
port with the same stream and scoreboard, so parts resume and verdicts still due are reported (a new address
space: values and history start again). ``drop_connections()``/``listen_again()`` cut and restore the endpoint
while the server lives on. ``call(coro_fn)``
runs a coroutine on the server's loop (``write_tag``, ``publish``) for tests that drive tags by hand; ``close()``
ends everything. ``making=False`` starts with the line paused (``stream.making = True`` starts it).
Leaves out clients and runners.
"""

from __future__ import annotations

import asyncio
import socket
import threading
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

from edgeloop.plant.opcua_server import OpcUaPlant
from edgeloop.plant.scoreboard import Scoreboard
from edgeloop.plant.source import PlantSettings, PlantStream

__all__ = ["PlantServer", "free_port"]

T = TypeVar("T")


def free_port(host: str = "127.0.0.1") -> int:
    with socket.socket() as sock:
        sock.bind((host, 0))
        return int(sock.getsockname()[1])


class PlantServer:
    """See the module docstring. A context manager (``close`` on exit)."""

    def __init__(self, settings: PlantSettings, *, drive: bool = True, port: int | None = None,
                 stream_start: float | None = None, making: bool = True) -> None:
        self.settings = settings
        self.drive = drive
        self.port = port or free_port()
        self.scoreboard = Scoreboard()
        self._stream_start = stream_start
        self._started = False
        self._making = making
        self.stream = PlantStream(settings, stream_start)
        self.plant: OpcUaPlant | None = None
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, name="opcua-plant", daemon=True)
        self._thread.start()
        self._stop: asyncio.Event | None = None
        self._driver: asyncio.Future[None] | None = None
        self._before = (0, 0)  # parts and verdicts published by servers stopped since

    @property
    def url(self) -> str:
        return f"opc.tcp://127.0.0.1:{self.port}"

    def __enter__(self) -> PlantServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.close()

    def call(self, fn: Callable[[OpcUaPlant], Awaitable[T]], timeout: float = 30) -> T:
        """Run ``fn(plant)`` on the server's loop; its result."""
        async def run() -> T:
            assert self.plant is not None, "the server is not running"
            return await fn(self.plant)
        return asyncio.run_coroutine_threadsafe(run(), self._loop).result(timeout)

    def start(self) -> PlantServer:
        async def start() -> None:
            plant = OpcUaPlant(self.settings, "127.0.0.1", self.port, self.scoreboard)
            await plant.start()
            if not self._started:  # the line starts now, not when the server began its 1-2 s set-up
                self._started = True
                self.stream = PlantStream(self.settings, self._stream_start)
                self.stream.making = self._making
            self.plant = plant
            self._stop = asyncio.Event()
            if self.drive:
                self._driver = asyncio.ensure_future(plant.run(self.stream, self._stop))
        asyncio.run_coroutine_threadsafe(start(), self._loop).result(60)
        return self

    def stop_server(self) -> None:
        async def stop() -> None:
            if self._stop is not None:
                self._stop.set()
            if self._driver is not None:
                await self._driver
                self._driver = None
            if self.plant is not None:
                await self.plant.stop()
                self._before = (self._before[0] + self.plant.published, self._before[1] + self.plant.verdicts)
                self.plant = None
        asyncio.run_coroutine_threadsafe(stop(), self._loop).result(60)

    def drop_connections(self) -> None:
        """The server's endpoint goes away: it stops listening and every connection is closed, while its
        address space and history live on and the line keeps writing (as a server behind a network cut, or
        one restarted with a persistent history). ``listen_again()`` brings the endpoint back."""
        self.call(lambda plant: plant.drop_connections())

    def listen_again(self) -> None:
        self.call(lambda plant: plant.listen_again())

    def restart(self) -> None:
        self.stop_server()
        self.start()

    def stats(self) -> dict[str, Any]:
        plant = self.plant
        published, verdicts = self._before
        if plant is not None:
            published, verdicts = published + plant.published, verdicts + plant.verdicts
        return {"published": published, "verdicts": verdicts, **self.scoreboard.stats()}

    def close(self) -> None:
        if self._thread.is_alive():
            try:
                self.stop_server()
            finally:
                asyncio.run_coroutine_threadsafe(_cancel_others(), self._loop).result(10)
                self._loop.call_soon_threadsafe(self._loop.stop)
                self._thread.join(timeout=10)


async def _cancel_others() -> None:
    """Cancel the server's leftover tasks (sessions, subscriptions) so the loop stops clean."""
    current = asyncio.current_task()
    others = [task for task in asyncio.all_tasks() if task is not current]
    for task in others:
        task.cancel()
    await asyncio.gather(*others, return_exceptions=True)
