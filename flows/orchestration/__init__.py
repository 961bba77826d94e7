"""The Prefect side of the pipeline: flows, tasks, artifacts and deployments. The only place Prefect is imported.

- ``retrain``: every retrain (its decision and outcome in the loop log, whatever its source), the
  pipeline stages as tasks, the gate decision as artifacts, publish when it passes;
- ``monitor``: the one retraining scheduler (observe, decide with the triggers and the cooldown,
  record, start ``retrain`` when a trigger fires);
- ``promote``: the ``promote-soaked`` flow (canary soak -> promote, roll back or wait);
- ``release_flows``: publish, promote, roll back and refresh as flows (so they show in the UI history);
- ``deployments``: what ``edgeloop serve`` schedules (``flows/prefect.yaml`` declares the same for workers);
- ``work_pool``: ``edgeloop deploy`` (the process work pool, the retrain limit, ``prefect deploy --all``);
- ``concurrency``: one retrain at a time on a shared server (the ``edgeloop-retrain`` global concurrency limit).

Leaves out the logic these flows run: it lives in plain modules (``flows.stages``, ``flows.loop``,
``flows.project_releases``, ``flows.releases``) that never import Prefect, so the CLI, ``dvc repro``
and tests use it without a server, and importing them never loads Prefect.
"""
