"""The plant CA's certificate as the running hub reads it: from ``<ca_dir>/ca.pem``, kept until the file changes.

``ca_certificate(folder)`` returns the parsed certificate (None when there is no CA yet or the file is not
one) and re-reads it only when the file's (inode, size, mtime) changes, so verifying a forwarded client
certificate costs one ``stat``. Reads the public certificate only; the CA's private key is read by
``hub.pki.load_ca`` when a certificate is issued. Leaves out verifying (hub.peer_certificates).
"""

from __future__ import annotations

import os
import threading
from pathlib import Path

from cryptography import x509

from hub.pki import CA_CERT

__all__ = ["ca_certificate"]

_lock = threading.Lock()
_cache: dict[Path, tuple[tuple[int, int, int], x509.Certificate | None]] = {}


def ca_certificate(folder: Path) -> x509.Certificate | None:
    """The CA certificate in ``folder`` (``ca.pem``), or None when there is none (or it is not readable)."""
    path = folder / CA_CERT
    try:
        stat = os.stat(path)
    except OSError:
        return None
    key = (stat.st_ino, stat.st_size, stat.st_mtime_ns)
    with _lock:
        hit = _cache.get(path)
    if hit is not None and hit[0] == key:
        return hit[1]
    try:
        certificate: x509.Certificate | None = x509.load_pem_x509_certificate(path.read_bytes())
    except (OSError, ValueError):
        certificate = None
    with _lock:
        _cache[path] = (key, certificate)
    return certificate
