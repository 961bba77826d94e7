"""``edgeloop demo``: a fleet of real edge runners recovering from drift by itself, and its offline report.

Building blocks: ``timeline`` (samples, events, series), ``plant`` (simulated machines -> real
``edge.runner.Runner.predict_one`` and ``feedback``), ``charts`` (inline SVG) and ``report`` (``index.html``
and the terminal summary); ``workspace`` (the demo's own project folder) and ``run`` (the orchestration:
hub, flows, timing, clean-up) use them. Importing this package does no I/O and imports no runner,
simulator or numpy. Leaves out the command line (``edgeloop.demo_cli``).
"""
