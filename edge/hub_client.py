"""The device's HTTP client for the hub: upload a batch, send a summary, send a heartbeat, renew its certificate.

Every call is one POST to ``/v1/devices/<device_id>/{uploads,summaries,heartbeat,certificate}``
(edge.contracts.wire), over urllib3 (already installed with tuf) with connect and read timeouts and no
automatic retries: the uploader owns retry timing. The device authenticates with its client
certificate (mutual TLS: the ``tls`` context, edge.transport) and/or ``Authorization: Bearer <token>``
when it has a token. Outcomes:

- 2xx: the decoded JSON body (``{}`` when it is not a JSON object); for uploads and summaries this is
  the acknowledgement, including ``"deduplicated": true`` for a batch the hub already had;
- ``HubUnavailable``: try again later: network errors, timeouts, 408, 425, 429 and every 5xx; a TLS
  failure (``HubTlsError``, a subclass) says what failed: the hub's certificate not signed by the
  configured CA, not naming the host, or the hub refusing the device's certificate;
- ``HubRefused(status, detail)``: any other 4xx, which a retry of the same request will not change.

With a ``link`` (edge.hub_link.HubLink) every outcome is reported to it: reachable, unreachable (the
reason), or the device refused (401/403); the link tells the story in the log and the status.

Transport rules: an ``https://`` hub needs a TLS context (never urllib3's default trust), and plain
``http://`` to a host that is not loopback is refused unless ``insecure`` (edge.config's insecure rule).
``use_tls(context)`` swaps the connection pool for one with a new context (after a renewal): the next
request makes a new connection presenting the new certificate.

The token lives in one private attribute and is never part of a repr, a log line or an exception
message (exceptions are raised ``from None`` so no library exception holding the request rides along).
Leaves out building TLS contexts (edge.transport), response size limits and retry policy.
"""

from __future__ import annotations

import gzip
import json
import ssl
import threading
from collections.abc import Mapping
from typing import Any
from urllib.parse import urlsplit

import urllib3

from edge.config import HubConfig, plain_http_problem
from edge.contracts.names import is_valid_device_id
from edge.contracts.wire import CSV, IDEMPOTENCY_KEY, JSON, device_path
from edge.hub_link import AUTH_STATUSES, HubLink

__all__ = ["HubClient", "HubError", "HubRefused", "HubTlsError", "HubUnavailable", "RETRY_LATER", "tls_failure"]

RETRY_LATER = frozenset({408, 425, 429})  # 4xx statuses that mean "not now" rather than "never"


class HubError(Exception):
    """Base class of the hub client's errors."""


class HubUnavailable(HubError):
    """The hub cannot take the request now (network, timeout, 5xx, 429): retry later."""


class HubTlsError(HubUnavailable):
    """The TLS handshake failed (the hub's certificate does not verify, or the hub refused the device's)."""


class HubRefused(HubError):
    """The hub refused the request permanently (a 4xx other than 408/425/429)."""

    def __init__(self, status: int, detail: str) -> None:
        super().__init__(f"hub refused the request: {status} {detail}")
        self.status = status
        self.detail = detail


class HubClient:
    """Talks to one hub as one device. Thread safe (urllib3's pool is)."""

    def __init__(self, base_url: str, device_id: str, token: str | None = None,
                 timeout_s: float = HubConfig.timeout_s, *, tls: ssl.SSLContext | None = None,
                 insecure: bool = HubConfig.insecure, link: HubLink | None = None) -> None:
        if not is_valid_device_id(device_id):
            raise ValueError(f"device_id: {device_id!r} is not a valid device id")
        if not base_url.startswith(("http://", "https://")):
            raise ValueError(f"base_url: expected an http(s) URL, got {base_url!r}")
        problem = plain_http_problem(base_url)
        if problem is not None and not insecure:
            raise ValueError(f"base_url: {problem}: use https:// (or insecure=True to accept that)")
        if base_url.startswith("https://") and tls is None:
            raise ValueError("base_url: an https hub needs a TLS context (the plant CA; edge.transport.ClientTls)")
        self.base_url = base_url.rstrip("/")
        self.device_id = device_id
        self.timeout_s = timeout_s
        self.__token = token
        self.last_request_bytes = 0  # bytes of the last upload's body as sent (compressed)
        self.link = link  # hears every request's outcome (edge.hub_link), when given
        self._lock = threading.Lock()
        self._pool = self._new_pool(tls)

    def __repr__(self) -> str:
        return f"HubClient({self.base_url!r}, device_id={self.device_id!r}, token=<hidden>)"

    def _new_pool(self, tls: ssl.SSLContext | None) -> urllib3.PoolManager:
        timeout = urllib3.Timeout(connect=self.timeout_s, read=self.timeout_s)
        return urllib3.PoolManager(timeout=timeout, retries=False, maxsize=2, ssl_context=tls)

    def use_tls(self, context: ssl.SSLContext) -> None:
        """Use ``context`` from the next request on (a renewed certificate): new pool, old one closed."""
        pool = self._new_pool(context)
        with self._lock:
            old, self._pool = self._pool, pool
        old.clear()  # idle connections close now; one in flight closes when it is returned

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

    def renew_certificate(self, csr_pem: str) -> dict[str, Any]:
        """Ask for a new certificate for the key in ``csr_pem``, authenticated by the current one; the
        hub's answer (``ENROLLMENT_FIELDS``)."""
        body = json.dumps({"csr": csr_pem}, separators=(",", ":")).encode("utf-8")
        return self._post("certificate", body, {"Content-Type": JSON})

    def _post(self, action: str, body: bytes, headers: dict[str, str]) -> dict[str, Any]:
        url = self.base_url + device_path(self.device_id, action)
        headers = {**headers, "Accept": JSON}
        if self.__token:
            headers["Authorization"] = f"Bearer {self.__token}"
        with self._lock:
            pool = self._pool
        try:
            response = pool.request("POST", url, body=body, headers=headers, redirect=False)
        except (urllib3.exceptions.HTTPError, OSError) as exc:
            failure = tls_failure(exc, urlsplit(self.base_url).hostname or "")
            error = (HubTlsError(f"hub at {self.base_url}: {failure}") if failure is not None else
                     HubUnavailable(f"hub at {self.base_url} unreachable: {type(exc).__name__}"))
            if self.link is not None:
                self.link.unreachable(str(error))
            raise error from None
        status, data = response.status, response.data
        link = self.link
        if 200 <= status < 300:
            if link is not None:
                link.reachable()
            decoded = _json(data)
            return decoded if isinstance(decoded, dict) else {}
        if status >= 500 or status in RETRY_LATER:
            if link is not None:
                link.unreachable(f"hub at {self.base_url} answered {status}")
            raise HubUnavailable(f"hub at {self.base_url} answered {status}: retry later")
        detail = _detail(data, status)
        if self.__token:  # a hub that echoed the credential back must not get it into a log
            detail = detail.replace(self.__token, "<token>")
        if link is not None:
            if status in AUTH_STATUSES:
                link.refused(status, detail)
            else:
                link.reachable()
        raise HubRefused(status, detail)


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


# verify codes of OpenSSL (X509_V_ERR_*) that say something other than "not signed by the CA"
_HOSTNAME_MISMATCH, _EXPIRED, _NOT_YET_VALID = 62, 10, 9


def tls_failure(exc: BaseException, host: str, ca: str = "the configured CA (tls.ca_file)") -> str | None:
    """What failed in a TLS handshake, from an exception urllib3 raised; None when it is not a TLS failure."""
    seen: set[int] = set()
    pending: list[object] = [exc]
    found: ssl.SSLError | None = None
    while pending:
        item = pending.pop()
        if not isinstance(item, BaseException) or id(item) in seen:
            continue
        seen.add(id(item))
        if isinstance(item, ssl.SSLCertVerificationError):
            code = item.verify_code
            if code == _HOSTNAME_MISMATCH:
                return f"the hub's certificate is not valid for {host}"
            if code in (_EXPIRED, _NOT_YET_VALID):
                when = "expired" if code == _EXPIRED else "not valid yet"
                return f"the hub's certificate is {when} (check the clock)"
            return f"the hub's certificate is not signed by {ca}"
        if isinstance(item, ssl.SSLError) and found is None:
            found = item
        pending.extend([*item.args, item.__cause__, item.__context__, getattr(item, "reason", None)])
    if found is None:
        return None
    if isinstance(found, ssl.SSLEOFError):
        return "the hub closed the TLS connection: it may want a client certificate, or have refused this device's"
    reason = str(found.reason or found).lower()
    if "certificate_required" in reason or "handshake_failure" in reason:
        return "the hub asked for a client certificate this device does not have (or did not accept it)"
    if ("alert" in reason and "certificate" in reason) or "unknown_ca" in reason:
        return f"the hub refused this device's certificate ({found.reason or found})"
    return f"TLS failed: {found.reason or found}"
