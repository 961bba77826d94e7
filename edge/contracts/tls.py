"""The TLS policy both sides apply: TLS 1.2 or newer, forward-secret AEAD ciphers, verified peers.

``server_context`` is what the hub serves with (its certificate and key; with ``client_ca`` the
certificates of clients are verified against that CA, ``require_client`` makes one mandatory, else a
client may come without one and the application decides). ``client_context`` is what a device or a
cloud tool connects with: the hub's certificate is verified against ``ca_file`` only (never the system
store, unless ``ca_file`` is None and ``use_system_store`` is set), with the hostname checked, and the
device's own certificate and key presented when given. Standard library ``ssl`` only; the files are PEM.
Leaves out issuing certificates (``hub.pki``) and reloading them (the callers).
"""

from __future__ import annotations

import ssl
from pathlib import Path

__all__ = ["CIPHERS", "MINIMUM_VERSION", "client_context", "server_context"]

MINIMUM_VERSION = ssl.TLSVersion.TLSv1_2
# TLS 1.2 suites: ECDHE key exchange (forward secrecy) with AES-GCM or ChaCha20-Poly1305 only. TLS 1.3's
# suites are all AEAD and not set by this string.
CIPHERS = "ECDHE+AESGCM:ECDHE+CHACHA20:!aNULL:!eNULL:!MD5:!SHA1:!RC4:!3DES"


def server_context(cert_file: Path | str, key_file: Path | str, client_ca: Path | str | None = None,
                   require_client: bool = False) -> ssl.SSLContext:
    """The hub's context: serve ``cert_file``/``key_file``; verify client certificates against ``client_ca``."""
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.minimum_version = MINIMUM_VERSION
    context.set_ciphers(CIPHERS)
    context.options |= ssl.OP_NO_COMPRESSION | ssl.OP_CIPHER_SERVER_PREFERENCE | ssl.OP_NO_RENEGOTIATION
    context.load_cert_chain(str(cert_file), str(key_file))
    if client_ca is not None:
        context.load_verify_locations(cafile=str(client_ca))
        context.verify_mode = ssl.CERT_REQUIRED if require_client else ssl.CERT_OPTIONAL
    return context


def client_context(ca_file: Path | str | None, cert_file: Path | str | None = None,
                   key_file: Path | str | None = None, use_system_store: bool = False) -> ssl.SSLContext:
    """A client's context: trust ``ca_file`` only (or the system store when asked), check the hostname,
    present ``cert_file``/``key_file`` when given."""
    if ca_file is None and not use_system_store:
        raise ValueError("a CA file is required (the hub is verified against the plant CA, not the system store)")
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)  # verifies the peer and checks the hostname
    context.minimum_version = MINIMUM_VERSION
    context.set_ciphers(CIPHERS)
    if ca_file is not None:
        context.load_verify_locations(cafile=str(ca_file))
    else:
        context.load_default_certs(ssl.Purpose.SERVER_AUTH)
    if cert_file is not None:
        context.load_cert_chain(str(cert_file), None if key_file is None else str(key_file))
    return context
