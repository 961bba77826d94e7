"""The loop's view of the fleet: estimated accuracy, largest drift and who runs which release.

Pure functions over the loop's estimates document (hub.store.estimates reads it) and reported
heartbeat values. Whatever is in them, nothing here raises: an oddly shaped document, or one entry that
is not a valid estimate, simply gives no estimate (null) where it would have been. Pieces are checked
with pydantic (``hub.schemas.fleet.Interval``: shares in [0, 1], finite, rows >= 0).

``device_estimate`` picks a device's estimate for the version it runs when there are rows for it,
else over every version it ran (``model_version`` null). ``fleet_estimates`` is the fleet summary:
accuracy and label balance. ``releases`` groups the fleet's devices by the model version they last
reported, with online count, channels and the version's estimated accuracy. ``max_drift`` is a
device's largest reported PSI and its feature.
Leaves out: computing estimates (the loop's flows), reading the file and rendering (hub.fleet_view).
"""

from __future__ import annotations

import math
import re
from collections.abc import Sequence
from typing import Any, Protocol

from pydantic import ValidationError

from hub.fleet_status import ONLINE
from hub.schemas.fleet import FleetEstimates, Interval, MaxDrift, ReleaseDevices

__all__ = ["device_estimate", "fleet_estimates", "max_drift", "releases"]


class _Device(Protocol):
    @property
    def device_id(self) -> str: ...
    @property
    def channel(self) -> str: ...
    @property
    def status(self) -> str: ...
    @property
    def model_version(self) -> str | None: ...


def _walk(document: object, *keys: str) -> object:
    for key in keys:
        if not isinstance(document, dict):
            return None
        document = document.get(key)
    return document


def _interval(raw: object, version: str | None) -> Interval | None:
    if not isinstance(raw, dict):
        return None
    try:
        return Interval.model_validate({**raw, "model_version": version})
    except ValidationError:
        return None


def device_estimate(estimates: dict[str, Any] | None, device_id: str, version: str | None) -> Interval | None:
    """``device_id``'s accuracy for ``version`` when estimated, else over all its versions, else None."""
    if version is not None:
        got = _interval(_walk(estimates, "device_versions", device_id, version, "accuracy"), version)
        if got is not None:
            return got
    return _interval(_walk(estimates, "devices", device_id, "accuracy"), None)


def fleet_estimates(estimates: dict[str, Any] | None) -> FleetEstimates | None:
    """The fleet summary of the estimates document; None without one."""
    if not isinstance(estimates, dict):
        return None
    shares = _walk(estimates, "fleet", "label_shares")
    parsed = {str(c): _interval(v, None) for c, v in shares.items()} if isinstance(shares, dict) else {}
    rows = estimates.get("rows")
    computed = estimates.get("computed_at")
    return FleetEstimates(
        computed_at=computed if isinstance(computed, str) else None,
        rows=rows if isinstance(rows, int) and not isinstance(rows, bool) and rows >= 0 else 0,
        accuracy=_interval(_walk(estimates, "fleet", "accuracy"), None),
        label_shares={c: v for c, v in parsed.items() if v is not None},
    )


def _version_key(version: str) -> tuple[tuple[int, int | str], ...]:
    """Natural order: "v2" before "v10"."""
    return tuple((0, int(p)) if p.isdigit() else (1, p) for p in re.findall(r"\d+|\D+", version))


def releases(devices: Sequence[_Device], estimates: dict[str, Any] | None) -> list[ReleaseDevices]:
    """Per model version (newest last), the devices that last reported running it."""
    groups: dict[str, list[_Device]] = {}
    for device in devices:
        if device.model_version is not None:
            groups.setdefault(device.model_version, []).append(device)
    return [
        ReleaseDevices(
            model_version=version,
            devices=[d.device_id for d in group],
            online=sum(1 for d in group if d.status == ONLINE),
            channels=sorted({d.channel for d in group}),
            estimated_accuracy=_interval(_walk(estimates, "versions", version, "accuracy"), version),
        )
        for version, group in sorted(groups.items(), key=lambda item: _version_key(item[0]))
    ]


def max_drift(drift: object) -> MaxDrift | None:
    """The feature with the largest absolute drift score in a heartbeat's ``drift`` mapping."""
    if not isinstance(drift, dict):
        return None
    scores = [(str(k), float(v)) for k, v in drift.items()
              if isinstance(v, int | float) and not isinstance(v, bool) and math.isfinite(v)]
    if not scores:
        return None
    feature, psi = max(scores, key=lambda item: abs(item[1]))
    return MaxDrift(feature=feature, psi=psi)
