"""Signing keys: create ed25519 key files, and load a role's signer through a securesystemslib URI.

A private key lives in ``<key dir>/<role>-<keyid[:16]>.pem`` (PEM PKCS#8, mode 0600, folder 0700): the
root key in ``ReleaseConfig.root_key`` (offline), the others in ``online_keys``. Naming files by key id
lets a rotation keep the old and the new key side by side until the new root is committed.

``EDGELOOP_SIGNER_<ROLE>`` (e.g. ``EDGELOOP_SIGNER_TARGETS``), when set, holds any securesystemslib
private-key URI (``file2:``, ``gcpkms:``, ``awskms:``, ``hsm:``, ...) and replaces the file for that
role, so a KMS or HSM key needs no code change. Nothing here logs or returns key material.

Leaves out: which key a role should have (root metadata says), and generating keys inside a KMS.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import TYPE_CHECKING

from edge.atomic import write_bytes_atomic
from edge.contracts.errors import UserError
from flows.releases.config import ReleaseConfig

if TYPE_CHECKING:
    from securesystemslib.signer import Key, Signer  # type: ignore[attr-defined]

ENV_PREFIX = "EDGELOOP_SIGNER_"


def env_var(role: str) -> str:
    return f"{ENV_PREFIX}{role.upper()}"


def key_file(config: ReleaseConfig, role: str, keyid: str) -> Path:
    return config.key_dir(role) / f"{role}-{keyid[:16]}.pem"


def _private_dir(folder: Path) -> None:
    if not folder.is_dir():
        folder.mkdir(mode=0o700, parents=True)
        folder.chmod(0o700)


def generate_key(config: ReleaseConfig, role: str) -> Signer:
    """A new ed25519 signer for ``role`` whose private key is saved (0600) before it is returned."""
    from securesystemslib.signer import CryptoSigner  # type: ignore[attr-defined]

    signer = CryptoSigner.generate_ed25519()
    folder = config.key_dir(role)
    _private_dir(folder)
    write_bytes_atomic(key_file(config, role, signer.public_key.keyid), signer.private_bytes, mode=0o600)
    return signer


def public_key_from_pem(pem: bytes) -> Key:
    """A securesystemslib key from a PEM public key (e.g. exported from a KMS)."""
    from cryptography.hazmat.primitives.serialization import load_pem_public_key
    from securesystemslib.signer import SSlibKey  # type: ignore[attr-defined]

    try:
        return SSlibKey.from_crypto(load_pem_public_key(pem))
    except (ValueError, TypeError) as exc:
        raise UserError(f"not a usable PEM public key: {exc}") from None


def signer_uri(config: ReleaseConfig, role: str, keyid: str) -> tuple[str, str]:
    """The private-key URI for ``role``'s key ``keyid`` and where it came from (for messages)."""
    override = os.environ.get(env_var(role))
    if override:
        return override, env_var(role)
    path = key_file(config, role, keyid)
    if not path.is_file():
        raise UserError(f"no private key for the {role} role: expected {path} or {env_var(role)}")
    return f"file2:{path}", str(path)


def load_signer(config: ReleaseConfig, role: str, key: Key, uri: str | None = None) -> Signer:
    """The signer for ``role``'s public ``key``: from ``uri`` when given, else env var, else key file."""
    from securesystemslib.signer import Signer  # type: ignore[attr-defined]

    source = "--signer-uri"
    if uri is None:
        uri, source = signer_uri(config, role, key.keyid)
    try:
        return Signer.from_priv_key_uri(uri, key)
    except Exception as exc:  # any signer backend: file, KMS, HSM ...
        scheme = uri.partition(":")[0]
        raise UserError(f"cannot load the {role} signer from {source} ({scheme}:): {type(exc).__name__}") from None


def remove_key_file(config: ReleaseConfig, role: str, keyid: str) -> None:
    key_file(config, role, keyid).unlink(missing_ok=True)
