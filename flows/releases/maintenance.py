"""Create the repository, keep its metadata from expiring, and rotate keys.

- ``init_repository``: four ed25519 keys (root offline, targets/snapshot/timestamp online) and version
  1 of every role; refuses to touch an existing repository.
- ``refresh``: re-signs the timestamp every time, and the snapshot and targets when less than half
  of their validity is left (or ``force``). The root needs the offline key: refresh only reports its
  expiry (renew it with ``rotate_key("root")``).
- ``rotate_key``: replaces one role's key by a new root version, without a moment in which devices
  could not verify: for an online role the role's metadata is first re-signed by the old and the new
  key, then the new root (listing only the new key) is written, then the metadata is re-signed by
  the new key alone and the old key file is deleted. A root key rotation writes one root version
  signed by the old and the new root key. A crash at any step leaves a repository that verifies.

Leaves out: generating keys inside a KMS/HSM (pass its public key and signer URI instead).
"""

from __future__ import annotations

import os
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from tuf.api.metadata import Metadata, Root, Snapshot, Targets, Timestamp  # type: ignore[attr-defined]

from edge.contracts.errors import UserError
from flows.releases.config import ONLINE_ROLES, ROLES, ReleaseConfig, check_role
from flows.releases.keys import env_var, generate_key, load_signer, public_key_from_pem, remove_key_file
from flows.releases.repository import LocalRepository, repository_lock


def is_initialised(config: ReleaseConfig) -> bool:
    return (config.metadata_dir / "timestamp.json").is_file()


def init_repository(config: ReleaseConfig) -> Path:
    """Keys and version 1 metadata; the path of root.json (the trust anchor devices ship with)."""
    overridden = [env_var(role) for role in ROLES if os.environ.get(env_var(role))]
    if overridden:
        raise UserError(
            f"{', '.join(overridden)} set: init creates key files; unset it, init, then move the role to"
            " that key with `edgeloop release rotate-key ROLE --signer-uri URI --public-key FILE`"
        )
    with repository_lock(config):
        if is_initialised(config):
            raise UserError(f"a release repository already exists at {config.repository}; not overwriting it")
        signers = {role: generate_key(config, role) for role in ROLES}
        repo = LocalRepository(config, initialising=True)
        for signer in signers.values():
            repo.known_signers[signer.public_key.keyid] = signer
        root = Root(consistent_snapshot=True)
        for role, signer in signers.items():
            root.add_key(signer.public_key, role)
        config.targets_dir.mkdir(parents=True, exist_ok=True)
        repo.write_new(Root.type, Metadata(root))
        repo.write_new(Targets.type, Metadata(Targets()))
        repo.write_new(Snapshot.type, Metadata(Snapshot(meta=dict(repo.targets_infos))))
        repo.write_new(Timestamp.type, Metadata(Timestamp(snapshot_meta=repo.snapshot_info)))  # commit
    return config.metadata_dir / "root.json"


def _near_expiry(expires: datetime, days: float, now: datetime) -> bool:
    return expires - now < timedelta(days=days / 2)


def _role_summary(repo: LocalRepository) -> dict[str, Any]:
    signed = {
        "root": repo.root(), "targets": repo.targets(), "snapshot": repo.snapshot(), "timestamp": repo.timestamp()
    }
    return {role: {"version": md.version, "expires": md.expires.isoformat()} for role, md in signed.items()}


def refresh(config: ReleaseConfig, force: bool = False) -> dict[str, Any]:
    """Re-sign the timestamp (and snapshot/targets near expiry); what was re-signed and new expiries."""
    now = datetime.now(UTC)
    days = config.expiry_days
    with repository_lock(config):
        repo = LocalRepository(config)
        resigned = []
        if force or _near_expiry(repo.targets().expires, days.targets, now):
            with repo.edit_targets():
                pass
            resigned.append("targets")
        snapshot_due = force or _near_expiry(repo.snapshot().expires, days.snapshot, now)
        if repo.do_snapshot(force=snapshot_due)[0]:
            resigned.append("snapshot")
        repo.do_timestamp(force=True)
        resigned.append("timestamp")
        summary = _role_summary(repo)
    summary["resigned"] = resigned
    summary["root_near_expiry"] = _near_expiry(repo.root().expires, days.root, now)
    return summary


def _resign(repo: LocalRepository, role: str) -> None:
    """A new version of ``role`` (and of the roles that list it), committed by a new timestamp."""
    if role == Targets.type:
        with repo.edit_targets():
            pass
    repo.do_snapshot(force=role == Snapshot.type)
    repo.do_timestamp(force=True)


def rotate_key(
    config: ReleaseConfig, role: str, signer_uri: str | None = None, public_key_pem: bytes | None = None
) -> dict[str, Any]:
    """Give ``role`` a new key (a new ed25519 key file, or the KMS/HSM key named by ``signer_uri`` and
    ``public_key_pem``) by a new root version; devices follow it on their next refresh."""
    check_role(role)
    if (signer_uri is None) != (public_key_pem is None):
        raise UserError("--signer-uri and --public-key go together (the public key of the key the URI names)")
    with repository_lock(config):
        repo = LocalRepository(config)
        old_keyids = list(repo.root().roles[role].keyids)
        if public_key_pem is not None and signer_uri is not None:
            key = public_key_from_pem(public_key_pem)
            new = load_signer(config, role, key, uri=signer_uri)
        else:
            new = generate_key(config, role)
        keyid = new.public_key.keyid
        if keyid in old_keyids:
            raise UserError(f"that key already is the {role} key")
        if role in ONLINE_ROLES:
            repo.extra_signers[role] = [new]
            _resign(repo, role)  # old + new signatures: valid under the old and the new root
            repo.extra_signers.clear()
        repo.known_signers[keyid] = new
        with repo.edit_root() as root:
            for old in old_keyids:
                root.revoke_key(old, role)
            root.add_key(new.public_key, role)
        if role in ONLINE_ROLES:
            _resign(repo, role)  # the new key alone
        for old in old_keyids:
            remove_key_file(config, role, old)
        summary = {"role": role, "old_keyids": old_keyids, "new_keyid": keyid, "root_version": repo.root().version}
    if os.environ.get(env_var(role)) and signer_uri is None:
        summary["note"] = f"unset {env_var(role)}: the new {role} key is a file now"
    elif signer_uri is not None:
        summary["note"] = f"set {env_var(role)} to the signer URI before the next publish"
    return summary
