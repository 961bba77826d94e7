"""The runner renews its client certificate by itself, before it ends, with no gap.

``CertificateRenewal.check_now()`` (the ``certificate`` loop runs it every ``tls.renew_check_s``, and
once at start) looks at the certificate in use: when it ends within ``tls.renew_before_days`` it
generates a new key on the device (edge.device_keys), sends a CSR to ``POST
/v1/devices/<id>/certificate`` authenticated by the current certificate (edge.hub_client), checks the
answer (a certificate for the new key, naming this device, issued by the plant CA), installs the
certificate and key as a pair (edge.credentials: a new folder, an atomic switch of ``identity/current``;
kill -9 safe) and rebuilds the runner's TLS context (edge.transport), so the very next request, upload,
heartbeat or TUF poll presents the new certificate. The old certificate stays valid on the hub until it
ends: no request ever goes without a valid one.

A failure (hub unreachable or refusing, an answer that does not check out) leaves the pair in use
untouched; it is logged (never a key, a CSR or a certificate body), counted in
``edgeloop_runner_certificate_renewals_total{outcome="failed"}`` and tried again at the next check. The
first failure in a row and each renewal are recorded as state-dir events (so the hub sees them in the
heartbeat). ``edgeloop_runner_certificate_expiry_seconds`` is the time left, read on every scrape.

Certificate files laid out other than by ``edge-runner enroll`` (not ``<dir>/current/device.pem`` and
``device.key`` with ``current`` a symlink) cannot be swapped atomically: such a runner says so when
renewal is due and keeps its certificate. Leaves out: the schedule (edge.loops), enrollment (edge.enroll).
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any, Literal

from edge.config import TlsConfig
from edge.credentials import CredentialStore
from edge.device_keys import (
    CertificateError,
    check_issued,
    key_pem,
    load_certificate,
    new_key,
    not_after,
    signing_request,
)
from edge.hub_client import HubClient, HubError
from edge.metrics import Registry
from edge.state import StateDir
from edge.transport import ClientTls, TlsSetupError

__all__ = ["CertificateRenewal", "CheckOutcome"]

log = logging.getLogger("edge.runner")

CheckOutcome = Literal["not_due", "renewed", "failed"]


class CertificateRenewal:
    """See the module docstring. Thread safe (one renewal at a time)."""

    def __init__(self, device_id: str, tls_config: TlsConfig, store: CredentialStore | None, tls: ClientTls,
                 client: HubClient, metrics: Registry, state: StateDir | None = None,
                 clock: Callable[[], datetime] = lambda: datetime.now(UTC)) -> None:
        self._device_id, self._config, self._store, self._tls = device_id, tls_config, store, tls
        self._client, self._state, self._clock = client, state, clock
        self._lock = threading.Lock()
        self.failures_in_a_row = 0
        self.last_error: str | None = None
        self._renewals = metrics.counter("certificate_renewals_total", "Client certificate renewals",
                                         ("outcome",))
        self._expiry = metrics.gauge("certificate_expiry_seconds", "Seconds until the client certificate ends")
        metrics.on_render(self._refresh_gauge)

    @property
    def expires(self) -> datetime | None:
        return self._tls.certificate_expires

    def due(self) -> bool:
        """True when the certificate in use ends within ``renew_before_days``."""
        expires = self.expires
        if expires is None:
            return False
        return expires - self._clock() <= timedelta(days=self._config.renew_before_days)

    def check_now(self) -> CheckOutcome:
        """Renew when due; the outcome (failures are logged and counted, never raised)."""
        with self._lock:
            if not self.due():
                return "not_due"
            try:
                expires = self._renew()
            except (HubError, CertificateError, TlsSetupError, OSError, KeyError, TypeError, ValueError) as exc:
                self._failed(str(exc))
                return "failed"
            self._renewals.inc("renewed")
            self.failures_in_a_row, self.last_error = 0, None
            log.info("client certificate renewed: valid until %s", expires.isoformat())
            self._record("certificate_renewed", f"valid until {expires.isoformat()}")
            return "renewed"

    def _renew(self) -> datetime:
        if self._store is None:
            raise CertificateError(f"tls.cert_file {self._config.cert_file} is not in an identity folder "
                                   f"(<dir>/current/device.pem, as edge-runner enroll writes it): cannot renew it "
                                   f"in place")
        key = new_key()
        answer = self._client.renew_certificate(signing_request(key, self._device_id))
        certificate_pem = _text(answer, "certificate")
        certificate = load_certificate(certificate_pem)
        issuers = _text(answer, "ca").encode("utf-8")  # the plant CA, as the hub names it
        if self._config.ca_file is not None:
            issuers = self._config.ca_file.read_bytes() + b"\n" + issuers
        check_issued(certificate, key, self._device_id, issuers)
        if not_after(certificate) <= self._clock():
            raise CertificateError("the hub issued a certificate that has already ended")
        self._store.install(certificate_pem.encode("utf-8"), key_pem(key))
        self._tls.reload()
        return not_after(certificate)

    def _failed(self, reason: str) -> None:
        self._renewals.inc("failed")
        self.failures_in_a_row += 1
        self.last_error = reason
        expires = self.expires
        left = "" if expires is None else f" (it ends {expires.isoformat()})"
        log.warning("client certificate renewal failed, trying again in %g s%s: %s",
                    self._config.renew_check_s, left, reason)
        if self.failures_in_a_row == 1:
            self._record("certificate_renewal_failed", reason)

    def _record(self, event: str, detail: str) -> None:
        if self._state is not None:
            self._state.record(event, None, detail)

    def _refresh_gauge(self) -> None:
        expires = self.expires
        self._expiry.set(float("nan") if expires is None else (expires - self._clock()).total_seconds())


def _text(answer: dict[str, Any], field: str) -> str:
    value = answer.get(field)
    if not isinstance(value, str) or not value:
        raise CertificateError(f"the hub's answer has no {field!r}")
    return value
