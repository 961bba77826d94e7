"""Where a gateway reaches the hub, and which CA file it verifies the hub with: for the enrollment command.

``enrollment_target(settings)`` answers from params.yaml and the hub's certificate: with TLS, the URL is
``https://<name>:<port>`` with the first name in the certificate that is not a loopback one (a DNS name,
else an IP address; else ``hub.host``), and the CA is the plant CA's ``ca.pem`` when it issued the hub's
certificate, else None (a certificate brought from elsewhere: the operator knows its CA). Without TLS the
hub serves loopback only, so the URL is the local one. Reads only public certificates. Leaves out
printing (edgeloop.devices_cli) and listening (hub.tls.listen).
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.exceptions import InvalidSignature

from hub.settings import HubSettings

__all__ = ["EnrollmentTarget", "enrollment_target"]


@dataclass(frozen=True)
class EnrollmentTarget:
    url: str
    ca_file: Path | None  # what the gateway verifies the hub with; None: not the plant CA (unknown here)
    tls: bool


def _public_name(certificate: x509.Certificate) -> str | None:
    try:
        names = certificate.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    except x509.ExtensionNotFound:
        return None
    for name in names.get_values_for_type(x509.DNSName):
        if name != "localhost" and not name.endswith(".localhost"):
            return name
    for ip in names.get_values_for_type(x509.IPAddress):
        if not ip.is_loopback:
            return f"[{ip}]" if isinstance(ip, ipaddress.IPv6Address) else str(ip)
    return None


def _issued_by(certificate: x509.Certificate, ca_file: Path) -> bool:
    try:
        certificate.verify_directly_issued_by(x509.load_pem_x509_certificate(ca_file.read_bytes()))
    except (OSError, ValueError, TypeError, InvalidSignature):
        return False
    return True


def enrollment_target(settings: HubSettings) -> EnrollmentTarget:
    section = settings.section
    if settings.cert_file is None:
        return EnrollmentTarget(section.local_url, None, False)
    host = section.host if section.host not in ("0.0.0.0", "::", "") else None
    ca_file: Path | None = None
    try:
        certificate = x509.load_pem_x509_certificate(settings.cert_file.read_bytes())  # the first of the chain
    except (OSError, ValueError):
        certificate = None
    if certificate is not None:
        host = _public_name(certificate) or host
        ca_file = settings.ca_file if _issued_by(certificate, settings.ca_file) else None
    return EnrollmentTarget(f"https://{host or '<hub address>'}:{section.port}", ca_file, True)
