"""Ctrl-C during ``edgeloop retrain``: stop within a second or two, say in one line what is true, exit 130.

Without this, SIGINT reaches the temporary Prefect server (same process group) and the flow engine at
once: the server goes away under the running flow, which then retries its state reports for up to a
minute and a half and ends in a long ``httpx.ConnectError`` traceback. Instead, while a retrain runs,
SIGINT only starts ``RetrainStop.stop`` in a thread (also woken through ``signal.set_wakeup_fd``, so a
main thread busy in C code does not delay it); it

- waits (at most ``PUBLISH_GRACE_S``) for a publish already under way to finish, so a release is never
  cut off half-signed (the release repository is crash-safe anyway: ``flows.releases.publish``);
- appends the run's outcome (``Cancelled``, interrupted during which stage) to the loop log;
- marks the flow run Cancelled on a Prefect server given by ``PREFECT_API_URL`` (best effort);
- stops the temporary Prefect server this process started, prints the one line and ends the process
  with ``os._exit(130)`` (no Prefect clean-up that would talk to a server that is gone).
Each clean-up step is bounded (``STEP_S``), so the process ends within a few seconds whatever happens; the
main thread stays frozen in the signal handler meanwhile, so no further stage starts.

Every stage writes its outputs atomically (temporary sibling, then rename), so data/ holds the outputs
of the stages that finished and, for the interrupted one, what it had before; a rerun redoes the rest.
Further SIGINTs while stopping are ignored. Leaves out SIGTERM (Prefect's cancellation handles it) and
every other command.
"""

from __future__ import annotations

import contextlib
import os
import signal
import sys
import threading
from collections.abc import Callable
from pathlib import Path
from types import FrameType
from typing import Any

__all__ = ["EXIT_INTERRUPTED", "RetrainStop"]

EXIT_INTERRUPTED = 130  # 128 + SIGINT, what shells report for Ctrl-C
PUBLISH_GRACE_S = 2.0  # at most, for a publish under way to finish
SERVER_STOP_S = 0.5
STEP_S = 1.0  # at most, per clean-up step (four of them)


class RetrainStop:
    """Install with ``with RetrainStop(...)`` around the retrain; ``listener`` follows its stages."""

    def __init__(self, on_stop: Callable[[], None] | None = None) -> None:
        self.stage: str | None = None
        self.stage_done = False
        self.request: dict[str, Any] | None = None
        self.release: dict[str, Any] | None = None
        self._on_stop = on_stop
        self._published = threading.Event()
        self._publishing = False
        self._begun = threading.Lock()
        self._stopping = False
        self._previous: Any = None
        self._installed = False
        self._wakeup: tuple[int, int] | None = None
        self._previous_fd = -1

    # --- following the run -------------------------------------------------------------------------
    def listener(self, stage: str, event: str, summary: dict[str, Any] | None) -> None:
        if stage == "request":
            self.request = summary
        elif stage == "publish":
            self._publishing = event == "start"
            if event == "done":
                self.release = summary
                self._published.set()
        else:
            self.stage, self.stage_done = stage, event == "done"

    # --- installing --------------------------------------------------------------------------------
    def __enter__(self) -> RetrainStop:
        if threading.current_thread() is not threading.main_thread():
            return self  # signals are the main thread's: nothing to install (a library call, not the CLI)
        self._installed = True
        self._previous = signal.signal(signal.SIGINT, self._on_signal)
        read_fd, write_fd = os.pipe()
        os.set_blocking(write_fd, False)
        try:
            self._previous_fd = signal.set_wakeup_fd(write_fd, warn_on_full_buffer=False)
        except ValueError:  # set_wakeup_fd refused: the Python-level handler alone
            os.close(read_fd)
            os.close(write_fd)
        else:
            self._wakeup = (read_fd, write_fd)
            threading.Thread(target=self._watch, args=(read_fd,), name="retrain-sigint", daemon=True).start()
        return self

    def __exit__(self, *exc: object) -> None:
        if self._wakeup is not None:
            signal.set_wakeup_fd(self._previous_fd)
            read_fd, write_fd = self._wakeup
            self._wakeup = None
            os.write(write_fd, b"\0")  # wakes the watcher, which then closes its end
            os.close(write_fd)
        if self._installed:
            signal.signal(signal.SIGINT, self._previous)

    def _watch(self, read_fd: int) -> None:
        while True:
            data = os.read(read_fd, 64)
            if signal.SIGINT in data:
                self._begin()
            if not data or b"\0" in data:
                os.close(read_fd)
                return

    def _on_signal(self, signum: int, frame: FrameType | None) -> None:
        self._begin()
        threading.Event().wait()  # the main thread stops here (no new stage starts) until the process ends

    def _begin(self) -> None:
        with self._begun:
            if self._stopping:
                return  # a second Ctrl-C while stopping: already on its way out
            self._stopping = True
        threading.Thread(target=self.stop, name="retrain-stop").start()

    # --- stopping ----------------------------------------------------------------------------------
    def message(self) -> str:
        if self.release is not None:
            return (f"interrupted after release {self.release.get('version')} was published (complete and signed); "
                    "nothing else was left undone")
        if self.stage is None:
            return "interrupted before any stage ran: no data and no release was changed"
        where = f"after {self.stage}" if self.stage_done else f"during {self.stage}"
        return (f"interrupted {where}: nothing was published; the release repository is as before and data/ holds "
                "only complete stage outputs (run `edgeloop retrain` again to finish)")

    def stop(self) -> None:
        try:
            if self._publishing:
                self._published.wait(PUBLISH_GRACE_S)
            line = self.message()
            _quietly(self._record, line)
            _quietly(self._cancel_run, line)
            _quietly(self._stop_display)
            _quietly(_stop_temporary_servers)
            _quietly(sys.stdout.flush)
            print(line, file=sys.stderr, flush=True)
        finally:
            os._exit(EXIT_INTERRUPTED)

    def _stop_display(self) -> None:
        if self._on_stop is not None:
            self._on_stop()

    def _record(self, line: str) -> None:
        """The loop log's outcome entry for the request the flow recorded (``flows.loop.retrains``)."""
        request = self.request
        if not request or not request.get("decision_at"):
            return
        from flows.loop.retrains import outcome_of, record_outcome

        outcome = outcome_of(None, "Cancelled", False, line)
        record_outcome(Path(request["log"]), request["source"], outcome, request["decision_at"],
                       flow_run=request.get("flow_run"))

    def _cancel_run(self, line: str) -> None:
        """Mark the flow run Cancelled on a long-lived server (a temporary one is about to go)."""
        request = self.request
        if not os.environ.get("PREFECT_API_URL") or not request or not request.get("flow_run"):
            return

        from prefect.client.orchestration import get_client
        from prefect.states import Cancelled

        with get_client(sync_client=True) as client:
            client.set_flow_run_state(request["flow_run"], Cancelled(message=line), force=True)


def _quietly(step: Callable[..., None], *args: Any) -> None:
    """Best effort and bounded (``STEP_S``): the one line and the exit come first, whatever a step runs into
    (the main thread is frozen in the signal handler and may hold a lock the step wants)."""

    def run() -> None:
        with contextlib.suppress(Exception):
            step(*args)

    worker = threading.Thread(target=run, daemon=True)
    worker.start()
    worker.join(STEP_S)


def _stop_temporary_servers() -> None:
    """Terminate the temporary Prefect server(s) this process started (a Ctrl-C in a terminal reached them
    already; a SIGINT sent to this process alone did not)."""
    server_module = sys.modules.get("prefect.server.api.server")
    if server_module is None:
        return
    for server in list(getattr(server_module.SubprocessASGIServer, "_instances", {}).values()):
        process = getattr(server, "server_process", None)
        if process is None or process.poll() is not None:
            continue
        process.terminate()
        try:
            process.wait(SERVER_STOP_S)
        except Exception:  # noqa: BLE001
            process.kill()
