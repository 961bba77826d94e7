"""``POST /v1/enroll`` and ``POST /v1/devices/{device_id}/certificate``: the request bodies and the answer.

``EnrollmentRequest`` is ``{code, csr}`` (edge.contracts.wire.ENROLLMENT_REQUEST), ``RenewalRequest`` is
``{csr}`` (RENEWAL_REQUEST); both strict (unknown fields refused). ``EnrollmentResult`` has exactly
ENROLLMENT_FIELDS: the device's certificate and the plant CA (PEM), its channel, the release
repository's root.json and when the certificate expires. ``OPENAPI_*`` document the bodies the routes
read themselves (bounded) and every status. Leaves out the checks (hub.enrollment).
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from edge.contracts.wire import CSR_MAX_BYTES, JSON

__all__ = ["CODE_MAX_LENGTH", "EnrollmentRequest", "EnrollmentResult", "RenewalRequest", "openapi_body", "responses"]

CODE_MAX_LENGTH = 128  # a code is 68 characters (hub.tokens); anything much longer is not one
EXAMPLE_CSR = "-----BEGIN CERTIFICATE REQUEST-----\nMIHu...\n-----END CERTIFICATE REQUEST-----\n"
EXAMPLE_CODE = "elc_0123456789abcdef_" + "A" * 43
EXAMPLE_RESULT: dict[str, Any] = {
    "device_id": "press-07", "channel": "canary",
    "certificate": "-----BEGIN CERTIFICATE-----\nMIIB...\n-----END CERTIFICATE-----\n",
    "ca": "-----BEGIN CERTIFICATE-----\nMIIB...\n-----END CERTIFICATE-----\n",
    "trusted_root": '{"signed": {"_type": "root", "version": 1}, "signatures": []}',
    "not_after": "2027-03-02T08:00:00Z",
}


class EnrollmentRequest(BaseModel):
    model_config = ConfigDict(extra="forbid", json_schema_extra={"examples": [{"code": EXAMPLE_CODE,
                                                                               "csr": EXAMPLE_CSR}]})

    code: str = Field(max_length=CODE_MAX_LENGTH, description="the one-time code `edgeloop devices add` printed")
    csr: str = Field(max_length=CSR_MAX_BYTES, description="PEM certificate signing request over the device's own key")


class RenewalRequest(BaseModel):
    model_config = ConfigDict(extra="forbid", json_schema_extra={"examples": [{"csr": EXAMPLE_CSR}]})

    csr: str = Field(max_length=CSR_MAX_BYTES, description="PEM certificate signing request (a new key, or the same)")


class EnrollmentResult(BaseModel):
    model_config = ConfigDict(json_schema_extra={"examples": [EXAMPLE_RESULT]})

    device_id: str
    channel: str
    certificate: str = Field(description="the device's client certificate (PEM)")
    ca: str = Field(description="the plant CA's certificate (PEM): it issued the certificate (and, unless the hub "
                                "brings its own, the hub's)")
    trusted_root: str = Field(description="the release repository's root.json: the device's root of trust")
    not_after: datetime = Field(description="when the certificate expires (ISO 8601, UTC): renew before")


def openapi_body(model: type[BaseModel]) -> dict[str, Any]:
    """The request body of a route that reads (and bounds) it itself."""
    return {"requestBody": {"required": True, "content": {JSON: {"schema": model.model_json_schema()}}}}


def responses(*statuses: int) -> dict[int | str, dict[str, Any]]:
    described = {
        401: "enrollment: code unknown, used or expired; renewal: no valid client certificate (a token does not do)",
        403: "a certificate of another device",
        409: "the hub has no release repository or no plant CA yet",
        413: "body too large",
        415: "not application/json",
        422: "not the request body, or a malformed or tampered CSR, or a key type not accepted",
    }
    return {status: {"description": described[status]} for status in statuses}
