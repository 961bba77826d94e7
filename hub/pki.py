"""The plant's private certificate authority: create it, issue the hub's server certificate, sign devices' CSRs.

``init_ca(folder)`` makes an ECDSA P-256 CA key (``ca.key``, 0600, in a 0700 folder) and its self-signed
certificate (``ca.pem``); it refuses to overwrite one. ``load_ca(folder)`` reads it back.
``issue_server_certificate(ca, names, ips, folder)`` makes a fresh key and a server certificate for the
hub (subjectAltName DNS names and IP addresses, serverAuth), written atomically as ``hub.pem`` (chain:
server then CA) and ``hub.key`` (0600). ``sign_device_request(ca, csr_pem, device_id, valid_for)`` checks
a device's certificate signing request (well-formed PEM, a valid self-signature, an accepted key type)
and issues its client certificate: subject CN = device id, subjectAltName URI
``urn:edgeloop:device:<id>`` (edge.contracts.identity), clientAuth only. Whatever subject the request
names is ignored: the hub decides who the key belongs to (the enrollment code or the current certificate
said so). ``device_id_of(certificate)`` reads the identity back; ``fingerprint`` is the SHA-256 of the DER.

Uses the ``cryptography`` library (no hand-written ASN.1). Leaves out where the files are configured
(hub.settings), serving TLS (hub.tls) and the registry of issued certificates (hub.store).
"""

from __future__ import annotations

import ipaddress
import os
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from edge.atomic import write_bytes_atomic
from edge.contracts.errors import UserError
from edge.contracts.hub_section import CA_CERT_FILE
from edge.contracts.identity import device_id_from_uri, device_uri
from edge.contracts.wire import CSR_MAX_BYTES

__all__ = [
    "CA_CERT",
    "CA_KEY",
    "CertificateAuthority",
    "PkiError",
    "device_id_of",
    "fingerprint",
    "init_ca",
    "issue_server_certificate",
    "load_ca",
    "load_certificate",
    "sign_device_request",
]

CA_CERT, CA_KEY = CA_CERT_FILE, "ca.key"
SERVER_CERT, SERVER_KEY = "hub.pem", "hub.key"
CLOCK_SKEW = timedelta(minutes=5)  # certificates start this long before "now": device clocks drift


class PkiError(UserError, ValueError):
    """A CA, certificate or signing request that cannot be used; the message says which and why."""


@dataclass(frozen=True)
class CertificateAuthority:
    certificate: x509.Certificate
    key: ec.EllipticCurvePrivateKey
    cert_file: Path

    @property
    def pem(self) -> bytes:
        return self.certificate.public_bytes(serialization.Encoding.PEM)


def _now() -> datetime:
    return datetime.now(UTC)


def _key_pem(key: ec.EllipticCurvePrivateKey) -> bytes:
    return key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                             serialization.NoEncryption())


def _private_folder(folder: Path) -> None:
    folder.mkdir(parents=True, exist_ok=True, mode=0o700)
    os.chmod(folder, 0o700)


def init_ca(folder: Path, name: str = "edgeloop plant CA", days: float = 3650.0) -> CertificateAuthority:
    """A new CA in ``folder`` (``ca.key`` 0600, ``ca.pem``); PkiError when one is there already."""
    if (folder / CA_KEY).exists() or (folder / CA_CERT).exists():
        raise PkiError(f"a CA already exists in {folder}: keep it (devices trust it) or move it away first")
    _private_folder(folder)
    key = ec.generate_private_key(ec.SECP256R1())
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)])
    now = _now()
    certificate = (
        x509.CertificateBuilder()
        .subject_name(subject).issuer_name(subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - CLOCK_SKEW).not_valid_after(now + timedelta(days=days))
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(x509.KeyUsage(digital_signature=False, content_commitment=False, key_encipherment=False,
                                     data_encipherment=False, key_agreement=False, key_cert_sign=True,
                                     crl_sign=True, encipher_only=False, decipher_only=False), critical=True)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
        .sign(key, hashes.SHA256())
    )
    write_bytes_atomic(folder / CA_KEY, _key_pem(key), mode=0o600)
    write_bytes_atomic(folder / CA_CERT, certificate.public_bytes(serialization.Encoding.PEM), mode=0o644)
    return CertificateAuthority(certificate, key, folder / CA_CERT)


def load_ca(folder: Path) -> CertificateAuthority:
    """The CA in ``folder``; PkiError naming what is missing or unreadable."""
    try:
        certificate = x509.load_pem_x509_certificate((folder / CA_CERT).read_bytes())
        key = serialization.load_pem_private_key((folder / CA_KEY).read_bytes(), password=None)
    except FileNotFoundError as exc:
        raise PkiError(f"no plant CA in {folder} ({Path(exc.filename).name} is missing): "
                       f"run `edgeloop hub ca init` first") from None
    except (OSError, ValueError) as exc:
        raise PkiError(f"the plant CA in {folder} cannot be read: {exc}") from None
    if not isinstance(key, ec.EllipticCurvePrivateKey):
        raise PkiError(f"{folder / CA_KEY}: expected an EC private key")
    return CertificateAuthority(certificate, key, folder / CA_CERT)


def _issue(ca: CertificateAuthority, subject: x509.Name, public_key: object, valid_for: timedelta,
           extensions: list[tuple[x509.ExtensionType, bool]]) -> x509.Certificate:
    now = _now()
    builder = (
        x509.CertificateBuilder()
        .subject_name(subject).issuer_name(ca.certificate.subject)
        .public_key(public_key)  # type: ignore[arg-type]  # one of the accepted key types (checked by callers)
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - CLOCK_SKEW).not_valid_after(now + valid_for)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(ca.key.public_key()), critical=False)
    )
    for extension, critical in extensions:
        builder = builder.add_extension(extension, critical=critical)
    return builder.sign(ca.key, hashes.SHA256())


def _key_usage() -> x509.KeyUsage:
    return x509.KeyUsage(digital_signature=True, content_commitment=False, key_encipherment=False,
                         data_encipherment=False, key_agreement=False, key_cert_sign=False, crl_sign=False,
                         encipher_only=False, decipher_only=False)


def issue_server_certificate(ca: CertificateAuthority, names: list[str], ips: list[str], folder: Path,
                             days: float = 397.0) -> tuple[Path, Path]:
    """A new key and server certificate for the hub; (certificate chain file, key file), written atomically.

    A certificate already in ``folder`` is replaced (rotation: devices trust the CA, not this certificate)."""
    if not names and not ips:
        raise PkiError("the hub's certificate needs at least one --name or --ip (what devices connect to)")
    try:
        addresses = [x509.IPAddress(ipaddress.ip_address(ip)) for ip in ips]
    except ValueError as exc:
        raise PkiError(f"--ip: {exc}") from None
    alternative: list[x509.GeneralName] = [x509.DNSName(name) for name in names]
    key = ec.generate_private_key(ec.SECP256R1())
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, (names or ips)[0])])
    certificate = _issue(ca, subject, key.public_key(), timedelta(days=days), [
        (x509.SubjectAlternativeName([*alternative, *addresses]), False),
        (x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), False),
        (_key_usage(), True),
    ])
    _private_folder(folder)
    chain = certificate.public_bytes(serialization.Encoding.PEM) + ca.pem
    write_bytes_atomic(folder / SERVER_KEY, _key_pem(key), mode=0o600)
    write_bytes_atomic(folder / SERVER_CERT, chain, mode=0o644)
    return folder / SERVER_CERT, folder / SERVER_KEY


def _accepted(public_key: object) -> bool:
    if isinstance(public_key, ec.EllipticCurvePublicKey):
        return public_key.curve.name in ("secp256r1", "secp384r1")
    if isinstance(public_key, rsa.RSAPublicKey):
        return public_key.key_size >= 2048
    return isinstance(public_key, ed25519.Ed25519PublicKey)


def sign_device_request(ca: CertificateAuthority, csr_pem: bytes | str, device_id: str,
                        valid_for: timedelta) -> x509.Certificate:
    """The client certificate for ``device_id`` over the key in ``csr_pem``; PkiError when the request is
    malformed, its signature does not verify (tampered), or its key type is not accepted."""
    data = csr_pem.encode() if isinstance(csr_pem, str) else csr_pem
    if len(data) > CSR_MAX_BYTES:
        raise PkiError(f"the certificate signing request is larger than {CSR_MAX_BYTES} bytes")
    try:
        request = x509.load_pem_x509_csr(data)
    except ValueError:
        raise PkiError("not a PEM certificate signing request") from None
    try:
        valid = request.is_signature_valid
    except (InvalidSignature, ValueError):
        valid = False
    if not valid:
        raise PkiError("the certificate signing request's signature does not verify (altered after signing?)")
    public_key = request.public_key()
    if not _accepted(public_key):
        raise PkiError("the certificate signing request's key is not accepted (use EC P-256/P-384, Ed25519 "
                       "or RSA of at least 2048 bits)")
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, device_id)])
    return _issue(ca, subject, public_key, valid_for, [
        (x509.SubjectAlternativeName([x509.UniformResourceIdentifier(device_uri(device_id))]), False),
        (x509.ExtendedKeyUsage([ExtendedKeyUsageOID.CLIENT_AUTH]), False),
        (_key_usage(), True),
    ])


def device_id_of(certificate: x509.Certificate) -> str | None:
    """The device id a client certificate was issued to (its ``urn:edgeloop:device:`` URI), else None."""
    try:
        names = certificate.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    except x509.ExtensionNotFound:
        return None
    ids = {device_id_from_uri(uri) for uri in names.get_values_for_type(x509.UniformResourceIdentifier)}
    ids.discard(None)
    return ids.pop() if len(ids) == 1 else None


def fingerprint(certificate: x509.Certificate) -> str:
    """SHA-256 of the certificate's DER bytes, lowercase hex: how the registry names an issued certificate."""
    return certificate.fingerprint(hashes.SHA256()).hex()


def load_certificate(data: bytes) -> x509.Certificate:
    """A certificate from PEM or DER bytes; PkiError when it is neither."""
    try:
        if data.lstrip().startswith(b"-----BEGIN"):
            return x509.load_pem_x509_certificate(data)
        return x509.load_der_x509_certificate(data)
    except ValueError:
        raise PkiError("not an X.509 certificate") from None
