"""The closed loop, without Prefect: when to retrain and when a release moves from canary to stable.

- ``triggers`` (the monitor's rules and the cooldown) with ``observe`` (what they look at), and
  ``retrains`` (every retrain's decision and outcome, whatever its source: monitor, manual, deployment);
- ``promotion`` (the soak rules) with ``evidence`` (what they look at) and ``moves`` (acting on a verdict,
  manual moves);
- ``estimates`` (IPW fleet accuracy from filtered uploads), ``markdown`` (decisions as artifact pages);
- ``log``: the one append-only decision log every one of them writes to.

Leaves out: Prefect flows, artifacts and schedules (``flows.orchestration``).
"""
