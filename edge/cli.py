"""The ``edge-runner`` command: ``enroll``, ``run``, ``status``, ``predict`` (stream mode) and ``rollback``.

argparse, not Typer: the edge installs without the cloud extras. User mistakes (a bad config key, no
model yet, a runner already running, the API's port taken, a CSV header that does not fit the model)
print one line to stderr and exit 2, without a traceback. ``run`` sets up the log once (edge.logs: INFO,
journald-friendly under systemd) after the configuration and the port were checked. ``run``
freezes the objects that exist once the runner is built (``gc.freeze()``) before it starts serving, so
garbage collections never walk the modules, the model or the stores.
Telemetry is switched off before anything that could import onnxruntime. Heavy modules are imported
inside the commands, so ``--help`` stays fast.

``enroll`` takes the one-time code from ``--code`` or, with ``--code -``, from the first line of stdin
(out of the shell history and the process list); it never prints it.

Leaves out: the runner itself (edge.runner), enrollment (edge.enroll), stream parsing (edge.stream) and
status gathering (edge.status).
"""

from __future__ import annotations

import argparse
import gc
import json
import logging
import os
import signal
import sys
import threading
from collections.abc import Sequence
from pathlib import Path

from edge.telemetry import switch_off

__all__ = ["main"]

EXIT_USER_ERROR = 2
EXIT_BROKEN_PIPE = 141  # what a shell reports for a command killed by SIGPIPE


class UsageProblem(Exception):
    """A mistake the user can fix; printed as one line."""


def _config_argument(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--config", "-c", type=Path, required=True, metavar="FILE",
                        help="runner configuration (TOML); EDGE_RUNNER__<SECTION>__<KEY> variables override it")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="edge-runner",
        description="edgeloop's edge runner: local inference in microseconds, verified model updates with "
                    "on-device validation and rollback, and a lossless ground-truth upload path.",
    )
    from edge import __version__

    parser.add_argument("--version", action="version", version=f"edge-runner {__version__}")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    enroll = commands.add_parser(
        "enroll", help="enroll this gateway at the hub with a one-time code: key, certificate, runner.toml",
        description="Generate this device's private key here (it never leaves the device), send a certificate "
                    "signing request with the one-time enrollment code to the hub over TLS verified against "
                    "--ca, and write the certificate, the key (0600), the CA, the trusted release root and a "
                    "complete runner.toml into --config-dir. Then: edge-runner run --config DIR/runner.toml.")
    enroll.add_argument("--hub", required=True, metavar="URL", help="the hub's URL, e.g. https://hub.plant.local:8700 "
                        "(plain http only to this machine)")
    enroll.add_argument("--code", required=True, metavar="CODE",
                        help="the one-time code from `edgeloop devices enroll-code NAME`; '-' reads it from stdin")
    enroll.add_argument("--ca", required=True, type=Path, metavar="FILE",
                        help="the plant CA (ca.pem) the hub's certificate must be signed by")
    enroll.add_argument("--config-dir", type=Path, default=Path("/etc/edge-runner"), metavar="DIR",
                        help="where runner.toml, the key and the certificates go (default: /etc/edge-runner)")
    enroll.add_argument("--state-dir", type=Path, default=Path("/var/lib/edge-runner"), metavar="DIR",
                        help="the runner's state dir, written into runner.toml (default: /var/lib/edge-runner)")
    enroll.add_argument("--force", action="store_true",
                        help="enroll again although DIR/runner.toml exists (a new key; the old runner.toml is kept "
                             "as runner.toml.bak)")
    enroll.add_argument("--timeout", type=float, default=30.0, metavar="SECONDS",
                        help="seconds to wait for the hub (default: 30)")

    run = commands.add_parser("run", help="run the daemon: local API, update loop, uploads, heartbeats",
                              description="Run the edge runner until SIGTERM/SIGINT (then it finishes "
                                          "in-flight work and exits).")
    _config_argument(run)
    run.add_argument("--port", type=int, metavar="PORT",
                     help="serve the local API on this TCP port (overrides [api] port in runner.toml)")

    status = commands.add_parser("status", help="show versions, health, drift, backlog and last sync",
                                 description="Read the state directory (works whether or not the runner is "
                                             "running) and print the runner's state.")
    _config_argument(status)
    status.add_argument("--json", action="store_true", help="print JSON instead of text")

    predict = commands.add_parser(
        "predict", help="stream mode: CSV or JSON lines on stdin, one prediction per line on stdout",
        description="Score rows from stdin with the active model, one output line per input row, flushed "
                    "as it goes (for piping sensor feeds). A bad row gives an error line (and a note on "
                    "stderr); the stream goes on. Does not spool or upload.")
    _config_argument(predict)
    predict.add_argument("--format", choices=("auto", "csv", "jsonl"), default="auto",
                         help="input format; auto: JSON lines if the first line starts with '{' or '[', else "
                              "CSV with a header row (default: auto)")
    predict.add_argument("--no-header", action="store_true",
                         help="CSV without a header row: values in the model's feature order")

    rollback = commands.add_parser("rollback", help="go back to the previous model now",
                                   description="Make the previous release current and block the current one "
                                               "until a newer release appears. A running runner does it "
                                               "within a second; otherwise it is done here.")
    _config_argument(rollback)
    rollback.add_argument("--reason", default="rolled back by hand", help="recorded and sent to the hub")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    switch_off()
    args = build_parser().parse_args(argv)
    from edge.config import ConfigError

    try:
        code = _dispatch(args)
        sys.stdout.flush()  # inside the try: a closed pipe is met here, not at interpreter exit
        return code
    except (ConfigError, UsageProblem) as exc:
        print(f"edge-runner: {exc}", file=sys.stderr)
        return EXIT_USER_ERROR
    except KeyboardInterrupt:
        return 130
    except BrokenPipeError:  # `edge-runner status --json | head`: the reader left; say nothing more
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return EXIT_BROKEN_PIPE


def _dispatch(args: argparse.Namespace) -> int:
    if args.command == "enroll":
        return _enroll(args)
    if args.command == "run":
        return _run(args)
    if args.command == "status":
        return _status(args)
    if args.command == "predict":
        return _predict(args)
    return _rollback(args)


def _enroll(args: argparse.Namespace) -> int:
    from edge.enroll import EnrollError, enroll

    code = sys.stdin.readline() if args.code == "-" else args.code
    try:
        done = enroll(args.hub, code, args.ca, args.config_dir, args.state_dir, force=args.force,
                      timeout_s=args.timeout)
    except EnrollError as exc:
        raise UsageProblem(str(exc)) from None
    print(f"edge-runner: enrolled as {done.device_id} (channel {done.channel}); certificate valid until "
          f"{done.not_after.isoformat()}, renewed by the runner before it ends")
    print(f"edge-runner: start it with: edge-runner run --config {done.config_file}")
    return 0


def _run(args: argparse.Namespace) -> int:
    from dataclasses import replace

    from edge.config import load_config
    from edge.http_api import port_problem
    from edge.logs import configure
    from edge.runner import Runner, RunnerError

    config = load_config(args.config)
    if args.port is not None:
        if not 0 <= args.port <= 65535:
            raise UsageProblem(f"--port: expected 0..65535, got {args.port}")
        config = replace(config, api=replace(config.api, port=args.port))
    api = config.api
    if api.enabled and api.unix_socket is None:  # before the state dir is touched: nothing half-started
        problem = port_problem(api.host, api.port)
        if problem is not None:
            raise UsageProblem(problem)
    configure(sys.stderr)
    stop = threading.Event()

    def request_stop(signum: int, frame: object) -> None:
        stop.set()

    signal.signal(signal.SIGTERM, request_stop)
    signal.signal(signal.SIGINT, request_stop)
    try:
        runner = Runner(config)
        gc.collect()
        gc.freeze()  # start-up objects (modules, the model, the stores) leave the collector's scans for good
        runner.start()
    except RunnerError as exc:
        raise UsageProblem(str(exc)) from None
    logging.getLogger("edge.runner").info("%s serving model %s%s", config.device_id, runner.model_version or
                                          "(none yet)", "" if runner.api_url is None else " at " + runner.api_url)
    try:
        while not stop.wait(1.0):
            pass
    finally:
        runner.stop()
    return 0


def _status(args: argparse.Namespace) -> int:
    from edge.config import load_config
    from edge.status import format_status, read_status

    report = read_status(load_config(args.config))
    print(json.dumps(report, indent=2, sort_keys=True) if args.json else format_status(report))
    return 0


def _predict(args: argparse.Namespace) -> int:
    from edge.config import load_config
    from edge.control import RunnerError
    from edge.stream import stream_predictions

    config = load_config(args.config)
    try:
        bad = stream_predictions(config, sys.stdin, sys.stdout, sys.stderr, args.format, not args.no_header)
    except RunnerError as exc:
        raise UsageProblem(str(exc)) from None
    return 1 if bad else 0


def _rollback(args: argparse.Namespace) -> int:
    from edge.config import load_config
    from edge.control import RunnerError, request_rollback

    try:
        result = request_rollback(load_config(args.config), args.reason)
    except RunnerError as exc:
        raise UsageProblem(str(exc)) from None
    print(f"edge-runner: rolled back {result.from_version} -> {result.to_version}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
