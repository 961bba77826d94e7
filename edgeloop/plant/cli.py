"""``edgeloop plant serve``: run the simulator's machines live, as an OPC UA server or on an MQTT broker.

``--opcua`` serves them with asyncua on ``--host``:``--port`` (127.0.0.1:4840); ``--mqtt`` publishes them to
``--broker`` (``mqtt://127.0.0.1:1883``), or to an amqtt broker it starts itself with ``--embedded-broker``
(on ``--host``:``--port``, 127.0.0.1:1883). ``--print-config DEVICE`` prints the runner.toml ``[inputs]``
section for one machine and exits; ``--write-configs DIR`` writes one per machine (``DIR/press-00.toml``)
and serves. While serving it prints a line every ``--report-s`` seconds: parts, verdicts, predictions written
back, their accuracy on the plant's truth and median latency. Ctrl-C (or SIGTERM) stops it cleanly.
Leaves out the machines (``edgeloop.plant.source``) and the protocols (``opcua_server``, ``mqtt_publisher``).
"""

from __future__ import annotations

import signal
import threading
import time
from pathlib import Path
from typing import Annotated, Any

import typer

from edge.contracts.errors import UserError
from edgeloop.cli_common import sub_app

__all__ = ["plant_app"]

plant_app = sub_app("A live simulated plant: the simulator's machines over OPC UA or MQTT, for wiring runners to.")


def _line(text: str) -> None:
    print(text, flush=True)


def _report(kind: str, plant: Any) -> str:
    stats = plant.scoreboard.stats()
    accuracy = "-" if stats["accuracy"] is None else f"{stats['accuracy']:.3f}"
    latency = "-" if stats["latency_p50_ms"] is None else f"{stats['latency_p50_ms']:.1f} ms"
    return (f"{kind}: {plant.published} parts, {plant.verdicts} verdicts, {stats['predictions']} predictions back "
            f"(accuracy {accuracy}, median latency {latency})")


@plant_app.command()
def serve(
    opcua: Annotated[bool, typer.Option("--opcua", help="Serve the machines as an OPC UA server (asyncua).")] = False,
    mqtt: Annotated[bool, typer.Option("--mqtt", help="Publish the machines to an MQTT broker (paho-mqtt).")] = False,
    broker: Annotated[str, typer.Option(help="MQTT broker URL (--mqtt).")] = "mqtt://127.0.0.1:1883",
    embedded_broker: Annotated[bool, typer.Option(
        "--embedded-broker", help="Start an MQTT broker (amqtt) in this process on --host:--port (for trying it "
                                  "out; use Mosquitto in production).")] = False,
    host: Annotated[str, typer.Option(help="Address the OPC UA server or embedded broker binds.")] = "127.0.0.1",
    port: Annotated[int | None, typer.Option(help="Port (OPC UA: 4840; embedded broker: 1883).", min=1,
                                             max=65535)] = None,
    devices: Annotated[int, typer.Option(help="Machines (press-00, press-01, ...).", min=1, max=100)] = 2,
    rate: Annotated[float, typer.Option(help="Parts per second per machine.")] = 2.0,
    seed: Annotated[int, typer.Option(help="Seed of the simulated machines.")] = 1,
    label_delay_s: Annotated[float, typer.Option(help="Seconds until the quality station reports a part's true "
                                                      "label.")] = 5.0,
    drift: Annotated[str, typer.Option(help="Drift: none, sensor_offset, new_regime or relationship.")] = "none",
    drift_after_s: Annotated[float | None, typer.Option(help="Seconds after start the drift begins.")] = None,
    print_config: Annotated[str | None, typer.Option(
        "--print-config", metavar="DEVICE", help="Print the runner.toml inputs section for DEVICE and exit.")] = None,
    write_configs: Annotated[Path | None, typer.Option(
        "--write-configs", metavar="DIR", file_okay=False,
        help="Write DIR/<device>.toml, the runner.toml inputs section of each machine, then serve.")] = None,
    duration_s: Annotated[float | None, typer.Option(help="Stop after this many seconds (default: until Ctrl-C).",
                                                      min=0)] = None,
    report_s: Annotated[float, typer.Option(help="Seconds between status lines.", min=0.1)] = 5.0,
) -> None:
    """Run the simulator's machines live: sensor tags per part, a part id, the quality station's verdict
    --label-delay-s later, and prediction tags the runner writes back. Ctrl-C stops."""
    from edgeloop.plant.mqtt_publisher import broker_address
    from edgeloop.plant.runner_config import inputs_section
    from edgeloop.plant.source import PlantSettings

    if opcua == mqtt:
        raise UserError("choose one protocol: --opcua or --mqtt")
    if embedded_broker and not mqtt:
        raise UserError("--embedded-broker goes with --mqtt")
    settings = PlantSettings(devices=devices, rate=rate, seed=seed, label_delay_s=label_delay_s, drift=drift,
                             drift_after_s=drift_after_s)
    protocol = "opcua" if opcua else "mqtt"
    if opcua:
        url = f"opc.tcp://{host}:{port or 4840}"
    elif embedded_broker:
        url = f"mqtt://{host}:{port or 1883}"
    else:
        broker_address(broker)
        url = broker
    configs = {name: inputs_section(protocol, name, url, rate) for name in settings.names}
    if print_config is not None:
        if print_config not in configs:
            raise UserError(f"--print-config: no machine {print_config!r}; this plant has "
                            f"{', '.join(settings.names)}")
        print(configs[print_config], end="")
        return
    if write_configs is not None:
        from edge.atomic import write_text_atomic

        try:
            write_configs.mkdir(parents=True, exist_ok=True)
            for name, text in configs.items():
                write_text_atomic(write_configs / f"{name}.toml", text)
        except OSError as exc:
            raise UserError(f"--write-configs: cannot write to {write_configs}: {exc.strerror or exc}") from None
        _line(f"wrote the [inputs] section of each machine to {write_configs}/<device>.toml")
    _quiet_libraries()
    if opcua:
        _serve_opcua(settings, host, port or 4840, duration_s, report_s)
    else:
        _serve_mqtt(settings, url, embedded_broker, host, port or 1883, duration_s, report_s)


def _quiet_libraries() -> None:
    import logging

    for name in ("asyncua", "amqtt", "transitions"):
        logging.getLogger(name).setLevel(logging.ERROR)
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")


def _serve_opcua(settings: Any, host: str, port: int, duration_s: float | None, report_s: float) -> None:
    import asyncio

    from edgeloop.plant.opcua_server import OpcUaPlant
    from edgeloop.plant.source import PlantStream

    async def main() -> None:
        plant = OpcUaPlant(settings, host, port)
        try:
            await plant.start()
        except OSError as exc:
            raise UserError(f"--port: cannot serve OPC UA on {host}:{port}: {exc.strerror or exc}") from None
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, stop.set)
        if duration_s is not None:
            loop.call_later(duration_s, stop.set)
        _line(f"plant: {settings.devices} machines on {plant.url} (namespace urn:edgeloop:plant), "
              f"{settings.rate:g} parts/s each; Ctrl-C stops")

        async def report() -> None:
            while not stop.is_set():
                await asyncio.sleep(report_s)
                _line(_report("opcua", plant))

        reporter = asyncio.create_task(report())
        try:
            await plant.run(PlantStream(settings), stop)
        finally:
            reporter.cancel()
            await plant.stop()
            _line(_report("opcua", plant) + "; stopped")

    asyncio.run(main())


def _serve_mqtt(settings: Any, url: str, embedded: bool, host: str, port: int, duration_s: float | None,
                report_s: float) -> None:
    from edgeloop.plant.mqtt_publisher import MqttPlant
    from edgeloop.plant.source import PlantStream

    stop = threading.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: stop.set())
    broker = None
    if embedded:
        from edgeloop.plant.embedded_broker import EmbeddedBroker

        broker = EmbeddedBroker(host, port)
        try:
            broker.start()
        except OSError as exc:
            raise UserError(f"--port: cannot start the embedded broker on {host}:{port}: {exc.strerror or exc}") \
                from None
        _line(f"embedded MQTT broker (amqtt) on {broker.url}")
    plant = MqttPlant(settings, url)
    plant.start()
    if not plant.connected.wait(10):
        _line(f"waiting for the broker at {url} (paho retries in the background)")
    _line(f"plant: {settings.devices} machines publishing to {url} under plant/<device>/, {settings.rate:g} "
          f"parts/s each; Ctrl-C stops")
    worker = threading.Thread(target=plant.run, args=(PlantStream(settings), stop), name="plant", daemon=True)
    worker.start()
    deadline = float("inf") if duration_s is None else time.monotonic() + duration_s
    try:
        while not stop.wait(max(0.0, min(report_s, deadline - time.monotonic()))):
            if time.monotonic() >= deadline:
                break
            _line(_report("mqtt", plant))
    finally:
        stop.set()
        worker.join(timeout=10)
        plant.stop()
        if broker is not None:
            broker.stop()
        _line(_report("mqtt", plant) + "; stopped")
