"""edgeloop's cloud side: the pipeline's stages, the closed loop and the Prefect flows that drive them.

- ``stages`` (plain ``main(params, paths)`` functions, ``python -m flows STAGE`` is dvc.yaml's driver),
  with their helpers ``ingest`` and ``evaluation``, and ``dataset``, ``inference``, ``lineage``,
  ``reference_stats``;
- ``releases`` (the signed TUF repository), ``project_releases`` (a project's releases from its
  params.yaml) and ``champion_sync``;
- ``loop`` (when to retrain and when to promote; the decision log) and ``hub_client`` (the cloud's one
  client of the hub's admin API);
- ``orchestration``: the only package that imports Prefect (flows, artifacts, deployments);
- ``params``: params.yaml, typed.

Importing this package is cheap: nothing heavy and no I/O happens at import. Leaves out the edge
runtime (``edge``), the hub server (``hub``) and the command line (``edgeloop``).
"""
