"""Test certificates for both sides: a plant CA, a hub certificate for 127.0.0.1/localhost, device keys,
CSRs and certificates (good, expired, from another CA, for another device), written as PEM files.

``make_pki(folder)`` creates the plant CA (hub.pki.init_ca, ``folder/hub-ca``) and the hub's certificate
for ``localhost`` and ``127.0.0.1`` (``folder/hub-tls``); ``PlantPki.tls_params()`` is the ``hub.tls``
mapping of params.yaml that serves them. For devices: ``new_key`` + ``csr_pem`` (what ``edge-runner
enroll`` sends), ``tampered_csr`` (a CSR altered after signing), ``PlantPki.device`` (a certificate the
plant CA signs directly, not recorded by any hub: "not issued"), ``.expired_device``,
``.foreign_device`` (another CA), and ``issue_recorded(hub, ...)`` (signed and recorded in the hub's
table, as enrollment does: a certificate the hub accepts). ``Identity`` names the files a TLS client
loads (``edge.contracts.tls.client_context``). Keys are 0600 files. Test helpers only: real deployments
use ``edgeloop hub ca init`` / ``hub cert`` and ``edge-runner enroll``.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import Any

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from hub.pki import (
    CA_KEY,
    CertificateAuthority,
    fingerprint,
    init_ca,
    issue_server_certificate,
    load_ca,
    sign_device_request,
)

__all__ = ["Identity", "PlantPki", "csr_pem", "issue_recorded", "make_pki", "new_key", "tampered_csr"]

HUB_NAMES = ["localhost"]
HUB_IPS = ["127.0.0.1"]


def new_key() -> ec.EllipticCurvePrivateKey:
    return ec.generate_private_key(ec.SECP256R1())


def key_pem(key: ec.EllipticCurvePrivateKey) -> bytes:
    return key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                             serialization.NoEncryption())


def csr_pem(key: ec.EllipticCurvePrivateKey, name: str = "device") -> str:
    """A PEM CSR over ``key`` (the subject is ignored by the hub: it names the device itself)."""
    request = (x509.CertificateSigningRequestBuilder()
               .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)]))
               .sign(key, hashes.SHA256()))
    return request.public_bytes(serialization.Encoding.PEM).decode("ascii")


def tampered_csr(key: ec.EllipticCurvePrivateKey) -> str:
    """A CSR whose subject was changed after it was signed (well-formed; the signature does not verify)."""
    der = x509.load_pem_x509_csr(csr_pem(key, "AAAAAAAA").encode()).public_bytes(serialization.Encoding.DER)
    altered = x509.load_der_x509_csr(der.replace(b"AAAAAAAA", b"BBBBBBBB"))
    return altered.public_bytes(serialization.Encoding.PEM).decode("ascii")


@dataclass(frozen=True)
class Identity:
    """A device's certificate and key as files (what a TLS client presents)."""

    device_id: str
    cert_file: Path
    key_file: Path
    certificate: x509.Certificate

    @property
    def pem(self) -> str:
        return self.certificate.public_bytes(serialization.Encoding.PEM).decode("ascii")

    @property
    def fingerprint(self) -> str:
        return fingerprint(self.certificate)


def write_identity(folder: Path, label: str, device_id: str, key: ec.EllipticCurvePrivateKey,
                   certificate: x509.Certificate) -> Identity:
    folder.mkdir(parents=True, exist_ok=True)
    cert_file, key_file = folder / f"{label}.pem", folder / f"{label}.key"
    cert_file.write_bytes(certificate.public_bytes(serialization.Encoding.PEM))
    key_file.write_bytes(key_pem(key))
    os.chmod(key_file, 0o600)
    return Identity(device_id, cert_file, key_file, certificate)


@dataclass
class PlantPki:
    folder: Path
    ca: CertificateAuthority
    hub_cert: Path
    hub_key: Path
    _count: int = 0
    _other: PlantPki | None = None

    @property
    def ca_dir(self) -> Path:
        return self.ca.cert_file.parent

    @property
    def ca_file(self) -> Path:
        return self.ca.cert_file

    def tls_params(self, client_certificates: str = "optional", trusted_proxies: tuple[str, ...] = (),
                   **extra: Any) -> dict[str, Any]:
        """params.yaml's ``hub.tls`` for a hub serving this PKI's certificate (absolute paths)."""
        return {"cert_file": str(self.hub_cert), "key_file": str(self.hub_key), "ca_dir": str(self.ca_dir),
                "client_certificates": client_certificates, "trusted_proxies": list(trusted_proxies), **extra}

    def _label(self, device_id: str) -> str:
        self._count += 1
        return f"{device_id}-{self._count}"

    def device(self, device_id: str, days: float = 30.0, ca: CertificateAuthority | None = None) -> Identity:
        """A certificate for ``device_id`` signed by the plant CA (or ``ca``), recorded by no hub."""
        key = new_key()
        certificate = sign_device_request(ca or self.ca, csr_pem(key), device_id, timedelta(days=days))
        return write_identity(self.folder / "devices", self._label(device_id), device_id, key, certificate)

    def sign(self, csr: str | bytes, device_id: str, valid_for: timedelta) -> bytes:
        """A device certificate (PEM) over the key in ``csr``, as the hub issues it (not recorded)."""
        certificate = sign_device_request(self.ca, csr, device_id, valid_for)
        return certificate.public_bytes(serialization.Encoding.PEM)

    def device_pair(self, device_id: str, valid_for: timedelta = timedelta(days=90)) -> tuple[bytes, bytes]:
        """(certificate PEM, key PEM) of a key made the way a device makes it (edge.device_keys)."""
        from edge.device_keys import key_pem as device_key_pem
        from edge.device_keys import new_key as device_key
        from edge.device_keys import signing_request

        key = device_key()
        return self.sign(signing_request(key, device_id), device_id, valid_for), device_key_pem(key)

    def install_device(self, folder: Path, device_id: str, valid_for: timedelta = timedelta(days=90)
                       ) -> dict[str, str]:
        """A device identity laid out in ``folder`` as ``edge-runner enroll`` does it; the runner's ``[tls]`` keys."""
        from edge.credentials import IDENTITY_DIR, CredentialStore

        store = CredentialStore(folder / IDENTITY_DIR)
        store.install(*self.device_pair(device_id, valid_for))
        return {"ca_file": str(self.ca_file), "cert_file": str(store.cert_file), "key_file": str(store.key_file)}

    def other_ca(self) -> PlantPki:
        """A second, unrelated plant with its own CA and hub certificate (one the device must not trust)."""
        if self._other is None:
            self._other = make_pki(self.folder / "other-plant")
        return self._other

    def expired_device(self, device_id: str) -> Identity:
        """Signed by the plant CA, expired a minute ago."""
        return self.device(device_id, days=-1 / 1440)

    def foreign_device(self, device_id: str) -> Identity:
        """A well-formed device certificate from another CA."""
        other = self.folder / "other-ca"
        ca = load_ca(other) if (other / CA_KEY).exists() else init_ca(other, "someone else's CA")
        return self.device(device_id, ca=ca)


def make_pki(folder: Path) -> PlantPki:
    """A plant CA and a hub certificate for localhost / 127.0.0.1 under ``folder``."""
    ca = init_ca(folder / "hub-ca", "edgeloop test plant CA")
    cert, key = issue_server_certificate(ca, HUB_NAMES, HUB_IPS, folder / "hub-tls")
    return PlantPki(folder, ca, cert, key)


def issue_recorded(pki: PlantPki, hub: Any, device_id: str, days: float = 30.0) -> Identity:
    """A certificate for ``device_id`` as enrollment issues it: signed by the plant CA and recorded in the
    running hub's table of issued certificates (``hub`` is an ``EmbeddedHub``, or anything with ``.app``)."""
    from hub.clock import SystemClock
    from hub.store.certificates import IssuedCertificate, insert_certificate

    identity = pki.device(device_id, days)
    cert = identity.certificate
    issued = IssuedCertificate(device_id, identity.fingerprint, format(cert.serial_number, "x"),
                               cert.not_valid_before_utc, cert.not_valid_after_utc)
    state = hub.app.state
    with state.engine.begin() as connection:
        insert_certificate(connection, issued, SystemClock().now())
    return identity
