"""The live plant as an OPC UA server (asyncua): one object per machine, its sensors as variables.

``OpcUaPlant(settings, host, port)`` builds the address space of ``edgeloop.plant.layout`` (namespace
``urn:edgeloop:plant``): per machine a ``Double`` variable per feature, ``Int64`` ``part_id``, the quality
station's ``Int64`` ``quality.part_id`` and ``Int32`` ``quality.verdict``, and writable prediction variables
(``Int64`` ``prediction.part_id``, ``Int32`` ``prediction.label``, ``Double`` ``prediction.probability``,
``String`` ``prediction.model_version``). ``run(stream, stop)`` publishes each part when it is due: the
features first (a lost reading is written with status ``BadSensorFailure``), then ``part_id``; each with a
fresh source timestamp, so a client subscribing with the ``StatusValueTimestamp`` trigger sees a repeated
value too. A verdict writes ``quality.part_id`` then ``quality.verdict`` (a reader takes the verdict's
part id from the latest ``quality.part_id``). Source timestamps strictly increase in write order (a part's
features share one, its ``part_id`` is 1 µs later), so a client can restore the order of a publish (OPC UA
groups a publish's changes by node). Predictions written back are scored on the plant's ``Scoreboard`` (the
runner writes ``prediction.part_id`` last, in the same call).

The quality nodes are historized (the last ``HISTORY_VALUES`` writes, repeats included, in memory), so a
client that was disconnected reads the verdicts it missed with HistoryRead.

Security: no encryption or user authentication (``NoSecurity``, anonymous), for a loopback or an isolated
plant network; binds 127.0.0.1 unless told otherwise. Leaves out the stream (``source``) and the command line.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

from asyncua import Server, ua

from edgeloop.plant.layout import KEY, NAMESPACE, NAMESPACE_INDEX, QUALITY_KEY, QUALITY_VERDICT, signal
from edgeloop.plant.scoreboard import Scoreboard
from edgeloop.plant.source import FEATURES, Part, PlantSettings, PlantStream, Verdict

__all__ = ["OpcUaPlant"]

log = logging.getLogger("edgeloop.plant.opcua")
_TYPES: dict[str, tuple[ua.VariantType, Any]] = {
    KEY: (ua.VariantType.Int64, 0),
    QUALITY_KEY: (ua.VariantType.Int64, 0),
    QUALITY_VERDICT: (ua.VariantType.Int32, 0),
    "prediction.part_id": (ua.VariantType.Int64, 0),
    "prediction.label": (ua.VariantType.Int32, 0),
    "prediction.probability": (ua.VariantType.Double, 0.0),
    "prediction.model_version": (ua.VariantType.String, ""),
}
_BAD = ua.StatusCode(ua.StatusCodes.BadSensorFailure)
_HISTORIZED = (QUALITY_KEY, QUALITY_VERDICT)
HISTORY_VALUES = 100_000  # verdicts kept per machine for HistoryRead
_TICK = timedelta(microseconds=1)
_WAITING = ua.StatusCode(ua.StatusCodes.BadWaitingForInitialData)


class OpcUaPlant:
    """See the module docstring. Lives on one asyncio loop: ``start``, ``run``/``publish``, ``stop``."""

    def __init__(self, settings: PlantSettings, host: str = "127.0.0.1", port: int = 4840,
                 scoreboard: Scoreboard | None = None) -> None:
        self.settings = settings
        self.host = host
        self.port = port
        self.scoreboard = scoreboard or Scoreboard()
        self.server: Server | None = None
        self.nodes: dict[str, ua.NodeId] = {}  # signal id (press-07.air_temp_k) -> node id
        self.published = 0
        self.verdicts = 0
        self._last_stamp = datetime.now(UTC)
        self._history: set[ua.NodeId] = set()
        self.on_prediction: Callable[[str, int, float], None] | None = None  # (device, part id, perf_counter)

    @property
    def url(self) -> str:
        return f"opc.tcp://{self.host}:{self.port}"

    async def start(self) -> None:
        """Build the address space and listen (OSError when the port is taken)."""
        server = Server()
        await server.init()
        server.set_endpoint(f"opc.tcp://{self.host}:{self.port}/")
        server.set_server_name("edgeloop plant")
        server.set_security_policy([ua.SecurityPolicyType.NoSecurity])
        index = await server.register_namespace(NAMESPACE)
        if index != NAMESPACE_INDEX:  # the layout's printed node ids rely on it
            raise RuntimeError(f"namespace {NAMESPACE} got index {index}, expected {NAMESPACE_INDEX}")
        objects = server.nodes.objects
        for device in self.settings.names:
            machine = await objects.add_object(ua.NodeId(device, index), device)
            for name in (*FEATURES, *_TYPES):
                variant, initial = _TYPES.get(name, (ua.VariantType.Double, 0.0))
                node = await machine.add_variable(ua.NodeId(signal(device, name), index), name,
                                                  ua.Variant(initial, variant), varianttype=variant)
                if name in _HISTORIZED:
                    await self._historize(server, node)
                if name.startswith("prediction."):
                    await node.set_writable()
                else:  # no reading yet: a client sees a bad status, not a made-up zero
                    await server.write_attribute_value(node.nodeid, ua.DataValue(StatusCode=_WAITING))
                self.nodes[signal(device, name)] = node.nodeid
            server.iserver.aspace.add_datachange_callback(
                self.nodes[signal(device, "prediction.part_id")], ua.AttributeIds.Value, self._on_prediction(device))
        await server.start()
        self.server = server

    async def _historize(self, server: Server, node: Any) -> None:
        """Keep every write of ``node`` (the last ``HISTORY_VALUES``) for HistoryRead, repeats included."""
        await server.iserver.history_manager.storage.new_historized_node(node.nodeid, None, HISTORY_VALUES)
        await node.write_attribute(ua.AttributeIds.Historizing, ua.DataValue(ua.Variant(True, ua.VariantType.Boolean)))
        access = ua.AccessLevel.CurrentRead.mask | ua.AccessLevel.HistoryRead.mask
        for attribute in (ua.AttributeIds.AccessLevel, ua.AttributeIds.UserAccessLevel):
            await node.write_attribute(attribute, ua.DataValue(ua.Variant(access, ua.VariantType.Byte)))
        self._history.add(node.nodeid)

    async def stop(self) -> None:
        if self.server is not None:
            await self._drain(self.server)
            server, self.server = self.server, None
            await server.stop()

    @staticmethod
    async def _drain(server: Server, timeout_s: float = 2.0) -> None:
        """Wait (up to ``timeout_s``) until every subscription has published its queued changes, so a clean stop
        loses no verdict a connected client has not received yet."""
        deadline = time.monotonic() + timeout_s
        subscriptions = getattr(server.iserver.subscription_service, "subscriptions", {})
        while time.monotonic() < deadline and any(getattr(sub, "_triggered_datachanges", None)
                                                   for sub in list(subscriptions.values())):
            await asyncio.sleep(0.01)
        await asyncio.sleep(0.02)  # the last publish response on its way out

    async def drop_connections(self) -> None:
        """Stop listening and close every client connection; the address space, history and writes go on."""
        assert self.server is not None and self.server.bserver is not None
        await self.server.bserver.stop()

    async def listen_again(self) -> None:
        """Listen again on the same address after ``drop_connections``."""
        assert self.server is not None and self.server.bserver is not None
        await self.server.bserver.start()

    def _on_prediction(self, device: str) -> Any:
        async def changed(_handle: int, value: ua.DataValue) -> None:
            at = time.perf_counter()
            if self.server is None or value.Value is None or value.Value.Value is None:
                return
            label = self.server.iserver.read_attribute_value(self.nodes[signal(device, "prediction.label")])
            part_id = int(value.Value.Value)
            self.scoreboard.predicted(device, part_id, None if label.Value is None else label.Value.Value, at)
            if self.on_prediction is not None:
                self.on_prediction(device, part_id, at)
        return changed

    async def _write(self, device: str, name: str, value: Any, variant: ua.VariantType, stamp: datetime) -> None:
        assert self.server is not None
        if value is None:
            data = ua.DataValue(ua.Variant(None, ua.VariantType.Null), StatusCode=_BAD, SourceTimestamp=stamp,
                                ServerTimestamp=stamp)
        else:
            data = ua.DataValue(ua.Variant(value, variant), SourceTimestamp=stamp, ServerTimestamp=stamp)
        node = self.nodes[signal(device, name)]
        await self.server.iserver.write_attribute_value(node, data)
        if node in self._history:
            await self.server.iserver.history_manager.storage.save_node_value(node, data)

    async def write_tag(self, device: str, name: str, value: Any) -> None:
        """Write one signal now (None: a lost reading), with the next source timestamp."""
        variant = _TYPES.get(name, (ua.VariantType.Double, 0.0))[0]
        await self._write(device, name, value, variant, self._stamp())

    def _stamp(self) -> datetime:
        """A source timestamp later than the previous one (a client orders a batch of changes by it)."""
        stamp = max(datetime.now(UTC), self._last_stamp + 2 * _TICK)
        self._last_stamp = stamp
        return stamp

    async def publish(self, parts: list[Part], verdicts: list[Verdict]) -> None:
        """Write these parts (features, then the part id) and verdicts (verdict, then the part id)."""
        for part in parts:
            stamp = self._stamp()
            for name, value in zip(FEATURES, part.values, strict=True):
                await self._write(part.device, name, value, ua.VariantType.Double, stamp)
            self.scoreboard.made(part, time.perf_counter())
            await self._write(part.device, KEY, part.part_id, ua.VariantType.Int64, stamp + _TICK)
            self.published += 1
        for verdict in verdicts:
            stamp = self._stamp()
            await self._write(verdict.device, QUALITY_KEY, verdict.part_id, ua.VariantType.Int64, stamp)
            await self._write(verdict.device, QUALITY_VERDICT, verdict.label, ua.VariantType.Int32, stamp + _TICK)
            self.verdicts += 1

    async def run(self, stream: PlantStream, stop: asyncio.Event) -> None:
        """Publish ``stream`` as it falls due until ``stop`` is set."""
        while not stop.is_set():
            parts, verdicts = stream.due()
            await self.publish(parts, verdicts)
            wait = max(0.0, stream.next_wake() - time.time())
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), timeout=min(wait, 0.5))
