"""What a client certificate says, read once per certificate: device id, fingerprint, validity.

``read_peer(pem)`` parses a PEM certificate with the ``cryptography`` library and returns a
``PeerCertificate`` (None for anything that is not a certificate). Results are kept in a bounded
cache keyed by the PEM text, so a device's keep-alive connection (whose TLS extension hands the same
text on every request) and its next connections cost a dictionary lookup, not a parse.
``issued_by(peer, ca)`` checks a certificate against the plant CA by signature and validity at a
given time (for certificates a TLS-terminating proxy forwards: the TLS layer already did it for
direct connections), also cached. Leaves out where the certificate comes from (hub.peer) and whether
the hub issued it (hub.auth, hub.store.certificates).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from functools import lru_cache

from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes
from cryptography.x509.oid import ExtendedKeyUsageOID

from hub.pki import device_id_of, fingerprint

__all__ = ["PeerCertificate", "issued_by", "read_peer"]

CACHED_CERTIFICATES = 4096  # distinct certificates remembered (a fleet's devices, each with one or two)


@dataclass(frozen=True, eq=False)
class PeerCertificate:
    device_id: str | None  # from its urn:edgeloop:device: URI; None when it names no (single) device
    fingerprint: str
    not_before: datetime  # UTC, aware
    not_after: datetime
    client_auth: bool  # its extended key usage allows client authentication
    certificate: x509.Certificate


def _client_auth(certificate: x509.Certificate) -> bool:
    try:
        usage = certificate.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value
    except x509.ExtensionNotFound:
        return True  # no EKU: any use
    return ExtendedKeyUsageOID.CLIENT_AUTH in usage


@lru_cache(maxsize=CACHED_CERTIFICATES)
def read_peer(pem: str) -> PeerCertificate | None:
    """The certificate in ``pem``, or None when it is not one."""
    try:
        certificate = x509.load_pem_x509_certificate(pem.encode("ascii"))
        return PeerCertificate(device_id_of(certificate), fingerprint(certificate), certificate.not_valid_before_utc,
                               certificate.not_valid_after_utc, _client_auth(certificate), certificate)
    except (ValueError, UnicodeEncodeError):
        return None


_verified: dict[tuple[str, bytes], bool] = {}  # (certificate fingerprint, CA fingerprint) -> signature good


def _signed_by(peer: PeerCertificate, ca: x509.Certificate) -> bool:
    key = (peer.fingerprint, ca.fingerprint(hashes.SHA256()))
    known = _verified.get(key)
    if known is not None:
        return known
    try:
        peer.certificate.verify_directly_issued_by(ca)
        good = True
    except (ValueError, TypeError, InvalidSignature):
        good = False
    if len(_verified) >= CACHED_CERTIFICATES:
        _verified.clear()
    _verified[key] = good
    return good


def issued_by(peer: PeerCertificate, ca: x509.Certificate, now: datetime) -> bool:
    """True when the plant CA ``ca`` signed ``peer``, for client authentication, valid at ``now``."""
    return peer.client_auth and peer.not_before <= now <= peer.not_after and _signed_by(peer, ca)
