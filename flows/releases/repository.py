"""The TUF repository on a local folder: a ``tuf.repository.Repository`` over ``metadata/`` and ``targets/``.

Layout (consistent snapshots): ``metadata/N.root.json`` (and ``root.json``, the newest root, for
bootstrapping devices), ``metadata/N.targets.json``, ``metadata/N.snapshot.json`` and
``metadata/timestamp.json``; target files as ``targets/<dir>/<sha256>.<name>``. Every file but
``timestamp.json`` is written once and never changed.

The committed state is always read from the timestamp chain: ``timestamp.json`` names the snapshot
version, the snapshot names the targets version; the newest root is the highest ``N.root.json`` in
an unbroken run from 1. Anything else in the folder (files of a publish that crashed before its
timestamp was written) is ignored and overwritten by the next operation. Writing ``timestamp.json``
is the commit point: each file is written atomically and durably (``edge.atomic``), so the bundle
files are on disk before the targets metadata, the targets before the snapshot, and the snapshot
before the timestamp. ``repository_lock`` serialises writers (an exclusive ``fcntl`` lock on
``.lock``); readers need no lock. With a bucket configured (``config.mirror``), the lock also pulls the
bucket's newer state before the operation and pushes the result after it, timestamp last
(``flows.releases.mirror``); an operation that fails pushes nothing.

Each signature is checked against the root before its file is written, so a wrong signer (say an
``EDGELOOP_SIGNER_*`` URI for another key) fails loudly instead of freezing devices.

Leaves out: what goes into targets (``publish``, ``channels``), key storage (``keys``), delegations.
"""

from __future__ import annotations

import fcntl
import os
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from tuf.api.exceptions import UnsignedMetadataError
from tuf.api.metadata import Metadata, MetaFile, Root, Snapshot, TargetFile, Targets, Timestamp  # type: ignore[attr-defined]
from tuf.repository import Repository  # type: ignore[attr-defined]

from edge.atomic import copy_file_atomic, write_bytes_atomic
from edge.contracts.errors import UserError
from edge.contracts.release_layout import BUNDLE_TARGET_PATTERN, CHANNEL_TARGET_PATTERN
from flows.releases.config import ReleaseConfig
from flows.releases.keys import load_signer
from flows.releases.mirror import pull, push

if TYPE_CHECKING:
    from securesystemslib.signer import Signer  # type: ignore[attr-defined]


class NotInitialised(UserError):
    """There is no release repository at the configured path."""


@contextmanager
def repository_lock(config: ReleaseConfig) -> Iterator[None]:
    """Hold the repository's exclusive writer lock (blocks until the holder finishes or dies)."""
    config.repository.mkdir(parents=True, exist_ok=True)
    fd = os.open(config.repository / ".lock", os.O_RDWR | os.O_CREAT, 0o644)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        if config.mirror is not None:
            pull(config.repository, config.mirror)
        yield
        if config.mirror is not None:
            push(config.repository, config.mirror)
    finally:
        os.close(fd)  # closing releases the lock


def _sha256_meta(version: int, data: bytes) -> MetaFile:
    return MetaFile.from_data(version, data, ["sha256"])


class LocalRepository(Repository):
    """One repository operation's view of the folder: committed state plus this operation's edits."""

    def __init__(self, config: ReleaseConfig, *, initialising: bool = False) -> None:
        self.config = config
        self._bytes: dict[str, bytes] = {}  # role -> current bytes (committed, then this operation's)
        self._signers: dict[str, list[Signer]] = {}
        self.extra_signers: dict[str, list[Signer]] = {}  # also sign with these (key rotation overlap)
        self.known_signers: dict[str, Signer] = {}  # keyid -> signer to use before env var or key file
        self.previous_root: Root | None = None  # the root a new root version must also be signed by
        if not initialising:
            self._read_committed()

    # --- reading the committed chain ---------------------------------------------------------------

    def _read_committed(self) -> None:
        meta = self.config.metadata_dir
        timestamp_file = meta / "timestamp.json"
        if not timestamp_file.is_file():
            raise NotInitialised(
                f"no release repository at {self.config.repository}: run `edgeloop release init` first"
            )
        self._bytes[Root.type] = (meta / f"{self._newest_root_version()}.root.json").read_bytes()
        self._bytes[Timestamp.type] = timestamp_file.read_bytes()
        timestamp = Metadata[Timestamp].from_bytes(self._bytes[Timestamp.type]).signed
        snapshot_version = timestamp.snapshot_meta.version
        self._bytes[Snapshot.type] = (meta / f"{snapshot_version}.snapshot.json").read_bytes()
        snapshot = Metadata[Snapshot].from_bytes(self._bytes[Snapshot.type]).signed
        targets_version = snapshot.meta["targets.json"].version
        self._bytes[Targets.type] = (meta / f"{targets_version}.targets.json").read_bytes()

    def _newest_root_version(self) -> int:
        version = 1
        while (self.config.metadata_dir / f"{version + 1}.root.json").is_file():
            version += 1
        return version

    def open(self, role: str) -> Metadata[Any]:
        if role not in self._bytes:
            raise UserError(f"release repository has no {role} metadata")
        return Metadata.from_bytes(self._bytes[role])

    def metadata_bytes(self, role: str) -> bytes:
        return self._bytes[role]

    @property
    def targets_infos(self) -> dict[str, MetaFile]:
        targets = self.targets()
        return {"targets.json": _sha256_meta(targets.version, self._bytes[Targets.type])}

    @property
    def snapshot_info(self) -> MetaFile:
        return _sha256_meta(self.snapshot().version, self._bytes[Snapshot.type])

    # --- writing ---------------------------------------------------------------------------------

    def close(self, role: str, md: Metadata[Any]) -> None:
        """Bump version and expiry, sign, check the signatures against the root, write the file."""
        if role == Root.type:
            self.previous_root = self.root()
        md.signed.version += 1
        self.write_new(role, md)

    def write_new(self, role: str, md: Metadata[Any]) -> None:
        """Sign ``md`` as it is (version already set) and write it; used by init and close()."""
        md.signed.expires = self.config.expiry_days.expires(role, datetime.now(UTC))
        md.signatures.clear()
        for signer in self._signers_for(role, md):
            md.sign(signer, append=True)
        self._check_signatures(role, md)
        data = md.to_bytes()
        self._write_file(role, md.signed.version, data)
        self._bytes[role] = data
        if role == Root.type:
            self._signers.clear()  # keys may have changed

    def _signers_for(self, role: str, md: Metadata[Any]) -> list[Signer]:
        if role == Root.type:
            signers = self._role_signers(role, md.signed)  # the new root's keys ...
            if self.previous_root is not None:  # ... and the keys the trusted root requires
                signers += self._role_signers(role, self.previous_root)
        else:
            if role not in self._signers:
                self._signers[role] = self._role_signers(role, self.root())
            signers = list(self._signers[role])
        signers += self.extra_signers.get(role, [])
        unique: dict[str, Signer] = {}
        for signer in signers:
            unique.setdefault(signer.public_key.keyid, signer)
        return list(unique.values())

    def prepare_signers(self, *roles: str) -> None:
        """Load the signers of ``roles`` now, so a missing key fails before anything is written."""
        for role in roles:
            if role not in self._signers:
                self._signers[role] = self._role_signers(role, self.root())

    def _role_signers(self, role: str, root: Root) -> list[Signer]:
        keys = [root.get_key(keyid) for keyid in root.roles[role].keyids]
        return [self.known_signers.get(key.keyid) or load_signer(self.config, role, key) for key in keys]

    def _check_signatures(self, role: str, md: Metadata[Any]) -> None:
        if role == Root.type:
            trusted = [md.signed] if self.previous_root is None else [self.previous_root, md.signed]
        else:
            trusted = [self.root()]
        try:
            for root in trusted:
                root.verify_delegate(role, md.signed_bytes, md.signatures)
        except UnsignedMetadataError:
            raise UserError(
                f"the {role} signature does not verify against the root metadata: does the signer"
                f" (key file or EDGELOOP_SIGNER_{role.upper()}) hold the key root.json lists?"
            ) from None

    def _write_file(self, role: str, version: int, data: bytes) -> None:
        meta = self.config.metadata_dir
        if role == Timestamp.type:
            write_bytes_atomic(meta / "timestamp.json", data)
            return
        write_bytes_atomic(meta / f"{version}.{role}.json", data)
        if role == Root.type:
            write_bytes_atomic(meta / "root.json", data)

    def commit(self, force_snapshot: bool = False) -> None:
        """Snapshot (when targets changed, or forced) then timestamp: the timestamp is the commit."""
        self.do_snapshot(force=force_snapshot)
        self.do_timestamp(force=True)

    # --- target files ----------------------------------------------------------------------------

    def store_target(self, path: str, source: Path | None = None, data: bytes | None = None,
                     custom: dict[str, Any] | None = None) -> TargetFile:
        """Copy a file (or bytes) into ``targets/`` under its consistent-snapshot name; its TargetFile."""
        if source is not None:
            with source.open("rb") as handle:
                info = TargetFile.from_data(path, handle, ["sha256"])
        elif data is not None:
            info = TargetFile.from_data(path, data, ["sha256"])
        else:
            raise ValueError("store_target needs a source file or data")
        stored = self.target_file(info)
        if source is not None:
            copy_file_atomic(source, stored)
        else:
            assert data is not None
            write_bytes_atomic(stored, data)
        if custom is not None:
            info.unrecognized_fields["custom"] = custom
        return info

    def target_file(self, info: TargetFile) -> Path:
        """Where ``info``'s bytes live in this repository (``targets/<dir>/<sha256>.<name>``)."""
        folder, _, name = info.path.rpartition("/")
        stored = self.config.targets_dir / folder / f"{info.hashes['sha256']}.{name}"
        return stored


def bundle_versions(targets: Targets) -> dict[int, dict[str, TargetFile]]:
    """Release version -> {file name: TargetFile} for every bundle in ``targets``."""
    bundles: dict[int, dict[str, TargetFile]] = {}
    for path, info in targets.targets.items():
        match = BUNDLE_TARGET_PATTERN.match(path)
        if match:
            bundles.setdefault(int(match.group(1)), {})[match.group(2)] = info
    return bundles


def channel_pointers(targets: Targets) -> dict[str, int]:
    """Channel name -> release version its signed pointer names."""
    pointers = {}
    for path, info in targets.targets.items():
        match = CHANNEL_TARGET_PATTERN.match(path)
        if match and isinstance(info.custom, dict) and isinstance(info.custom.get("version"), int):
            pointers[match.group(1)] = int(info.custom["version"])
    return pointers
