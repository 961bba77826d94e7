"""``edgeloop demo``: the whole loop on one machine in a few minutes, with a report people can look at.

Steps, in one process (every thread and server it starts is stopped on the way out, Ctrl-C included):

1. A fresh demo project (``edgeloop.demo.workspace``) and the hub on a free loopback port; the cloud
   side talks to its admin API only through ``flows.hub_client`` (``demo_hub_client``: this hub's URL
   and admin token file given explicitly, so $EDGELOOP_HUB_URL or $EDGELOOP_HUB_TOKEN_FILE set for a
   real hub cannot lead the demo's flows astray).
2. v1: the simulated plant's history, the real ``retrain`` Prefect flow (ingest with Great
   Expectations, train, export, Evidently, gate, sign and publish to canary), recorded in the loop log as
   a manual retrain that holds no trigger (v1 stands for weeks of history, not a reaction to the plant),
   then promoted to stable by hand (recorded in the loop log too).
3. Devices registered at the hub; one real in-process edge runner each (``edge.runner.Runner``), a canary
   and a stable group, pulling v1 through python-tuf.
4. Ticks of the simulated plant (``edgeloop.demo.plant``): each machine's rows are predicted by its
   runner, labels come back a little later, runners filter, spool and upload the ground truth worth
   sending. Along the way:
   - a worse candidate (trained on flipped labels) is published to canary; the canary runners refuse it
     on their own labelled rows and the ``promote-soaked`` flow rolls canary back;
   - a malformed batch reaches the hub; the next ingest quarantines it;
   - drift (a sensor offset) hits every machine; runners see it (PSI), the ``monitor`` flow fires once
     and retrains on the uploaded ground truth; the gate passes v2 to canary, canary runners validate and
     take it, ``promote-soaked`` moves it to stable after its soak, and the fleet's accuracy recovers;
   - after every tick, per group, the random sampling rate in force (each runner's live upload policy,
     which a signed runner policy may change) and the share of the tick's labels the random rule uploaded
     (``Rate`` in the timeline).
5. ``reports/demo/index.html`` (one offline file with charts) and the same summary in the terminal.

Leaves out: separate processes per runner (in-process runners run the same code; the tests run
``edge-runner`` processes too) and real wall-clock schedules (the flows are called between ticks).
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import os
import shutil
import signal
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import replace
from pathlib import Path
from typing import Any

from edge.contracts.release_layout import MANIFEST_FILE, MODEL_FILE
from edgeloop.demo.timeline import Rate, Timeline
from edgeloop.demo.workspace import DemoSettings, prepare_workspace, runner_config_text, secure_workspace, write_token

__all__ = ["DemoResult", "demo_hub_client", "run_demo", "sampling_rates"]

log = logging.getLogger("edgeloop.demo")

Say = Callable[[str], None]


class DemoResult(dict[str, Any]):
    """The summary the report and the terminal show (a dict, JSON-ready)."""


def _quiet_prefect() -> None:
    os.environ.setdefault("PREFECT_LOGGING_LEVEL", "WARNING")
    os.environ.setdefault("PREFECT_LOGGING_TO_API_ENABLED", "false")


def demo_hub_client(workspace: Path, hub: Any) -> Any:
    """The ``flows.hub_client.HubAdminClient`` of the demo's own hub (a ``hub.embedded.EmbeddedHub``): its
    URL and admin token file as arguments, which beat the environment's."""
    from flows.hub_client import HubAdminClient

    return HubAdminClient.for_project(workspace, hub.settings.section, url=hub.url,
                                      token_file=hub.settings.admin_token_file)


_INTERRUPTED = threading.Event()


@contextlib.contextmanager
def _remember_ctrl_c() -> Iterator[None]:
    """Ctrl-C raises KeyboardInterrupt as usual and is also remembered, so an interrupt that lands inside a
    library call that swallows it (a Prefect flow run's HTTP call, say) still stops the demo at its next tick."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def interrupted(signum: int, frame: object) -> None:
        _INTERRUPTED.set()
        raise KeyboardInterrupt

    _INTERRUPTED.clear()
    previous = signal.signal(signal.SIGINT, interrupted)
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, previous)


def run_demo(project: Path, settings: DemoSettings, say: Say, report_dir: Path | None = None) -> DemoResult:
    """Run the demo with its workspace in ``project/data/demo`` and its report in ``report_dir``
    (default ``project/reports/demo``)."""
    _quiet_prefect()
    from hub.embedded import embedded_hub, free_port

    started = time.monotonic()
    timeline = Timeline()
    workspace = project / "data" / "demo"
    report_dir = report_dir or project / "reports" / "demo"
    port = free_port()
    prepare_workspace(workspace, project / "params.yaml", settings, port)
    if settings.tls:
        secure_workspace(workspace)
    say(f"workspace {workspace} (fresh), hub on 127.0.0.1:{port}"
        + (" over mutual TLS (plant CA, client certificates required)" if settings.tls else ""))
    with _remember_ctrl_c(), embedded_hub(workspace, port) as hub, contextlib.ExitStack() as stack:
        world = _World(workspace, hub, timeline, say, settings)
        world.first_release()
        runners = world.start_runners(stack)
        world.run_plant(runners, stack)
        result = world.summary(time.monotonic() - started)
    from edgeloop.demo.report import terminal_summary, write_report

    (report_dir).mkdir(parents=True, exist_ok=True)
    (report_dir / "timeline.json").write_text(timeline.to_json())
    page = write_report(timeline, report_dir, "edgeloop demo: a fleet recovers from drift by itself", result)
    result["report"] = str(page)
    say(terminal_summary(timeline, result))
    return result


class _World:
    """The demo's moving parts; one method per step of the module docstring."""

    def __init__(self, workspace: Path, hub: Any, timeline: Timeline, say: Say, settings: DemoSettings) -> None:
        from edge.contracts.layout import Paths
        from flows.params import load_params

        self.workspace = workspace
        self.paths = Paths.at(workspace)
        self.params = load_params(self.paths.params)
        self.hub = hub
        self.hub_client = demo_hub_client(workspace, hub)
        self.hub_client.fleet()  # the admin API answers with this token (else one clear line, before any work)
        self.hub_args = {"hub_url": self.hub_client.url, "hub_token_file": str(self.hub_client.token_file)}
        self.timeline = timeline
        self.say = say
        self.settings = settings
        self.t_h = 0.0
        self.v1: int | None = None
        self.v2: int | None = None
        self.bad: int | None = None
        self.decisions_seen = 0
        self.recovered_at: tuple[float, float] | None = None
        self.retrain_fired_at: tuple[float, float] | None = None
        self.tallies: dict[str, dict[str, int]] = {}  # device -> its runner's label tallies at the last tick

    # -- step 2: v1 -------------------------------------------------------------------------------------

    def first_release(self) -> None:
        from flows.orchestration.release_flows import promote_flow
        from flows.orchestration.retrain import retrain
        from flows.stages import simulate

        history = simulate.main(self.params, self.paths)
        self.say(f"simulated history: {history.get('rows', '?')} rows from {self.params.simulate.devices} machines")
        self.say("v1: retrain flow (ingest, train, export, evaluate, gate, publish) ...")
        outcome = self._retrain(retrain, source="manual", requested_by="edgeloop demo: v1 on the simulated history",
                                hold_s=0)
        if not outcome.get("passed") or outcome.get("release") is None:
            raise RuntimeError(f"v1 did not pass the gate: {outcome.get('reasons')}")
        self.v1 = int(outcome["release"])
        self.timeline.event(0.0, "publish", str(self.v1), "v1 trained on the simulated history, published to canary")
        promote_flow(root=str(self.workspace), version=self.v1, channel="stable")
        self.timeline.event(0.0, "promote", str(self.v1), "v1 promoted to stable by hand (initial rollout)")
        self.say(f"v1 = release {self.v1}, on canary and stable")

    def _retrain(self, retrain: Callable[..., Any], **request: Any) -> dict[str, Any]:
        state = retrain(root=str(self.workspace), return_state=True, **request)
        data = state.result(raise_on_failure=False)
        if isinstance(data, BaseException) or not isinstance(data, dict):
            data = getattr(state, "data", None) or {}
        release = data.get("release") or {}
        gate = (data.get("stages") or {}).get("gate", {})
        return {"passed": bool(data.get("passed")), "release": release.get("version"),
                "reasons": gate.get("reasons", []), "ingest": (data.get("stages") or {}).get("ingest", {})}

    # -- step 3: devices and runners --------------------------------------------------------------------

    def start_runners(self, stack: contextlib.ExitStack) -> dict[str, tuple[Any, str]]:
        from edge.config import load_config
        from edge.runner import Runner
        from hub.registry import add_device
        from simulator.fleet import device_id

        root = self.paths.resolve(self.params.release.repository) / "metadata" / "1.root.json"
        runners: dict[str, tuple[Any, str]] = {}
        s = self.settings
        self._runner_logs_to_file(stack, self.workspace / "devices" / "runners.log")
        for index in range(s.canary + s.stable):
            name = device_id(index)
            group = "canary" if index < s.canary else "stable"
            token = add_device(self.hub.app.state.sessions, name, group)
            folder = self.workspace / "devices" / name
            config_file = folder / "runner.toml"
            if s.tls:  # the key is born in the runner's folder; only the CSR and the one-time code travel
                tls = self._enroll(name, folder)
                config_file.write_text(runner_config_text(name, folder / "state", self.hub.url, group, None,
                                                          folder / "root.json", tls))
            else:
                write_token(folder / "token", token)
                config_file.write_text(runner_config_text(name, folder / "state", self.hub.url, group,
                                                          folder / "token", root))
            runner = Runner(load_config(config_file, environ={}))
            runner.start()
            stack.callback(runner.stop)
            runners[name] = (runner, group)
        deadline = time.monotonic() + 60
        while any(r.model_version is None for r, _ in runners.values()):
            if time.monotonic() > deadline:
                raise RuntimeError("runners did not pull v1 within 60 s")
            time.sleep(0.1)
        self.say(f"{len(runners)} edge runners ({s.canary} canary, {s.stable} stable) serve v1")
        return runners

    def _runner_logs_to_file(self, stack: contextlib.ExitStack, path: Path) -> None:
        """The in-process runners' log lines (activations, refusals, the hub link) go to ``path``, not between
        the demo's own lines; put back as they were when the run ends."""
        path.parent.mkdir(parents=True, exist_ok=True)
        handler = logging.FileHandler(path, encoding="utf-8")
        handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
        edge_log = logging.getLogger("edge")
        before = (edge_log.level, edge_log.propagate)
        edge_log.addHandler(handler)
        edge_log.setLevel(logging.INFO)
        edge_log.propagate = False

        def restore() -> None:
            edge_log.removeHandler(handler)
            handler.close()
            edge_log.setLevel(before[0])
            edge_log.propagate = before[1]

        stack.callback(restore)
        self.say(f"runner logs: {path}")

    def _enroll(self, name: str, folder: Path) -> tuple[Path, Path, Path]:
        """Enroll ``name`` as a gateway would (a one-time code, a key made here, a CSR); (CA, cert, key)."""
        from edge.credentials import CERT_FILE, CURRENT, IDENTITY_DIR, KEY_FILE
        from edge.enroll import CA_FILE, enroll
        from hub.registry import issue_enrollment_code

        code = issue_enrollment_code(self.hub.app.state.sessions, name, ttl_s=600)
        ca = self.paths.resolve(self.params.hub.tls.ca_file)
        enroll(self.hub.url, code, ca, config_dir=folder, state_dir=folder / "state")
        identity = folder / IDENTITY_DIR / CURRENT
        return folder / CA_FILE, identity / CERT_FILE, identity / KEY_FILE

    # -- step 4: the plant and the loop -----------------------------------------------------------------

    def run_plant(self, runners: dict[str, tuple[Any, str]], stack: contextlib.ExitStack) -> None:
        from edgeloop.demo.plant import Plant

        s = self.settings
        minutes_per_row = 1.0
        drift_h = s.drift_tick * s.rows_per_tick * minutes_per_row / 60.0
        plant = stack.enter_context(Plant(runners, self.timeline, seed=s.seed + 100, rows_per_tick=s.rows_per_tick,
                                          minutes_per_row=minutes_per_row, label_delay_rows=10, drift=s.drift,
                                          drift_start_h=drift_h))
        after_recovery = 0
        for tick in range(s.ticks):
            if _INTERRUPTED.is_set():
                raise KeyboardInterrupt
            samples = plant.tick()
            self.t_h = plant.t_h
            self._record_rates(runners)
            if tick == s.bad_candidate_tick:
                self._publish_worse_candidate()
                self._post_malformed_batch(next(iter(runners.values()))[0])
            if tick % 2 == 1:
                self._monitor()
            if tick >= s.bad_candidate_tick:
                self._promote()
            versions = {r.model_version for r, _ in runners.values()}
            if self.v2 is not None and versions == {str(self.v2)}:
                if self.recovered_at is None:
                    self.recovered_at = (self.t_h, self.timeline.wall())
                    self.timeline.event(self.t_h, "recovered", str(self.v2), "every device runs the retrained model")
                    self.say(f"tick {tick}: the whole fleet runs v2")
                after_recovery += 1
                if after_recovery >= 8:
                    break
            self._progress(tick, samples, runners)
        plant.flush_labels()

    def _record_rates(self, runners: dict[str, tuple[Any, str]]) -> None:
        self.timeline.add_rates(sampling_rates(runners, self.tallies, self.t_h, self.timeline.wall()))

    def _progress(self, tick: int, samples: list[Any], runners: dict[str, tuple[Any, str]]) -> None:
        scored = sum(s.scored for s in samples)
        accuracy = sum(s.correct for s in samples) / scored if scored else float("nan")
        versions = sorted({str(r.model_version) for r, _ in runners.values()})
        self.say(f"tick {tick:2d}  sim {self.t_h:5.1f} h  accuracy {accuracy:6.2%}  versions {','.join(versions)}")

    def _monitor(self) -> None:
        from flows.orchestration.monitor import monitor

        result = monitor(root=str(self.workspace), **self.hub_args)
        decision = result.get("decision") or {}
        if not decision.get("fired"):
            return
        self.retrain_fired_at = (self.t_h, self.timeline.wall())
        self.timeline.event(self.t_h, "retrain", None, f"monitor fired: {decision.get('summary', '')}")
        self.say(f"monitor fired: {decision.get('summary', '')}")
        outcome = result.get("outcome") or {}
        self._quarantined()
        release = outcome.get("release")
        if outcome.get("passed") and release is not None and int(release) not in (self.v1, self.bad):
            self.v2 = int(release)
            self.timeline.event(self.t_h, "publish", str(self.v2), "v2 retrained on uploaded ground truth, to canary")
            self.say(f"v2 = release {self.v2} passed the gate, published to canary")
        elif outcome.get("passed"):
            self.say(f"the retrained candidate is the model already released ({release}): nothing new to roll out")
        else:
            self.timeline.event(self.t_h, "gate_blocked", None, f"gate blocked the candidate: {outcome}")
            self.say(f"the gate blocked the retrained candidate: {outcome}")

    def _promote(self) -> None:
        from flows.orchestration.promote import promote_soaked

        decision = promote_soaked(root=str(self.workspace), **self.hub_args)
        if decision.get("fired"):
            kind = decision.get("kind", "promote")
            version = decision.get("version") or decision.get("to_version") or decision.get("release")
            self.timeline.event(self.t_h, kind, None if version is None else str(version), decision.get("summary", ""))
            self.say(f"promote-soaked: {decision.get('summary', '')}")

    def _quarantined(self) -> None:
        for reason in sorted(self.paths.quarantine.rglob("*.reason.txt")):
            text = reason.read_text(encoding="utf-8", errors="replace").strip().splitlines()[0][:200]
            key = f"{reason.parent.name}/{reason.name}"
            if key in {e.detail.split(":", 1)[0] for e in self.timeline.events if e.kind == "quarantine"}:
                continue
            self.timeline.event(self.t_h, "quarantine", None, f"{key}: {text}")
            self.say(f"ingest quarantined {key}: {text}")

    def _publish_worse_candidate(self) -> None:
        from flows.project_releases import release_config
        from flows.releases import publish

        folder = worse_candidate(self.paths, self.params)
        self.bad = publish(release_config(self.params, self.paths), folder, "canary").version
        self.timeline.event(self.t_h, "publish", str(self.bad),
                            "a worse candidate (trained on flipped labels) to canary")
        self.say(f"published a worse candidate as release {self.bad} to canary (the devices should refuse it)")

    def _post_malformed_batch(self, runner: Any) -> None:
        body = malformed_batch(self.params)
        runner.client.upload(body, hashlib.sha256(body).hexdigest())  # the device's own client and credentials
        device = runner.config.device_id
        self.say(f"{device} sent a malformed batch (a label that is not a class): ingest must quarantine it")

    # -- step 5: numbers --------------------------------------------------------------------------------

    def summary(self, wall_s: float) -> DemoResult:
        from edgeloop.demo.report import headline

        result = DemoResult(headline(self.timeline))
        onset = result.get("drift onset (h)")
        result["v1"], result["v2"], result["worse candidate"] = self.v1, self.v2, self.bad
        if onset is not None and self.recovered_at is not None:
            drift_wall = next((e.wall_s for e in self.timeline.events if e.kind == "drift"), 0.0)
            result["drift onset -> fleet recovered (simulated h)"] = round(self.recovered_at[0] - onset, 2)
            result["drift onset -> fleet recovered (wall s)"] = round(self.recovered_at[1] - drift_wall, 1)
        result["labelled rows uploaded"] = _rows_uploaded(self.paths)
        result["demo wall time (s)"] = round(wall_s, 1)
        return result


def sampling_rates(runners: dict[str, tuple[Any, str]], seen: dict[str, dict[str, int]], t_h: float,
                   wall_s: float) -> list[Rate]:
    """Per group of ``runners`` (device -> (edge.runner.Runner, group)): the mean random rate its runners'
    live upload policies hold now, and the labels and random-rule rows since the last call (the change in
    each runner's ``truth.tallies()`` since ``seen``, which is updated)."""
    configured: dict[str, list[float]] = {}
    labels: dict[str, int] = {}
    random: dict[str, int] = {}
    for name, (runner, group) in runners.items():
        configured.setdefault(group, []).append(float(runner.truth.policy.random_rate))
        now = runner.truth.tallies()
        before = seen.get(name, {})
        labels[group] = labels.get(group, 0) + now["labels"] - before.get("labels", 0)
        random[group] = random.get(group, 0) + now["random"] - before.get("random", 0)
        seen[name] = now
    return [Rate(round(t_h, 6), wall_s, group, sum(rates) / len(rates), labels[group], random[group])
            for group, rates in configured.items()]


def _rows_uploaded(paths: Any) -> int:
    total = 0
    for path in paths.uploads.glob("*/*.csv"):
        total += max(0, path.read_bytes().count(b"\n") - 1)
    return total


def worse_candidate(paths: Any, params: Any) -> Path:
    """A candidate folder like the gate's, with a model trained on flipped labels (the same features)."""
    import numpy as np

    from edge.contracts.manifest import Manifest, model_file
    from edgeloop.demo.report import WORSE_WHY, worse_candidate_page
    from flows.dataset import load_curated
    from flows.stages.export import to_onnx_bytes
    from flows.stages.train import build_estimator

    schema = params.schema
    frame = load_curated(paths, schema)
    x = frame[schema.feature_names].to_numpy(dtype=np.float64)
    y = 1 - frame[schema.label.name].to_numpy(dtype=np.int64)
    estimator = build_estimator(params.train).fit(x, y)
    model = to_onnx_bytes(estimator, x.shape[1], params.export.opset, {})
    folder: Path = paths.data / "demo-worse-candidate"
    if folder.exists():
        shutil.rmtree(folder)
    shutil.copytree(paths.candidate, folder)
    manifest = Manifest.from_json((folder / MANIFEST_FILE).read_bytes())
    name = "cand-worse" + hashlib.sha256(model).hexdigest()[:10]
    (folder / MODEL_FILE).write_bytes(model)
    (folder / MANIFEST_FILE).write_text(replace(manifest, version=name, candidate=None,
                                                  model=model_file(model)).to_json())
    decision = json.loads((folder / "decision.json").read_text())
    decision["copied_from"], decision["version"] = decision.get("version"), name
    decision["deliberately_worse"] = WORSE_WHY  # its page (index.html) says so too, instead of the copied verdict
    (folder / "decision.json").write_text(json.dumps(decision))
    (folder / "index.html").write_text(worse_candidate_page(name, decision))
    return folder


def malformed_batch(params: Any) -> bytes:
    """A CSV batch with every column the hub checks, whose labels are not classes (ingest must refuse it)."""
    from edge.contracts.record import RECORD_COLUMNS
    from edge.ground_truth import encode_csv

    schema = params.schema
    columns = [*schema.column_names, *RECORD_COLUMNS]
    rows = []
    for i in range(20):
        row: dict[str, object] = {f.name: 1.0 for f in schema.features}
        row |= {schema.label.name: 7, schema.event_id: 10_000 + i, schema.device_id: "dev-000",
                schema.event_time: "2026-03-01T00:00:00+00:00", "model_version": "1", "prediction": 0,
                "probabilities": "[0.9, 0.1]", "upload_reason": "labelled", "inclusion_probability": 1.0}
        rows.append(row)
    return encode_csv(rows, columns)
