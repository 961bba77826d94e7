"""Verify a release repository exactly as a device does: python-tuf's ngclient over HTTP from a root.

``verify_repository`` starts from a root of trust file in an empty client folder, refreshes every
top-level role (following root rotations), and fetches each channel's release with the device
client (``edge.releases.fetch_release``): pointer, manifest and model, all checked. Channels default
to every ``channels/*.json`` target of the verified targets metadata. Each runner policy
(``config/<channel>.json``) is fetched with the device's ``edge.releases.fetch_policy`` and its document
read with ``parse_policy``; it must name its channel and the signed ``config_version``. ``serve_directory`` serves a
folder on an ephemeral 127.0.0.1 port for the duration of a ``with`` block, so a local repository is
verified over the real HTTP path too.

Leaves out: repairing anything; it only reports.
"""

from __future__ import annotations

import tempfile
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from functools import partial
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

from tuf.api.metadata import Metadata

from edge.contracts.errors import UserError
from edge.contracts.release_layout import CHANNEL_TARGET_PATTERN
from edge.contracts.runner_policy import POLICY_TARGET_PATTERN, PolicyError, parse_policy
from edge.releases import ClientLimits, ReleaseError, fetch_policy, fetch_release, refresh_metadata


class VerificationError(UserError):
    """The repository does not verify (the message says which check failed)."""


class QuietHandler(SimpleHTTPRequestHandler):
    """A static file handler that does not log each request to stderr."""

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002
        pass


@contextmanager
def serve_directory(folder: Path, handler: type[SimpleHTTPRequestHandler] = QuietHandler) -> Iterator[str]:
    """Serve ``folder`` over HTTP on 127.0.0.1 (ephemeral port) in a thread; yields the base URL."""
    server = ThreadingHTTPServer(("127.0.0.1", 0), partial(handler, directory=str(folder)))
    server.daemon_threads = True
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)


def _versions(metadata_dir: Path) -> dict[str, Any]:
    found: dict[str, Any] = {}
    for role in ("root", "timestamp", "snapshot", "targets"):
        signed = Metadata.from_bytes((metadata_dir / f"{role}.json").read_bytes()).signed
        found[role] = {"version": signed.version, "expires": signed.expires.isoformat()}
    return found


def _channels(metadata_dir: Path) -> list[str]:
    targets = Metadata.from_bytes((metadata_dir / "targets.json").read_bytes()).signed
    names = [m.group(1) for m in (CHANNEL_TARGET_PATTERN.match(p) for p in targets.targets) if m]  # type: ignore[attr-defined]
    return sorted(names)


def _policy_channels(metadata_dir: Path) -> list[str]:
    targets = Metadata.from_bytes((metadata_dir / "targets.json").read_bytes()).signed
    return sorted(m.group(1) for m in (POLICY_TARGET_PATTERN.match(p) for p in targets.targets) if m)  # type: ignore[attr-defined]


def _verify_policy(metadata_dir: Path, metadata_url: str, targets_url: str, name: str,
                   limits: ClientLimits | None) -> dict[str, Any]:
    try:
        fetched = fetch_policy(metadata_dir, metadata_url, targets_url, name, None, limits)
        policy = parse_policy(fetched.data or b"")
    except (ReleaseError, PolicyError) as exc:
        raise VerificationError(f"runner policy of channel {name!r} does not verify: {exc}") from exc
    if (policy.channel, policy.version) != (name, fetched.version):
        raise VerificationError(f"runner policy of channel {name!r}: the document says channel {policy.channel!r}"
                                f" version {policy.version}, the signed metadata version {fetched.version}")
    return {"version": policy.version, "content_of": policy.content_of, "bytes": len(fetched.data or b""),
            "devices": len(policy.devices)}


def verify_repository(
    root_file: Path, metadata_url: str, targets_url: str, channels: list[str] | None = None,
    limits: ClientLimits | None = None,
) -> dict[str, Any]:
    """Verify like a device from ``root_file``: role versions and expiries, per channel the verified
    release (version, model sha256 and size), the requests and bytes it took, and (``policies``) each
    verified runner policy (version, content_of, bytes, device overrides)."""
    started = time.perf_counter()
    try:
        root_bytes = Path(root_file).read_bytes()
    except OSError as exc:
        raise UserError(f"cannot read the root of trust {root_file}: {exc.strerror}") from None
    report: dict[str, Any] = {"channels": {}, "policies": {}}
    with tempfile.TemporaryDirectory(prefix="edgeloop-verify-") as scratch:
        metadata_dir, staging = Path(scratch) / "metadata", Path(scratch) / "staging"
        try:
            refresh_metadata(metadata_dir, metadata_url, root_bytes, limits)
        except ReleaseError as exc:
            raise VerificationError(f"metadata does not verify: {exc}") from exc
        names = channels if channels is not None else _channels(metadata_dir)
        for name in names:
            try:
                fetched = fetch_release(metadata_dir, metadata_url, targets_url, name, staging, None, limits)
            except ReleaseError as exc:
                raise VerificationError(f"channel {name!r} does not verify: {exc}") from exc
            assert fetched.manifest is not None
            report["channels"][name] = {
                "version": fetched.version, "model_sha256": fetched.manifest.model.sha256,
                "model_bytes": fetched.manifest.model.bytes, "requests": fetched.requests,
                "bytes_downloaded": fetched.bytes_downloaded,
            }
        for name in _policy_channels(metadata_dir):
            if channels is None or name in channels:
                report["policies"][name] = _verify_policy(metadata_dir, metadata_url, targets_url, name, limits)
        report.update(_versions(metadata_dir))
    report["seconds"] = round(time.perf_counter() - started, 4)
    return report
