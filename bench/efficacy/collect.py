"""Adaptive collection in the efficacy benchmark: the monitor's real ``flows.loop.collection.plan_collection``
fed with what the cloud knows from the landed uploads, and the planned rates applied to the devices (they
reach a device at the next plant hour, as a signed runner policy would within a poll).

Per device, over its uploads landed in the newest ``loop.collection.window_s`` plant seconds:
``labelled_per_day`` (sum of 1/p, per day), ``kept_per_day`` (rows uploaded with p = 1), ``bytes_per_row``
(its upload bytes so far over its uploaded rows), ``accuracy`` (IPW, rows of the model it runs) and
``accuracy_before`` (its earlier rows of the same release when at least ``min_rows_for_accuracy``, else
that release's gate accuracy), as ``flows.loop.collection_step`` gathers them; ``max_psi`` from its drift
monitor. Only the edgeloop policy collects adaptively; the others keep the runner's default rate.
Leaves out: publishing the runner policy (signing, TUF, the runner's verification).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

from edge.contracts.record import INCLUSION_PROBABILITY, MODEL_VERSION
from flows.loop.collection import ChannelState, CurrentRaise, DeviceObservation, plan_collection
from flows.loop.estimates import accuracy as ipw_accuracy

if TYPE_CHECKING:
    from bench.efficacy.policies import Policy
    from bench.efficacy.run import World

__all__ = ["collection_pass"]

DAY_S = 86_400.0


def collection_pass(world: World, policy: Policy, hour: int, end_s: float) -> None:
    from bench.efficacy.policies import Edgeloop, at

    if not isinstance(policy, Edgeloop):
        return
    params = world.params.loop.collection
    uploads = world.uploads()
    online_s = world.history_rows * 60.0
    span = min(params.window_s, end_s - online_s)
    recent = uploads[uploads["landed_s"] > end_s - params.window_s] if len(uploads) else uploads
    label = world.params.schema.label.name
    observations = []
    for device in world.devices:
        mine = recent[recent["device_id"] == device.name] if len(recent) else recent
        p = mine[INCLUSION_PROBABILITY].to_numpy(dtype=np.float64) if len(mine) else np.zeros(0)
        current = mine[mine[MODEL_VERSION] == device.model.version] if len(mine) else mine
        estimate = ipw_accuracy(current, label) if len(current) else None
        older = uploads[(uploads["landed_s"] <= end_s - params.window_s) & (uploads["device_id"] == device.name)
                        & (uploads[MODEL_VERSION] == device.model.version)] if len(uploads) else uploads
        earlier = ipw_accuracy(older, label) if len(older) else None
        before = device.model.gate_accuracy
        if earlier is not None and earlier.value is not None \
                and earlier.rows >= world.params.loop.monitor.min_rows_for_accuracy:
            before = earlier.value
        observations.append(DeviceObservation(
            device.name, device.group, True, device.max_psi(), device.model.version,
            labelled_per_day=float((1.0 / p).sum()) * DAY_S / span if len(p) else None,
            kept_per_day=float((p >= 1.0).sum()) * DAY_S / span if len(p) else None,
            bytes_per_row=device.uploaded_bytes / device.uploaded_rows if device.uploaded_rows else None,
            accuracy=None if estimate is None else estimate.value,
            accuracy_rows=0 if estimate is None else estimate.rows,
            accuracy_before=before,
            rolling_accuracy=sum(device.outcomes) / len(device.outcomes) if device.outcomes else None,
            rolling_labels=len(device.outcomes)))
    channels = {
        "canary": ChannelState(policy.canary.number, at(policy.canary.created_s),
                               policy.canary.number <= policy.stable.number),
        "stable": ChannelState(policy.stable.number, at(policy.stable.created_s), True),
    }
    current_raises: dict[str, CurrentRaise] = world.raised
    plan = plan_collection(observations, current_raises, channels, params, world.params.loop.monitor)
    by_name = {d.name: d for d in world.devices}
    for decision in plan.decisions:
        device = by_name[decision.device_id]
        if decision.rate is None:
            world.raised.pop(decision.device_id, None)
            rate = params.base_rate
        else:
            since = decision.since or world.raised.get(decision.device_id, CurrentRaise(0.0, at(end_s))).since
            world.raised[decision.device_id] = CurrentRaise(decision.rate, since or at(end_s))
            rate = decision.rate
        if rate != device.rate:
            world.rate_log.append({"hour": hour - world.onset_hour, "device": device.name, "rate": rate,
                                   "reason": decision.reason})
            policy.note(hour, "rate", device=device.name, rate=rate)
            device.rate = rate
