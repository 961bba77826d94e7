"""The device's HTTP client for the hub: upload a batch, send a summary, send a heartbeat.

Every call is one POST with ``Authorization: Bearer <device token>`` to
``/v1/devices/<device_id>/{uploads,summaries,heartbeat}``, over urllib3 (already installed with tuf)
with connect and read timeouts and no automatic retries: the uploader owns retry timing. Outcomes:

- 2xx: the decoded JSON body (``{}`` when it is not a JSON object); for uploads and summaries this is
  the acknowledgement, including ``"deduplicated": true`` for a batch the hub already had;
- ``HubUnavailable``: try again later: network errors, timeouts, 408, 425, 429 and every 5xx;
- ``HubRefused(status, detail)``: any other 4xx, which a retry of the same request will not change.

The token lives in one private attribute and is never part of a repr, a log line or an exception
message (exceptions are raised ``from None`` so no library exception holding the request rides along).
Leaves out TLS settings beyond urllib3's defaults, response size limits and retry policy.
"""

from __future__ import annotations

import gzip
import json
from collections.abc import Mapping
from typing import Any

import urllib3

from edge.config import HubConfig
from edge.contracts.names import is_valid_device_id
from edge.contracts.wire import CSV, IDEMPOTENCY_KEY, JSON

__all__ = ["HubClient", "HubError", "HubRefused", "HubUnavailable", "RETRY_LATER"]

RETRY_LATER = frozenset({408, 425, 429})  # 4xx statuses that mean "not now" rather than "never"


class HubError(Exception):
    """Base class of the hub client's errors."""


class HubUnavailable(HubError):
    """The hub cannot take the request now (network, timeout, 5xx, 429): retry later."""


class HubRefused(HubError):
    """The hub refused the request permanently (a 4xx other than 408/425/429)."""

    def __init__(self, status: int, detail: str) -> None:
        super().__init__(f"hub refused the request: {status} {detail}")
        self.status = status
        self.detail = detail


class HubClient:
    """Talks to one hub as one device. Thread safe (urllib3's pool is)."""

    def __init__(self, base_url: str, device_id: str, token: str, timeout_s: float = HubConfig.timeout_s) -> None:
        if not is_valid_device_id(device_id):
            raise ValueError(f"device_id: {device_id!r} is not a valid device id")
        if not base_url.startswith(("http://", "https://")):
            raise ValueError(f"base_url: expected an http(s) URL, got {base_url!r}")
        self.base_url = base_url.rstrip("/")
        self.device_id = device_id
        self.timeout_s = timeout_s
        self.__token = token
        self.last_request_bytes = 0  # bytes of the last upload's body as sent (compressed)
        self._pool = urllib3.PoolManager(
            timeout=urllib3.Timeout(connect=timeout_s, read=timeout_s), retries=False, maxsize=2
        )

    def __repr__(self) -> str:
        return f"HubClient({self.base_url!r}, device_id={self.device_id!r}, token=<hidden>)"

    def upload(self, body: bytes, key: str, content_type: str = CSV, compress: bool = True) -> dict[str, Any]:
        """Send one ground-truth batch; ``key`` is sha256(body) (the Idempotency-Key). The body travels
        gzip-compressed (``Content-Encoding: gzip``, deterministic bytes); the hub stores it decoded."""
        headers = {"Content-Type": content_type, IDEMPOTENCY_KEY: key}
        if compress:
            body = gzip.compress(body, compresslevel=6, mtime=0)
            headers["Content-Encoding"] = "gzip"
        self.last_request_bytes = len(body)
        return self._post("uploads", body, headers)

    def summary(self, body: bytes, key: str) -> dict[str, Any]:
        """Send one summary document (JSON bytes); ``key`` is sha256(body)."""
        return self._post("summaries", body, {"Content-Type": JSON, IDEMPOTENCY_KEY: key})

    def heartbeat(self, state: Mapping[str, Any]) -> dict[str, Any]:
        """Report the runner's state (the hub's HeartbeatBody fields)."""
        body = json.dumps(state, allow_nan=False, separators=(",", ":")).encode("utf-8")
        return self._post("heartbeat", body, {"Content-Type": JSON})

    def _post(self, action: str, body: bytes, headers: dict[str, str]) -> dict[str, Any]:
        url = f"{self.base_url}/v1/devices/{self.device_id}/{action}"
        headers = {**headers, "Authorization": f"Bearer {self.__token}", "Accept": JSON}
        try:
            response = self._pool.request("POST", url, body=body, headers=headers, redirect=False)
        except (urllib3.exceptions.HTTPError, OSError) as exc:
            raise HubUnavailable(f"hub at {self.base_url} unreachable: {type(exc).__name__}") from None
        status, data = response.status, response.data
        if 200 <= status < 300:
            decoded = _json(data)
            return decoded if isinstance(decoded, dict) else {}
        if status >= 500 or status in RETRY_LATER:
            raise HubUnavailable(f"hub at {self.base_url} answered {status}: retry later")
        raise HubRefused(status, _detail(data, status))


def _json(data: bytes) -> Any:
    try:
        return json.loads(data)
    except ValueError:
        return None


def _detail(data: bytes, status: int) -> str:
    decoded = _json(data)
    detail: Any = decoded.get("detail") if isinstance(decoded, dict) else None
    if detail is None:
        detail = data.decode("utf-8", "replace") if data else f"HTTP {status}"
    text = detail if isinstance(detail, str) else json.dumps(detail, default=str)
    return text[:500]
