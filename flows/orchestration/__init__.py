"""The Prefect side of the pipeline: flows, tasks, artifacts and deployments. The only place Prefect is imported.

- ``retrain``: the pipeline stages as tasks, the gate decision as artifacts, publish when it passes;
- ``release_flows``: promote, roll back, publish and refresh as flows (so they show in the UI history);
- ``monitor``: the loop's monitor flow (observe, decide, record, retrain when a trigger fires);
- ``promote``: the ``promote-soaked`` flow (canary soak -> promote, roll back or wait);
- ``deployments``: schedules for ``edgeloop serve`` (``flows/prefect.yaml`` declares the same for workers).

The logic these flows run lives in plain modules (``flows.stages``, ``flows.releases``, ``flows.loop``)
that never import Prefect, so the same logic runs under ``dvc repro`` and in tests without a server.
"""
