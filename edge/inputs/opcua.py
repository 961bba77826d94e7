"""The OPC UA client of the runner's live inputs, on asyncua (``pip install "edgeloop[opcua]"``).

``open_adapter(config, inbox)`` returns an ``OpcUaAdapter`` (the ``edge.inputs.source.Adapter`` protocol).
``run(stop)`` runs its own asyncio loop in the calling thread (the runner gives it a daemon thread): connect to
``inputs.url`` (anonymous, security mode None), create one subscription (publishing interval
``inputs.publishing_interval_ms``) with a monitored item per source (sampling interval ``SAMPLING_MS``, a queue
of ``inputs.queue_size`` so no change
within a publishing interval is lost, trigger ``StatusValueTimestamp`` so a repeated value, such as the same
verdict twice, is still a change), read the data types of the ``[inputs.output] nodes``, tell the inbox it is
connected, then probe the server every ``WATCHDOG_S`` (a read of ServerStatus.State within ``TIMEOUT_S``).
After a reconnect it reads the label sources' values written while it was away from the server's history
(HistoryRead, from the last one it delivered) and delivers them first, in time order, holding the live changes
until then. On any failure it tells ``inbox.disconnected``, waits ``Backoff.next()`` (exponential, full
jitter; reset after a connection that held ``HELD_S``) and connects again with a new session: asyncua's own
reconnect differs between versions, so the adapter does its own. ``stop`` is noticed within ``STOP_POLL_S``.

Delivery order: OPC UA groups a publish's changes by monitored item, not by time, so the adapter collects the
changes of one publish and delivers them ordered by source timestamp (server timestamp when there is none),
each to ``inbox.deliver(node id, value, at)``. A value with a bad status is delivered as None (a lost reading)
for a feature, and not at all for the key or a label source (there is nothing to join). A change older than
the last one delivered for that node, or with the same source timestamp and value (a subscription's first
values after a reconnect, already seen), is skipped, so nothing is predicted or labelled twice.

``write(decision)`` queues the decision's fields for the configured output nodes (converted to each node's data
type; ``probabilities`` as JSON text; ``key`` written last, so a reader of the key finds the rest in place);
the decisions queued during one turn of the loop go out in one Write call. Returns False while disconnected.

Leaves out: encryption, signing and user authentication (SecurityPolicy None, anonymous), browsing, events,
methods, and the rules of rows and labels (edge.inputs.live).
"""

from __future__ import annotations

import asyncio
import json
import logging
import threading
import time
from datetime import UTC, datetime
from typing import Any

from asyncua import ua
from asyncua.client.client import Client
from asyncua.ua.attribute_ids import AttributeIds
from asyncua.ua.uaerrors import UaError

from edge.inputs.settings import InputsConfig
from edge.inputs.source import Backoff, Decision, Inbox

__all__ = ["OpcUaAdapter", "open_adapter"]

log = logging.getLogger("edge.inputs.opcua")

SAMPLING_MS = 0.0  # the server samples on every write
WATCHDOG_S = 1.0  # probe the server this often
TIMEOUT_S = 4.0  # a request (and the probe) must answer within this
HELD_S = 10.0  # a connection that lasted this long resets the backoff
STOP_POLL_S = 0.1


def open_adapter(config: InputsConfig, inbox: Inbox) -> OpcUaAdapter:
    return OpcUaAdapter(config, inbox)


def _node_id(text: str, where: str) -> Any:
    try:
        return ua.NodeId.from_string(text)
    except (ValueError, UaError) as exc:
        raise ValueError(f"{where}: {text!r} is not an OPC UA node id (e.g. ns=2;s=press-07.air_temp_k): "
                         f"{exc}") from None


def _convert(value: object, variant: Any) -> Any:
    """``value`` as a Variant of the node's type (a ``ValueError``/``TypeError`` when it does not fit)."""
    vt = ua.VariantType
    if isinstance(value, dict):
        value = json.dumps(value, separators=(",", ":"))
    if variant in (vt.SByte, vt.Byte, vt.Int16, vt.UInt16, vt.Int32, vt.UInt32, vt.Int64, vt.UInt64):
        if isinstance(value, float) and not value.is_integer():
            raise ValueError(f"{value!r} is not a whole number")
        return ua.Variant(int(value), variant)  # type: ignore[call-overload]
    if variant in (vt.Double, vt.Float):
        return ua.Variant(float(value), variant)  # type: ignore[arg-type]
    if variant == vt.Boolean:
        return ua.Variant(bool(value), variant)
    if variant in (vt.String, vt.LocalizedText, vt.Null):
        return ua.Variant(str(value), vt.String)
    raise TypeError(f"cannot write to a node of type {variant.name}")


class _Handler:
    """asyncua subscription handler: collects one publish's changes and delivers them in time order."""

    def __init__(self, adapter: OpcUaAdapter, loop: asyncio.AbstractEventLoop) -> None:
        self.adapter = adapter
        self.loop = loop
        self.batch: list[tuple[datetime | None, int, Any, Any, float]] = []
        self.seq = 0
        self.lost: str | None = None  # the server said the subscription ended
        self.holding = True  # changes wait while the missed labels are read from the server's history

    def release(self) -> None:
        self.holding = False
        self.flush()

    def datachange_notification(self, node: Any, val: Any, data: Any) -> None:
        value = data.monitored_item.Value
        stamp = value.SourceTimestamp or value.ServerTimestamp
        good = value.StatusCode is None or value.StatusCode.is_good()
        if not self.batch and not self.holding:
            self.loop.call_soon(self.flush)  # after every change of this publish has been handed over
        self.seq += 1
        self.batch.append((stamp, self.seq, node.nodeid, val if good else None, time.monotonic()))

    def status_change_notification(self, status: Any) -> None:
        code = getattr(status, "Status", status)
        if code is not None and hasattr(code, "is_good") and not code.is_good():
            self.lost = f"subscription status {code.name}"

    def flush(self) -> None:
        batch, self.batch = self.batch, []
        batch.sort(key=lambda item: (item[0] is None, item[0] or datetime.min, item[1]))
        for stamp, _, source, value, at in batch:
            self.adapter.deliver(source, stamp, value, at)


class OpcUaAdapter:
    """See the module docstring."""

    def __init__(self, config: InputsConfig, inbox: Inbox) -> None:
        self.config, self.inbox = config, inbox
        self._sources = {source: _node_id(source, "inputs source") for source in inbox.sources}
        self._ids = {ua_id: source for source, ua_id in self._sources.items()}
        labels = config.labels
        self._needs_good = {s for s in ((config.key.source if config.key else None),
                                        (labels.source if labels else None), (labels.key_source if labels else None))
                            if s is not None}
        nodes = {} if config.output is None else dict(config.output.nodes)
        if "key" in nodes:  # written last: the key says the rest of the decision is in place
            nodes["key"] = nodes.pop("key")
        self._outputs = [(name, _node_id(node, f"inputs.output.nodes.{name}")) for name, node in nodes.items()]
        self._types: dict[str, Any] = {}  # output field -> VariantType, read at each connection
        self._last: dict[str, datetime] = {}  # configured source -> source timestamp last delivered
        self._last_value: dict[str, Any] = {}  # ... and its value (a coarse clock may stamp two values alike)
        # label sources read back from the server's history after a reconnect (the key first: a label takes it)
        self._history = [s for s in ((labels.key_source if labels else None), (labels.source if labels else None))
                         if s is not None]
        self._since: datetime | None = None  # when the first connection was made (UTC)
        self.recovered = 0  # label-source values read from history after a reconnect
        self._loop: asyncio.AbstractEventLoop | None = None
        self._client: Client | None = None  # while connected and subscribed
        self._pending: list[tuple[Any, Any]] = []  # (node id, data value) waiting for the next Write
        self._pending_lock = threading.Lock()
        self.write_errors = 0

    # -- delivery (on the adapter's loop) --

    def deliver(self, node: Any, stamp: datetime | None, value: Any, at: float) -> None:
        source = self._ids.get(node)
        if source is None:
            return
        if stamp is not None:
            last = self._last.get(source)
            if last is not None and (stamp < last or (stamp == last and value == self._last_value.get(source))):
                return  # seen before this (re)subscription
            self._last[source] = stamp
            self._last_value[source] = value
        if value is None and source in self._needs_good:
            return
        try:
            self.inbox.deliver(source, value, at)
        except Exception:  # the core never raises for data; a bug must not stop the subscription
            log.exception("live inputs: value of %s not handled", source)

    # -- the connection --

    def run(self, stop: threading.Event) -> None:
        asyncio.run(self._main(stop))

    async def _main(self, stop: threading.Event) -> None:
        backoff = Backoff(self.config.reconnect_min_s, self.config.reconnect_max_s)
        while not stop.is_set():
            started = time.monotonic()
            held = await self._session(stop)
            if stop.is_set():
                return
            if held and time.monotonic() - started >= HELD_S:
                backoff.reset()
            wait_until = time.monotonic() + backoff.next()
            while not stop.is_set() and time.monotonic() < wait_until:
                await asyncio.sleep(min(STOP_POLL_S, max(0.0, wait_until - time.monotonic())))

    async def _session(self, stop: threading.Event) -> bool:
        """One connection, until it fails or ``stop``; True when it was established."""
        loop = asyncio.get_running_loop()
        client = Client(self.config.url, timeout=TIMEOUT_S)
        client.name = client.description = f"edge-runner {self.config.client_id}"
        handler = _Handler(self, loop)
        up = False
        reason = "connection lost"
        try:
            await client.connect()
            for name, node in self._outputs:
                self._types[name] = await client.get_node(node).read_data_type_as_variant_type()
            await self._subscribe(client, handler)
            self._loop = loop
            self._client = client
            up = True
            self.inbox.connected()
            await self._catch_up(client)
            handler.release()
            next_probe = time.monotonic() + WATCHDOG_S
            while not stop.is_set():
                await asyncio.sleep(STOP_POLL_S)
                if handler.lost is not None:
                    raise ConnectionError(handler.lost)
                if time.monotonic() >= next_probe:
                    await asyncio.wait_for(client.nodes.server_state.read_value(), TIMEOUT_S)
                    next_probe = time.monotonic() + WATCHDOG_S
        except (OSError, TimeoutError, ConnectionError, UaError) as exc:
            reason = f"{type(exc).__name__}: {exc}".rstrip(": ")
        except Exception as exc:  # an unexpected library error: logged in full, then the same as a loss
            log.exception("live inputs: OPC UA session failed")
            reason = f"{type(exc).__name__}: {exc}"
        finally:
            self._client = None
            with self._pending_lock:
                self._pending.clear()  # not sent: a decision is never written late
            if not stop.is_set():
                self.inbox.disconnected(reason)
            try:
                await asyncio.wait_for(client.disconnect(), 2.0 if up and stop.is_set() else 0.5)
            except Exception:  # the server is gone already; nothing to close cleanly
                with_socket = getattr(client, "disconnect_socket", None)
                if with_socket is not None:
                    try:
                        with_socket()
                    except Exception:
                        log.debug("socket already closed", exc_info=True)
        return up

    async def _catch_up(self, client: Client) -> None:
        """Deliver the label-source values written while disconnected, in time order, from the server's
        history (HistoryRead); a server without history for them loses those labels (logged)."""
        since = self._since
        now: Any = datetime.now(UTC)
        if since is None:
            self._since = now
            return
        found: list[tuple[datetime, int, Any, Any]] = []
        for order, source in enumerate(self._history):
            node = self._sources[source]
            start = self._last.get(source, since)
            try:
                values = await client.get_node(node).read_raw_history(start, now)
            except UaError as exc:
                log.warning("live inputs: no history of %s (labels written while disconnected are lost): %s",
                            source, exc)
                continue
            for value in values:
                found_at: Any = value.SourceTimestamp or value.ServerTimestamp
                if found_at is not None and found_at >= start:  # deliver() skips the one already seen
                    good = value.StatusCode is None or value.StatusCode.is_good()
                    found.append((found_at, order, node, value.Value.Value if good and value.Value else None))
        found.sort(key=lambda item: (item[0], item[1]))
        for stamp, _, node, value in found:
            self.deliver(node, stamp, value, time.monotonic())
        self.recovered += len(found)
        if found:
            log.info("live inputs: %d label values written while disconnected read from history", len(found))

    async def _subscribe(self, client: Client, handler: _Handler) -> None:
        publishing_ms = self.config.publishing_interval_ms
        params = ua.CreateSubscriptionParameters(RequestedPublishingInterval=publishing_ms,
                                                 RequestedLifetimeCount=10_000, RequestedMaxKeepAliveCount=
                                                 max(1, int(1000 / publishing_ms)), MaxNotificationsPerPublish=0,
                                                 PublishingEnabled=True, Priority=0)
        subscription = await client.create_subscription(params, handler)
        nodes = [client.get_node(node) for node in self._sources.values()]
        trigger = ua.DataChangeFilter(Trigger=ua.DataChangeTrigger.StatusValueTimestamp)
        results: Any = await subscription._subscribe(nodes, AttributeIds.Value, trigger,  # type: ignore[call-overload]
                                                     queuesize=self.config.queue_size,
                                                     sampling_interval=SAMPLING_MS)
        for source, result in zip(self._sources, results, strict=True):
            if isinstance(result, ua.StatusCode) and not result.is_good():
                log.error("live inputs: cannot subscribe to %s: %s", source, result.name)

    # -- write-back (any thread) --

    def write(self, decision: Decision) -> bool:
        loop, client = self._loop, self._client
        if client is None or loop is None or not self._outputs:
            return False
        fields = decision.to_json_dict()
        values = []
        for name, node in self._outputs:
            try:
                variant = _convert(fields[name], self._types[name])
            except (KeyError, TypeError, ValueError) as exc:
                self.write_errors += 1
                log.warning("live inputs: decision field %s not written: %s", name, exc)
                continue
            values.append((node, ua.DataValue(variant)))
        with self._pending_lock:
            first = not self._pending
            self._pending.extend(values)
        if first:
            loop.call_soon_threadsafe(self._send_pending)
        return True

    def _send_pending(self) -> None:
        with self._pending_lock:
            pending, self._pending = self._pending, []
        client = self._client
        if pending and client is not None:
            asyncio.ensure_future(self._send(client, pending))

    async def _send(self, client: Client, pending: list[tuple[Any, Any]]) -> None:
        try:
            results = await client.uaclient.write_attributes([n for n, _ in pending], [v for _, v in pending],
                                                             AttributeIds.Value)
        except Exception as exc:  # the connection went; the watchdog reconnects
            self.write_errors += 1
            log.info("live inputs: decision not written: %s", exc)
            return
        for (node, _), result in zip(pending, results, strict=False):
            if not result.is_good():
                self.write_errors += 1
                log.warning("live inputs: writing %s refused: %s", node.to_string(), result.name)
