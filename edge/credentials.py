"""The device's certificate and key on disk: installed as a pair, switched atomically, never mismatched.

Layout of a ``CredentialStore(folder)`` (``edge-runner enroll`` makes ``<config dir>/identity``)::

    identity/                  0700
      current -> 2             the pair in use (relative symlink, swapped atomically)
      1/device.pem device.key  the one before (still valid until it ends; kept for a look back)
      2/device.pem device.key  certificate (0644) and its private key (0600), complete and fsynced
      .lock                    serialises installs

The configuration names ``identity/current/device.pem`` and ``identity/current/device.key``.
``install(cert_pem, key_pem)`` refuses a certificate that is not for the key, writes both into a
private ``.partial-*`` folder, fsyncs the files and the folder, renames it to the next number, then
points ``current`` at it (a temporary link ``os.replace``-d over, the folder fsynced) and prunes all
but the newest ``KEEP`` pairs. So at every instant, whatever moment a kill -9 hits, ``current`` names
a complete pair whose certificate and key match. ``recover()`` removes what an interrupted install or
prune left (``.partial-*``, ``.removing-*``, temporary links) and, should ``current`` be missing or
broken, points it at the newest complete matching pair.

Readers must not open ``current/device.pem`` and ``current/device.key`` separately (a switch could
fall between the two opens): ``resolve_pair`` resolves the folder once and names both files in it;
``read_pair`` reads them from there.

Leaves out: making keys and checking certificates (edge.device_keys), TLS contexts (edge.transport).
"""

from __future__ import annotations

import fcntl
import os
import shutil
import tempfile
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from edge.atomic import fsync_dir
from edge.device_keys import CertificateError, pair_matches

__all__ = ["CERT_FILE", "CURRENT", "IDENTITY_DIR", "KEEP", "KEY_FILE", "CredentialStore", "read_pair",
           "resolve_pair"]

CERT_FILE = "device.pem"
KEY_FILE = "device.key"
CURRENT = "current"
IDENTITY_DIR = "identity"  # inside the config dir
KEEP = 2  # pairs kept: the one in use and the one before
_PARTIAL = ".partial-"
_REMOVING = ".removing-"


def resolve_pair(cert_file: Path, key_file: Path) -> tuple[Path, Path]:
    """``cert_file`` and ``key_file`` with their common folder resolved once (a switch of ``current``
    cannot fall between reading the two); unchanged when they are in different folders."""
    if cert_file.parent != key_file.parent:
        return cert_file, key_file
    real = Path(os.path.realpath(cert_file.parent))
    return real / cert_file.name, real / key_file.name


def read_pair(cert_file: Path, key_file: Path) -> tuple[bytes, bytes]:
    """The certificate and key bytes, read from one resolved folder (OSError when one is missing)."""
    cert, key = resolve_pair(cert_file, key_file)
    return cert.read_bytes(), key.read_bytes()


class CredentialStore:
    """See the module docstring."""

    def __init__(self, folder: Path) -> None:
        self.folder = Path(folder)

    def __repr__(self) -> str:
        return f"CredentialStore({str(self.folder)!r})"

    @classmethod
    def of(cls, cert_file: Path, key_file: Path) -> CredentialStore | None:
        """The store ``cert_file``/``key_file`` live in (``<folder>/current/device.pem`` and ``.key``,
        ``current`` a symlink); None for files laid out any other way (they cannot be renewed in place)."""
        link = cert_file.parent
        if (cert_file.name, key_file.name) != (CERT_FILE, KEY_FILE) or key_file.parent != link \
                or link.name != CURRENT or not link.is_symlink():
            return None
        return cls(link.parent)

    @property
    def cert_file(self) -> Path:
        return self.folder / CURRENT / CERT_FILE

    @property
    def key_file(self) -> Path:
        return self.folder / CURRENT / KEY_FILE

    def current_folder(self) -> Path | None:
        link = self.folder / CURRENT
        if not link.is_symlink():
            return None
        target = self.folder / os.readlink(link)
        return target if target.is_dir() else None

    def pairs(self) -> list[Path]:
        """The complete pair folders, oldest first."""
        if not self.folder.is_dir():
            return []
        return sorted((p for p in self.folder.iterdir() if p.name.isdigit() and p.is_dir() and not p.is_symlink()),
                      key=lambda p: int(p.name))

    @contextmanager
    def _locked(self) -> Iterator[None]:
        self.folder.mkdir(parents=True, exist_ok=True, mode=0o700)
        if self.folder.stat().st_mode & 0o077:
            os.chmod(self.folder, 0o700)
        fd = os.open(self.folder / ".lock", os.O_RDWR | os.O_CREAT, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            yield
        finally:
            os.close(fd)

    def install(self, cert_pem: bytes, key_pem: bytes) -> Path:
        """Install a certificate and its key as the pair in use; returns its folder. CertificateError when
        they do not belong together (nothing is written then)."""
        if not pair_matches(cert_pem, key_pem):
            raise CertificateError("the certificate is not for this private key: not installed")
        with self._locked():
            temporary = Path(tempfile.mkdtemp(prefix=_PARTIAL, dir=self.folder))  # 0700
            try:
                for name, data, mode in ((KEY_FILE, key_pem, 0o600), (CERT_FILE, cert_pem, 0o644)):
                    fd = os.open(temporary / name, os.O_WRONLY | os.O_CREAT | os.O_EXCL, mode)
                    with os.fdopen(fd, "wb") as handle:
                        handle.write(data)
                        handle.flush()
                        os.fsync(handle.fileno())
                fsync_dir(temporary)
                numbers = [int(p.name) for p in self.pairs()]
                final = self.folder / str(max(numbers, default=0) + 1)
                os.rename(temporary, final)
            except BaseException:
                shutil.rmtree(temporary, ignore_errors=True)
                raise
            fsync_dir(self.folder)
            self._point(final.name)
            self._prune()
            return final

    def _point(self, name: str) -> None:
        temporary = self.folder / f".{CURRENT}.tmp-{uuid.uuid4().hex}"
        os.symlink(name, temporary)
        os.replace(temporary, self.folder / CURRENT)
        fsync_dir(self.folder)

    def _prune(self) -> None:
        current = self.current_folder()
        pairs = self.pairs()
        keep = {p.name for p in pairs[-KEEP:]} | ({current.name} if current is not None else set())
        for folder in pairs:
            if folder.name not in keep:
                doomed = self.folder / f"{_REMOVING}{folder.name}-{uuid.uuid4().hex}"
                os.rename(folder, doomed)
                shutil.rmtree(doomed, ignore_errors=True)
        fsync_dir(self.folder)

    def recover(self) -> None:
        """Finish or undo what a crash interrupted (see the module docstring). Safe to call any time."""
        if not self.folder.is_dir():
            return
        with self._locked():
            for entry in self.folder.iterdir():
                if entry.name.startswith((_PARTIAL, _REMOVING)) and entry.is_dir() and not entry.is_symlink():
                    shutil.rmtree(entry, ignore_errors=True)
                elif entry.name.startswith(f".{CURRENT}.tmp-") and entry.is_symlink():
                    entry.unlink()
            current = self.current_folder()
            if current is not None and _matching(current):
                return
            for folder in reversed(self.pairs()):
                if _matching(folder):
                    self._point(folder.name)
                    return


def _matching(folder: Path) -> bool:
    try:
        return pair_matches((folder / CERT_FILE).read_bytes(), (folder / KEY_FILE).read_bytes())
    except OSError:
        return False
