"""``GET /healthz``: the probe's body. Leaves out ``/metrics`` (Prometheus text, no model)."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict

__all__ = ["Health"]


class Health(BaseModel):
    model_config = ConfigDict(json_schema_extra={"examples": [{"status": "ok", "database": True}]})

    status: str
    database: bool
