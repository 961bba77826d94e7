"""The device's own key and certificate: made here, checked here, never sent anywhere but as a CSR.

``new_key()`` generates an ECDSA P-256 private key on the device; ``key_pem(key)`` is its PKCS#8 PEM
(unencrypted: the file's 0600 mode protects it, like the token file did). ``signing_request(key,
name)`` is a PEM certificate signing request signed by the key (the hub ignores its subject and decides
the identity itself: the enrollment code or the current certificate says who the device is).

Reading what the hub sent back: ``load_certificate(pem)`` parses a PEM certificate (``CertificateError``
otherwise); ``check_issued(certificate, key, device_id, ca_pem)`` refuses a certificate that is not for
this key, does not name ``device_id`` (its ``urn:edgeloop:device:`` URI, edge.contracts.identity) or is
not issued by a CA in ``ca_pem``. ``not_after(certificate)`` and ``certificate_device_id(certificate)``
read it; ``pair_matches(cert_pem, key_pem)`` says whether a certificate and a key belong together.

Uses the ``cryptography`` library (no hand-written ASN.1). Leaves out where the files live
(edge.credentials), TLS (edge.transport) and talking to the hub (edge.enroll, edge.cert_renewal).
"""

from __future__ import annotations

from datetime import datetime

from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.types import PrivateKeyTypes, PublicKeyTypes
from cryptography.x509.oid import NameOID

from edge.contracts.identity import device_id_from_uri

__all__ = [
    "CertificateError",
    "certificate_device_id",
    "check_issued",
    "key_pem",
    "load_certificate",
    "load_key",
    "new_key",
    "not_after",
    "pair_matches",
    "signing_request",
]


class CertificateError(ValueError):
    """A certificate or key that cannot be used; the message says why (never any key material)."""


def new_key() -> ec.EllipticCurvePrivateKey:
    """A fresh ECDSA P-256 private key, generated on this device."""
    return ec.generate_private_key(ec.SECP256R1())


def key_pem(key: ec.EllipticCurvePrivateKey) -> bytes:
    return key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                             serialization.NoEncryption())


def load_key(pem: bytes) -> PrivateKeyTypes:
    try:
        return serialization.load_pem_private_key(pem, password=None)
    except (ValueError, TypeError):
        raise CertificateError("not an unencrypted PEM private key") from None


def signing_request(key: ec.EllipticCurvePrivateKey, name: str) -> str:
    """A PEM certificate signing request for ``key`` (subject CN ``name``; the hub sets the real identity)."""
    request = (
        x509.CertificateSigningRequestBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)]))
        .sign(key, hashes.SHA256())
    )
    return request.public_bytes(serialization.Encoding.PEM).decode("ascii")


def load_certificate(pem: bytes | str) -> x509.Certificate:
    """The first certificate of a PEM text; CertificateError when there is none."""
    data = pem.encode("utf-8") if isinstance(pem, str) else pem
    try:
        return x509.load_pem_x509_certificate(data)
    except ValueError:
        raise CertificateError("not a PEM certificate") from None


def _certificates(pem: bytes) -> list[x509.Certificate]:
    try:
        return x509.load_pem_x509_certificates(pem)
    except ValueError:
        raise CertificateError("not a PEM certificate") from None


def not_after(certificate: x509.Certificate) -> datetime:
    """When the certificate ends (timezone-aware UTC)."""
    return certificate.not_valid_after_utc


def certificate_device_id(certificate: x509.Certificate) -> str | None:
    """The device id of a client certificate's ``urn:edgeloop:device:`` URI (one, else None)."""
    try:
        names = certificate.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    except x509.ExtensionNotFound:
        return None
    ids = {device_id_from_uri(uri) for uri in names.get_values_for_type(x509.UniformResourceIdentifier)}
    ids.discard(None)
    return ids.pop() if len(ids) == 1 else None


def _same_key(a: PublicKeyTypes, b: PublicKeyTypes) -> bool:
    form = serialization.PublicFormat.SubjectPublicKeyInfo
    return a.public_bytes(serialization.Encoding.DER, form) == b.public_bytes(serialization.Encoding.DER, form)


def check_issued(certificate: x509.Certificate, key: ec.EllipticCurvePrivateKey, device_id: str | None,
                 ca_pem: bytes) -> None:
    """CertificateError unless ``certificate`` is for ``key``, names ``device_id`` (when given) and was
    issued (signed) by one of the certificates in ``ca_pem``."""
    if not _same_key(certificate.public_key(), key.public_key()):
        raise CertificateError("the certificate is not for the key this device generated")
    named = certificate_device_id(certificate)
    if named is None:
        raise CertificateError("the certificate names no device (no urn:edgeloop:device: URI)")
    if device_id is not None and named != device_id:
        raise CertificateError(f"the certificate names device {named!r}, not {device_id!r}")
    for ca in _certificates(ca_pem):
        try:
            certificate.verify_directly_issued_by(ca)
        except (ValueError, TypeError, InvalidSignature):
            continue
        return
    raise CertificateError("the certificate is not issued by the plant CA")


def pair_matches(cert_pem: bytes, private_pem: bytes) -> bool:
    """True when the certificate in ``cert_pem`` is for the private key in ``private_pem``."""
    try:
        certificate = load_certificate(cert_pem)
        key = load_key(private_pem)
    except CertificateError:
        return False
    return _same_key(certificate.public_key(), key.public_key())
