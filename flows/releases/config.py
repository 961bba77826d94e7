"""Where the release repository and its keys live, and how long each role's metadata stays valid.

``ReleaseConfig`` is the one argument every release operation takes: a frozen view of params.yaml's
``release:`` section with paths resolved against the project root, and the bucket the repository is
pushed to (``storage.releases_mirror``, ``flows.releases.mirror``). Leaves out: creating or reading
anything (the other ``flows.releases`` modules do).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING

from edge.contracts.errors import UserError
from flows.releases.mirror import Mirror

if TYPE_CHECKING:
    from edge.contracts.layout import Paths
    from flows.params import Params

ROLES = ("root", "targets", "snapshot", "timestamp")
ONLINE_ROLES = ("targets", "snapshot", "timestamp")


@dataclass(frozen=True)
class Expiry:
    """Days each role's metadata stays valid after it is signed."""

    root: float = 365.0
    targets: float = 90.0
    snapshot: float = 30.0
    timestamp: float = 1.0

    def days(self, role: str) -> float:
        return float(getattr(self, role))

    def expires(self, role: str, now: datetime | None = None) -> datetime:
        """Expiry of ``role`` metadata signed at ``now``, rounded down to the second (TUF format)."""
        moment = (now or datetime.now(UTC)) + timedelta(days=self.days(role))
        return moment.replace(microsecond=0)


@dataclass(frozen=True)
class ReleaseConfig:
    repository: Path  # TUF repository folder: metadata/, targets/, history.jsonl
    root_key: Path  # folder of the offline root key
    online_keys: Path  # folder of the targets, snapshot and timestamp keys
    expiry_days: Expiry = Expiry()
    channel: str = "canary"  # the channel the retrain flow publishes to
    mirror: Mirror | None = None  # the bucket devices fetch from: pushed after every change, pulled before one

    @classmethod
    def from_params(cls, params: Params, paths: Paths) -> ReleaseConfig:
        release = params.release
        days = release.expiry_days
        return cls(
            repository=paths.resolve(release.repository),
            root_key=paths.resolve(release.root_key),
            online_keys=paths.resolve(release.online_keys),
            expiry_days=Expiry(root=days.root, targets=days.targets, snapshot=days.snapshot, timestamp=days.timestamp),
            channel=release.channel,
            mirror=None if params.storage.releases_mirror is None else Mirror(
                params.storage.releases_mirror, params.storage.endpoint_url),
        )

    @property
    def metadata_dir(self) -> Path:
        return self.repository / "metadata"

    @property
    def targets_dir(self) -> Path:
        return self.repository / "targets"

    @property
    def history_file(self) -> Path:
        return self.repository / "history.jsonl"

    def key_dir(self, role: str) -> Path:
        return self.root_key if role == "root" else self.online_keys


def check_role(role: str) -> str:
    if role not in ROLES:
        raise UserError(f"role {role!r} is not one of: {', '.join(ROLES)}")
    return role
