"""The plant CA (hub.pki): files and modes, the hub's server certificate, device certificates from CSRs, and
every CSR that must be refused (malformed, tampered, too large, weak key); identity and fingerprints."""

from __future__ import annotations

import stat
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from edge.contracts.errors import UserError
from edge.contracts.identity import device_uri
from edge.contracts.wire import CSR_MAX_BYTES
from edgeloop.testkit.pki import csr_pem, new_key, tampered_csr
from hub.pki import (
    CA_CERT,
    CA_KEY,
    PkiError,
    device_id_of,
    fingerprint,
    init_ca,
    issue_server_certificate,
    load_ca,
    load_certificate,
    sign_device_request,
)

DAY = timedelta(days=1)


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def test_init_ca_writes_a_private_key_and_a_public_certificate(tmp_path: Path) -> None:
    folder = tmp_path / "keys" / "hub-ca"
    ca = init_ca(folder, "plant 7 CA", days=10)
    assert mode(folder) == 0o700 and mode(folder / CA_KEY) == 0o600
    assert (folder / CA_CERT).read_bytes() == ca.pem
    assert ca.certificate.subject.get_attributes_for_oid(NameOID.COMMON_NAME)[0].value == "plant 7 CA"
    constraints = ca.certificate.extensions.get_extension_for_class(x509.BasicConstraints).value
    assert constraints.ca and constraints.path_length == 0
    assert ca.certificate.not_valid_after_utc - datetime.now(UTC) < timedelta(days=10, minutes=1)
    assert b"PRIVATE KEY" not in (folder / CA_CERT).read_bytes()
    with pytest.raises(PkiError, match="already exists"):
        init_ca(folder)  # never overwritten: devices trust it
    again = load_ca(folder)
    assert again.pem == ca.pem and fingerprint(again.certificate) == fingerprint(ca.certificate)


def test_load_ca_says_what_is_missing(tmp_path: Path) -> None:
    with pytest.raises(UserError, match="edgeloop hub ca init"):
        load_ca(tmp_path / "nothing")
    folder = tmp_path / "broken"
    init_ca(folder)
    (folder / CA_KEY).write_text("not a key")
    with pytest.raises(PkiError, match="cannot be read"):
        load_ca(folder)


def test_server_certificate_names_the_hub_and_chains_to_the_ca(tmp_path: Path) -> None:
    ca = init_ca(tmp_path / "ca")
    cert_file, key_file = issue_server_certificate(ca, ["hub.plant.local"], ["10.0.0.5", "::1"], tmp_path / "tls",
                                                   days=30)
    assert mode(key_file) == 0o600 and mode(tmp_path / "tls") == 0o700
    leaf, issuer = x509.load_pem_x509_certificates(cert_file.read_bytes())
    assert issuer == ca.certificate
    leaf.verify_directly_issued_by(ca.certificate)
    names = leaf.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert names.get_values_for_type(x509.DNSName) == ["hub.plant.local"]
    assert [str(ip) for ip in names.get_values_for_type(x509.IPAddress)] == ["10.0.0.5", "::1"]
    usage = leaf.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value
    assert list(usage) == [ExtendedKeyUsageOID.SERVER_AUTH]
    key = serialization.load_pem_private_key(key_file.read_bytes(), None)
    assert key.public_key().public_numbers() == leaf.public_key().public_numbers()  # type: ignore[union-attr]
    first = fingerprint(leaf)
    issue_server_certificate(ca, ["hub.plant.local"], [], tmp_path / "tls")  # re-issue: replaced (rotation)
    assert fingerprint(x509.load_pem_x509_certificates(cert_file.read_bytes())[0]) != first
    with pytest.raises(PkiError, match="--name or --ip"):
        issue_server_certificate(ca, [], [], tmp_path / "tls")
    with pytest.raises(PkiError, match="--ip"):
        issue_server_certificate(ca, [], ["10.0.0.300"], tmp_path / "tls")


def test_a_device_certificate_names_the_device_the_hub_says_not_the_csr(tmp_path: Path) -> None:
    ca = init_ca(tmp_path / "ca")
    key = new_key()
    certificate = sign_device_request(ca, csr_pem(key, "I am the admin"), "press-07", 2 * DAY)
    assert device_id_of(certificate) == "press-07"
    assert certificate.subject.get_attributes_for_oid(NameOID.COMMON_NAME)[0].value == "press-07"
    names = certificate.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert names.get_values_for_type(x509.UniformResourceIdentifier) == [device_uri("press-07")]
    assert list(certificate.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value) == [
        ExtendedKeyUsageOID.CLIENT_AUTH]
    assert not certificate.extensions.get_extension_for_class(x509.BasicConstraints).value.ca
    certificate.verify_directly_issued_by(ca.certificate)
    assert certificate.public_key().public_numbers() == key.public_key().public_numbers()  # type: ignore[union-attr]
    left = certificate.not_valid_after_utc - datetime.now(UTC)
    assert timedelta(days=2) - timedelta(minutes=1) < left <= timedelta(days=2)
    assert certificate.not_valid_before_utc < datetime.now(UTC) - timedelta(minutes=4)  # clock skew allowance
    assert fingerprint(certificate) == certificate.fingerprint(hashes.SHA256()).hex()
    pem = certificate.public_bytes(serialization.Encoding.PEM)
    der = certificate.public_bytes(serialization.Encoding.DER)
    assert load_certificate(pem) == load_certificate(der) == certificate
    with pytest.raises(PkiError):
        load_certificate(b"neither")


def test_every_bad_csr_is_refused_with_a_reason(tmp_path: Path) -> None:
    ca = init_ca(tmp_path / "ca")
    with pytest.raises(PkiError, match="not a PEM certificate signing request"):
        sign_device_request(ca, "-----BEGIN CERTIFICATE REQUEST-----\nAAAA\n-----END CERTIFICATE REQUEST-----\n",
                            "d", DAY)
    with pytest.raises(PkiError, match="does not verify"):
        sign_device_request(ca, tampered_csr(new_key()), "d", DAY)
    with pytest.raises(PkiError, match="larger than"):
        sign_device_request(ca, "x" * (CSR_MAX_BYTES + 1), "d", DAY)
    weak = rsa.generate_private_key(public_exponent=65537, key_size=1024)
    weak_csr = (x509.CertificateSigningRequestBuilder().subject_name(x509.Name([]))
                .sign(weak, hashes.SHA256()).public_bytes(serialization.Encoding.PEM))
    with pytest.raises(PkiError, match="not accepted"):
        sign_device_request(ca, weak_csr, "d", DAY)
    k1 = ec.generate_private_key(ec.SECP521R1())
    with pytest.raises(PkiError, match="not accepted"):
        sign_device_request(ca, csr_pem(k1), "d", DAY)  # type: ignore[arg-type]
    ed = ed25519.Ed25519PrivateKey.generate()
    ed_csr = (x509.CertificateSigningRequestBuilder().subject_name(x509.Name([]))
              .sign(ed, None).public_bytes(serialization.Encoding.PEM))
    assert device_id_of(sign_device_request(ca, ed_csr, "d", DAY)) == "d"
    with pytest.raises(ValueError):
        sign_device_request(ca, csr_pem(new_key()), "../etc", DAY)


def test_device_id_of_reads_only_a_single_device_uri(tmp_path: Path) -> None:
    ca = init_ca(tmp_path / "ca")
    cert_file, _ = issue_server_certificate(ca, ["hub"], [], tmp_path / "tls")
    assert device_id_of(x509.load_pem_x509_certificates(cert_file.read_bytes())[0]) is None  # no device URI
    assert device_id_of(ca.certificate) is None
