"""``GET /v1/fleet``: the fleet document, with the loop's estimates in it.

Per device (``FleetDevice``): channel, revoked flag, status (hub.fleet_status), health with its reason
and since when while online (an offline device's last word is ``last_said``, never current health),
last heartbeat, upload totals, model version, largest drift, backlog, IPW estimated accuracy
(``Interval``), when its client certificate expires and the runner policy version it applied. For the
fleet: ``FleetEstimates`` (accuracy and label balance) and, per model version, ``ReleaseDevices``. Leaves
out building the document (hub.fleet_document, hub.fleet_loop) and the page.
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any

from pydantic import BaseModel, ConfigDict, Field

from hub.fleet_status import Status

__all__ = [
    "Fleet",
    "FleetDevice",
    "FleetEstimates",
    "Interval",
    "LastHeartbeat",
    "MaxDrift",
    "ReleaseDevices",
    "UploadTotals",
]

Share = Annotated[float, Field(ge=0.0, le=1.0, allow_inf_nan=False)]


class Interval(BaseModel):
    """An IPW estimate with its 95% interval, the naive (unweighted) value and the rows it rests on."""

    model_config = ConfigDict(extra="ignore")

    value: Share
    low: Share
    high: Share
    naive: Share | None = None
    rows: Annotated[int, Field(ge=0)] = 0
    model_version: str | None = Field(None, description="the version it is for; null: every version")


class MaxDrift(BaseModel):
    feature: str
    psi: float


class FleetEstimates(BaseModel):
    computed_at: str | None
    rows: int = Field(description="uploaded labelled rows the estimates rest on")
    accuracy: Interval | None
    label_shares: dict[str, Interval] = Field(description="estimated share of each class among labelled rows")


class ReleaseDevices(BaseModel):
    model_version: str
    devices: list[str]
    online: int
    channels: list[str]
    estimated_accuracy: Interval | None


class LastHeartbeat(BaseModel):
    received_at: datetime
    age_s: float
    state: dict[str, Any]


class UploadTotals(BaseModel):
    count: int
    bytes: int


class FleetDevice(BaseModel):
    device_id: str
    channel: str
    revoked: bool
    status: Status
    health: str | None = Field(description="reported health while online; null when offline or never seen")
    health_reason: str | None = Field(
        None, description="why health is not ok, in the device's words, while online (\"\" when ok or from a runner "
                          "that does not say); null when offline or never seen")
    health_since: datetime | None = Field(
        None, description="since when health has been what it is (device clock), while online; null when unknown")
    last_said: str | None = Field(
        None, description="an offline device's last reported health, reason and since when, with when it said so "
                          "(\"last said degraded: ... at ...\"); null when online or never seen")
    last_heartbeat: LastHeartbeat | None
    uploads: UploadTotals
    last_seen: datetime | None = Field(None, description="when its last heartbeat arrived")
    model_version: str | None = Field(None, description="the version it last reported running")
    max_drift: MaxDrift | None = Field(None, description="its largest reported feature drift (PSI)")
    backlog: int | None = Field(None, description="rows waiting in its spool, as last reported")
    estimated_accuracy: Interval | None = Field(
        None, description="IPW accuracy of its uploaded labelled rows with 95% interval: for the version it "
                          "runs when there are rows for it, else over every version (model_version null)")
    certificate_not_after: datetime | None = Field(
        None, description="when its client certificate expires (the latest of its unrevoked certificates); null: "
                          "it has none (token only)")
    config_version: int | None = Field(
        None, description="the signed runner policy version it last reported applying for its channel; null: none "
                          "(or a runner that does not say)")


class Fleet(BaseModel):
    generated_at: datetime
    stale_after_s: float
    devices: list[FleetDevice]
    estimates: FleetEstimates | None = Field(None, description="fleet accuracy and label balance (IPW)")
    releases: list[ReleaseDevices] = Field(default_factory=list, description="per model version, who runs it")
