"""Contracts: every name, pattern, file name, body shape and limit that the device and the cloud share.

One leaf package that every side imports (edge runner, hub, flows, simulator, CLI), so each contract has
exactly one definition (``tests/test_contracts.py`` checks that nothing re-declares one):

- ``names``: device ids, channel names, release versions, batch ids; the default channels.
- ``errors``: ``UserError``, the one exception type for mistakes a user can fix.
- ``schema``: the data schema (params.yaml ``schema:``; the manifest's features and classes).
- ``record``: the ground-truth record columns, upload reasons, upload batches and where they land.
- ``manifest``: the release manifest (``manifest.json`` next to ``model.onnx``).
- ``decision``: the decision rule that turns class probabilities into a label.
- ``release_layout``: file names and target paths inside the signed release repository.
- ``wire``: the hub's device API: paths, headers, heartbeat/summary/upload bodies and their limits.
- ``hub_section``: params.yaml ``hub:`` and how a cloud client finds the hub (URL and token rules).
- ``layout``: the project folder (``data/uploads``, ``data/loop/estimates.json``, ...).

Standard library and numpy only (``decision``); nothing here does I/O at import time.
"""
