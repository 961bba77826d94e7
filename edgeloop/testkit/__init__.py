"""Worlds for tests and benchmarks, built from the product's own parts (never mocks).

- ``project``: the repository's params.yaml and dotted-key overrides;
- ``hub``: a real hub (uvicorn on 127.0.0.1) on a temporary project;
- ``releases``: small ONNX models, candidates, a release repository, a tampering HTTP server and a forger
  (the attacker's tools for the TUF tests);
- ``runner_world``: a release repository with real HistGradientBoosting models and edge-runner configs;
- ``synthetic``: ground-truth rows for any schema;
- ``pki``: a plant CA, the hub's certificate and device certificates (good, expired, foreign, unrecorded);
- ``postgres``: a real PostgreSQL (pgserver) started once per process, a fresh database per test;
- ``mqtt``: a real MQTT broker (amqtt) in a subprocess a test can kill and restart, paho test clients;
- ``opcua``: the live plant's OPC UA server (asyncua) in a background thread, on an ephemeral port, restartable.

Used by ``tests/`` and ``bench/`` alike (benchmarks never import the tests). For a source checkout: the
kits read the repository's params.yaml. Importing this package imports nothing heavy.
"""
